//! # blackbox-console
//!
//! The forensic console (docs/CONSOLE.md): a browser UI that `blackbox serve` serves at `/ui`.
//! Its three assets are embedded in the binary: building Blackbox needs no Node.js, and the
//! console loads nothing from elsewhere (it works offline). It is a client of the service's
//! own API (`/v1/…`) with the token the user types, kept in the tab's `sessionStorage` and sent
//! in the `Authorization` header, never in a URL.
//!
//! Every answer of these routes carries a strict Content-Security-Policy (scripts, styles and
//! connections from the service's own origin only, no inline script, no framing) and headers
//! that keep the page out of other sites' frames and its URLs out of referrers.
#![forbid(unsafe_code)]

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The script: routing, views, API calls and the in-browser proof check.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The style sheet.
pub const APP_CSS: &str = include_str!("../assets/app.css");

/// The Content-Security-Policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Every asset, by path under `/ui/`, with its media type: what [`router`] serves (and what
/// the size budget of docs/CONSOLE.md counts).
pub const ASSETS: [(&str, &str, &str); 3] = [
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
    ("index.html", "text/html; charset=utf-8", INDEX_HTML),
];

fn answer(media: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, &'static str); 7] = [
        (header::CONTENT_TYPE, media),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let mut resp = body.into_response();
    for (name, value) in headers {
        resp.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// The console's routes: `GET /ui` (the page), `/ui/` (the same), `/ui/app.js`, `/ui/app.css`.
/// No route needs a token: the assets hold no data; everything the console shows comes from
/// `/v1/…` with the user's token.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new()
        .route("/ui", get(|| async { answer(ASSETS[2].1, INDEX_HTML) }))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }));
    for (name, media, body) in ASSETS {
        if name != "index.html" {
            r = r.route(
                &format!("/ui/{name}"),
                get(move || async move { answer(media, body) }),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn get_path(path: &str) -> Response {
        router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_asset_is_served_with_a_strict_policy() {
        for (path, media) in [
            ("/ui", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
        ] {
            let r = get_path(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], media, "{path}");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
        let r = get_path("/ui/").await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            get_path("/ui/nope.js").await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() {
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
        for (name, _, body) in ASSETS {
            for far in ["http://", "https://", "//cdn", "@import"] {
                assert!(!body.contains(far), "{name} refers to {far}");
            }
        }
        // The only <script> is the external one; no inline handlers (the policy forbids them).
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains(" onclick="), "inline handler");
        // Tokens travel in a header, never in a URL or in storage that outlives the tab.
        assert!(APP_JS.contains("Authorization"));
        assert!(!APP_JS.contains("localStorage.setItem('bbx-token'"));
        assert!(!APP_JS.contains("token="));
    }

    #[test]
    fn the_assets_stay_under_300_kb_compressed() {
        use std::io::Write as _;
        let mut total = 0;
        for (_, _, body) in ASSETS {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(body.as_bytes()).unwrap();
            total += gz.finish().unwrap().len();
        }
        assert!(total < 300 * 1024, "{total} bytes gzipped");
    }
}
