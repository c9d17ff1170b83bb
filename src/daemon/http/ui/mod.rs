//! The daemon's web page: the run history and one run's live log.
//!
//! Plain HTML, CSS and a small script, compiled into the binary so the daemon serves its page
//! with nothing fetched from anywhere else. The routes are stateless: the page reads the JSON
//! API (`/api/runs`, `/api/runs/{id}/log`) with the bearer token the user enters, so serving the
//! page itself needs no token and reveals nothing.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles, images and requests
//! from the daemon's own origin only, no inline script or style, no frames, no form posts. The
//! page inserts API data with `textContent` only, so even a repository name made to look like
//! markup stays text, and the policy stops anything that slipped through anyway.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// Where the page may load from and connect to: its own origin, nothing inline.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// One file of the page, as compiled in.
struct Asset {
    /// The path under `/ui/`, or `""` for the page itself at `/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
};

const FILES: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/icon.svg"),
    },
];

/// Each asset's strong validator: the start of its sha256, computed once.
static ETAGS: LazyLock<Vec<(&'static str, HeaderValue)>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(FILES.iter())
        .map(|asset| {
            let digest = hex::encode(Sha256::digest(asset.body));
            let etag = HeaderValue::try_from(format!("\"{}\"", &digest[..32]))
                .expect("a quoted hex digest is a valid header value");
            (asset.name, etag)
        })
        .collect()
});

/// `/` (the page) and `/ui/{file}` (its script, style and icon). The daemon's router merges it,
/// whatever state its own handlers share: these need none.
pub(crate) fn ui_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route("/ui/{file}", get(serve_file))
}

async fn serve_file(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    match FILES.iter().find(|asset| asset.name == file) {
        Some(asset) => serve(asset, &headers),
        None => with_security_headers(
            (
                StatusCode::NOT_FOUND,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such file\n",
            )
                .into_response(),
        ),
    }
}

/// The asset, or `304 Not Modified` when the browser already has this version. `no-cache` makes
/// the browser ask every time (a cheap 304 when nothing changed), so a daemon upgraded in place
/// never leaves an old script running against a newer API.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = ETAGS
        .iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, etag)| etag.clone())
        .expect("every asset has an ETag");
    let not_modified = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag
        });
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (ETAG, etag),
    ];
    let response = if not_modified {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body).into_response()
    };
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(uri: &str, if_none_match: Option<&HeaderValue>) -> Response {
        let mut request = Request::get(uri);
        if let Some(etag) = if_none_match {
            request = request.header(IF_NONE_MATCH, etag);
        }
        ui_routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_content_type() {
        for (uri, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/icon.svg", "image/svg+xml"),
        ] {
            let response = get(uri, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(header(&response, "content-type"), content_type, "{uri}");
            assert_eq!(
                header(&response, "x-content-type-options"),
                "nosniff",
                "{uri}"
            );
            assert!(!body_text(response).await.is_empty(), "{uri}");
        }
    }

    #[tokio::test]
    async fn every_answer_carries_the_strict_content_security_policy() {
        for uri in [
            "/",
            "/ui/app.js",
            "/ui/app.css",
            "/ui/icon.svg",
            "/ui/missing.js",
        ] {
            let response = get(uri, None).await;
            let policy = header(&response, "content-security-policy");
            assert_eq!(policy, CONTENT_SECURITY_POLICY, "{uri}");
        }
        // Nothing inline, nothing from elsewhere, no frames, no form posts.
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
            "base-uri 'none'",
        ] {
            assert!(
                CONTENT_SECURITY_POLICY.split("; ").any(|d| d == directive),
                "{directive}"
            );
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[tokio::test]
    async fn the_page_is_revalidated_and_answers_304_when_unchanged() {
        let first = get("/ui/app.js", None).await;
        assert_eq!(header(&first, "cache-control"), "no-cache");
        let etag = first.headers().get(ETAG).unwrap().clone();
        assert!(etag.to_str().unwrap().starts_with('"'));

        let again = get("/ui/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers().get(ETAG), Some(&etag));
        assert!(body_text(again).await.is_empty());

        let other = HeaderValue::from_static("\"0000\"");
        assert_eq!(
            get("/ui/app.js", Some(&other)).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_unknown_file_is_404_and_nothing_outside_the_assets_is_reachable() {
        for uri in [
            "/ui/missing.js",
            "/ui/..%2FCargo.toml",
            "/ui/mod.rs",
            "/ui/index.html",
        ] {
            let response = get(uri, None).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(
                header(&response, "content-type"),
                "text/plain; charset=utf-8"
            );
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_nothing_inline() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        let script = std::str::from_utf8(FILES[0].body).unwrap();
        for asset in FILES {
            assert!(
                html.contains(&format!("/ui/{}", asset.name)),
                "{}",
                asset.name
            );
        }
        // No inline script or style (the policy would block them) and no URL but our own.
        assert!(!html.contains("<script>") && !html.contains("style="));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!script.contains("http://") && !script.contains("https://"));
        // Data goes in as text: the script never sets markup.
        assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"));
        assert!(!script.contains("document.write"));
    }
}
