//! `blackbox mcp proxy`: the gateway as a reverse proxy in front of an MCP server served over
//! Streamable HTTP. Requests and responses pass unchanged (headers, session ids, status codes,
//! SSE streams chunk by chunk); a client message is read before it is forwarded (a refused
//! `tools/call` is answered here, `200` with the JSON-RPC error, and never reaches the server);
//! responses are read as they pass (JSON bodies whole, SSE streams event by event).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use crate::audit::Audit;
use crate::message::parse;
use crate::pins::Pins;
use crate::session::{Config, Session, Verdict};
use crate::sse::{Event, SseReader};

/// Where the gateway's own metrics are served (Prometheus text format).
pub const METRICS_PATH: &str = "/blackbox/metrics";

/// Sessions kept at most (the oldest is ended when a new one would exceed it).
const MAX_SESSIONS: usize = 10_000;

/// How long a session with nothing in flight may go unused before the gateway ends its record
/// (by default; [`HttpGateway::with_session_idle`]). A client that comes back with its session
/// id later gets a new record, as for a session the gateway never saw.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// The HTTP gateway.
pub struct HttpGateway {
    cfg: Arc<Config>,
    audit: Arc<Audit>,
    pins: Arc<Pins>,
    /// The upstream's scheme and authority (`http://127.0.0.1:3001`).
    upstream: Uri,
    client: blackbox_webhooks::dispatch::HttpClient,
    sessions: Mutex<Sessions>,
    body_limit: usize,
    idle: Duration,
}

/// Open sessions by MCP session id, and the order they opened in (the oldest is ended first
/// when there are too many).
#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    order: std::collections::VecDeque<String>,
    /// When each session was last used.
    used: HashMap<String, Instant>,
    /// When idle sessions were last looked for.
    swept: Option<Instant>,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGateway")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself.
fn skipped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "accept-encoding"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers the `Connection` header names are hop-by-hop too (RFC 9110 §7.6.1).
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (k, v) in from {
        if !skipped(k) && !named.iter().any(|n| n == k.as_str()) {
            to.append(k.clone(), v.clone());
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32603, "message": message}}),
    )
}

