//! Queries over archived entries (`query --include-archive`): the same filters as the store's
//! indexed query, read segment by segment in chain order.

use std::io::BufRead as _;

use blackbox_ledger::query::{COLUMNS, flatten};
use blackbox_store::{Query, StoreError};

use crate::error::ArchiveError;
use crate::run::ArchiveReader;

/// What [`query`] calls per match: (tenant, seq, line) → go on?
pub type EntryVisitor<'a> = dyn FnMut(&str, u64, &[u8]) -> Result<bool, StoreError> + 'a;

/// Streams the archived entries matching `q` (every filter but the cursor and the limit),
/// segment by segment in chain order; segments outside the time range are not read. Stops when
/// `f` returns `false`.
///
/// # Errors
/// Missing or altered segments, unreadable entries, and the errors of `f` (as
/// [`ArchiveError::Store`]).
pub fn query(
    reader: &ArchiveReader<'_>,
    q: &Query,
    f: &mut EntryVisitor<'_>,
) -> Result<(), ArchiveError> {
    let tool_col = COLUMNS.iter().position(|c| *c == "tool_name");
    for (tenant, segments) in &reader.segments {
        if q.tenant_id.as_ref().is_some_and(|t| t != tenant) {
            continue;
        }
        for seg in segments {
            if q.start_ms.is_some_and(|s| seg.last_ts_ms < s)
                || q.end_ms.is_some_and(|e| seg.first_ts_ms > e)
            {
                continue;
            }
            let mut r = std::io::BufReader::new(reader.open_segment(seg)?);
            let mut line = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).map_err(StoreError::Io)? == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if !line.starts_with(b"{\"agent_id\":") {
                    continue; // checkpoint, personal and anchor records
                }
                // The lean scanner first; the full parser for the lines it declines.
                let view;
                let (seq, agent, session, event_type, ts) =
                    match blackbox_core::line_scan::scan(&line) {
                        Some(e) => (
                            e.seq,
                            e.agent_id,
                            e.session_id,
                            e.event_type,
                            e.timestamp_ms,
                        ),
                        None => {
                            view = blackbox_core::entry::EntryView::parse(&line).map_err(|e| {
                                ArchiveError::Object {
                                    object: seg.object.clone(),
                                    message: format!("an entry cannot be read: {e}"),
                                }
                            })?;
                            (
                                view.seq,
                                &*view.agent_id,
                                &*view.session_id,
                                &*view.event_type,
                                view.timestamp_ms,
                            )
                        }
                    };
                let keep = q.agent_id.as_deref().is_none_or(|a| a == agent)
                    && q.session_id.as_deref().is_none_or(|s| s == session)
                    && q.event_type.as_deref().is_none_or(|t| t == event_type)
                    && q.start_ms.is_none_or(|s| ts >= s)
                    && q.end_ms.is_none_or(|x| ts <= x);
                if !keep {
                    continue;
                }
                if let Some(tool) = &q.tool {
                    let row = flatten(tenant, seq, &line);
                    if tool_col.and_then(|i| row.get(i)) != Some(tool) {
                        continue;
                    }
                }
                if !f(tenant, seq, &line)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
