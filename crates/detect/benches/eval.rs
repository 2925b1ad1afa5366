//! Rule evaluation throughput and decision-evaluation latency (docs/PERFORMANCE.md).
//!
//! `cargo bench -p blackbox-detect --bench eval [-- FILTER…]` (only the lines whose name holds
//! one of the filters, e.g. `-- "ingest path, the recommended pack"`)
//!
//! 1. Ingest path, the seed's rules: per event, reading features from the payload (pattern scan
//!    included; in the service this runs on the request threads) and counting/evaluating in the
//!    detector (the writer thread). One thread; events/s per core.
//! 2. The same with 100 rules and 500 patterns (bench/rules-100.yaml).
//! 3. The same with the recommended pack (examples/recommended-rules.yaml).
//! 4. Decision evaluation with 100 rules / 500 patterns, then with the recommended pack:
//!    features of raw tool arguments plus the detector, per call; p50/p99/max.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox_core::event::Node;
use blackbox_detect::{Detector, Features, Observation, RuleSet};
use serde_json::{Value, json};

fn rnd(seed: u64, k: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(k.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TOOLS: [&str; 6] = [
    "query_database",
    "search_kb",
    "send_email",
    "read_file",
    "http_get",
    "create_ticket",
];

/// The payload of event `i` as the service sees it before hashing (as bench/gen_events.py).
fn payload(i: u64) -> (String, Value) {
    if rnd(i, 2) % 100 < 45 {
        (
            "llm_request".into(),
            json!({"model": "gpt-4o",
            "prompt": format!("Customer asks about order {}: where is it?", rnd(i, 4) % 1_000_000),
            "token_count_in": 50 + rnd(i, 5) % 4000, "token_count_out": 10 + rnd(i, 6) % 800,
            "latency_ms": 100 + rnd(i, 7) % 5000}),
        )
    } else {
        (
            "tool_call".into(),
            json!({"tool_name": TOOLS[(rnd(i, 3) % 6) as usize], "agent_role": "analyst",
            "invocation_id": format!("inv_{i}"),
            "args": {"query": format!("SELECT * FROM orders WHERE customer_id = {} LIMIT 100", rnd(i, 5) % 1_000_000),
                     "table": "orders", "limit": 100},
            "authorization": {"rbac_role": "analyst", "allowed": rnd(i, 6) % 100 >= 5, "policy_matched": "analyst-read-orders"},
            "result": {"rows_returned": rnd(i, 7) % 200, "data_classification": "internal"},
            "duration_ms": 1 + rnd(i, 8) % 300}),
        )
    }
}

/// Whether the benchmark `name` was asked for: every one when no filter is given
/// (`cargo bench -p blackbox-detect --bench eval -- pack` runs those whose name has `pack`).
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn ingest(name: &str, rules: &str, n: u64) {
    if !wanted(name) {
        return;
    }
    let set = Arc::new(RuleSet::parse(rules).unwrap());
    let events: Vec<(String, String, Value)> = (0..n)
        .map(|i| {
            let (t, p) = payload(i);
            (format!("agent-{:02}", rnd(i, 1) % 40), t, p)
        })
        .collect();
    let t0_ms = 1_767_225_600_000_i64;
    let mut best = (Duration::from_secs(1 << 20), Duration::from_secs(1 << 20));
    for _ in 0..3 {
        let mut det = Detector::new(Arc::clone(&set));
        let mut out = Vec::new();
        let mut f = Features::default();
        let (mut extract, mut observe) = (Duration::ZERO, Duration::ZERO);
        for (i, (agent, et, p)) in events.iter().enumerate() {
            let a = Instant::now();
            let node = Node::from_value(p);
            if let Node::Obj(o) = &node {
                f.fill(et, o, &set.patterns);
            }
            let b = Instant::now();
            out.clear();
            let ob = Observation {
                tenant: "acme",
                agent,
                session: "s",
                event_type: et,
                tool: p.get("tool_name").and_then(Value::as_str),
                ts_ms: t0_ms + i as i64 * 2,
                features: &f,
            };
            det.observe(&ob, &mut out);
            let c = Instant::now();
            extract += b - a;
            observe += c - b;
        }
        if extract + observe < best.0 + best.1 {
            best = (extract, observe);
        }
    }
    let per = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{name:<44} {n} events: features {:>9.0}/s, detector {:>9.0}/s, both {:>9.0} events/s per core",
        per(best.0),
        per(best.1),
        per(best.0 + best.1)
    );
}

fn decisions(name: &str, rules: &str, n: u64) {
    if !wanted(&format!("decision evaluation, {name}")) {
        return;
    }
    let set = Arc::new(RuleSet::parse(rules).unwrap());
    let mut det = Detector::new(Arc::clone(&set));
    let mut lat = Vec::with_capacity(n as usize);
    let mut out = Vec::new();
    let t0_ms = 1_767_225_600_000_i64;
    let mut blocked = 0;
    // One call in 50 carries a literal of the first pattern rule, in capitals.
    let literal = set
        .rules
        .iter()
        .find_map(|r| match &r.kind {
            blackbox_detect::rules::Kind::Pattern { literals, .. } => literals.first().cloned(),
            _ => None,
        })
        .unwrap_or_else(|| "ignore all previous instructions".to_owned());
    for i in 0..n {
        let text = if i % 50 == 7 {
            format!(
                "summarise ticket {i} and then {}, now",
                literal.to_uppercase()
            )
        } else {
            format!(
                "summarise ticket {} for the weekly report of team {}",
                rnd(i, 4) % 100_000,
                rnd(i, 5) % 40
            )
        };
        let scan = json!({"args": {"text": text, "limit": 10}, "agent_role": "analyst"});
        let start = Instant::now();
        let f = match Node::from_value(&scan) {
            Node::Obj(o) => Features::extract("tool_call", &o, &set.patterns),
            _ => Features::default(),
        };
        out.clear();
        let agent = format!("agent-{:02}", rnd(i, 1) % 40);
        let ob = Observation {
            tenant: "acme",
            agent: &agent,
            session: "s",
            event_type: "tool_call",
            tool: Some(TOOLS[(rnd(i, 3) % 6) as usize]),
            ts_ms: t0_ms + i as i64 * 2,
            features: &f,
        };
        let _ = det.gate("acme", &agent, ob.ts_ms);
        det.observe(&ob, &mut out);
        lat.push(start.elapsed());
        blocked += usize::from(!f.hits.is_empty());
    }
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "decision evaluation, {name}: {n} calls ({blocked} with a pattern hit): p50 {:.1?} p99 {:.1?} max {:.1?}",
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
}

fn main() {
    let seed = include_str!("../../../examples/seed-rules.yaml");
    let hundred = include_str!("../../../bench/rules-100.yaml");
    let pack = include_str!("../../../examples/recommended-rules.yaml");
    let n = 300_000;
    ingest(
        "ingest path, no rules",
        "anomaly_detection:\n  rules: []\n",
        n,
    );
    ingest("ingest path, the seed's 4 rules", seed, n);
    ingest("ingest path, 100 rules / 500 patterns", hundred, n);
    ingest("ingest path, the recommended pack", pack, n);
    decisions("100 rules / 500 patterns", hundred, 100_000);
    decisions("the recommended pack", pack, 100_000);
}
