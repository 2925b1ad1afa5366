//! `query`, `verify`, `checkpoint` and `prove` against a running service (`--server URL --token T`).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use blackbox_client::{Client, EntryQuery, Format};
use blackbox_core::checkpoint::SignedCheckpoint;

use crate::Outcome;
use crate::cli::TimeBasis;
use crate::cli::{QueryFormat, RemoteArgs, TextOrJson};
use crate::cmd::query::{Filters, RowWriter};
use crate::cmd::query::{PostFilter, post_filter};

fn client(r: &RemoteArgs) -> Result<(Client, tokio::runtime::Runtime)> {
    let server = r
        .server
        .as_deref()
        .ok_or_else(|| anyhow!("--server is required"))?;
    let token = r.token.clone().ok_or_else(|| {
        anyhow!("--server needs --token T (or BLACKBOX_TOKEN): a token with read scope")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let c = Client::new(server, token).map_err(|e| anyhow!("--server {server}: {e}"))?;
    Ok((c, rt))
}

pub fn query(r: &RemoteArgs, f: &Filters, format: QueryFormat) -> Result<Outcome> {
    let (c, rt) = client(r)?;
    let mut q = EntryQuery::new();
    q.tenant_id = f.tenant_id.clone();
    q.agent_id = f.agent_id.clone();
    q.session_id = f.session_id.clone();
    q.tool = f.tool.clone();
    q.event_type = f.event_type.clone();
    let bound = |flag: &str, v: &Option<String>, end: bool| {
        v.as_deref()
            .map(|s| crate::cmd::query::parse_bound(flag, s, end))
            .transpose()
    };
    let post = post_filter(
        f,
        bound("--start", &f.start, false)?,
        bound("--end", &f.end, true)?,
    )?;
    if post.active() {
        // The service bounds and pages by the claimed time only: the entries are fetched whole
        // and filtered here, by the same rules as on a data directory.
        if f.time == TimeBasis::Claimed {
            q.start = f.start.clone();
            q.end = f.end.clone();
        }
        return filtered_query(&c, &rt, &q, &post, f.limit, format);
    }
    q.start = f.start.clone();
    q.end = f.end.clone();
    q.limit = f.limit;
    let wire = match format {
        QueryFormat::Csv => Format::Csv,
        QueryFormat::Json => Format::Json,
        QueryFormat::Jsonl | QueryFormat::Table => Format::Jsonl,
    };
    let raw = rt.block_on(c.entries_raw(&q, wire))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        QueryFormat::Table => {
            let mut rows = RowWriter::start(&mut out, format)?;
            for line in raw.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let (tenant, seq) = tenant_seq(line);
                rows.row(&tenant, seq, line)?;
            }
            rows.finish()?;
        }
        _ => {
            out.write_all(&raw.body)?;
            out.flush()?;
        }
    }
    Ok(Outcome::Ok)
}

/// A remote query with filters the service does not apply: JSONL in, filtered, then written in
/// `format` as a local query writes it.
fn filtered_query(
    c: &Client,
    rt: &tokio::runtime::Runtime,
    q: &EntryQuery,
    post: &PostFilter,
    limit: Option<u64>,
    format: QueryFormat,
) -> Result<Outcome> {
    let raw = rt.block_on(c.entries_raw(q, Format::Jsonl))?;
    let stdout = std::io::stdout();
    let mut rows = RowWriter::start(std::io::BufWriter::new(stdout.lock()), format)?;
    for line in raw.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if limit.is_some_and(|l| rows.count() >= l) {
            break;
        }
        if post.keep(line) {
            let (tenant, seq) = tenant_seq(line);
            rows.row(&tenant, seq, line)?;
        }
    }
    rows.finish()?;
    Ok(Outcome::Ok)
}

/// An entry line's chain and seq (for the CSV and table rows).
fn tenant_seq(line: &[u8]) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
    (
        v["tenant_id"].as_str().unwrap_or("").to_owned(),
        v["seq"].as_u64().unwrap_or(0),
    )
}

