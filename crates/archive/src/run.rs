//! A retention run: archive what is older than each tenant's hot window, expire archive
//! segments past the archive retention. See the crate docs for the guarantees.

use crate::settings::RetentionConfig;
use blackbox_core::Hash;
use blackbox_core::entry::NormalizedEvent;
use blackbox_core::entry::RedactionPolicy;
use blackbox_core::keys::Keyring;
use blackbox_core::note::NoteVerifier;
use blackbox_ledger::anchor::anchor_at;
use blackbox_ledger::error::LedgerError;
use blackbox_store::{ArchiveSegment, SegmentState, Store, StoredAnchor};
use serde::Serialize;
use serde_json::json;

use crate::error::ArchiveError;
use crate::objects::Archive;
use crate::segment;

const DAY_MS: i64 = 86_400_000;

/// One store transaction of a run: remove archived entries and record the anchor (when
/// `anchor` is set), record the segment, and append the event recording it in the chain.
#[derive(Debug)]
pub struct Staged {
    /// New anchor (archiving), or `None` (expiry).
    pub anchor: Option<StoredAnchor>,
    /// The segment record to write, if any.
    pub segment: Option<ArchiveSegment>,
    /// Subject-index rows to delete: `(tenant, seqs)` whose personal data the archive no
    /// longer holds (an erasure rewrote or found the segment gone).
    pub forget: Option<(String, Vec<u64>)>,
    /// The chain entry that records the step, if any.
    pub event: Option<NormalizedEvent>,
}

impl Staged {
    /// Applies the step to a write batch of the writer (the CLI's and the service's commit).
    ///
    /// # Errors
    /// The store thread stopped; signing failures.
    pub fn apply(
        self,
        sink: &mut blackbox_ledger::writer::AppendSink<'_>,
        now_ms: i64,
    ) -> Result<Option<blackbox_ledger::writer::Appended>, LedgerError> {
        if let Some(a) = self.anchor {
            sink.archive_prefix(a)?;
        }
        if let Some(seg) = self.segment {
            sink.put_archive_segment(seg)?;
        }
        if let Some((tenant, seqs)) = self.forget {
            sink.forget_subjects(&tenant, seqs)?;
        }
        self.event
            .as_ref()
            .map(|ev| sink.add(ev, now_ms))
            .transpose()
    }
}

/// Applies [`Staged`] transactions to the store, all or nothing each, and lends the store for
/// reading. The CLI commits through its own writer; the service through its writer thread.
pub trait Committer {
    /// The store to read from (and to reclaim space in).
    fn store(&mut self) -> &mut dyn Store;

    /// Commits one step durably.
    ///
    /// # Errors
    /// Store or signing failures: nothing of the step is then visible.
    fn commit(&mut self, staged: Staged, now_ms: i64) -> Result<(), ArchiveError>;
}

/// What a run is given.
#[derive(Debug)]
pub struct RunOptions<'a> {
    /// The writer's clock (Unix ms).
    pub now_ms: i64,
    /// Only this tenant.
    pub tenant: Option<&'a str>,
    /// Plan only: say what would be archived and deleted, change nothing.
    pub dry_run: bool,
    /// The HMAC keyring (segments read back are checked with it when given).
    pub keys: Option<&'a Keyring>,
    /// The checkpoint public key (segments must end at a checkpoint it verifies).
    pub verifier: &'a NoteVerifier,
}

/// One segment a run archived or deleted (or would, in a dry run).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SegmentDone {
    /// Tenant.
    pub tenant_id: String,
    /// First entry.
    pub first_seq: u64,
    /// Last entry.
    pub last_seq: u64,
    /// Object path.
    pub object: String,
    /// Compressed size (0 in a dry run).
    pub bytes: u64,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    /// Segments sealed into the archive (and removed from the store).
    pub archived: Vec<SegmentDone>,
    /// Segments deleted from the archive, past their retention.
    pub deleted: Vec<SegmentDone>,
    /// Bytes of entry lines freed in the store.
    pub reclaimed_bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

