//! `GET /v1/entries` (a query, paged or streamed, as JSONL, JSON or CSV) and
//! `GET /v1/entries/{entry_id}` (one entry).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use blackbox_api::entries::EntryRecord;
use blackbox_core::entry::parse_entry_id;
use blackbox_store::{Query as StoreQuery, StoredEntry};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{Caller, Read};
use super::input::{PathParam, decode_cursor, encode_cursor, params, parse_bound};
use super::shares::stream_share;
use super::with_reader;
use crate::AppState;
use crate::error::ApiError;

/// Most rows of one page (`limit`).
const MAX_PAGE: u64 = 10_000;

/// Rows an unpaged answer reads per read transaction.
const STREAM_SLICE: usize = 1000;

/// How long a streamed answer waits for the client to take the next chunk.
const STREAM_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A page stops after this many bytes of entry lines (its cursor continues after it).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// With a filter read from the rows (`trace_id`, `origin`, `time=written`), a page stops
/// after reading this many rows: its cursor continues after the last one read, so a page may
/// hold fewer rows than `limit`, or none, and a cursor.
const MAX_SCANNED: usize = 100_000;

/// Query parameters of `GET /v1/entries`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EntriesParams {
    tenant_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    tool: Option<String>,
    event_type: Option<String>,
    trace_id: Option<String>,
    origin: Option<String>,
    time: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u64>,
    format: Option<String>,
    cursor: Option<String>,
    after_seq: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Json,
    Csv,
}

fn entry_ts(line: &[u8]) -> i64 {
    blackbox_core::line_scan::scan(line).map_or(0, |e| e.timestamp_ms)
}

/// Streams rows produced by a blocking producer.
fn stream_body(
    content_type: &'static str,
    next_cursor: Option<String>,
    produce: impl FnOnce(&tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || produce(&tx));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = next_cursor
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert("blackbox-next-cursor", v);
    }
    resp
}

fn row_bytes(format: Format, e: &StoredEntry, first: bool) -> Vec<u8> {
    match format {
        Format::Jsonl => {
            let mut v = e.line.clone();
            v.push(b'\n');
            v
        }
        Format::Json => {
            let mut v = Vec::with_capacity(e.line.len() + 2);
            if !first {
                v.push(b',');
            }
            v.extend_from_slice(&e.line);
            v
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(blackbox_ledger::query::flatten(
                &e.tenant_id,
                e.seq,
                &e.line,
            ));
            w.into_inner().unwrap_or_default()
        }
    }
}

fn csv_header() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(blackbox_ledger::query::COLUMNS);
    w.into_inner().unwrap_or_default()
}