impl HttpGateway {
    /// A gateway in front of `upstream` (`http://host:port/path` or `https://…`).
    ///
    /// # Errors
    /// The URL is not an absolute http(s) URL, or TLS cannot be set up.
    pub fn new(
        cfg: Arc<Config>,
        audit: Arc<Audit>,
        pins: Arc<Pins>,
        upstream: &str,
        body_limit: usize,
    ) -> Result<Self, String> {
        let uri: Uri = upstream
            .parse()
            .map_err(|e| format!("--upstream {upstream}: not a URL ({e})"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!(
                "--upstream {upstream}: give an absolute URL such as http://127.0.0.1:3001/mcp"
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "--upstream {upstream}: the scheme must be http or https"
            ));
        }
        let base = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("--upstream {upstream}: {e}"))?;
        let client = blackbox_webhooks::dispatch::http_client()
            .map_err(|e| format!("cannot set up the upstream HTTP client: {e}"))?;
        Ok(Self {
            cfg,
            audit,
            pins,
            upstream: base,
            client,
            sessions: Mutex::new(Sessions::default()),
            body_limit,
            idle: SESSION_IDLE,
        })
    }

    /// Ends the record of a session after `idle` without use and nothing in flight (default
    /// [`SESSION_IDLE`]).
    #[must_use]
    pub fn with_session_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sessions whose records are open.
    #[must_use]
    pub fn sessions_open(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }

    /// Ends the records of sessions idle for longer than the gateway's limit (looked for at most
    /// every minute, or every half limit when that is shorter).
    fn sweep(&self, map: &mut Sessions) {
        let now = Instant::now();
        let every = (self.idle / 2).min(Duration::from_secs(60));
        if map.swept.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        map.swept = Some(now);
        let idle: Vec<String> = map
            .used
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= self.idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let busy = map.by_id.get(&id).is_some_and(|s| s.has_pending());
            if busy {
                continue;
            }
            map.used.remove(&id);
            map.order.retain(|x| x != &id);
            if let Some(s) = map.by_id.remove(&id) {
                s.end("idle", json!({"idle_seconds": self.idle.as_secs()}));
            }
        }
    }

    fn new_session(&self, mcp_session: Option<String>) -> Arc<Session> {
        Arc::new(Session::new(
            self.cfg.clone(),
            self.audit.clone(),
            self.pins.clone(),
            mcp_session,
        ))
    }

    /// The session of an MCP session id (one the gateway has not seen, e.g. from before it
    /// started, gets a new record).
    fn session(&self, id: &str) -> Arc<Session> {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        self.sweep(&mut map);
        if let Some(s) = map.by_id.get(id).cloned() {
            map.used.insert(id.to_owned(), Instant::now());
            return s;
        }
        let s = self.new_session(Some(id.to_owned()));
        Self::insert(&mut map, id, s.clone());
        s
    }

    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let s = map.by_id.remove(id);
        if s.is_some() {
            map.order.retain(|x| x != id);
            map.used.remove(id);
        }
        s
    }

    fn insert(map: &mut Sessions, id: &str, s: Arc<Session>) {
        while map.by_id.len() >= MAX_SESSIONS {
            let Some(old) = map.order.pop_front() else {
                break;
            };
            map.used.remove(&old);
            if let Some(o) = map.by_id.remove(&old) {
                o.end("evicted", json!({"sessions_kept": MAX_SESSIONS}));
            }
        }
        if map.by_id.insert(id.to_owned(), s).is_none() {
            map.order.push_back(id.to_owned());
        }
        map.used.insert(id.to_owned(), Instant::now());
    }

    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, String> {
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let base = self.upstream.to_string();
        format!("{}{}", base.trim_end_matches('/'), pq)
            .parse()
            .map_err(|e| format!("{e}"))
    }

    fn metrics(&self) -> Response<Body> {
        let s = &self.audit.stats;
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len();
        let mut text = String::new();
        for (name, kind, help, v) in [
            (
                "blackbox_mcp_tool_calls",
                "counter",
                "tools/call requests seen",
                s.calls.load(Ordering::Relaxed),
            ),
            (
                "blackbox_mcp_refused",
                "counter",
                "tools/call requests refused (blocked, paused, throttled, or undecided and failing closed)",
                s.refused.load(Ordering::Relaxed),
            ),
            (
                "blackbox_mcp_decisions",
                "counter",
                "decisions asked of the service",
                s.decisions.load(Ordering::Relaxed),
            ),
            (
                "blackbox_mcp_undecided",
                "counter",
                "decisions the service could not give",
                s.undecided.load(Ordering::Relaxed),
            ),
            (
                "blackbox_mcp_records",
                "counter",
                "records sent to the service",
                s.recorded.load(Ordering::Relaxed),
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name}_total {v}\n"
            ));
        }
        let decide = s.decide_micros.load(Ordering::Relaxed) as f64 / 1e6;
        text.push_str(&format!(
            "# HELP blackbox_mcp_decide_seconds Time spent waiting for decisions (the latency the gateway adds to tools/call), in all.\n# TYPE blackbox_mcp_decide_seconds counter\nblackbox_mcp_decide_seconds_total {decide}\n"
        ));
        for (name, help, v) in [
            (
                "blackbox_mcp_records_waiting",
                "records not yet sent to the service",
                s.waiting.load(Ordering::Relaxed),
            ),
            (
                "blackbox_mcp_sessions",
                "MCP sessions open",
                sessions as u64,
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
        let mut r = Response::new(Body::from(text));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }

    /// Handles one request of a client.
    pub async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        if req.uri().path() == METRICS_PATH && req.method() == Method::GET {
            return self.metrics();
        }
        let (parts, body) = req.into_parts();
        let bytes = match http_body_util::Limited::new(body, self.body_limit)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return gateway_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "the request body is larger than {} bytes, the gateway's --body-limit",
                        self.body_limit
                    ),
                );
            }
        };
        let session_id = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let session = match &session_id {
            Some(id) => self.session(id),
            None => self.new_session(None),
        };
        if parts.method != Method::POST && !bytes.is_empty() {
            // Only a POST carries messages (MCP's Streamable HTTP): a body on anything else
            // would reach the server unread.
            return gateway_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "a {} request with a body; MCP messages are POSTed (the gateway forwards no body it has not read)",
                    parts.method
                ),
            );
        }
        if parts.method == Method::POST && !bytes.iter().all(u8::is_ascii_whitespace) {
            match parse(&bytes) {
                Ok(msg) => match session.from_client(&msg).await {
                    Verdict::Forward => {}
                    Verdict::Answer(v) => return json_response(StatusCode::OK, &v),
                    Verdict::Drop => {
                        return Response::builder()
                            .status(StatusCode::ACCEPTED)
                            .body(Body::empty())
                            .unwrap_or_default();
                    }
                },
                Err(e) => {
                    session.unreadable("client", &e, &bytes);
                    return json_response(StatusCode::BAD_REQUEST, &Session::unreadable_answer(&e));
                }
            }
        }
        let target = match self.upstream_uri(&parts.uri) {
            Ok(u) => u,
            Err(e) => {
                return gateway_error(StatusCode::BAD_REQUEST, &format!("bad request target: {e}"));
            }
        };
        let mut up = hyper::Request::new(Full::new(bytes));
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = target;
        copy_headers(&parts.headers, up.headers_mut());
        // The gateway reads what it forwards: ask for it uncompressed.
        up.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let resp = match self.client.request(up).await {
            Ok(r) => r,
            Err(e) => {
                session.upstream_failed(&e.to_string());
                return gateway_error(
                    StatusCode::BAD_GATEWAY,
                    &format!("the MCP server behind the Blackbox gateway cannot be reached: {e}"),
                );
            }
        };
        let (rparts, rbody) = resp.into_parts();
        if session_id.is_none()
            && let Some(sid) = rparts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            session.set_mcp_session(sid);
            let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            Self::insert(&mut map, sid, session.clone());
        }
        if parts.method == Method::DELETE
            && rparts.status.is_success()
            && let Some(id) = &session_id
            && let Some(s) = self.remove(id)
        {
            s.end("client_closed", json!({}));
        }
        let mut out = Response::builder().status(rparts.status);
        if let Some(h) = out.headers_mut() {
            copy_headers(&rparts.headers, h);
        }
        let ct = rparts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let unread = unread_answer(&rparts.headers, self.body_limit);
        let body = if let Some(why) = unread {
            // Forwarded as it is; the audit says it could not read it.
            session.unreadable("server", &crate::message::ParseError::Shape(why), b"");
            Body::new(rbody)
        } else if ct.starts_with("text/event-stream") {
            if let Some(h) = out.headers_mut() {
                h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            }
            Body::new(Tee {
                inner: rbody,
                reader: SseReader::new(self.body_limit),
                session,
            })
        } else if ct.starts_with("application/json") {
            match http_body_util::Limited::new(rbody, self.body_limit)
                .collect()
                .await
            {
                Ok(b) => {
                    let b = b.to_bytes();
                    if !b.is_empty() {
                        match parse(&b) {
                            Ok(m) => session.from_server(&m),
                            Err(e) => session.unreadable("server", &e, &b),
                        }
                    }
                    Body::from(b)
                }
                Err(e) => {
                    session.upstream_failed(&e.to_string());
                    return gateway_error(
                        StatusCode::BAD_GATEWAY,
                        &format!("the MCP server's answer could not be read: {e}"),
                    );
                }
            }
        } else {
            Body::new(rbody)
        };
        out.body(body).unwrap_or_default()
    }
}

