//! `blackbox append`: NDJSON events in, signed entries out.
//!
//! The CLI's way in to the ledger's appender ([`blackbox_ledger::appender`]): a reader thread
//! reads lines and has the appender's [`Normaliser`] normalise them in parallel (validation,
//! redaction, RFC 8785); this thread hands them to the [`Appender`] (no detector: the CLI does not
//! evaluate rules), which sequences, signs and stores them. Without `--batch-size` the whole input
//! is one all-or-nothing transaction: a bad line means nothing is appended.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

use anyhow::{Context as _, Result, anyhow};
use blackbox_core::entry::{ClockBound, NormalizedEvent, RedactionPolicy};
use blackbox_core::ids::TenantId;
use blackbox_core::origin::Origin;
use blackbox_ledger::appender::{Appender, Intake, Normaliser, Refusal};
use blackbox_ledger::clock::Clock;
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::writer::BatchOutcome;

use crate::Outcome;
use crate::cli::TextOrJson;
use crate::output::n;

const CHUNK: usize = 8192;

type Parsed = (u64, Result<NormalizedEvent, String>);

/// What every line is read with: the redaction lists, who is appending, the clock bound and the
/// writer's clock.
struct LineRules {
    policy: RedactionPolicy,
    origin: Origin,
    bound: ClockBound,
    clock: Clock,
}

/// The operating-system user running this process: its name from the password database, or
/// `uid:<n>` (the real uid, read from /proc; not `$USER`, which the caller sets).
fn os_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        });
    let Some(uid) = uid else {
        return "unknown".to_owned();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid && !name.is_empty()).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// The CLI's words for a refusal (the tenant is bound by `--tenant-id`).
fn refusal(r: Refusal) -> String {
    match r {
        Refusal::OtherTenant { named, bound } => format!(
            "field `tenant_id` is `{named}` but --tenant-id is `{bound}`; events may only name the tenant they are appended for"
        ),
        other => other.to_string(),
    }
}

fn reader_thread(
    input: Box<dyn Read + Send>,
    rules: LineRules,
    tenant: Option<TenantId>,
    streaming: bool,
    tx: mpsc::SyncSender<Result<Vec<Parsed>, String>>,
    progress: indicatif::ProgressBar,
) {
    let mut r = BufReader::with_capacity(1 << 20, input);
    // The lines of a chunk, back to back in one buffer (no allocation per line).
    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut raw: Vec<(u64, std::ops::Range<usize>)> = Vec::with_capacity(CHUNK);
    let mut line_no = 0u64;
    let send = |buf: &mut Vec<u8>, raw: &mut Vec<(u64, std::ops::Range<usize>)>| {
        // Progress a chunk at a time (the bar's clock read per line cost ~1% of an append).
        progress.inc(raw.iter().map(|(_, r)| r.len() as u64 + 1).sum());
        let normaliser = Normaliser {
            policy: &rules.policy,
            bound: rules.bound,
            now_ms: rules.clock.now_ms(),
            tenant: tenant.as_ref(),
            rules: None,
        };
        let items: Vec<Intake<'_>> = raw
            .iter()
            .map(|(_, l)| Intake::json(&buf[l.clone()], &rules.origin))
            .collect();
        let parsed: Vec<Parsed> = normaliser
            .normalise_all(&items)
            .into_iter()
            .zip(raw.iter())
            .map(|(r, (no, _))| (*no, r.map(|n| n.event).map_err(refusal)))
            .collect();
        drop(items);
        raw.clear();
        buf.clear();
        tx.send(Ok(parsed)).is_ok()
    };
    loop {
        let start = buf.len();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(format!("reading input: {e}")));
                return;
            }
        }
        line_no += 1;
        while buf.len() > start && matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf[start..].iter().all(u8::is_ascii_whitespace) {
            buf.truncate(start);
            continue; // blank lines are allowed and skipped
        }
        raw.push((line_no, start..buf.len()));
        // In streaming mode, hand over what we have whenever the input pauses.
        if (raw.len() >= CHUNK || (streaming && r.buffer().is_empty())) && !send(&mut buf, &mut raw)
        {
            return;
        }
    }
    if !raw.is_empty() {
        send(&mut buf, &mut raw);
    }
}

#[derive(Default)]
struct Totals {
    appended: u64,
    checkpoints: u64,
    chains: BTreeMap<String, (u64, u64)>,
}

impl Totals {
    fn add(&mut self, o: &BatchOutcome) {
        self.appended += o.count;
        self.checkpoints += o.checkpoints.len() as u64;
        for (t, (a, b)) in &o.chains {
            let e = self.chains.entry(t.clone()).or_insert((*a, *b));
            e.0 = e.0.min(*a);
            e.1 = e.1.max(*b);
        }
    }
}

