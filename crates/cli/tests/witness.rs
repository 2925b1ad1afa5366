//! Witnessing end to end (issue 23), with real processes: two `blackbox witness serve` and a
//! third that is down, a `blackbox serve` that submits its checkpoints to them, and:
//! - quorum 2 of 3 met with one witness down, quorum 3 reported with exactly the missing one;
//! - a split view: the operator copies the log and grows the copy differently; the honest
//!   witnesses refuse the second history (`witness_refused` alerts, which say why), and a
//!   tlog-proof from the forked log fails an auditor's witness policy while one from the real
//!   log passes;
//! - a rolled-back witness (its state restored from an older copy) is refused by the log.

// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::serve::{Server, http, token};
use common::witness::{WitnessProc, configure};
use common::{init_store, run};
use serde_json::{Value, json};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn ingest(server: &Server, tok: &str, tools: &[&str]) {
    for t in tools {
        let ev = json!({"agent_id": "agent-1", "session_id": "s1", "event_type": "tool_call", "tool_name": t});
        let (st, body) = http(
            server.addr,
            "POST",
            "/v1/events",
            Some(tok),
            Some(&ev.to_string()),
        )
        .unwrap();
        assert_eq!(st, 200, "{body}");
    }
}

fn get(server: &Server, tok: &str, path: &str) -> Value {
    let (st, body) = http(server.addr, "GET", path, Some(tok), None).unwrap();
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until each witness named has cosigned chain `acme` at `size` or more.
fn wait_cosigned(server: &Server, admin: &str, names: &[&str], size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get(server, admin, "/v1/witnesses");
        let done = names.iter().all(|n| {
            v["witnesses"].as_array().unwrap().iter().any(|w| {
                w["name"] == *n && w["cosigned"]["acme"].as_u64().is_some_and(|s| s >= size)
            })
        });
        if done {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "not cosigned by {names:?} at {size}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the `witness_refused` alerts in the service's chain satisfy `done`; returns their
/// payloads.
fn wait_refusals(server: &Server, admin: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = get(server, admin, "/v1/alerts?rule=witness_refused");
        let payloads: Vec<Value> = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let id = a["alert_id"].as_str().unwrap();
                get(server, admin, &format!("/v1/entries/{id}"))["entry"]["payload"].clone()
            })
            .collect();
        if done(&payloads) {
            return payloads;
        }
        assert!(
            Instant::now() < deadline,
            "witness_refused alerts: {payloads:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `witness` raised a refusal with `code`.
fn refused(payloads: &[Value], witness: &str, code: &str) -> bool {
    payloads
        .iter()
        .any(|p| p["witness"] == witness && p["reason_code"] == code)
}

fn copy_dir(from: &Path, to: &Path) {
    let s = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

/// The newest entry of `acme` as a tlog-proof file.
fn tlog_proof(dir: &str, out: &Path) {
    let q = run(&[
        "query",
        "--data-dir",
        dir,
        "--tenant-id",
        "acme",
        "--format",
        "json",
    ]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    let all: Value = serde_json::from_str(&q.stdout).unwrap();
    let id = all.as_array().unwrap().last().unwrap()["entry_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = run(&[
        "prove",
        "--data-dir",
        dir,
        "--entry-id",
        &id,
        "--format",
        "tlog-proof",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn witnesses_cosign_refuse_a_split_view_and_a_rolled_back_witness() {
    let (tmp, dir_a) = init_store();
    let root = tmp.path();
    let log_pub: PathBuf = Path::new(&dir_a).join("checkpoint.pub");
    // Three witness keys; the third witness never runs.
    let mut pubs = Vec::new();
    for i in 1..=3 {
        let key = root.join(format!("w{i}.key"));
        let r = run(&[
            "witness",
            "keygen",
            "--name",
            &format!("witness.test/w{i}"),
            "--key-file",
            key.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let vkey = r.stdout.trim().to_owned();
        assert_eq!(
            std::fs::read_to_string(root.join(format!("w{i}.key.pub")))
                .unwrap()
                .trim(),
            vkey
        );
        pubs.push(vkey);
    }
    let addrs = [free_addr(), free_addr(), free_addr()];
    let (state1, state2) = (root.join("w1-state"), root.join("w2-state"));
    let mut w1 = WitnessProc::start(&root.join("w1.key"), &log_pub, &state1, addrs[0]);
    let mut w2 = WitnessProc::start(&root.join("w2.key"), &log_pub, &state2, addrs[1]);
    let config: Vec<(SocketAddr, String)> =
        addrs.iter().copied().zip(pubs.iter().cloned()).collect();
    configure(&dir_a, &config, 2);
    let admin = token(&dir_a, None, "admin");
    let acme = token(&dir_a, Some("acme"), "ingest");

    // 1. Quorum 2 of 3 with w3 down.
    let mut a = Server::start(&dir_a);
    ingest(&a, &acme, &["read", "search", "write", "send"]);
    let status = wait_cosigned(&a, &admin, &["witness.test/w1", "witness.test/w2"], 4);
    assert_eq!(status["quorum"], 2);
    let w3 = &status["witnesses"][2];
    assert_eq!(w3["name"], "witness.test/w3");
    assert!(
        w3["last_error"].as_str().unwrap().contains("unreachable"),
        "{w3}"
    );
    let (st, metrics) = http(a.addr, "GET", "/metrics", Some(&admin), None).unwrap();
    assert_eq!(st, 200);
    assert!(
        metrics.contains(
            "blackbox_witness_submissions_total{witness=\"witness.test/w1\",result=\"cosigned\"}"
        ) && metrics.contains("result=\"unreachable\""),
        "{metrics}"
    );
    let report = get(&a, &admin, "/v1/verify");
    assert_eq!(report["status"], "ok", "{report:#}");
    a.stop();
    // The auditor's own policy, offline.
    let key_args = |n: usize| -> Vec<String> {
        (1..=n)
            .flat_map(|i| {
                [
                    "--witness-key".to_owned(),
                    root.join(format!("w{i}.key.pub")).display().to_string(),
                ]
            })
            .collect()
    };
    let mut args: Vec<String> = vec![
        "verify".into(),
        "--data-dir".into(),
        dir_a.clone(),
        "--tenant-id".into(),
        "acme".into(),
    ];
    args.extend(key_args(3));
    args.extend(["--witness-quorum".into(), "2".into()]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("cosigned by witness.test/w1"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("not by witness.test/w3"), "{}", r.stdout);
    args.pop();
    args.push("3".into());
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("NOT WITNESSED"), "{}", r.stdout);
    assert!(r.stdout.contains("none by witness.test/w3"), "{}", r.stdout);
    let mut jargs = args.clone();
    jargs.extend(["--format".into(), "json".into()]);
    let j: Value =
        serde_json::from_str(&run(&jargs.iter().map(String::as_str).collect::<Vec<_>>()).stdout)
            .unwrap();
    assert_eq!(j["status"], "not_witnessed");
    assert_eq!(j["findings"][0]["kind"], "not_witnessed");
    // The witness's own record.
    let st = run(&[
        "witness",
        "status",
        "--state-dir",
        state1.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    let st: Value = serde_json::from_str(&st.stdout).unwrap();
    assert!(
        st["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["origin"] == "blackbox/test/acme" && l["size"].as_u64() >= Some(4)),
        "{st:#}"
    );

    // A snapshot of w1's state now (to roll it back later), and the operator's copy of the log.
    w1.stop();
    let old_state1 = root.join("w1-state-old");
    copy_dir(&state1, &old_state1);
    let mut w1 = WitnessProc::start(&root.join("w1.key"), &log_pub, &state1, addrs[0]);
    let dir_b = root.join("fork").display().to_string();
    copy_dir(Path::new(&dir_a), Path::new(&dir_b));

    // 2. The real log grows and is cosigned.
    let mut a = Server::start(&dir_a);
    ingest(&a, &acme, &["read", "summarise", "reply"]);
    wait_cosigned(&a, &admin, &["witness.test/w1", "witness.test/w2"], 7);
    a.stop();
    let proof_a = root.join("a.tlog-proof");
    tlog_proof(&dir_a, &proof_a);
    // An evidence bundle carries the cosigned checkpoints: the auditor's policy re-performs.
    let bundle = root.join("bundle");
    let r = run(&[
        "export",
        "--data-dir",
        &dir_a,
        "--standard",
        "iso27001",
        "--control",
        "A.8.15",
        "--tenant-id",
        "acme",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let reperform = |quorum: &str| {
        let mut a: Vec<String> = vec![
            "export".into(),
            "reperform".into(),
            bundle.display().to_string(),
            "--public-key".into(),
            log_pub.display().to_string(),
        ];
        a.extend(key_args(3));
        a.extend(["--witness-quorum".into(), quorum.into()]);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let r = reperform("2");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("match")
            && l.contains("witnesses: 2 of 3 required")
            && l.contains("chain acme witnessed up to 7")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.lines().any(|l| l.starts_with("match")
            && l.contains("tlog-proof")
            && l.contains("cosigned by witness.test/w1, witness.test/w2")),
        "the bundle's tlog-proofs rest on cosigned checkpoints:\n{}",
        r.stdout
    );
    let r = reperform("3");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("mismatch")
            && l.contains("witnesses")
            && l.contains("none by witness.test/w3")),
        "{}",
        r.stdout
    );

    // 3. The split view: the copy grows another way; both honest witnesses refuse it.
    let mut b = Server::start(&dir_b);
    ingest(
        &b,
        &acme,
        &["delete", "exfiltrate", "delete", "cover", "tracks"],
    );
    // While the copy is smaller than what the witnesses cosigned they say they hold more
    // (`witness_ahead`); once it is larger, its consistency proof fails against what they
    // cosigned (`inconsistent`, HTTP 422): the split view itself.
    let refusals = wait_refusals(&b, &admin, |p| {
        refused(p, "witness.test/w1", "inconsistent")
            && refused(p, "witness.test/w2", "inconsistent")
    });
    for p in &refusals {
        assert_eq!(p["rule"], "witness_refused");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["kind"], "witness");
        assert_eq!(p["origin"], "blackbox/test/acme");
        assert!(
            ["inconsistent", "witness_ahead"].contains(&p["reason_code"].as_str().unwrap()),
            "{p:#}"
        );
    }
    let split = refusals
        .iter()
        .find(|p| p["reason_code"] == "inconsistent")
        .unwrap();
    assert_eq!(split["status"], 422, "{split:#}");
    assert_eq!(split["old_size"], 7, "{split:#}");
    assert!(split["tree_size"].as_u64() > Some(7), "{split:#}");
    let wit = get(&b, &admin, "/v1/witnesses");
    let err = wit["witnesses"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("split view"), "{wit:#}");
    b.stop();
    let proof_b = root.join("b.tlog-proof");
    tlog_proof(&dir_b, &proof_b);
    // An auditor holding a proof from each history, with one honest witness in its policy.
    let check = |proof: &Path| {
        run(&[
            "verify-proof",
            "--public-key",
            log_pub.to_str().unwrap(),
            proof.to_str().unwrap(),
            "--witness-key",
            root.join("w1.key.pub").to_str().unwrap(),
            "--witness-quorum",
            "1",
        ])
    };
    let ra = check(&proof_a);
    assert_eq!(ra.code, 0, "{}{}", ra.stdout, ra.stderr);
    assert!(
        ra.stdout.contains("cosigned by witness.test/w1"),
        "{}",
        ra.stdout
    );
    let rb = check(&proof_b);
    assert_eq!(rb.code, 1, "{}{}", rb.stdout, rb.stderr);
    assert!(rb.stdout.starts_with("NOT WITNESSED"), "{}", rb.stdout);
    // Without the witness policy the forked proof is just a proof: the signature is the operator's.
    let plain = run(&[
        "verify-proof",
        "--public-key",
        log_pub.to_str().unwrap(),
        proof_b.to_str().unwrap(),
    ]);
    assert_eq!(plain.code, 0, "{}", plain.stdout);

    // 4. w1's state rolled back to the snapshot: the log refuses it and says so.
    w1.stop();
    std::fs::remove_dir_all(&state1).unwrap();
    std::fs::rename(&old_state1, &state1).unwrap();
    let _w1 = WitnessProc::start(&root.join("w1.key"), &log_pub, &state1, addrs[0]);
    let a = Server::start(&dir_a);
    ingest(&a, &acme, &["read"]);
    let refusals = wait_refusals(&a, &admin, |p| {
        refused(p, "witness.test/w1", "witness_rolled_back")
    });
    let rolled = refusals
        .iter()
        .find(|p| p["reason_code"] == "witness_rolled_back")
        .unwrap_or_else(|| panic!("{refusals:#?}"));
    assert_eq!(rolled["witness"], "witness.test/w1");
    assert!(rolled["cosigned_before"].as_u64() >= Some(7), "{rolled:#}");
    // The honest w2 goes on cosigning.
    let st = wait_cosigned(&a, &admin, &["witness.test/w2"], 8);
    assert!(!st["witnesses"][0]["suspended"]["acme"].is_null(), "{st:#}");
    w2.stop();
}