pub fn verify(
    r: &RemoteArgs,
    tenant: Option<&str>,
    all: bool,
    format: TextOrJson,
) -> Result<Outcome> {
    let (c, rt) = client(r)?;
    let report = rt.block_on(c.verify(tenant))?;
    let ok = report["status"] == "ok";
    match format {
        TextOrJson::Json => println!("{report}"),
        TextOrJson::Text => {
            println!("{}", report["summary"].as_str().unwrap_or("(no summary)"));
            let findings = report["findings"].as_array().cloned().unwrap_or_default();
            for f in findings.iter().take(if all { usize::MAX } else { 0 }) {
                println!(
                    "  {:<16} entry {:>11}  {:<24} {}",
                    f["tenant_id"].as_str().unwrap_or("-"),
                    f["seq"],
                    f["kind"].as_str().unwrap_or(""),
                    f["message"].as_str().unwrap_or("")
                );
            }
            if !all && report["findings_total"].as_u64().unwrap_or(0) > 1 {
                println!(
                    "{} problems found in all; run with --all to list them.",
                    report["findings_total"]
                );
            }
            for ch in report["chains"].as_array().cloned().unwrap_or_default() {
                let cps = ch["checkpoints_verified"].as_u64().unwrap_or(0);
                println!(
                    "  chain {:<16} {:>11} entries, {cps} checkpoint{} verified (largest: {}), head {}",
                    ch["tenant_id"].as_str().unwrap_or(""),
                    ch["entries"],
                    if cps == 1 { "" } else { "s" },
                    ch["largest_checkpoint"],
                    ch["head"].as_str().unwrap_or("")
                );
            }
            println!(
                "  verified by the service at {}",
                r.server.as_deref().unwrap_or("")
            );
        }
    }
    Ok(if ok {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

pub fn checkpoint(
    r: &RemoteArgs,
    tenant: Option<&str>,
    sign_now: bool,
    format: TextOrJson,
) -> Result<Outcome> {
    let (c, rt) = client(r)?;
    let cp = if sign_now {
        rt.block_on(c.sign_checkpoint(tenant))?
    } else {
        rt.block_on(c.latest_checkpoint(tenant))?
    };
    match format {
        TextOrJson::Text => print!("{}", cp.note),
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({"tenant_id": cp.tenant_id, "tree_size": cp.size, "timestamp": cp.timestamp, "note": cp.note})
        ),
    }
    Ok(Outcome::Ok)
}

pub fn prove(
    r: &RemoteArgs,
    tenant: Option<&str>,
    entry_id: Option<&str>,
    consistency: Option<&Path>,
    output: Option<&Path>,
    format: crate::cli::ProofFormat,
) -> Result<Outcome> {
    if entry_id.is_none() && format != crate::cli::ProofFormat::Json {
        bail!("--format tlog-proof proves one entry: give --entry-id");
    }
    let (c, rt) = client(r)?;
    let doc = match (entry_id, consistency) {
        (Some(id), _) => {
            let json = rt.block_on(c.inclusion_proof(id, tenant))?;
            let proof: blackbox_core::proof::InclusionProof = serde_json::from_str(&json)
                .map_err(|e| anyhow!("the service's inclusion proof is unreadable: {e}"))?;
            crate::cmd::proofs::inclusion_text(&proof, format)?
        }
        (None, Some(old_path)) => {
            let old_text = std::fs::read_to_string(old_path)
                .with_context(|| format!("cannot read --consistency {}", old_path.display()))?;
            let old = SignedCheckpoint::parse(&old_text)
                .map_err(|e| anyhow!("--consistency {}: {e}", old_path.display()))?;
            let doc = rt.block_on(c.consistency_proof(old.checkpoint.size, None, tenant))?;
            // The service proves from its own checkpoint of that size: it must be the one kept.
            let v: serde_json::Value = serde_json::from_str(&doc)?;
            let theirs = SignedCheckpoint::parse(v["old_checkpoint"].as_str().unwrap_or(""))
                .map_err(|e| anyhow!("the service's old checkpoint is unreadable: {e}"))?;
            if theirs.checkpoint.root != old.checkpoint.root {
                eprintln!(
                    "TAMPERED — the service's checkpoint at size {} has a different root than yours (history rewritten)",
                    old.checkpoint.size
                );
                return Ok(Outcome::CheckFailed);
            }
            doc
        }
        (None, None) => bail!("give --entry-id ID or --consistency OLD_CHECKPOINT"),
    };
    match output {
        None => println!("{doc}"),
        Some(p) => std::fs::write(p, format!("{doc}\n"))
            .with_context(|| format!("writing {}", p.display()))?,
    }
    Ok(Outcome::Ok)
}

/// `prove --agent-id|--session-id|--trace-id … --server`: a log slice made by the service.
pub fn prove_slice(
    r: &RemoteArgs,
    tenant: Option<&str>,
    selection: &blackbox_core::proof::SliceSelection,
    limit: usize,
    output: Option<&Path>,
) -> Result<Outcome> {
    let (c, rt) = client(r)?;
    let doc = rt.block_on(c.log_slice(selection, limit, tenant))?;
    match output {
        None => println!("{doc}"),
        Some(p) => std::fs::write(p, format!("{doc}\n"))
            .with_context(|| format!("writing {}", p.display()))?,
    }
    Ok(Outcome::Ok)
}

/// Files, manifest (name, text) and summary lines of an export made by the service.
pub type RemoteExport = (Vec<(String, Vec<u8>)>, (String, String), Vec<String>);

pub fn export(
    r: &RemoteArgs,
    job: &blackbox_export::produce::Job,
    bundle: bool,
) -> Result<RemoteExport> {
    use base64::Engine as _;
    let (c, rt) = client(r)?;
    let mut params: Vec<(&str, String)> = vec![
        ("standard", job.control.standard().to_owned()),
        ("control", job.control.control().to_owned()),
        ("output", job.output_name.clone()),
        ("include_data_subjects", job.data_subjects.to_string()),
        ("sample_size", job.sample_size.to_string()),
    ];
    if bundle {
        params.push(("bundle", "true".to_owned()));
    }
    if let Some(p) = &job.period {
        params.push(("period", p.clone()));
    }
    if let Some(t) = &job.tenant {
        params.push(("tenant_id", t.clone()));
    }
    if let Some(s) = &job.seed {
        params.push(("seed", s.clone()));
    }
    let v = rt.block_on(c.export(&params))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut files = Vec::new();
    for f in v["files"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = f["name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() || name.contains('/') || name.contains('\\') || name == ".." {
            bail!("the service sent an unusable file name {name:?}");
        }
        let bytes = b64
            .decode(f["base64"].as_str().unwrap_or_default())
            .map_err(|e| anyhow!("the service sent {name} in bad base64: {e}"))?;
        files.push((name, bytes));
    }
    let mname = v["manifest"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if mname.is_empty() || mname.contains('/') || mname.contains('\\') {
        bail!("the service sent an unusable manifest name {mname:?}");
    }
    let mtext = v["manifest"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = &v["summary"];
    let summary = vec![
        format!(
            "period:           {} to {}, tenant {}",
            v["period"]["start"].as_str().unwrap_or(""),
            v["period"]["end"].as_str().unwrap_or(""),
            s["tenant_id"].as_str().unwrap_or("")
        ),
        format!(
            "log completeness: {}% of expected entries present ({} of {})",
            s["completeness"].as_f64().unwrap_or(0.0),
            s["present"],
            s["expected"]
        ),
        format!(
            "integrity:        {}",
            s["integrity"].as_str().unwrap_or("")
        ),
        format!(
            "anomaly count:    {} events flagged for review ({} resolved)",
            s["anomalies"], s["resolved"]
        ),
        format!(
            "retention:        the log reaches back {} as of {} (required: {} days) — {}",
            blackbox_export::report::count_of(
                s["oldest_age_days"].as_u64().unwrap_or(0),
                "day",
                "days"
            ),
            s["retention_as_of"].as_str().unwrap_or("?"),
            s["required_days"],
            if s["retention_met"].as_bool() == Some(true) {
                "met"
            } else {
                "NOT MET"
            }
        ),
        format!(
            "made by the service at {}",
            r.server.as_deref().unwrap_or("")
        ),
    ];
    Ok((files, (mname, mtext), summary))
}
