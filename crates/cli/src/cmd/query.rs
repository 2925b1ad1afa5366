//! `blackbox query`: the audit trail for incident forensics, streamed.

use std::io::{BufWriter, Write};

use anyhow::{Result, anyhow};
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::query::{COLUMNS, flatten};
use blackbox_store::{Query, Store as _, StoreError};

use crate::Outcome;
use crate::cli::{QueryFormat, TimeBasis};

pub struct Filters {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tool: Option<String>,
    pub event_type: Option<String>,
    /// `payload.trace_id`.
    pub trace_id: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub limit: Option<u64>,
    /// `service`, `token`, `local`, `token:<id>` or `local:<user>`.
    pub origin: Option<String>,
    /// Which time `--start`/`--end` bound: the writer's (default) or the agent's claim.
    pub time: TimeBasis,
}

pub use blackbox_ledger::query::PostFilter;

/// The filters of `f` the store cannot apply (origin, bounds on the writer's time, trace), its
/// bounds already parsed.
///
/// # Errors
/// A bad `--origin`.
pub fn post_filter(f: &Filters, start_ms: Option<i64>, end_ms: Option<i64>) -> Result<PostFilter> {
    if let Some(o) = &f.origin {
        check_origin_filter(o)?;
    }
    Ok(PostFilter {
        origin: f.origin.clone(),
        written: (f.time == TimeBasis::Written && (start_ms.is_some() || end_ms.is_some()))
            .then(|| (start_ms.unwrap_or(i64::MIN), end_ms.unwrap_or(i64::MAX))),
        trace_id: f.trace_id.clone(),
    })
}

/// Checks an `--origin` filter.
///
/// # Errors
/// Not one of the accepted forms.
pub fn check_origin_filter(f: &str) -> Result<()> {
    blackbox_ledger::query::check_origin_filter(f).map_err(|e| anyhow!("--origin {e}"))
}

/// RFC 3339, or a bare date: its first millisecond (`end == false`) or its last (`end == true`).
pub fn parse_bound(flag: &str, s: &str, end: bool) -> Result<i64> {
    blackbox_core::entry::parse_time_bound(s, end).map_err(|e| anyhow!("{flag} {s:?}: {e}"))
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Io(e)
}

pub fn run(
    dir: &DataDir,
    f: Filters,
    include_archive: bool,
    format: QueryFormat,
) -> Result<Outcome> {
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
    let post = post_filter(&f, start_ms, end_ms)?;
    let (start_ms, end_ms) = if f.time == TimeBasis::Written {
        (None, None)
    } else {
        (start_ms, end_ms)
    };
    let store = blackbox_ledger::open::open_reader(dir)?;
    let archive = if include_archive {
        let config = blackbox_archive::settings::RetentionConfig::load(&dir.config_path())?;
        Some(blackbox_archive::Archive::open(
            &config.archive_url,
            dir.root(),
        )?)
    } else {
        None
    };
    let q = Query {
        limit: if post.active() { None } else { f.limit },
        tenant_id: f.tenant_id,
        agent_id: f.agent_id,
        session_id: f.session_id,
        tool: f.tool,
        event_type: f.event_type,
        start_ms,
        end_ms,
        after: None,
    };
    let stdout = std::io::stdout();
    let mut rows = RowWriter::start(BufWriter::new(stdout.lock()), format)?;
    let limit = f.limit;
    let mut emit = |tenant: &str, seq: u64, line: &[u8]| -> Result<bool, StoreError> {
        if !post.keep(line) {
            return Ok(true);
        }
        rows.row(tenant, seq, line).map_err(io_err)?;
        Ok(limit.is_none_or(|l| rows.count() < l))
    };
    let mut result = Ok(());
    let mut more = true;
    if let Some(archive) = &archive {
        let reader = blackbox_archive::run::ArchiveReader::new(archive, &store)?;
        result = blackbox_archive::query::query(&reader, &q, &mut |t, s, l| {
            let go = emit(t, s, l)?;
            more = go;
            Ok(go)
        })
        .map_err(|e| match e {
            blackbox_archive::ArchiveError::Store(e) => e,
            other => StoreError::Io(std::io::Error::other(other.to_string())),
        });
    }
    if result.is_ok() && more && q.limit != Some(0) {
        // After archive matches the limit is counted by `emit`, which stops the query.
        let mut q2 = q.clone();
        if archive.is_some() || post.active() {
            q2.limit = None;
        }
        result = store.query(&q2, &mut |e| emit(&e.tenant_id, e.seq, &e.line));
    }
    match result {
        Ok(()) => {}
        // A closed pipe (`| head`) ends the output quietly.
        Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(Outcome::Ok);
        }
        Err(e) => return Err(e.into()),
    }
    match rows.finish() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Ok),
        r => Ok(r.map(|()| Outcome::Ok)?),
    }
}