/// Why an answer is passed on unread: compressed (though the gateway asked for none), or
/// announced larger than the gateway reads.
fn unread_answer(headers: &HeaderMap, limit: usize) -> Option<String> {
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Some(format!(
            "an answer compressed with `{enc}`, forwarded unread"
        ));
    }
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    (len > limit as u64).then(|| {
        format!("an answer of {len} bytes, over the gateway's --body-limit; forwarded unread")
    })
}

/// A response body passed through chunk by chunk, its events read on the way.
struct Tee {
    inner: hyper::body::Incoming,
    reader: SseReader,
    session: Arc<Session>,
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let session = &this.session;
            this.reader.feed(data, &mut |event| match event {
                Event::Data(d) if !d.iter().all(u8::is_ascii_whitespace) => match parse(d) {
                    Ok(m) => session.from_server(&m),
                    Err(e) => session.unreadable("server", &e, d),
                },
                Event::Data(_) => {}
                Event::TooLarge => session.unreadable(
                    "server",
                    &crate::message::ParseError::Shape(
                        "an event larger than the gateway's --body-limit; forwarded unread".into(),
                    ),
                    b"",
                ),
            });
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves the gateway on `listener` until `stop` resolves.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    gateway: Arc<HttpGateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gw = gateway.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let gw = gw.clone();
        async move { gw.handle(req).await }
    });
    // Small JSON-RPC answers must not wait for the peer's delayed ACK (Nagle): no delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = stopping.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.await;
        signal.notify_one();
    });
    // Requests in progress finish; a client that keeps an event stream open (a GET stream)
    // does not hold the gateway for more than STOP_GRACE.
    let result = tokio::select! {
        r = server => r,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => Ok(()),
    };
    // Sessions still open end with the gateway.
    let open: Vec<Arc<Session>> = {
        let mut map = gateway
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.order.clear();
        map.by_id.drain().map(|(_, s)| s).collect()
    };
    for s in open {
        s.end("gateway_stopped", json!({}));
    }
    result
}

