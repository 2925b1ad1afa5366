//! `blackbox query`: the audit trail for incident forensics, streamed.

use std::io::{BufWriter, Write};

use anyhow::{Result, anyhow};
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::query::{COLUMNS, flatten};
use blackbox_store::{Query, Store as _, StoreError};

use crate::Outcome;
use crate::cli::QueryFormat;

pub struct Filters {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tool: Option<String>,
    pub event_type: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub limit: Option<u64>,
}

/// RFC 3339, or a bare date: its first millisecond (`end == false`) or its last (`end == true`).
pub fn parse_bound(flag: &str, s: &str, end: bool) -> Result<i64> {
    blackbox_core::entry::parse_time_bound(s, end).map_err(|e| anyhow!("{flag} {s:?}: {e}"))
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Io(e)
}

pub fn run(dir: &DataDir, f: Filters, format: QueryFormat) -> Result<Outcome> {
    let start_ms = f
        .start
        .as_deref()
        .map(|s| parse_bound("--start", s, false))
        .transpose()?;
    let end_ms = f
        .end
        .as_deref()
        .map(|s| parse_bound("--end", s, true))
        .transpose()?;
    if let (Some(a), Some(b)) = (start_ms, end_ms)
        && a > b
    {
        anyhow::bail!("--start is after --end");
    }
    let store = blackbox_ledger::open::open_reader(dir)?;
    let q = Query {
        tenant_id: f.tenant_id,
        agent_id: f.agent_id,
        session_id: f.session_id,
        tool: f.tool,
        event_type: f.event_type,
        start_ms,
        end_ms,
        limit: f.limit,
        after: None,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let result = match format {
        QueryFormat::Jsonl => store.query(&q, &mut |e| {
            out.write_all(&e.line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(io_err)?;
            count += 1;
            Ok(true)
        }),
        QueryFormat::Json => {
            out.write_all(b"[").map_err(|e| anyhow!(e))?;
            let r = store.query(&q, &mut |e| {
                if count > 0 {
                    out.write_all(b",\n").map_err(io_err)?;
                }
                out.write_all(&e.line).map_err(io_err)?;
                count += 1;
                Ok(true)
            });
            out.write_all(b"]\n").map_err(|e| anyhow!(e))?;
            r
        }
        QueryFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(COLUMNS).map_err(|e| anyhow!(e))?;
            let r = store.query(&q, &mut |e| {
                w.write_record(flatten(&e.tenant_id, e.seq, &e.line))
                    .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
                count += 1;
                Ok(true)
            });
            w.flush().map_err(|e| anyhow!(e))?;
            r
        }
        QueryFormat::Table => {
            table_header(&mut out)?;
            store.query(&q, &mut |e| {
                table_row(&mut out, &e.tenant_id, e.seq, &e.line).map_err(io_err)?;
                count += 1;
                Ok(true)
            })
        }
    };
    match result {
        Ok(()) => {}
        // A closed pipe (`| head`) ends the output quietly.
        Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(Outcome::Ok);
        }
        Err(e) => return Err(e.into()),
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Outcome::Ok),
        r => r?,
    }
    if format == QueryFormat::Table {
        eprintln!(
            "{} entr{}",
            blackbox_core::ids::group_thousands(count),
            if count == 1 { "y" } else { "ies" }
        );
    }
    Ok(Outcome::Ok)
}

/// The table view's header line.
pub fn table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24}  {:<12}  {:>8}  {:<24}  {:<16}  {:<14}  {:<18}  {:<7}  MODEL",
        "TIME", "TENANT", "SEQ", "AGENT", "SESSION", "TYPE", "TOOL", "ALLOWED"
    )
}

/// One entry as a line of the table view.
pub fn table_row(out: &mut impl Write, tenant: &str, seq: u64, line: &[u8]) -> std::io::Result<()> {
    const COLS: [&str; 9] = [
        "timestamp",
        "tenant_id",
        "seq",
        "agent_id",
        "session_id",
        "event_type",
        "tool_name",
        "allowed",
        "model",
    ];
    let row = flatten(tenant, seq, line);
    let v: Vec<&str> = COLS
        .iter()
        .map(|c| {
            COLUMNS
                .iter()
                .position(|x| x == c)
                .and_then(|i| row.get(i))
                .map_or("", String::as_str)
        })
        .collect();
    writeln!(
        out,
        "{:<24}  {:<12}  {:>8}  {:<24}  {:<16}  {:<14}  {:<18}  {:<7}  {}",
        v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]
    )
}
