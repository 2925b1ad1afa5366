//! `blackbox retention status`: per tenant, what is hot, what is archived, and whether each
//! standard's retention requirement is met by the policy and by the data.

use crate::settings::{RetentionConfig, RetentionPreset};
use blackbox_store::{SegmentState, Store};
use serde::Serialize;

use crate::error::ArchiveError;

const DAY_MS: i64 = 86_400_000;

/// One standard's requirement, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    /// Standard name.
    pub standard: String,
    /// Days entries must be kept in all.
    pub keep_days: u64,
    /// Days of that they must be queryable (hot).
    pub hot_days: u64,
    /// Whether the standard itself sets the number (otherwise it is organisation-defined and
    /// the preset is Blackbox's default).
    pub set_by_standard: bool,
    /// The provision, or why there is none.
    pub source: String,
    /// Whether the policy and the data meet it.
    pub met: bool,
    /// Why not (empty when met).
    pub problems: Vec<String>,
}

/// One tenant's retention state.
#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    /// Tenant.
    pub tenant_id: String,
    /// Policy: days hot.
    pub policy_hot_days: u64,
    /// Policy: days in the archive after that (0: forever).
    pub policy_archive_days: u64,
    /// Entries in the chain.
    pub chain_size: u64,
    /// First entry still in the store (none when all are archived).
    pub oldest_hot_seq: Option<u64>,
    /// Its timestamp (RFC 3339).
    pub oldest_hot: Option<String>,
    /// Entries in the store.
    pub hot_entries: u64,
    /// First entry still in the archive.
    pub oldest_archived_seq: Option<u64>,
    /// Its segment's oldest timestamp (RFC 3339).
    pub oldest_archived: Option<String>,
    /// Live archive segments and the entries in them.
    pub archive_segments: u64,
    /// Entries in live archive segments.
    pub archived_entries: u64,
    /// Entries deleted past their retention (their deletion is recorded in the chain).
    pub deleted_entries: u64,
    /// Requirements of the standards in the policy.
    pub requirements: Vec<Requirement>,
}

fn ts(ms: i64) -> String {
    blackbox_core::entry::format_timestamp(ms).unwrap_or_else(|_| ms.to_string())
}

/// The status of every chain.
///
/// # Errors
/// Store failures.
pub fn status(
    store: &dyn Store,
    settings: &RetentionConfig,
    now_ms: i64,
) -> Result<Vec<TenantStatus>, ArchiveError> {
    let mut out = Vec::new();
    for head in store.chains()? {
        let tenant = head.tenant_id.clone();
        let policy = settings.policy(&tenant);
        let anchor = store.anchor(&tenant)?.map_or(0, |a| a.size);
        let mut oldest_hot: Option<(u64, i64)> = None;
        store.scan(&tenant, anchor + 1, anchor + 1, &mut |e| {
            if let Some(ts) = crate::segment::entry_written_ms(&e.line) {
                oldest_hot = Some((e.seq, ts));
            }
            Ok(false)
        })?;
        let segs = store.retention()?.archive_segments(&tenant)?;
        let live: Vec<_> = segs
            .iter()
            .filter(|s| s.state == SegmentState::Live)
            .collect();
        let deleted_entries: u64 = segs
            .iter()
            .filter(|s| s.state != SegmentState::Live)
            .map(|s| s.last_seq - s.first_seq + 1)
            .sum();
        let archived_entries: u64 = live.iter().map(|s| s.last_seq - s.first_seq + 1).sum();
        let oldest_archived = live.first().map(|s| (s.first_seq, s.first_ts_ms));
        let deleted_newest = segs
            .iter()
            .filter(|s| s.state != SegmentState::Live)
            .map(|s| (s.last_seq, s.last_ts_ms))
            .max_by_key(|x| x.1);
        let mut requirements = Vec::new();
        for name in &policy.standards {
            let Some(preset) = RetentionPreset::find(name) else {
                continue;
            };
            let (keep, hot) = (preset.keep_days, preset.hot_days);
            // What the number is: the standard's, or the preset's where the standard sets none.
            let std_name = if preset.set_by_standard {
                preset.name.to_owned()
            } else {
                format!("the {} preset (organisation-defined)", preset.name)
            };
            let mut problems = Vec::new();
            let total = if policy.archive_days == 0 {
                u64::MAX
            } else {
                policy.hot_days + policy.archive_days
            };
            if total < keep {
                problems.push(format!(
                    "the policy keeps entries {total} days in all; {std_name} asks for {keep}"
                ));
            }
            if policy.hot_days < hot {
                problems.push(format!(
                    "the policy keeps entries queryable {} days; {std_name} asks for {hot}",
                    policy.hot_days
                ));
            }
            // The data: nothing deleted that the standard still requires, nothing archived that
            // it requires queryable (judged by the newest entry of each segment).
            let keep_ms = i64::try_from(keep).unwrap_or(0) * DAY_MS;
            if let Some(newest) = deleted_newest
                && newest.1 > now_ms - keep_ms
            {
                problems.push(format!(
                    "entries up to {} were deleted, the newest from {}, less than {keep} days ago",
                    newest.0,
                    ts(newest.1)
                ));
            }
            let hot_ms = i64::try_from(hot).unwrap_or(0) * DAY_MS;
            if let Some(last) = live.last()
                && last.last_ts_ms > now_ms - hot_ms
            {
                problems.push(format!(
                    "entries up to {} were archived, the newest from {}, less than {hot} days ago (not queryable without --include-archive)",
                    last.last_seq,
                    ts(last.last_ts_ms)
                ));
            }
            requirements.push(Requirement {
                standard: preset.name.to_owned(),
                keep_days: keep,
                hot_days: hot,
                set_by_standard: preset.set_by_standard,
                source: preset.source.to_owned(),
                met: problems.is_empty(),
                problems,
            });
        }
        out.push(TenantStatus {
            tenant_id: tenant,
            policy_hot_days: policy.hot_days,
            policy_archive_days: policy.archive_days,
            chain_size: head.size,
            oldest_hot_seq: oldest_hot.map(|(s, _)| s),
            oldest_hot: oldest_hot.map(|(_, t)| ts(t)),
            hot_entries: head.size - anchor,
            oldest_archived_seq: oldest_archived.map(|(s, _)| s),
            oldest_archived: oldest_archived.map(|(_, t)| ts(t)),
            archive_segments: live.len() as u64,
            archived_entries,
            deleted_entries,
            requirements,
        });
    }
    Ok(out)
}
