//! A real `blackbox witness serve`, and the `[witnessing]` settings that point a service at
//! witnesses, for the end-to-end tests of witnessing.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bin;
use super::serve::http;

/// A `blackbox witness serve` child on a fixed port.
pub struct WitnessProc {
    child: Child,
}

impl WitnessProc {
    pub fn start(key: &Path, log_key: &Path, state: &Path, addr: SocketAddr) -> Self {
        let mut child = bin()
            .args(["witness", "serve", "--key-file"])
            .arg(key)
            .arg("--log-key")
            .arg(log_key)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &addr.to_string()])
            .env("BLACKBOX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[witness {addr}] {line}");
                keep.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, body)) = http(addr, "GET", "/", None, None) {
                assert!(body.contains("cosignature/v1"), "{body}");
                return Self { child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the witness did not start:\n{}",
            log.lock().unwrap().join("\n")
        );
    }

    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the witness did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `[witnessing]` (and a 1-second checkpoint heartbeat) into the data directory's settings.
pub fn configure(dir: &str, witnesses: &[(SocketAddr, String)], quorum: usize) {
    let path = Path::new(dir).join("blackbox.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    let list: Vec<String> = witnesses
        .iter()
        .map(|(a, k)| format!("  {{ url = \"http://{a}\", key = \"{k}\" }},"))
        .collect();
    s = s.replace(
        "witnesses = []",
        &format!("witnesses = [\n{}\n]", list.join("\n")),
    );
    s = s.replace("quorum = 0", &format!("quorum = {quorum}"));
    s = s.replace("retry_max_seconds = 300", "retry_max_seconds = 2");
    s = s.replace("every_seconds = 60", "every_seconds = 1");
    std::fs::write(&path, s).unwrap();
}