/// `GET /v1/entries`.
pub(super) async fn query(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let p: EntriesParams = params(&uri)?;
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let format = match p.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Format::Jsonl,
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("format={other:?}: use jsonl, json or csv"),
            ));
        }
    };
    if p.limit == Some(0) || p.limit.is_some_and(|l| l > MAX_PAGE) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let start_ms = p
        .start
        .as_deref()
        .map(|s| parse_bound("start", s, false))
        .transpose()?;
    let end_ms = p
        .end
        .as_deref()
        .map(|s| parse_bound("end", s, true))
        .transpose()?;
    let cursor = p.cursor.as_deref().map(decode_cursor).transpose()?;
    if p.trace_id
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.len() > 256)
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "trace_id: 1 to 256 characters",
        ));
    }
    if let Some(o) = &p.origin {
        blackbox_ledger::query::check_origin_filter(o)
            .map_err(|e| ApiError::bad_request("invalid_parameter", format!("origin={e}")))?;
    }
    let written = match p.time.as_deref() {
        None | Some("claimed") => false,
        Some("written") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "time={other:?}: claimed (start and end bound the agent's timestamp, the default) or written (the service's written_at)"
                ),
            ));
        }
    };
    // Filters the store's indexes do not apply, read from each row the others let through
    // (as `blackbox query` applies them).
    let post = blackbox_ledger::query::PostFilter {
        origin: p.origin.clone(),
        written: (written && (start_ms.is_some() || end_ms.is_some()))
            .then(|| (start_ms.unwrap_or(i64::MIN), end_ms.unwrap_or(i64::MAX))),
        trace_id: p.trace_id.clone(),
    };
    let (start_ms, end_ms) = if written {
        (None, None)
    } else {
        (start_ms, end_ms)
    };
    if post.active() && p.after_seq.is_some() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "trace_id, origin and time=written cannot be combined with after_seq (tailing returns every entry)",
        ));
    }
    let post_keep = move |e: &StoredEntry| post.keep(&e.line);
    let content_type = match format {
        Format::Jsonl => "application/x-ndjson",
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let readers = std::sync::Arc::clone(&state.readers);
    // Tailing a chain in seq order.
    if let Some(after) = p.after_seq {
        let Some(tenant) = tenant else {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "after_seq needs tenant_id with an admin token",
            ));
        };
        let limit = p.limit.unwrap_or(MAX_PAGE);
        let rows = with_reader(&state, move |r| {
            let mut rows = Vec::new();
            let Some(from) = after.checked_add(1) else {
                return Ok(rows);
            };
            let mut bytes = 0usize;
            r.scan(&tenant, from, after.saturating_add(limit), &mut |e| {
                bytes += e.line.len();
                rows.push(e);
                Ok(bytes < MAX_PAGE_BYTES)
            })?;
            Ok(rows)
        })
        .await?;
        let next = rows.last().map(|e| e.seq.to_string());
        return Ok(page_response(
            format,
            content_type,
            &rows,
            next,
            "blackbox-next-after-seq",
        ));
    }
    // The store skips the rows up to the cursor without reading them.
    let q = StoreQuery {
        tenant_id: tenant,
        agent_id: p.agent_id,
        session_id: p.session_id,
        tool: p.tool,
        event_type: p.event_type,
        start_ms,
        end_ms,
        limit: None,
        after: cursor.map(|(ts_ms, seq, tenant_id)| blackbox_store::After {
            ts_ms,
            tenant_id,
            seq,
        }),
    };
    // An unpaged answer holds a blocking thread while its client reads: a few per tenant, so
    // that one tenant's slow readers cannot take every thread.
    let stream_slot = match p.limit {
        None => Some(stream_share(&state, &caller)?),
        Some(_) => None,
    };
    match p.limit {
        Some(limit) => {
            // A page: read it (bounded), then answer with the cursor of its last row.
            let (rows, more, scanned_to) = with_reader(&state, move |r| {
                let mut rows = Vec::new();
                let want = usize::try_from(limit).unwrap_or(usize::MAX);
                let mut bytes = 0usize;
                let mut more = false;
                let mut scanned = 0usize;
                let mut last = None;
                r.query(&q, &mut |e| {
                    // The page ends after `limit` rows or MAX_PAGE_BYTES of lines; one more
                    // row tells whether anything follows.
                    if rows.len() == want || (bytes >= MAX_PAGE_BYTES && !rows.is_empty()) {
                        more = true;
                        return Ok(false);
                    }
                    scanned += 1;
                    if !post_keep(&e) {
                        // A post-filter reads rows it does not return: a page stops after
                        // MAX_SCANNED of them, with a cursor after the last one read.
                        if scanned >= MAX_SCANNED {
                            more = true;
                            last = Some(encode_cursor(entry_ts(&e.line), &e.tenant_id, e.seq));
                            return Ok(false);
                        }
                        return Ok(true);
                    }
                    bytes += e.line.len();
                    rows.push(e);
                    Ok(true)
                })?;
                Ok((rows, more, last))
            })
            .await?;
            let rows = rows.as_slice();
            let next = if more {
                scanned_to.or_else(|| {
                    rows.last()
                        .map(|e| encode_cursor(entry_ts(&e.line), &e.tenant_id, e.seq))
                })
            } else {
                None
            };
            Ok(page_response(
                format,
                content_type,
                rows,
                next,
                "blackbox-next-cursor",
            ))
        }
        None => Ok(stream_body(content_type, None, move |tx| {
            let _slot = stream_slot;
            // A reader that stops reading must not hold anything for long: each slice of the
            // answer is its own short read transaction, and a send that waits more than
            // STREAM_SEND_TIMEOUT ends the answer.
            let handle = tokio::runtime::Handle::current();
            let send = |b: Vec<u8>| {
                handle
                    .block_on(tokio::time::timeout(
                        STREAM_SEND_TIMEOUT,
                        tx.send(Ok(Bytes::from(b))),
                    ))
                    .is_ok_and(|r| r.is_ok())
            };
            let Ok(r) = readers.get() else {
                let _ = tx.blocking_send(Err(std::io::Error::other("store unavailable")));
                return;
            };
            let head = match format {
                Format::Json => b"{\"entries\":[".to_vec(),
                Format::Csv => csv_header(),
                Format::Jsonl => Vec::new(),
            };
            if !head.is_empty() && !send(head) {
                return;
            }
            let mut first = true;
            let mut page_q = q;
            loop {
                let mut page = Vec::new();
                let res = r.query(&page_q, &mut |e| {
                    page.push(e);
                    Ok(page.len() < STREAM_SLICE)
                });
                if res.is_err() {
                    let _ = tx.blocking_send(Err(std::io::Error::other("the query failed")));
                    return;
                }
                let Some(last) = page.last() else { break };
                page_q.after = Some(blackbox_store::After {
                    ts_ms: entry_ts(&last.line),
                    tenant_id: last.tenant_id.clone(),
                    seq: last.seq,
                });
                let mut buf = Vec::with_capacity(64 << 10);
                for e in page.iter().filter(|e| post_keep(e)) {
                    buf.extend_from_slice(&row_bytes(format, e, first));
                    first = false;
                    if buf.len() >= 60 << 10 {
                        let chunk = std::mem::replace(&mut buf, Vec::with_capacity(64 << 10));
                        if !send(chunk) {
                            return;
                        }
                    }
                }
                if !buf.is_empty() && !send(buf) {
                    return;
                }
                if page.len() < STREAM_SLICE {
                    break;
                }
            }
            if format == Format::Json {
                send(b"],\"next_cursor\":null}".to_vec());
            }
        })),
    }
}

