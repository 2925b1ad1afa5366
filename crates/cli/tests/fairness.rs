//! `blackbox serve` as a real process under load from one tenant or one client address: the
//! others are still answered (docs/API.md, "Limits and fairness").

// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::serve::{Server, token};
use common::{init_store, run};
use serde_json::{Value, json};

/// The service at log level `info` (its lines are kept), with `settings` (TOML) as its settings
/// file, if given.
fn start(dir: &str, settings: Option<&str>) -> Server {
    Server::start_with(dir, |mut cmd| {
        cmd.env("BLACKBOX_LOG", "info");
        if let Some(s) = settings {
            let path = format!("{dir}.settings.toml");
            std::fs::write(&path, s).unwrap();
            cmd.args(["--config", &path]);
        }
        cmd
    })
}

/// An answer read to the end of the connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Sends `raw` (a whole request, or its start) and reads the answer until the server closes.
fn exchange(addr: SocketAddr, raw: &[u8], read_timeout: Duration) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(read_timeout))?;
    s.write_all(raw)?;
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// One JSON request on its own connection.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<Answer> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    exchange(addr, req.as_bytes(), Duration::from_secs(30))
}

fn event(i: usize) -> String {
    json!({"agent_id": "agent-1", "session_id": "s-1", "client_seq": i,
        "event_type": "tool_call", "tool_name": "query_database", "args": {"query": "SELECT 1"}})
    .to_string()
}

/// A counter of the metrics text: the sum of the lines naming every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn stalled_uploads_of_one_tenant_leave_another_tenants_ingest_answered() {
    let (_tmp, dir) = init_store();
    let a = token(&dir, Some("tenant_a"), "ingest");
    let b = token(&dir, Some("tenant_b"), "ingest");
    let admin = token(&dir, None, "admin");
    let server = start(&dir, None);
    // 16 uploads of the largest body (16 MiB, the default limit) that send their headers and
    // never a byte of the body: before, they held the whole in-flight budget of every tenant.
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            let head = format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                16 << 20
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let r = call(server.addr, "POST", "/v1/events", Some(&b), &event(1)).unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(took < Duration::from_secs(1), "tenant_b waited {took:?}");
    // Tenant A got 429 (its own part is full) for the uploads past its part, at once.
    let mut refused = 0;
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf)
            && n > 0
        {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("HTTP/1.1 429"), "{text}");
            assert!(
                text.to_ascii_lowercase().contains("retry-after: 1"),
                "{text}"
            );
            assert!(text.contains("tenant_busy"), "{text}");
            refused += 1;
        }
    }
    // 64 MiB, a quarter of the 256 MiB budget, holds four of them.
    assert_eq!(refused, 12);
    let m = call(server.addr, "GET", "/metrics", Some(&admin), "").unwrap();
    assert_eq!(
        metric(
            &m.body,
            "blackbox_refused_requests_total",
            &["tenant=\"tenant_a\"", "reason=\"tenant_busy\""]
        ),
        12,
        "{}",
        m.body
    );
    assert_eq!(
        metric(
            &m.body,
            "blackbox_refused_requests_total",
            &["tenant=\"tenant_b\""]
        ),
        0
    );
}

#[test]
fn stalled_headers_are_cut_and_a_stalled_body_is_answered_408_and_its_connection_closed() {
    let (_tmp, dir) = init_store();
    let a = token(&dir, Some("tenant_a"), "ingest,read");
    let server = start(
        &dir,
        Some(
            "[server.limits]\nbody_idle_timeout_secs = 1\nbody_deadline_secs = 3\nheader_timeout_secs = 1\n",
        ),
    );
    // Headers that never end: the connection is closed after the header timeout.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /v1/verify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // Part of the body, then nothing.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"agent_id\""
    );
    let started = Instant::now();
    // read_to_end returns only when the server closes the connection.
    let r = exchange(server.addr, head.as_bytes(), Duration::from_secs(20)).unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.code(), "body_timeout", "{r:?}");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 1 s")
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{r:?}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // A body that trickles (a byte every 0.4 s) is cut at the deadline.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut w = writer;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(400));
            if w.write_all(b" ").is_err() {
                break;
            }
        }
    });
    let r = read_answer(&mut s).unwrap();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not complete after 3 s"),
        "{r:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    trickle.join().unwrap();
    // Nothing was written.
    let v = call(server.addr, "GET", "/v1/verify", Some(&a), "").unwrap();
    assert_eq!(v.status, 200, "{v:?}");
    assert_eq!(v.json()["entries"], 0, "{v:?}");
}

