//! `blackbox retention` end to end: archive round trip (the store drops what the archive holds,
//! verify and query span both), a run killed with SIGKILL at any moment loses nothing and the
//! next run finishes, status figures on a log with entries of known ages, and expiry recorded
//! in the chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Appends `events(n)` as if the writer's clock said `now` (RFC 3339).
fn append_at(dir: &str, tenant: &str, n: usize, now: &str) {
    let mut c = bin();
    c.env("BLACKBOX_TEST_NOW", now)
        .args(["append", "--data-dir", dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut si = child.stdin.take().unwrap();
        si.write_all(events(n, tenant).as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn count_lines(r: &Run) -> usize {
    r.stdout.lines().count()
}

#[test]
fn archive_round_trip_then_expiry() {
    let (_tmp, dir) = init_store();
    // Written in January 2025 (old), and today (hot).
    append_at(&dir, "acme", 1500, "2025-01-10T00:00:00Z");
    append_at(&dir, "acme", 700, "2025-01-20T00:00:00Z");
    append_at(&dir, "beta", 400, "2025-01-10T00:00:00Z");
    append_at(&dir, "acme", 300, "2026-11-29T00:00:00Z");
    let all_before = run(&[
        "query",
        "--data-dir",
        &dir,
        "--tenant-id",
        "acme",
        "--format",
        "jsonl",
    ]);
    assert_eq!(count_lines(&all_before), 2500);

    // Nothing deleted or archived yet: every requirement is met.
    let st = run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]);
    assert_eq!(st.code, 0, "{}", st.stdout);
    let s = json(&st);
    assert_eq!(s["tenants"][0]["tenant_id"], "acme");
    assert_eq!(s["tenants"][0]["hot_entries"], 2500);
    assert_eq!(s["tenants"][0]["archived_entries"], 0);

    let dry = run(&[
        "retention",
        "run",
        "--data-dir",
        &dir,
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let planned = json(&dry)["report"]["archived"].as_array().unwrap().len();
    assert!(planned >= 2, "{}", dry.stdout);

    let r = run(&["retention", "run", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("read back and verified"), "{}", r.stdout);

    // The old entries left the store: plain queries no longer see them ...
    let hot = run(&[
        "query",
        "--data-dir",
        &dir,
        "--tenant-id",
        "acme",
        "--event-type",
        "llm_request",
        "--format",
        "jsonl",
    ]);
    let all_hot = run(&[
        "query",
        "--data-dir",
        &dir,
        "--tenant-id",
        "acme",
        "--format",
        "jsonl",
    ]);
    assert!(
        count_lines(&all_hot) < 400,
        "{} entries still hot",
        count_lines(&all_hot)
    );
    // ... --include-archive does, every one exactly once.
    let both = run(&[
        "query",
        "--data-dir",
        &dir,
        "--tenant-id",
        "acme",
        "--include-archive",
        "--format",
        "jsonl",
    ]);
    let before: std::collections::BTreeSet<&str> = all_before.stdout.lines().collect();
    let after: std::collections::BTreeSet<&str> = both.stdout.lines().collect();
    assert!(
        before.is_subset(&after),
        "archived entries are missing from --include-archive"
    );
    let filtered = run(&[
        "query",
        "--data-dir",
        &dir,
        "--tenant-id",
        "acme",
        "--event-type",
        "llm_request",
        "--include-archive",
        "--format",
        "jsonl",
    ]);
    assert!(count_lines(&filtered) > count_lines(&hot));
    assert!(
        filtered
            .stdout
            .lines()
            .all(|l| l.contains(r#""event_type":"llm_request""#))
    );

    // The store verifies from its anchor; store and archive verify as one chain.
    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(
        v.stdout.contains("picks the chain up at an anchor"),
        "{}",
        v.stdout
    );
    let v = run(&[
        "verify",
        "--data-dir",
        &dir,
        "--include-archive",
        "--format",
        "json",
    ]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let vj = json(&v);
    assert_eq!(vj["chains"][0]["start"], 0, "{}", v.stdout);

    // export-log of the store starts each archived chain at its anchor, and verifies.
    let exported = std::path::Path::new(&dir).join("../export.jsonl");
    let exported = exported.to_string_lossy().into_owned();
    let r = run(&["export-log", "--data-dir", &dir, "--output", &exported]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pk = std::path::Path::new(&dir).join("checkpoint.pub");
    let v = run(&[
        "verify",
        "--log-file",
        &exported,
        "--public-key",
        &pk.to_string_lossy(),
    ]);
    assert_eq!(v.code, 0, "{}", v.stdout);

    // Tampering with an archive object is caught.
    let seg = std::fs::read_dir(std::path::Path::new(&dir).join("archive/acme"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&seg, &bad).unwrap();
    let v = run(&["verify", "--data-dir", &dir, "--include-archive"]);
    assert_ne!(
        v.code, 0,
        "a modified archive object must not verify: {}",
        v.stdout
    );
    std::fs::write(&seg, &good).unwrap();

    // Archived entries were recorded in the chain.
    let rec = run(&[
        "query",
        "--data-dir",
        &dir,
        "--event-type",
        "retention_archived",
        "--format",
        "jsonl",
    ]);
    assert!(count_lines(&rec) >= 2, "{}", rec.stdout);

    // Status now: the entries were written in January 2025 but say they happened on 2026-04-14
    // (their own timestamps). Ages are the writer's (an agent's claim is not evidence), so
    // the archived entries are more than 365 days old and every requirement is met.
    let st = run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]);
    let s = json(&st);
    let acme = &s["tenants"][0];
    assert_eq!(acme["archived_entries"], 2200, "{}", st.stdout);
    assert_eq!(acme["oldest_archived_seq"], 1);
    assert_eq!(acme["oldest_hot_seq"], 2201);
    assert_eq!(st.code, 0, "{}", st.stdout);
    assert_eq!(acme["requirements"][0]["met"], true, "{}", st.stdout);
    assert_eq!(
        acme["oldest_archived"].as_str().unwrap().get(..7),
        Some("2025-01"),
        "{}",
        st.stdout
    );

    // Ten years on, with a 30-day archive retention, the archive segments expire.
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[retention]\nhot_days = 365\narchive_days = 30\nstandards = [\"soc2\"]\n",
    )
    .unwrap();
    let dry = run(&[
        "retention",
        "run",
        "--data-dir",
        &dir,
        "--dry-run",
        "--now",
        "2036-01-01T00:00:00Z",
        "--format",
        "json",
    ]);
    let rep = json(&dry);
    assert!(
        !rep["report"]["deleted"].as_array().unwrap().is_empty(),
        "{}",
        dry.stdout
    );
    let mut c = bin();
    c.env("BLACKBOX_TEST_NOW", "2036-01-01T00:00:00Z").args([
        "retention",
        "run",
        "--data-dir",
        &dir,
    ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("past the archive retention"), "{text}");
    let del = run(&[
        "query",
        "--data-dir",
        &dir,
        "--event-type",
        "retention_deleted",
        "--format",
        "jsonl",
    ]);
    assert!(count_lines(&del) >= 1, "{}", del.stdout);
    // What remains still verifies as one chain, from the first remaining segment's anchor.
    let v = run(&["verify", "--data-dir", &dir, "--include-archive"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    // And the status says entries were deleted, the policy now falls short of SOC 2.
    let st = run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]);
    assert_eq!(st.code, 1, "{}", st.stdout);
    let s = json(&st);
    assert!(s["tenants"][0]["deleted_entries"].as_u64().unwrap() > 0);
    assert_eq!(s["tenants"][0]["requirements"][0]["met"], false);
}

#[test]
fn a_killed_run_loses_nothing_and_the_next_one_finishes() {
    let (_tmp, dir) = init_store();
    for day in 10..16 {
        append_at(&dir, "acme", 3000, &format!("2025-01-{day}T00:00:00Z"));
    }
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[retention]\nsegment_entries = 3000\n",
    )
    .unwrap();
    let total = 6 * 3000;
    for delay_ms in [5u64, 40, 90, 150, 250, 400] {
        let mut child = bin()
            .args(["retention", "run", "--data-dir", &dir])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever the moment, store + archive hold every entry and verify as one chain.
        let v = run(&[
            "verify",
            "--data-dir",
            &dir,
            "--include-archive",
            "--format",
            "json",
        ]);
        assert_eq!(v.code, 0, "after a kill at {delay_ms} ms: {}", v.stdout);
        let n = run(&[
            "query",
            "--data-dir",
            &dir,
            "--tenant-id",
            "acme",
            "--event-type",
            "llm_request",
            "--include-archive",
            "--format",
            "jsonl",
        ]);
        assert_eq!(count_lines(&n), total / 3, "after a kill at {delay_ms} ms");
    }
    let r = run(&["retention", "run", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = json(&run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]));
    assert_eq!(st["tenants"][0]["archived_entries"], total, "{st}");
    let v = run(&["verify", "--data-dir", &dir, "--include-archive"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[test]
fn bad_retention_settings_are_refused_with_the_reason() {
    let (_tmp, dir) = init_store();
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[retention]\nstandards = [\"sox\"]\n",
    )
    .unwrap();
    let r = run(&["retention", "status", "--data-dir", &dir]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown standard `sox`"), "{}", r.stderr);
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[retention]\narchive_url = \"ftp://x/y\"\n",
    )
    .unwrap();
    let r = run(&["retention", "run", "--data-dir", &dir]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unsupported scheme `ftp`"),
        "{}",
        r.stderr
    );
}

/// Ages are the writer's: a log written today whose agents claim times a year old is 0 days
/// old, its entries are marked as skewed, and nothing is due for archiving; with
/// `[clock] out_of_bound = "refuse"` such events are refused, naming the line.
#[test]
fn a_log_written_today_with_year_old_claimed_times_is_zero_days_old() {
    let (_tmp, dir) = init_store();
    // `events` claims times in April 2026; the writer's clock is a year and more later.
    append_at(&dir, "acme", 20, "2027-06-01T12:00:00Z");
    let r = run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let t = &v["tenants"][0];
    assert!(
        t["oldest_hot"]
            .as_str()
            .unwrap()
            .starts_with("2027-06-01T12:00"),
        "the oldest entry is as old as its writing: {t}"
    );
    let r = run(&[
        "query",
        "--data-dir",
        &dir,
        "--format",
        "jsonl",
        "--limit",
        "1",
    ]);
    let e: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert!(
        e["clock_skew_ms"].as_i64().unwrap() < -86_400_000 * 365,
        "{e}"
    );
    assert!(
        e["written_at"]
            .as_str()
            .unwrap()
            .starts_with("2027-06-01T12:00:00")
    );
    // Queries bound the writer's time by default, the claim on request.
    let q = |time: &str| {
        let r = run(&[
            "query",
            "--data-dir",
            &dir,
            "--format",
            "jsonl",
            "--start",
            "2027-06-01",
            "--time",
            time,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        count_lines(&r)
    };
    assert_eq!(q("written"), 20);
    assert_eq!(q("claimed"), 0);
    // Refusing instead of marking.
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[clock]
out_of_bound = \"refuse\"\n",
    )
    .unwrap();
    let mut c = bin();
    let out = c
        .env("BLACKBOX_TEST_NOW", "2027-06-01T13:00:00Z")
        .args(["append", "--data-dir", &dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write as _;
            ch.stdin
                .take()
                .unwrap()
                .write_all(events(1, "acme").as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 1") && err.contains("behind"), "{err}");
}

/// Every file under `dir`, with zstd objects decompressed: what a search for an id must cover.
fn all_bytes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let raw = std::fs::read(&p).unwrap();
            if p.to_string_lossy().ends_with(".zst") {
                out.push((p.clone(), zstd::decode_all(&raw[..]).unwrap()));
            }
            out.push((p, raw));
        }
    }
    out
}

#[test]
fn erasure_reaches_archived_entries_and_leaves_no_trace() {
    const GONE: &str = "ds_9c1e5b7a3f2d4e6a8b0c1d2e3f4a5b6c7d8e";
    let (_tmp, dir) = init_store();
    let mut ev = String::new();
    for i in 0..600 {
        let subject = if i % 100 == 3 {
            GONE.to_owned()
        } else {
            format!("ds_other_{i}")
        };
        ev.push_str(&format!(
            r#"{{"tenant_id":"acme","agent_id":"a","session_id":"s{}","event_type":"tool_call","tool_name":"crm.lookup","data_subjects":[{{"id":"{subject}","category":"customer"}}]}}"#,
            i % 5
        ));
        ev.push('\n');
    }
    let mut c = bin();
    c.env("BLACKBOX_TEST_NOW", "2025-01-10T00:00:00Z")
        .args(["append", "--data-dir", &dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ev.as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    // Half of them hot (written today), the first half archived.
    let r = run_stdin(&["append", "--data-dir", &dir], Some(&ev));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["retention", "run", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let root = std::path::Path::new(&dir);
    assert!(
        all_bytes_under(&root.join("archive"))
            .iter()
            .any(|(_, b)| b.windows(GONE.len()).any(|w| w == GONE.as_bytes())),
        "the archive holds the subject before the erasure"
    );

    let r = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        "Art. 17 request",
        "--ticket",
        "DPO-1",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = json(&r);
    assert_eq!(
        out["archive_segments_rewritten"].as_array().unwrap().len(),
        1,
        "{}",
        r.stdout
    );
    assert_eq!(
        out["archive_segments_rewritten"][0]["personal_records_removed"],
        6
    );

    // Verify: archive + store as one chain, every redaction under the marker.
    let v = run(&["verify", "--data-dir", &dir, "--include-archive"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(
        v.stdout
            .contains("12 entries redacted under 1 erasure marker"),
        "{}",
        v.stdout
    );
    // No byte of the id anywhere: store, WAL, lines, keys, archive objects decompressed.
    for (p, b) in all_bytes_under(root) {
        assert!(
            !b.windows(GONE.len()).any(|w| w == GONE.as_bytes()),
            "{} still holds the erased id",
            p.display()
        );
    }
    // The superseded revision is gone; only the rewritten one is left.
    let names: Vec<String> = std::fs::read_dir(root.join("archive/acme"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".r1.jsonl.zst"), "{names:?}");
    // Other subjects in the same segment are untouched.
    let kept = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        "ds_other_4",
        "--reason",
        "r",
        "--ticket",
        "t",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert!(
        kept.stdout.contains("would_redact") || kept.stdout.contains("\"redacted\": 2"),
        "{}",
        kept.stdout
    );
}

/// A moto S3 server on a free port, killed when dropped.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(port: u16, request: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

fn moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let m = Moto(child, port);
    for _ in 0..100 {
        if http(
            port,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.starts_with("HTTP/1.1"))
        {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn archives_in_s3_compatible_storage() {
    let Some(m) = moto() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have moto_server (pip install 'moto[server]'): .ci/run installs it"
        );
        eprintln!(
            "SKIPPED archives_in_s3_compatible_storage: moto_server (an S3-compatible test server, `pip install 'moto[server]'`) is not installed"
        );
        return;
    };
    let port = m.1;
    let created = http(
        port,
        "PUT /bb-archive HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_default();
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    let (_tmp, dir) = init_store();
    std::fs::write(
        std::path::Path::new(&dir).join("blackbox.toml"),
        "[retention]\narchive_url = \"s3://bb-archive/audit/prod\"\n",
    )
    .unwrap();
    append_at(&dir, "acme", 900, "2025-01-10T00:00:00Z");
    let with_s3 = |args: &[&str]| {
        let out = bin()
            .args(args)
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let r = with_s3(&["retention", "run", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("s3://bb-archive/audit/prod"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("test-secret") && !r.stderr.contains("test-secret"));
    let listing = http(
        port,
        "GET /bb-archive?list-type=2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_default();
    assert!(
        listing.contains("audit/prod/acme/00000000000000000001-00000000000000000900.jsonl.zst"),
        "{listing}"
    );
    let v = with_s3(&["verify", "--data-dir", &dir, "--include-archive"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.starts_with("OK — 901 entries verified"),
        "{}",
        v.stdout
    );
    let q = with_s3(&[
        "query",
        "--data-dir",
        &dir,
        "--include-archive",
        "--event-type",
        "llm_request",
        "--format",
        "jsonl",
    ]);
    assert_eq!(q.stdout.lines().count(), 300, "{}", q.stderr);
}

#[test]
fn one_writer_at_a_time() {
    let (_tmp, dir) = init_store();
    // A streaming append holds the data directory while it waits for input (as `serve` does
    // while it runs).
    let mut first = bin()
        .args(["append", "--data-dir", &dir, "--batch-size", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    {
        use std::io::Write as _;
        stdin.write_all(events(1, "acme").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    // Wait until it has committed (and so holds the lock).
    let mut held = false;
    for _ in 0..100 {
        let q = run(&["query", "--data-dir", &dir, "--format", "jsonl"]);
        if q.stdout.lines().count() == 1 {
            held = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(held, "the first append did not commit");
    for args in [
        vec!["append", "--data-dir", dir.as_str()],
        vec!["retention", "run", "--data-dir", dir.as_str()],
        vec![
            "erase",
            "--data-dir",
            dir.as_str(),
            "--data-subject",
            "x",
            "--reason",
            "r",
            "--ticket",
            "t",
        ],
    ] {
        let r = run_stdin(&args, Some(&events(1, "acme")));
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("in use by another writer"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Readers are not writers.
    assert_eq!(run(&["verify", "--data-dir", &dir]).code, 0);
    assert_eq!(run(&["retention", "status", "--data-dir", &dir]).code, 0);
    drop(stdin);
    assert!(first.wait().unwrap().success());
    // Released with the process.
    let r = run_stdin(&["append", "--data-dir", &dir], Some(&events(1, "acme")));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// While `blackbox serve` holds the data directory, `retention run --server URL --token T` asks
/// it to run (`POST /v1/retention/run`, admin), as the writer-lock refusal suggests.
#[test]
fn retention_run_through_the_service() {
    let (_tmp, dir) = init_store();
    // Entries written long ago: past the default hot window of 365 days.
    append_at(&dir, "acme", 5, "2024-01-02T03:04:05Z");
    let server = common::serve::Server::start(&dir);
    let url = server.url();
    let admin = common::serve::token(&dir, None, "admin");
    let read = common::serve::token(&dir, Some("acme"), "read");

    let refused = run(&["retention", "run", "--server", &url, "--token", &read]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("do not allow running retention"),
        "{}",
        refused.stderr
    );
    let usage = run(&[
        "retention",
        "run",
        "--server",
        &url,
        "--token",
        &admin,
        "--dry-run",
    ]);
    assert_eq!(usage.code, 2, "{}{}", usage.stdout, usage.stderr);

    let r = run(&[
        "retention",
        "run",
        "--server",
        &url,
        "--token",
        &admin,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let archived = json(&r)["report"]["archived"].clone();
    assert_eq!(archived[0]["tenant_id"], "acme", "{}", r.stdout);
    assert_eq!(archived[0]["first_seq"], 1, "{}", r.stdout);
    let again = run(&["retention", "run", "--server", &url, "--token", &admin]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.starts_with("Nothing to archive or delete")
            && again
                .stdout
                .contains(&format!("run by the service at {url}")),
        "{}",
        again.stdout
    );
    let status = run(&[
        "retention",
        "status",
        "--data-dir",
        &dir,
        "--format",
        "json",
    ]);
    let acme = json(&status)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == "acme")
        .cloned()
        .unwrap();
    assert_eq!(acme["archived_entries"], 5, "{}", status.stdout);
}
