//! By-hand benchmark of bulk appends to the SQLite store, shaped like `blackbox append`.
//!
//! Creates a fresh store and appends N realistic entries (default 200,000) in one durable batch
//! the way the ledger does: four tenants interleaved, each `append` call carrying 4096 entries of
//! one tenant (followed by its level-8 Merkle nodes), ~800-byte lines, ~40 agents per tenant,
//! sessions of 200 events, six tools, ~10 % of entries with a personal sidecar; then heads,
//! closing checkpoints and `commit`.
//!
//! ```text
//! cargo run --release -p blackbox-store --example append_bench -- \
//!     [N] [--batches K] [--small K] [--query] [--dir DIR] [--query-only]
//! ```
//!
//! It prints, per batch, entries/s (wall clock, `begin` to `commit` returned) and the process's
//! CPU time per entry. The machine is likely shared: run it a few times.
//!
//! - `--batches K` appends N entries K times (K batches; e.g. `200000 --batches 5` for 1M
//!   entries in batches of 200k, or `1000000` for one batch of 1M).
//! - `--small K` then appends K batches of a single entry each and reports the time per batch.
//! - `--query` then times, on a freshly opened read-only store, the first row and all rows of a
//!   few queries (agent + tool + one day as in `bench/run.sh`, a session, an event type over one
//!   hour, everything) and a scan of one tenant.
//! - `--dir DIR` keeps the store in DIR (default: a temporary directory, removed afterwards);
//!   `--query-only --dir DIR` runs only the queries, on the store a previous run left there.
//! - With `BENCH_PERF_CTL=FIFO`, only the timed part is profiled by
//!   `perf record -D -1 --control fifo:FIFO`.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use blackbox_core::Hash;
use blackbox_store::sqlite::SqliteStore;
use blackbox_store::{ChainHead, NewEntry, PersonalRecord, Query, Store, StoredCheckpoint};

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const TOOLS: [&str; 6] = [
    "query_database",
    "search_kb",
    "send_email",
    "read_file",
    "http_get",
    "create_ticket",
];
/// 2026-04-14T00:00:00Z, as in bench/gen_events.py.
const BASE_MS: i64 = 1_776_124_800_000;
const CALL: usize = 4096;
const NODE_LEVEL: u8 = 8;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
}

/// Per-tenant generator state.
struct Chain {
    tenant: &'static str,
    size: u64,
    last_id: u128,
    last: Option<(Hash, [u8; 16])>,
    pending: Vec<NewEntry>,
}

fn make_entry(rng: &mut Rng, chain: &mut Chain, i: u64) -> NewEntry {
    let t = chain.tenant;
    let seq = chain.size + 1;
    chain.size = seq;
    let ts_ms = BASE_MS + i64::try_from(i).unwrap_or(0) * 30;
    // Entry ids as the writer makes them (`blackbox_core::entry::next_entry_id`): a UUIDv7 of
    // the writer's millisecond with random low bits, or the last id plus one when that would not
    // be greater. At ~200k entries/s over four chains, a millisecond holds ~200 entries.
    let now_ms = u128::try_from(BASE_MS).unwrap_or(0) + 3_600_000 + u128::from(i / 200);
    let random = (u128::from(rng.next()) << 64 | u128::from(rng.next())) & ((1 << 76) - 1);
    let fresh = (now_ms << 80) | (0x7 << 76) | random;
    chain.last_id = if fresh > chain.last_id {
        fresh
    } else {
        chain.last_id + 1
    };
    let entry_id = chain.last_id.to_be_bytes();
    let agent = format!("{t}-agent-{:02}", rng.below(40));
    let session = format!("sess_{t}_{}", i / 200);
    let k = rng.below(100);
    let (event_type, tool) = if k < 45 {
        ("llm_request", None)
    } else if k < 95 {
        (
            "tool_call",
            Some(TOOLS[usize::try_from(rng.below(6)).unwrap_or(0)]),
        )
    } else {
        ("decision", None)
    };
    let mut line = format!(
        "{{\"v\":1,\"tenant_id\":\"{t}\",\"seq\":{seq},\"entry_id\":\"{}\",\"ts\":{ts_ms},\
         \"agent_id\":\"{agent}\",\"session_id\":\"{session}\",\"event_type\":\"{event_type}\",\
         \"tool_name\":\"{}\",\"args\":{{\"query_hash\":\"sha256:{}\",\"table\":\"orders\"}},\
         \"result\":{{\"rows\":{},\"result_hash\":\"sha256:{}\"}},\"prev\":\"{}\",",
        hex_id(&entry_id),
        tool.unwrap_or(""),
        rng.hex(64),
        rng.below(200),
        rng.hex(64),
        rng.hex(64),
    );
    // Pad to ~800 bytes (700..900) and close with a MAC.
    let target = 700 + usize::try_from(rng.below(200)).unwrap_or(0);
    let pad = target.saturating_sub(line.len() + 90);
    line.push_str(&format!(
        "\"pad\":\"{}\",\"mac\":\"hmac-sha256:{}\"}}",
        rng.hex(pad),
        rng.hex(64)
    ));
    let line = line.into_bytes();
    let entry_hash = Hash::digest(&line);
    let personal = (rng.below(10) == 0).then(|| {
        let subject = format!("ds_{}", rng.below(100_000));
        PersonalRecord {
            sidecar: format!(
                "{{\"salt\":\"{}\",\"fields\":{{\"email\":\"{subject}@example.com\"}}}}",
                rng.hex(43)
            )
            .into_bytes(),
            subject_keys: vec![Hash::digest(subject.as_bytes()).0],
        }
    });
    chain.last = Some((entry_hash, entry_id));
    NewEntry {
        seq,
        entry_id,
        ts_ms,
        agent_id: agent,
        session_id: session,
        event_type: event_type.to_owned(),
        tool: tool.map(str::to_owned),
        line,
        entry_hash,
        personal,
    }
}