fn page_response(
    format: Format,
    content_type: &'static str,
    rows: &[StoredEntry],
    next: Option<String>,
    next_header: &'static str,
) -> Response {
    let mut body = Vec::new();
    match format {
        Format::Json => {
            body.extend_from_slice(b"{\"entries\":[");
            for (i, e) in rows.iter().enumerate() {
                body.extend_from_slice(&row_bytes(format, e, i == 0));
            }
            body.extend_from_slice(b"],\"next_cursor\":");
            body.extend_from_slice(
                serde_json::to_string(&next)
                    .unwrap_or_else(|_| "null".into())
                    .as_bytes(),
            );
            body.push(b'}');
        }
        Format::Csv => {
            body.extend_from_slice(&csv_header());
            for e in rows {
                body.extend_from_slice(&row_bytes(format, e, false));
            }
        }
        Format::Jsonl => {
            for e in rows {
                body.extend_from_slice(&row_bytes(format, e, false));
            }
        }
    }
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = next
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(next_header, v);
    }
    resp
}

/// `GET /v1/entries/{entry_id}`.
pub(super) async fn one(
    State(state): State<AppState>,
    PathParam(entry_id): PathParam,
    caller: Caller<Read>,
) -> Result<Response, ApiError> {
    let id = parse_entry_id(&entry_id)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("entry id: {e}")))?;
    let found = with_reader(&state, move |r| Ok(r.entry_by_id(id.as_bytes())?)).await?;
    // Another tenant's entry is "not found", not "forbidden": its existence is not disclosed.
    let visible = |e: &StoredEntry| {
        caller.token.scopes.admin || caller.token.tenant_id.as_deref() == Some(e.tenant_id.as_str())
    };
    let Some(e) = found.filter(visible) else {
        return Err(ApiError::not_found(format!("no entry {entry_id}")));
    };
    let line = String::from_utf8_lossy(&e.line).into_owned();
    let parsed: Value = serde_json::from_slice(&e.line).unwrap_or(Value::Null);
    Ok(axum::Json(EntryRecord {
        entry_hash: blackbox_core::Hash::digest(&e.line).to_prefixed(),
        tenant_id: e.tenant_id,
        seq: e.seq,
        line,
        entry: parsed,
    })
    .into_response())
}
