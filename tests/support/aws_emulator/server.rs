//! The HTTP side: one listener on 127.0.0.1 for all four services, and the clock that advances
//! every deployment by one step at a time. Both run on a runtime of their own on a thread of
//! their own, so the emulator keeps answering and progressing while a test blocks its thread
//! (waiting on a child process, say).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::wire::{self, Response};
use super::world::{EmulatorCall, Now, World};

/// Starts the listener and the clock on their own thread; returns the bound address and the
/// sender whose drop stops both.
pub fn spawn(world: Arc<Mutex<World>>) -> (SocketAddr, oneshot::Sender<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("aws-emulator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
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
                    _ = serve(listener, world.clone()) => {}
                    _ = run_clock(world) => {}
                }
            });
        })
        .expect("the emulator's thread starts");
    let addr = addr_rx.recv().expect("the emulator reports its address");
    (addr, stop_tx)
}

async fn run_clock(world: Arc<Mutex<World>>) {
    let step = world.lock().expect("world lock").timing.step;
    let mut interval = tokio::time::interval(step);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        world.lock().expect("world lock").tick(Now::current());
    }
}

async fn serve(listener: TcpListener, world: Arc<Mutex<World>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let world = world.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let world = world.clone();
                async move { Ok::<_, Infallible>(answer(&world, request).await) }
            });
            // A client that hangs up mid-request is no concern of the emulator's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    world: &Mutex<World>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let rest_route = super::eks::route(request.method(), request.uri().path());
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let decoded = rest_route.map_or_else(|| wire::decode(target.as_deref(), &body), Ok);
    let response = match decoded {
        Ok(decoded) => {
            let mut world = world.lock().expect("world lock");
            world.calls.push(EmulatorCall {
                service: decoded.service.into(),
                operation: decoded.operation.clone(),
                at: std::time::Instant::now(),
                body: decoded.body.clone(),
            });
            match super::access::refusal(&mut world, &decoded)
                .map_or_else(|| dispatch(&mut world, &decoded), Err)
            {
                Ok(result) => wire::success(decoded.service, &decoded.operation, result),
                Err(error) => wire::failure(decoded.service, &error),
            }
        }
        Err(error) => {
            let service = if target.is_some() {
                "json"
            } else {
                "elasticloadbalancing"
            };
            wire::failure(service, &error)
        }
    };
    encode(response)
}

fn dispatch(
    world: &mut World,
    request: &wire::Request,
) -> Result<serde_json::Value, wire::AwsError> {
    let now = Now::current();
    match request.service {
        "ecs" => super::ecs::handle(world, &request.operation, &request.body, now),
        "codedeploy" => super::codedeploy::handle(world, &request.operation, &request.body, now),
        "logs" => super::logs::handle(world, &request.operation, &request.body),
        "eks" => super::eks::handle(world, &request.operation, &request.body),
        _ => super::elb::handle(world, &request.operation, &request.body),
    }
}

fn encode(response: Response) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(response.status)
        .header("content-type", response.content_type)
        .header("x-amzn-requestid", super::world::random_uuid())
        .body(Full::new(Bytes::from(response.body)))
        .expect("a valid response")
}