fn hex_id(b: &[u8; 16]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One store call of the batch, in order.
enum Call {
    Append(usize, Vec<NewEntry>, Vec<(u64, Hash)>),
}

/// The calls of one batch of `n` entries, continuing `chains` from global event `first`.
fn batch_calls(rng: &mut Rng, chains: &mut [Chain], first: u64, n: u64) -> Vec<Call> {
    let mut calls = Vec::new();
    for i in first..first + n {
        let c = usize::try_from(i % 4).unwrap_or(0);
        let e = make_entry(rng, &mut chains[c], i);
        chains[c].pending.push(e);
        if chains[c].pending.len() >= CALL {
            calls.push(flush(c, &mut chains[c]));
        }
    }
    for (c, chain) in chains.iter_mut().enumerate() {
        if !chain.pending.is_empty() {
            calls.push(flush(c, chain));
        }
    }
    calls
}

fn flush(c: usize, chain: &mut Chain) -> Call {
    let entries = std::mem::take(&mut chain.pending);
    // Level-8 subtree hashes completed by these entries (their values do not matter here).
    let nodes = entries
        .iter()
        .filter(|e| e.seq % (1 << NODE_LEVEL) == 0)
        .map(|e| ((e.seq >> NODE_LEVEL) - 1, e.entry_hash))
        .collect();
    Call::Append(c, entries, nodes)
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rsplit_once(") ").map(|(_, a)| a) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// With `BENCH_PERF_CTL=FIFO` (and `perf record -D -1 --control fifo:FIFO`), only the timed
/// part is profiled.
fn perf_control(cmd: &str) {
    if let Some(fifo) = std::env::var_os("BENCH_PERF_CTL") {
        let _ = std::fs::write(fifo, format!("{cmd}\n"));
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut n: u64 = 200_000;
    let mut batches = 1u64;
    let mut query = false;
    let mut small = 0u64;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--query" => query = true,
            "--small" => small = args.next().ok_or("--small K")?.parse()?,
            "--query-only" => {
                query = true;
                batches = 0;
            }
            "--batches" => batches = args.next().ok_or("--batches K")?.parse()?,
            "--dir" => dir = Some(args.next().ok_or("--dir DIR")?.into()),
            other => n = other.parse()?,
        }
    }
    let tmp;
    let dir = if let Some(d) = dir {
        std::fs::create_dir_all(&d)?;
        d
    } else {
        tmp = tempfile::tempdir()?;
        tmp.path().to_path_buf()
    };
    let path = dir.join("bench.db");
    if batches > 0 {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut chains: Vec<Chain> = TENANTS
        .iter()
        .map(|&tenant| {
            let ms = u128::try_from(BASE_MS).unwrap_or(0) + 3_600_000;
            let rand = (u128::from(rng.next()) << 16) | u128::from(rng.next() & 0xffff);
            Chain {
                tenant,
                size: 0,
                last_id: (ms << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1)),
                last: None,
                pending: Vec::new(),
            }
        })
        .collect();

    let mut store = if batches > 0 {
        SqliteStore::create(&path)?
    } else {
        SqliteStore::open(&path)?
    };
    let mut total = Duration::ZERO;
    for b in 0..batches {
        let calls = batch_calls(&mut rng, &mut chains, b * n, n);
        let bytes: usize = calls
            .iter()
            .map(|Call::Append(_, es, _)| es.iter().map(|e| e.line.len()).sum::<usize>())
            .sum();
        perf_control("enable");
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut batch = store.begin()?;
        for Call::Append(c, entries, nodes) in &calls {
            let tenant = chains[*c].tenant;
            batch.append(tenant, entries)?;
            if !nodes.is_empty() {
                batch.put_nodes(tenant, NODE_LEVEL, nodes)?;
            }
        }
        for chain in &chains {
            let Some((head_hash, last_entry_id)) = chain.last else {
                continue;
            };
            batch.set_head(&ChainHead {
                tenant_id: chain.tenant.to_owned(),
                size: chain.size,
                head_hash,
                last_entry_id,
                merkle_state: vec![0; 32 * 12],
                last_checkpoint_size: chain.size,
                last_checkpoint_ms: BASE_MS,
            })?;
            batch.put_checkpoint(&StoredCheckpoint {
                tenant_id: chain.tenant.to_owned(),
                size: chain.size,
                ts_ms: BASE_MS,
                note: format!(
                    "example.com/log\n{}\n{}\n\n— sig\n",
                    chain.size,
                    "a".repeat(44)
                ),
            })?;
        }
        let t1 = Instant::now();
        batch.commit()?;
        let t2 = Instant::now();
        let cpu = cpu_seconds() - cpu0;
        perf_control("disable");
        let secs = (t2 - t0).as_secs_f64();
        total += t2 - t0;
        println!(
            "batch {}: {n} entries ({:.0} MB of lines) in {secs:.3} s = {:>7.0} entries/s \
             (appends {:.3} s, commit {:.3} s; CPU {cpu:.2} s = {:.2} µs/entry)",
            b + 1,
            bytes as f64 / 1e6,
            n as f64 / secs,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            cpu * 1e6 / n as f64,
        );
    }
    if small > 0 {
        // Small durable batches of one entry each (tenants in turn), after the big ones.
        let t0 = Instant::now();
        for k in 0..small {
            let calls = batch_calls(&mut rng, &mut chains, batches * n + k, 1);
            let mut batch = store.begin()?;
            for Call::Append(c, entries, nodes) in &calls {
                let chain = &chains[*c];
                batch.append(chain.tenant, entries)?;
                if !nodes.is_empty() {
                    batch.put_nodes(chain.tenant, NODE_LEVEL, nodes)?;
                }
                if let Some((head_hash, last_entry_id)) = chain.last {
                    batch.set_head(&ChainHead {
                        tenant_id: chain.tenant.to_owned(),
                        size: chain.size,
                        head_hash,
                        last_entry_id,
                        merkle_state: vec![0; 32 * 12],
                        last_checkpoint_size: 0,
                        last_checkpoint_ms: BASE_MS,
                    })?;
                }
            }
            batch.commit()?;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{small} batches of one entry in {secs:.3} s = {:.0} µs per durable batch",
            secs * 1e6 / small as f64
        );
    }
    let file = std::fs::metadata(&path)?.len();
    if batches > 0 {
        println!(
            "total: {} entries in {:.3} s = {:.0} entries/s; file {:.0} MB",
            n * batches,
            total.as_secs_f64(),
            (n * batches) as f64 / total.as_secs_f64(),
            file as f64 / 1e6
        );
    }
    drop(store);

    if query {
        let day = Some(BASE_MS);
        let day_end = Some(BASE_MS + 86_400_000 - 1);
        let queries = [
            (
                "agent+tool+day",
                Query {
                    agent_id: Some("acme-agent-07".to_owned()),
                    tool: Some("query_database".to_owned()),
                    start_ms: day,
                    end_ms: day_end,
                    ..Query::default()
                },
            ),
            (
                "session",
                Query {
                    session_id: Some("sess_acme_700".to_owned()),
                    ..Query::default()
                },
            ),
            (
                "event type decision, 1 hour",
                Query {
                    event_type: Some("decision".to_owned()),
                    start_ms: Some(BASE_MS + 3_600_000),
                    end_ms: Some(BASE_MS + 7_200_000 - 1),
                    ..Query::default()
                },
            ),
            ("everything", Query::default()),
        ];
        for (name, q) in queries {
            for limit in [Some(1), None] {
                let t0 = Instant::now();
                let ro = SqliteStore::open_read_only(&path)?;
                let mut rows = 0u64;
                let mut first = None;
                ro.query(&Query { limit, ..q.clone() }, &mut |_| {
                    rows += 1;
                    first.get_or_insert_with(|| t0.elapsed());
                    Ok(true)
                })?;
                println!(
                    "query {name:<28} {:<9} first row after {:7.1} ms, {rows:>7} rows in {:7.1} ms \
                     (open included)",
                    if limit.is_some() {
                        "limit 1"
                    } else {
                        "all rows"
                    },
                    first.unwrap_or_default().as_secs_f64() * 1e3,
                    t0.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        let t0 = Instant::now();
        let ro = SqliteStore::open_read_only(&path)?;
        let mut rows = 0u64;
        ro.scan("acme", 1, u64::MAX, &mut |_| {
            rows += 1;
            Ok(true)
        })?;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "scan of tenant acme: {rows} entries in {:.1} ms = {:.0} entries/s",
            secs * 1e3,
            rows as f64 / secs
        );
    }
    Ok(())
}