pub fn run(
    dir: &DataDir,
    file: Option<&Path>,
    tenant: Option<&str>,
    batch_size: Option<usize>,
    format: TextOrJson,
) -> Result<Outcome> {
    let tenant = tenant
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| anyhow!("--tenant-id: {e}"))?;
    if batch_size == Some(0) {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let (mut store, mut writer, config) = blackbox_ledger::open::open_writer(dir)?;
    let (input, size): (Box<dyn Read + Send>, u64) = match file {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot open --file {}", p.display()))?;
            let size = f.metadata().map_or(0, |m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin()), 0),
    };
    let pb = crate::output::progress_bytes(size, "appending");
    let reader_pb = pb.clone();
    let (tx, rx) = mpsc::sync_channel(4);
    let rules = LineRules {
        policy: config.redaction.clone(),
        origin: Origin::local("append", &os_user()).map_err(|e| anyhow!("{e}"))?,
        bound: config.clock,
        clock: writer.time().clone(),
    };
    let every_ms = config.checkpoint_every_ms;
    // "Commit when the input pauses" is for pipes and terminals; a regular file never pauses,
    // it only refills a buffer, so it commits every --batch-size events.
    let input_is_file = match file {
        Some(_) => true,
        None => {
            use std::os::fd::AsFd as _;
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .and_then(|fd| std::fs::File::from(fd).metadata().ok())
                .is_some_and(|m| m.is_file())
        }
    };
    let streaming = batch_size.is_some() && !input_is_file;
    let reader =
        std::thread::spawn(move || reader_thread(input, rules, tenant, streaming, tx, reader_pb));

    let mut totals = Totals::default();
    let limit = batch_size.unwrap_or(usize::MAX);
    let mut failure: Option<anyhow::Error> = None;
    let mut appender = Appender::new();
    let stream_result = writer.stream(&mut store, |sink| {
        let mut pending_commit = false;
        let idle =
            std::time::Duration::from_millis(u64::try_from(every_ms).unwrap_or(60_000).max(1));
        loop {
            let chunk = match rx.recv_timeout(idle) {
                Ok(c) => c,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Nothing arrived for a checkpoint interval: sign heartbeats so a stalled
                    // or silenced agent is visible in the checkpoint history.
                    if streaming && !pending_commit {
                        let now = sink.now_ms();
                        sink.heartbeat(now)?;
                    }
                    continue;
                }
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(anyhow!(e));
                    return Ok(());
                }
            };
            for (line_no, ev) in chunk {
                match ev {
                    Ok(ev) => {
                        let now = sink.now_ms();
                        appender.add(sink, None, &ev, None, now)?;
                        pending_commit = true;
                    }
                    Err(why) => {
                        failure = Some(anyhow!("line {line_no}: {why}"));
                        // Returning without a commit rolls the open batch back.
                        return Ok(());
                    }
                }
                if sink.len() >= limit {
                    let now = sink.now_ms();
                    totals.add(&sink.commit(now, true)?);
                    pending_commit = false;
                    eprintln!("committed {} entries in all", totals.appended);
                }
            }
            // Streaming: commit whenever the input pauses (the reader hands over what it has).
            if streaming && pending_commit {
                let now = sink.now_ms();
                totals.add(&sink.commit(now, true)?);
                pending_commit = false;
                eprintln!("committed {} entries in all", totals.appended);
            }
        }
        if pending_commit {
            let now = sink.now_ms();
            totals.add(&sink.commit(now, true)?);
            if limit != usize::MAX {
                eprintln!("committed {} entries in all", totals.appended);
            }
        }
        Ok(())
    });
    drop(rx);
    let _ = reader.join();
    pb.finish_and_clear();
    stream_result?;
    if let Some(e) = failure {
        let kept = if totals.appended == 0 {
            "nothing was appended".to_owned()
        } else {
            format!(
                "{} entries of earlier batches were committed; the batch with this line was not",
                n(totals.appended)
            )
        };
        return Err(e.context(kept));
    }
    match format {
        TextOrJson::Json => {
            let chains: serde_json::Map<String, serde_json::Value> = totals
                .chains
                .iter()
                .map(|(t, (a, b))| {
                    (
                        t.clone(),
                        serde_json::json!({"first_seq": a, "last_seq": b}),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"appended": totals.appended, "checkpoints": totals.checkpoints, "chains": chains})
            );
        }
        TextOrJson::Text => {
            let chains: Vec<String> = totals
                .chains
                .iter()
                .map(|(t, (a, b))| format!("{t} seq {}–{}", n(*a), n(*b)))
                .collect();
            if totals.appended == 0 {
                println!("Appended 0 entries (the input held no events).");
            } else {
                println!(
                    "Appended {} entries ({}); {} checkpoint{} signed.",
                    n(totals.appended),
                    chains.join(", "),
                    n(totals.checkpoints),
                    if totals.checkpoints == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(Outcome::Ok)
}
