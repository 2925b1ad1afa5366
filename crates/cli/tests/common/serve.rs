//! A real `blackbox serve` on a free loopback port, and a minimal HTTP/1.1 client, for the
//! end-to-end tests that talk to the service.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{bin, run};

/// A `blackbox serve` child; its log lines are kept (and echoed to the test's stderr).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(dir: &str) -> Self {
        Self::start_with(dir, |c| c)
    }

    /// `blackbox serve --data-dir DIR --listen <free port> --rate-limit 0` with
    /// `BLACKBOX_LOG=warn`; `wrap` may add arguments or environment before it is spawned.
    pub fn start_with(dir: &str, wrap: impl FnOnce(Command) -> Command) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_at(dir, port, wrap)
    }

    /// As [`Server::start_with`], on loopback port `port`.
    pub fn start_at(dir: &str, port: u16, wrap: impl FnOnce(Command) -> Command) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--data-dir",
            dir,
            "--listen",
            &addr.to_string(),
            "--rate-limit",
            "0",
        ])
        .env("BLACKBOX_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = wrap(cmd).spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Drain stderr so the child never blocks on a full pipe.
        let err = child.stderr.take().unwrap();
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                keep.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(addr, "GET", "/healthz", None, None) {
                return Self { child, addr, log };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the server did not start:\n{}",
            log.lock().unwrap().join("\n")
        );
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kill9(&mut self) {
        // Child::kill sends SIGKILL.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops the service with SIGTERM and waits for it (its writer lock is released).
    pub fn stop(&mut self) {
        let s = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange (one request per connection): (status, body). Chunked bodies
/// (streamed answers) are returned as they came.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// A new token of `scope` for `tenant` (none: every tenant, for admin tokens); its secret.
pub fn token(dir: &str, tenant: Option<&str>, scope: &str) -> String {
    let mut args = vec!["tokens", "create", "--data-dir", dir, "--scope", scope];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().last().unwrap().to_owned()
}