/// How long a stopping gateway waits for its connections to close.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Refusal;

    #[test]
    fn idle_sessions_are_ended_and_a_returning_client_gets_a_new_record() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // No service behind it: the sessions' records wait in memory (nothing is sent).
            let client = blackbox_client::Client::builder("http://127.0.0.1:9", "bbx_test")
                .build()
                .unwrap();
            let audit = Audit::start(client, None, None).unwrap();
            let cfg = Arc::new(Config {
                agent_id: "a".into(),
                agent_role: None,
                refusal: Refusal::Error,
                fail_open: false,
                transport: "http",
                upstream: "http://127.0.0.1:9/mcp".into(),
            });
            let gw = HttpGateway::new(
                cfg,
                audit.clone(),
                Arc::new(Pins::in_memory()),
                "http://127.0.0.1:9/mcp",
                1 << 20,
            )
            .unwrap()
            .with_session_idle(Duration::from_millis(2_000));
            let first = gw.session("s-1");
            let _second = gw.session("s-2");
            assert_eq!(gw.sessions_open(), 2);
            std::thread::sleep(Duration::from_millis(500));
            // Used again: s-1 stays, s-2 goes once it has been idle long enough.
            assert!(Arc::ptr_eq(&first, &gw.session("s-1")));
            std::thread::sleep(Duration::from_millis(1_700));
            let _third = gw.session("s-3");
            assert_eq!(gw.sessions_open(), 2, "s-2 was not ended");
            std::thread::sleep(Duration::from_millis(2_500));
            let again = gw.session("s-1");
            assert!(!Arc::ptr_eq(&first, &again), "an idle session was kept");
            assert_eq!(gw.sessions_open(), 1);
            audit.close(Duration::from_millis(10)).await;
        });
    }
}