#[test]
fn verify_loops_of_one_tenant_leave_another_tenants_verify_answered() {
    let (tmp, dir) = init_store();
    // A long chain for tenant_a, so that each of its verifications takes a while.
    let file = tmp.path().join("a.ndjson");
    std::fs::write(&file, common::events(20_000, "tenant_a")).unwrap();
    let r = run(&[
        "append",
        "--data-dir",
        &dir,
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = token(&dir, Some("tenant_a"), "read");
    let b = token(&dir, Some("tenant_b"), "ingest,read");
    let server = start(&dir, None);
    let addr = server.addr;
    let w = call(addr, "POST", "/v1/events", Some(&b), &event(1)).unwrap();
    assert_eq!(w.status, 200, "{w:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let ok_a = Arc::new(AtomicUsize::new(0));
    let busy_a = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok_a, busy_a, a) = (
                Arc::clone(&stop),
                Arc::clone(&ok_a),
                Arc::clone(&busy_a),
                a.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = call(addr, "GET", "/v1/verify", Some(&a), "").unwrap();
                    match r.status {
                        200 => {
                            ok_a.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => {
                            assert_eq!(r.code(), "tenant_busy", "{r:?}");
                            assert!(r.header("retry-after").is_some(), "{r:?}");
                            busy_a.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("tenant_a's verify answered {other}: {r:?}"),
                    }
                }
            })
        })
        .collect();
    // Until tenant_a's loops hold their slots.
    let deadline = Instant::now() + Duration::from_secs(30);
    while busy_a.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = call(addr, "GET", "/v1/verify", Some(&b), "").unwrap();
        statuses.push(r.status);
        assert_eq!(r.status, 200, "tenant_b's verify: {r:?}");
        assert_eq!(r.json()["status"], "ok", "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    assert!(ok_a.load(Ordering::Relaxed) > 0);
    // Four loops, two slots per tenant: tenant_a was refused while it held both.
    assert!(busy_a.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_malformed_chunked_body_and_a_query_that_is_not_utf8_are_400() {
    let (_tmp, dir) = init_store();
    let a = token(&dir, Some("tenant_a"), "ingest,read");
    let server = start(&dir, None);
    let chunked = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let r = exchange(server.addr, chunked.as_bytes(), Duration::from_secs(20)).unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.code(), "malformed_body", "{r:?}");
    // A well-formed chunked body is read.
    let body = event(1);
    let good = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let r = exchange(server.addr, good.as_bytes(), Duration::from_secs(20)).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    // %FF is not UTF-8: refused, instead of being read as U+FFFD and matching nothing.
    let r = call(server.addr, "GET", "/v1/entries?agent_id=%FF", Some(&a), "").unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.code(), "invalid_parameter", "{r:?}");
    let m = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("not valid UTF-8") && m.contains("agent_id"),
        "{m}"
    );
    let r = call(
        server.addr,
        "GET",
        "/v1/entries?agent_id=agent-1&limit=5",
        Some(&a),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(
        server.addr,
        "GET",
        "/v1/entries?agent_id=%C3%A9",
        Some(&a),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn requests_without_a_valid_token_get_429_after_the_burst_and_a_valid_token_still_works() {
    let (_tmp, dir) = init_store();
    let a = token(&dir, Some("tenant_a"), "read");
    let admin = token(&dir, None, "admin");
    let server = start(
        &dir,
        Some("[server.rate_limit]\nunauthenticated_per_second = 1\nunauthenticated_burst = 5\n"),
    );
    // A well-formed token id with a wrong secret: its secret must never be logged.
    let id = a
        .strip_prefix("bbx_")
        .and_then(|r| r.split_once('_'))
        .unwrap()
        .0;
    let wrong = format!("bbx_{id}_{}", "s3cr3tGuess".repeat(3));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..12 {
        let t = if i % 2 == 0 {
            Some(wrong.as_str())
        } else {
            None
        };
        let r = call(server.addr, "GET", "/v1/entries", t, "").unwrap();
        if r.status == 429 {
            assert_eq!(r.code(), "rate_limited", "{r:?}");
            retry_after = r.header("retry-after");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(
        statuses[5..].iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // A valid token from the same address is answered.
    let r = call(server.addr, "GET", "/v1/entries?limit=1", Some(&a), "").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let m = call(server.addr, "GET", "/metrics", Some(&admin), "").unwrap();
    assert_eq!(m.status, 200);
    assert!(
        metric(
            &m.body,
            "blackbox_refused_requests_total",
            &["tenant=\"<unauthenticated>\"", "reason=\"rate_limited\""]
        ) >= 5,
        "{}",
        m.body
    );
    // The refusals are recorded, sampled: far fewer records than requests.
    std::thread::sleep(Duration::from_millis(300));
    let r = call(
        server.addr,
        "GET",
        "/v1/entries?tenant_id=_blackbox",
        Some(&admin),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let records = r
        .body
        .lines()
        .filter(|l| l.contains("access_denied"))
        .count();
    assert!((1..=6).contains(&records), "{records} records:\n{}", r.body);
    assert!(!r.body.contains("s3cr3tGuess"), "{}", r.body);
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("request"), "the log has request lines: {log}");
    assert!(!log.contains("s3cr3tGuess"), "{log}");
}
