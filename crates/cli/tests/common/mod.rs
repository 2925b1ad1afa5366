//! Helpers for end-to-end tests of the `blackbox` binary.
// Test helpers panic on failure by design: that is how a test reports it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blackbox"));
    c.env_remove("BLACKBOX_DATA_DIR");
    c.env_remove("BLACKBOX_STORE");
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    run_stdin(args, None)
}

pub fn run_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = bin();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn blackbox");
    if let Some(input) = stdin {
        use std::io::Write as _;
        let mut si = child.stdin.take().unwrap();
        // A command that refuses to run (a busy data directory, bad flags) exits without
        // reading its input: what it says and its exit code are what the test checks.
        if let Err(e) = si.write_all(input.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn example_session() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/session.ndjson")
}

/// A temp dir with an initialised store at `<tmp>/data`.
pub fn init_store() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").to_string_lossy().into_owned();
    let r = run(&["init", "--data-dir", &dir, "--log-name", "blackbox/test"]);
    assert_eq!(r.code, 0, "init failed: {}", r.stderr);
    (tmp, dir)
}

/// `n` realistic events as NDJSON (mixed types, a few agents and sessions).
pub fn events(n: usize, tenant: &str) -> String {
    let mut s = String::new();
    for i in 0..n {
        let agent = format!("agent-{:02}", i % 7);
        let session = format!("sess-{}", i / 50);
        let ts = format!(
            "2026-04-14T{:02}:{:02}:{:02}.{:03}Z",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            i % 1000
        );
        let line = if i % 3 == 0 {
            format!(
                r#"{{"tenant_id":"{tenant}","agent_id":"{agent}","session_id":"{session}","client_seq":{i},"timestamp":"{ts}","event_type":"llm_request","payload":{{"model":"gpt-4o","prompt":"question number {i}","token_count_in":{},"token_count_out":{},"latency_ms":{}}}}}"#,
                100 + i % 900,
                20 + i % 300,
                200 + i % 2000
            )
        } else {
            let tool = ["query_database", "search_kb", "send_email"][i % 3];
            format!(
                r#"{{"tenant_id":"{tenant}","agent_id":"{agent}","session_id":"{session}","client_seq":{i},"timestamp":"{ts}","event_type":"tool_call","tool_name":"{tool}","agent_role":"analyst","invocation_id":"inv_{i}","args":{{"query":"SELECT * FROM t WHERE id = {i}","limit":100}},"authorization":{{"rbac_role":"analyst","allowed":{},"policy_matched":"analyst-read"}},"result":{{"rows_returned":{},"data_classification":"internal"}},"duration_ms":{}}}"#,
                i % 11 != 0,
                i % 100,
                i % 50
            )
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}
pub mod serve;
pub mod witness;