/// Writes query rows in one format (`--format`), the same for a data directory and a service.
pub struct RowWriter<W: Write> {
    out: W,
    format: QueryFormat,
    count: u64,
    csv_buf: Vec<u8>,
}

impl<W: Write> RowWriter<W> {
    /// Writes the format's header (`[`, the CSV columns, the table header).
    ///
    /// # Errors
    /// Writing failed.
    pub fn start(mut out: W, format: QueryFormat) -> std::io::Result<Self> {
        let mut csv_buf = Vec::new();
        match format {
            QueryFormat::Json => out.write_all(b"[")?,
            QueryFormat::Csv => {
                csv_row(&mut csv_buf, COLUMNS)?;
                out.write_all(&csv_buf)?;
            }
            QueryFormat::Table => table_header(&mut out)?,
            QueryFormat::Jsonl => {}
        }
        Ok(Self {
            out,
            format,
            count: 0,
            csv_buf,
        })
    }

    /// One entry line.
    ///
    /// # Errors
    /// Writing failed.
    pub fn row(&mut self, tenant: &str, seq: u64, line: &[u8]) -> std::io::Result<()> {
        match self.format {
            QueryFormat::Jsonl => {
                self.out.write_all(line)?;
                self.out.write_all(b"\n")?;
            }
            QueryFormat::Json => {
                if self.count > 0 {
                    self.out.write_all(b",\n")?;
                }
                self.out.write_all(line)?;
            }
            QueryFormat::Csv => {
                csv_row(&mut self.csv_buf, flatten(tenant, seq, line))?;
                self.out.write_all(&self.csv_buf)?;
            }
            QueryFormat::Table => table_row(&mut self.out, tenant, seq, line)?,
        }
        self.count += 1;
        Ok(())
    }

    /// Rows written so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Closes the JSON array, flushes, and for the table says how many rows (on stderr).
    ///
    /// # Errors
    /// Writing failed.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.format == QueryFormat::Json {
            self.out.write_all(b"]\n")?;
        }
        self.out.flush()?;
        if self.format == QueryFormat::Table {
            eprintln!(
                "{} entr{}",
                blackbox_core::ids::group_thousands(self.count),
                if self.count == 1 { "y" } else { "ies" }
            );
        }
        Ok(())
    }
}

/// `buf` = one CSV record.
fn csv_row<I, T>(buf: &mut Vec<u8>, record: I) -> std::io::Result<()>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    buf.clear();
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .buffer_capacity(1024)
        .from_writer(buf);
    w.write_record(record).map_err(std::io::Error::other)?;
    w.flush()
}

/// The table view's header line.
pub fn table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24}  {:<12}  {:>8}  {:<24}  {:<16}  {:<14}  {:<18}  {:<7}  {:<14}  ORIGIN",
        "WRITTEN", "TENANT", "SEQ", "AGENT", "SESSION", "TYPE", "TOOL", "ALLOWED", "MODEL"
    )
}

/// One entry as a line of the table view.
pub fn table_row(out: &mut impl Write, tenant: &str, seq: u64, line: &[u8]) -> std::io::Result<()> {
    const COLS: [&str; 11] = [
        "written_at",
        "tenant_id",
        "seq",
        "agent_id",
        "session_id",
        "event_type",
        "tool_name",
        "allowed",
        "model",
        "origin",
        "timestamp",
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
    // Version-1 entries have no `written_at`: their claimed time is shown, and no origin.
    let time = if v[0].is_empty() { v[10] } else { v[0] };
    let origin = if v[9].is_empty() { "-" } else { v[9] };
    writeln!(
        out,
        "{:<24}  {:<12}  {:>8}  {:<24}  {:<16}  {:<14}  {:<18}  {:<7}  {:<14}  {}",
        time, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], origin
    )
}