fn system_event(
    tenant: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> Result<NormalizedEvent, ArchiveError> {
    let ev = json!({
        "tenant_id": tenant,
        "agent_id": "blackbox",
        "session_id": "retention",
        "event_type": event_type,
        "payload": payload,
    });
    blackbox_core::event::normalize_json(
        ev.to_string().as_bytes(),
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .map_err(|e| ArchiveError::Ledger(LedgerError::Inconsistent(e.to_string())))
}

/// The largest checkpointed size `s` with `start < s <= start + most` and `s <= head`, first
/// signed at or before `cutoff_ms`, with that checkpoint.
fn next_boundary(
    store: &dyn Store,
    tenant: &str,
    start: u64,
    most: u64,
    head: u64,
    cutoff_ms: i64,
) -> Result<Option<blackbox_store::StoredCheckpoint>, ArchiveError> {
    let mut best: Option<blackbox_store::StoredCheckpoint> = None;
    for cp in store.checkpoints(tenant)? {
        if cp.size <= start || cp.size > start.saturating_add(most) || cp.size > head {
            continue;
        }
        // The first checkpoint of a size was signed when that size was reached: every entry it
        // covers was written before then.
        if cp.ts_ms > cutoff_ms {
            continue;
        }
        if best.as_ref().is_none_or(|b| cp.size > b.size) {
            best = Some(cp);
        }
    }
    Ok(best)
}

/// Runs retention over every chain (or one tenant): archives, then expires.
///
/// # Errors
/// The first failure; what was committed before it stays (each step is complete on its own).
pub fn run(
    archive: &Archive,
    settings: &RetentionConfig,
    c: &mut dyn Committer,
    opts: &RunOptions<'_>,
) -> Result<RunReport, ArchiveError> {
    let mut report = RunReport {
        dry_run: opts.dry_run,
        ..RunReport::default()
    };
    let heads = c.store().chains()?;
    for head in heads {
        let tenant = head.tenant_id.as_str();
        if opts.tenant.is_some_and(|t| t != tenant) {
            continue;
        }
        let policy = settings.policy(tenant);
        if !opts.dry_run {
            // Finish erasure rewrites that were interrupted before their old revision went.
            for seg in c.store().retention()?.archive_segments(tenant)? {
                if seg.state == SegmentState::Live && crate::erase::revision(&seg.object) > 0 {
                    crate::erase::delete_superseded(archive, &seg)?;
                }
            }
        }
        let hot_ms = i64::try_from(policy.hot_days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS;
        let cutoff = opts.now_ms.saturating_sub(hot_ms);
        // Archive, one segment at a time.
        let mut planned_start = None;
        loop {
            let anchor = c.store().anchor(tenant)?;
            let start = planned_start.unwrap_or_else(|| anchor.as_ref().map_or(0, |a| a.size));
            let Some(cp) = next_boundary(
                c.store(),
                tenant,
                start,
                settings.segment_entries,
                head.size,
                cutoff,
            )?
            else {
                break;
            };
            let last = cp.size;
            let object = segment::object_name(tenant, start + 1, last);
            if opts.dry_run {
                report.archived.push(SegmentDone {
                    tenant_id: tenant.to_owned(),
                    first_seq: start + 1,
                    last_seq: last,
                    object,
                    bytes: 0,
                });
                planned_start = Some(last);
                continue;
            }
            let mut built = segment::build(c.store(), tenant, anchor.as_ref(), last)?;
            let compressed = std::mem::take(&mut built.compressed);
            let sha = Hash::digest(&compressed);
            let bytes = compressed.len() as u64;
            archive.put(&object, compressed)?;
            // Read back what the archive holds, and verify it, before removing anything.
            let back = archive.get(&object)?;
            segment::check(
                &object,
                back,
                &sha,
                tenant,
                start + 1,
                last,
                opts.keys,
                opts.verifier,
            )?;
            let new_anchor = anchor_at(c.store(), tenant, last, &cp)?;
            let tail_from = last - last % 256 + 1;
            let tail_hashes = if tail_from <= last {
                c.store().entry_hashes(tenant, tail_from, last)?
            } else {
                Vec::new()
            };
            let stored = StoredAnchor {
                tenant_id: tenant.to_owned(),
                size: last,
                record: new_anchor.to_line().into_bytes(),
                tail_hashes,
            };
            let seg = ArchiveSegment {
                tenant_id: tenant.to_owned(),
                first_seq: start + 1,
                last_seq: last,
                object: object.clone(),
                sha256: sha,
                bytes,
                first_ts_ms: built.first_ts_ms,
                last_ts_ms: built.last_ts_ms,
                sealed_ms: opts.now_ms,
                state: SegmentState::Live,
                state_ms: opts.now_ms,
            };
            let event = system_event(
                tenant,
                "retention_archived",
                json!({
                    "first_seq": start + 1,
                    "last_seq": last,
                    "entries": built.entries,
                    "object": object,
                    "archive": archive.url(),
                    "sha256": sha.to_prefixed(),
                    "bytes": bytes,
                    "checkpoint_size": last,
                    "hot_days": policy.hot_days,
                }),
            )?;
            c.commit(
                Staged {
                    anchor: Some(stored),
                    segment: Some(seg),
                    forget: None,
                    event: Some(event),
                },
                opts.now_ms,
            )?;
            report.archived.push(SegmentDone {
                tenant_id: tenant.to_owned(),
                first_seq: start + 1,
                last_seq: last,
                object,
                bytes,
            });
        }
        // Expire: the oldest segments whose newest entry is past hot + archive retention.
        if policy.archive_days == 0 {
            continue;
        }
        let keep_ms = i64::try_from(policy.hot_days + policy.archive_days)
            .unwrap_or(i64::MAX / DAY_MS)
            * DAY_MS;
        let expire_before = opts.now_ms.saturating_sub(keep_ms);
        for seg in c.store().retention()?.archive_segments(tenant)? {
            if seg.state == SegmentState::Deleted {
                continue;
            }
            let due = seg.state == SegmentState::Deleting || seg.last_ts_ms < expire_before;
            if !due {
                break; // only a prefix of the chain is ever deleted
            }
            let done = SegmentDone {
                tenant_id: tenant.to_owned(),
                first_seq: seg.first_seq,
                last_seq: seg.last_seq,
                object: seg.object.clone(),
                bytes: seg.bytes,
            };
            if opts.dry_run {
                report.deleted.push(done);
                continue;
            }
            if seg.state == SegmentState::Live {
                // Record the deletion in the chain first; the object goes after.
                let event = system_event(
                    tenant,
                    "retention_deleted",
                    json!({
                        "first_seq": seg.first_seq,
                        "last_seq": seg.last_seq,
                        "entries": seg.last_seq - seg.first_seq + 1,
                        "object": seg.object,
                        "archive": archive.url(),
                        "sha256": seg.sha256.to_prefixed(),
                        "newest_entry": blackbox_core::entry::format_timestamp(seg.last_ts_ms).unwrap_or_default(),
                        "retention_days": policy.hot_days + policy.archive_days,
                    }),
                )?;
                let mut s = seg.clone();
                s.state = SegmentState::Deleting;
                s.state_ms = opts.now_ms;
                c.commit(
                    Staged {
                        anchor: None,
                        segment: Some(s),
                        forget: None,
                        event: Some(event),
                    },
                    opts.now_ms,
                )?;
            }
            archive.delete(&seg.object)?;
            let mut s = seg.clone();
            s.state = SegmentState::Deleted;
            s.state_ms = opts.now_ms;
            c.commit(
                Staged {
                    anchor: None,
                    segment: Some(s),
                    forget: None,
                    event: None,
                },
                opts.now_ms,
            )?;
            report.deleted.push(done);
        }
    }
    if !opts.dry_run {
        report.reclaimed_bytes = c.store().retention_mut()?.reclaim_space()?;
    }
    Ok(report)
}

/// The live segments of a chain, in order, for `verify --include-archive` and
/// `query --include-archive`.
#[derive(Debug)]
pub struct ArchiveReader<'a> {
    /// The archive.
    pub archive: &'a Archive,
    /// Segments per tenant.
    pub segments: std::collections::BTreeMap<String, Vec<ArchiveSegment>>,
}

impl<'a> ArchiveReader<'a> {
    /// The live segments of every chain in `store`.
    ///
    /// # Errors
    /// Store failures.
    pub fn new(archive: &'a Archive, store: &dyn Store) -> Result<Self, ArchiveError> {
        let mut segments = std::collections::BTreeMap::new();
        for head in store.chains()? {
            let list: Vec<ArchiveSegment> = store
                .retention()?
                .archive_segments(&head.tenant_id)?
                .into_iter()
                .filter(|s| s.state == SegmentState::Live)
                .collect();
            segments.insert(head.tenant_id, list);
        }
        Ok(Self { archive, segments })
    }

    /// Reads and decompresses one segment, checking its digest.
    ///
    /// # Errors
    /// Missing or altered objects.
    pub fn open_segment(
        &self,
        seg: &ArchiveSegment,
    ) -> Result<Box<dyn std::io::Read + Send>, ArchiveError> {
        let bytes = self.archive.get(&seg.object)?;
        let got = Hash::digest(&bytes);
        if got != seg.sha256 {
            return Err(ArchiveError::Verify {
                object: seg.object.clone(),
                message: format!(
                    "its bytes hash to {} but the store recorded {} when it was sealed",
                    got.to_prefixed(),
                    seg.sha256.to_prefixed()
                ),
            });
        }
        segment::decompress(&seg.object, bytes)
    }
}

impl ArchiveReader<'_> {
    /// Calls `f` with each entry of `seg` in order: (seq, line, personal sidecar); stops when it
    /// returns `false`. Returns whether it went to the end.
    ///
    /// # Errors
    /// Missing or altered objects, unreadable records, and the errors of `f`.
    pub fn for_each_entry(
        &self,
        seg: &ArchiveSegment,
        f: &mut blackbox_store::LineVisitor<'_>,
    ) -> Result<bool, ArchiveError> {
        use std::io::BufRead as _;
        let io = |e: std::io::Error| ArchiveError::Object {
            object: seg.object.clone(),
            message: e.to_string(),
        };
        let mut r = std::io::BufReader::new(self.open_segment(seg)?);
        let mut line = Vec::new();
        let mut sidecar: Option<Vec<u8>> = None;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).map_err(io)? == 0 {
                return Ok(true);
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            match blackbox_ledger::jsonl::record_kind(&line) {
                blackbox_ledger::jsonl::RecordKind::Personal => {
                    let (_, _, sc) =
                        blackbox_ledger::jsonl::parse_personal_record(&line).map_err(|m| {
                            ArchiveError::Object {
                                object: seg.object.clone(),
                                message: m,
                            }
                        })?;
                    sidecar = Some(sc);
                }
                blackbox_ledger::jsonl::RecordKind::Entry => {
                    // The lean scanner declines some valid lines; the full parser reads those.
                    let seq = match blackbox_core::line_scan::scan(&line) {
                        Some(e) => e.seq,
                        None => {
                            blackbox_core::entry::EntryView::parse(&line)
                                .map_err(|e| ArchiveError::Object {
                                    object: seg.object.clone(),
                                    message: format!("an entry line cannot be read: {e}"),
                                })?
                                .seq
                        }
                    };
                    if !f(seq, &line, sidecar.take().as_deref())? {
                        return Ok(false);
                    }
                }
                _ => {}
            }
        }
    }
}

impl blackbox_ledger::verify::ArchiveSource for ArchiveReader<'_> {
    fn segments(&self, tenant: &str) -> Result<Vec<String>, LedgerError> {
        Ok(self
            .segments
            .get(tenant)
            .map(|v| v.iter().map(|s| s.object.clone()).collect())
            .unwrap_or_default())
    }

    fn open(&self, tenant: &str, name: &str) -> Result<Box<dyn std::io::Read + Send>, LedgerError> {
        let seg = self
            .segments
            .get(tenant)
            .and_then(|v| v.iter().find(|s| s.object == name))
            .ok_or_else(|| LedgerError::NotFound(format!("archive segment {name}")))?;
        self.open_segment(seg)
            .map_err(|e| LedgerError::Inconsistent(e.to_string()))
    }
}
