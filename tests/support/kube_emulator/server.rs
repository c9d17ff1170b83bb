//! The HTTPS side: one TLS listener on 127.0.0.1 speaking HTTP/1.1, and the clock that moves
//! the simulated controllers one step at a time. Both run on a runtime of their own on a thread
//! of their own, so the emulator keeps answering while a test blocks its thread (waiting on
//! kubectl, say).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::rest::{self, ApiRequest, Reply};
use super::status::ApiError;
use super::world::{KubeRequest, World};

type Body = BoxBody<Bytes, Infallible>;

fn lock(world: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the listener and the clock on their own thread; returns the bound address and the
/// sender whose drop stops both.
pub fn spawn(
    world: Arc<Mutex<World>>,
    tls: Arc<rustls::ServerConfig>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kube-emulator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the emulator's runtime starts");
            runtime.block_on(async move {
                let listener = TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .expect("the emulator binds 127.0.0.1");
                addr_tx
                    .send(listener.local_addr().expect("a bound address"))
                    .expect("the starter waits for the address");
                tokio::select! {
                    _ = stop_rx => {}
                    _ = serve(listener, world.clone(), tls) => {}
                    _ = run_clock(world) => {}
                }
            });
            // Open watch streams end with the runtime.
            runtime.shutdown_background();
        })
        .expect("the emulator's thread starts");
    let addr = addr_rx.recv().expect("the emulator reports its address");
    (addr, stop_tx)
}

async fn run_clock(world: Arc<Mutex<World>>) {
    let step = lock(&world).timing.step;
    let mut interval = tokio::time::interval(step);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        super::clock::tick(&mut lock(&world));
    }
}

async fn serve(listener: TcpListener, world: Arc<Mutex<World>>, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let world = world.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that fails the handshake or hangs up is no concern of the emulator's.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| {
                let world = world.clone();
                async move { Ok::<_, Infallible>(answer(world, request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn header(request: &hyper::Request<Incoming>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn answer(
    world: Arc<Mutex<World>>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let raw_query = request.uri().query().unwrap_or_default().to_string();
    let token = header(&request, "authorization")
        .strip_prefix("Bearer ")
        .map(str::to_owned);
    let content_type = header(&request, "content-type");
    let user_agent = header(&request, "user-agent");
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let query: HashMap<String, String> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let reply = {
        let mut world = lock(&world);
        world.requests.push(KubeRequest {
            method: method.clone(),
            path: path.clone(),
            query: raw_query,
            at: std::time::Instant::now(),
            token: token.clone(),
        });
        let authorized = match &world.knobs.token_check {
            Some(check) => token.as_deref().is_some_and(check),
            None => true,
        };
        if !authorized {
            Reply::from(ApiError::unauthorized())
        } else if let Some(document) = (method == "GET")
            .then(|| super::resources::discovery(&path, &world.endpoint))
            .flatten()
        {
            Reply::Json(200, document)
        } else {
            rest::handle(
                &mut world,
                &ApiRequest {
                    method,
                    path,
                    query,
                    content_type,
                    user_agent,
                    body,
                },
            )
        }
    };
    match reply {
        Reply::Json(status, value) => respond(status, "application/json", value.to_string()),
        Reply::Text(status, text) => respond(status, "text/plain", text),
        Reply::Watch(watch) => {
            let (sender, receiver) = futures::channel::mpsc::channel(64);
            tokio::spawn(super::watch::stream(world, watch, sender));
            let body =
                StreamBody::new(receiver.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
            hyper::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(BodyExt::boxed(body))
                .expect("a valid response")
        }
    }
}

fn respond(status: u16, content_type: &str, body: String) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("audit-id", super::world::random_uuid())
        .body(BodyExt::boxed(Full::new(Bytes::from(body))))
        .expect("a valid response")
}
