//! Ledger settings, read once from `DIR/blackbox.toml` into a typed value. The file's
//! `[retention]` section belongs to archiving: `blackbox_archive::settings` reads it.

use std::collections::BTreeSet;
use std::path::Path;

use blackbox_core::entry::RedactionPolicy;
use blackbox_core::ids::TenantId;
use serde::Deserialize;

use crate::error::LedgerError;

/// The file `init` writes: every setting with its default, documented.
pub const DEFAULT_CONFIG: &str = r#"# Blackbox ledger settings. Every value shown is the default.

[ledger]
# Tenant for events that name none.
default_tenant = "default"

[checkpoints]
# Sign a checkpoint after this many entries in a chain ...
every_entries = 10000
# ... and at least this often, even when nothing was logged (a heartbeat), so that a log that
# stopped silently is visible to anyone holding the public key.
every_seconds = 60

[clock]
# Every entry records the time the writer sequenced it (`written_at`) beside the time the agent
# claims (`timestamp`). A claimed time more than this far ahead of the writer's clock ...
max_ahead_seconds = 300
# ... or this far behind it is marked in the entry (`clock_skew_ms`) and counted by detection.
max_behind_seconds = 86400
# "mark": accept and mark such events; "refuse": refuse them (HTTP 422, `blackbox append` error).
out_of_bound = "mark"
# true: `blackbox serve` also raises a `clock_skew` alert for a marked event (one per agent every
# 5 minutes). Off by default: agents that replay buffered events send old times honestly.
alert = false

[witnessing]
# Witnesses (C2SP tlog-witness) `blackbox serve` submits each new checkpoint to, with a
# consistency proof; their cosignatures are stored on the checkpoint (docs/WITNESS.md). A witness
# that refuses raises a `witness_refused` alert. None by default. Each: its submission URL and
# its public key (`blackbox witness keygen` writes it), e.g.
# witnesses = [
#   { url = "https://witness.example.com", key = "witness.example.com/w1+1a2b3c4d+BASE64..." },
# ]
witnesses = []
# Cosignatures the console, `/v1/verify` and the evidence exports require per checkpoint
# (0: as many as witnesses are listed).
quorum = 0
# How long to wait for a witness's answer; an unanswered submission is retried (backing off to
# `retry_max_seconds`).
timeout_seconds = 10
retry_max_seconds = 300
# Each chain is also served as a C2SP tlog-tiles log at /tlog/<tenant>/ (checkpoint, tiles of
# hashes, bundles of entry hashes: never the entries' content), to a read token of the tenant.
# true: to anyone, without a token (for public witnesses, monitors and caches).
public_tiles = false

[redaction]
# Raw-content fields replaced by `<name>_hash` = "sha256:<hex>" before anything is stored.
raw_fields = ["prompt", "completion", "messages", "query", "content", "result_data", "args_raw"]
# Extra names to add to the list above (keeps the defaults).
extra_raw_fields = []
# Personal-data fields (top level of the event or of its payload) kept outside the signed bytes,
# committed to by a salted digest, so they can be erased later without breaking verification.
personal_fields = ["data_subjects"]

[retention]
# Entries stay in the queryable store this many days (judged by when they were written) ...
hot_days = 365
# ... then this many days in the archive, after which the archive segment is deleted (0: never).
archive_days = 1095
# Standards whose retention minimums the policy must meet: soc2, iso27001, pci_dss, hipaa,
# nis2, eu_ai_act, gdpr. `blackbox retention status` checks them against the policy and the data.
standards = ["soc2", "iso27001"]
# Where archive segments go: a directory (relative to the data directory), file:///abs/path,
# or s3://bucket/prefix (credentials and endpoint from AWS_* environment variables, e.g.
# AWS_ENDPOINT_URL for S3-compatible storage).
archive_url = "archive"
# Entries per archive segment, at most (a segment always ends at a signed checkpoint).
segment_entries = 500000
# `blackbox serve` archives and expires this often, in hours (0: only `blackbox retention run`).
run_every_hours = 24

# Per-tenant policies override the values above, e.g.:
# [retention.tenants.acme]
# hot_days = 90
# archive_days = 2100
# standards = ["hipaa"]
"#;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    checkpoints: RawCheckpoints,
    #[serde(default)]
    redaction: RawRedaction,
    /// Accepted here, read by `blackbox_archive::settings` (retention is archiving's room).
    #[serde(default)]
    #[allow(dead_code)]
    retention: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    clock: RawClock,
    #[serde(default)]
    witnessing: RawWitnessing,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWitnessing {
    #[serde(default)]
    witnesses: Vec<RawWitness>,
    quorum: Option<usize>,
    timeout_seconds: Option<u64>,
    retry_max_seconds: Option<u64>,
    public_tiles: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    url: String,
    key: String,
}

/// A witness the service submits its checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    /// Its submission URL prefix (`/add-checkpoint` is appended).
    pub url: String,
    /// Its public key (cosignature/v1).
    pub key: blackbox_core::cosignature::CosignerKey,
}

/// `[witnessing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessing {
    /// The witnesses, in order.
    pub witnesses: Vec<WitnessConfig>,
    /// Cosignatures required per checkpoint by the service's own checks (1..=witnesses).
    pub quorum: usize,
    /// How long to wait for an answer, in milliseconds.
    pub timeout_ms: u64,
    /// Longest pause between retries, in milliseconds.
    pub retry_max_ms: u64,
    /// Whether `/tlog/{tenant}/…` (the chains as C2SP tlog-tiles) is served without a token.
    pub public_tiles: bool,
}

impl Witnessing {
    /// The witness policy of the service's own checks, when witnesses are configured.
    #[must_use]
    pub fn policy(&self) -> Option<blackbox_core::cosignature::WitnessPolicy> {
        blackbox_core::cosignature::WitnessPolicy::new(
            self.witnesses.iter().map(|w| w.key.clone()).collect(),
            self.quorum,
        )
        .ok()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClock {
    max_ahead_seconds: Option<u64>,
    max_behind_seconds: Option<u64>,
    out_of_bound: Option<String>,
    alert: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    default_tenant: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCheckpoints {
    every_entries: Option<u64>,
    every_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedaction {
    raw_fields: Option<Vec<String>>,
    #[serde(default)]
    extra_raw_fields: Vec<String>,
    personal_fields: Option<Vec<String>>,
}

/// Validated ledger settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Tenant for events that name none.
    pub default_tenant: TenantId,
    /// Checkpoint after this many entries per chain.
    pub checkpoint_every_entries: u64,
    /// Checkpoint (or heartbeat) at least this often, in milliseconds.
    pub checkpoint_every_ms: i64,
    /// Redaction lists.
    pub redaction: RedactionPolicy,
    /// How far a claimed timestamp may lie from the writer's clock.
    pub clock: blackbox_core::entry::ClockBound,
    /// Witnesses and the witness policy.
    pub witnessing: Witnessing,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        match Self::parse(DEFAULT_CONFIG, Path::new("<defaults>")) {
            Ok(c) => c,
            Err(_) => unreachable!("DEFAULT_CONFIG is valid; the config tests check it"),
        }
    }
}

impl LedgerConfig {
    /// Reads `path`; a missing file means all defaults.
    ///
    /// # Errors
    /// [`LedgerError::Config`] naming the problem (TOML errors carry line and column).
    pub fn load(path: &Path) -> Result<Self, LedgerError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(LedgerError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses settings text.
    ///
    /// # Errors
    /// [`LedgerError::Config`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, LedgerError> {
        let bad = |problem: String| LedgerError::Config {
            path: path.to_owned(),
            problem,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let default_tenant =
            TenantId::parse(raw.ledger.default_tenant.as_deref().unwrap_or("default"))
                .map_err(|e| bad(format!("[ledger] default_tenant: {e}")))?;
        let every_entries = raw.checkpoints.every_entries.unwrap_or(10_000);
        if every_entries == 0 {
            return Err(bad(
                "[checkpoints] every_entries must be at least 1".to_owned()
            ));
        }
        let every_seconds = raw.checkpoints.every_seconds.unwrap_or(60);
        if every_seconds == 0 || every_seconds > 86_400 * 365 {
            return Err(bad(
                "[checkpoints] every_seconds must be between 1 and 31536000".to_owned(),
            ));
        }
        let defaults = RedactionPolicy::default();
        let mut raw_fields: BTreeSet<String> = raw
            .redaction
            .raw_fields
            .map_or(defaults.raw_fields, |v| v.into_iter().collect());
        raw_fields.extend(raw.redaction.extra_raw_fields);
        let personal_fields: BTreeSet<String> = raw
            .redaction
            .personal_fields
            .map_or(defaults.personal_fields, |v| v.into_iter().collect());
        for f in raw_fields.iter().chain(&personal_fields) {
            if f.is_empty() || f.contains('.') {
                return Err(bad(format!(
                    "[redaction] field name `{f}` must be a plain, non-empty key (no dots)"
                )));
            }
        }
        if let Some(both) = raw_fields.intersection(&personal_fields).next() {
            return Err(bad(format!(
                "[redaction] `{both}` cannot be both a raw field and a personal field"
            )));
        }
        let secs = |v: Option<u64>, default: u64, name: &str| -> Result<i64, LedgerError> {
            let v = v.unwrap_or(default);
            if v > 10 * 365 * 86_400 {
                return Err(bad(format!(
                    "[clock] {name} must be at most 315360000 (ten years)"
                )));
            }
            Ok(i64::try_from(v * 1000).unwrap_or(i64::MAX))
        };
        let clock = blackbox_core::entry::ClockBound {
            alert: raw.clock.alert.unwrap_or(false),
            max_ahead_ms: secs(raw.clock.max_ahead_seconds, 300, "max_ahead_seconds")?,
            max_behind_ms: secs(raw.clock.max_behind_seconds, 86_400, "max_behind_seconds")?,
            refuse: match raw.clock.out_of_bound.as_deref().unwrap_or("mark") {
                "mark" => false,
                "refuse" => true,
                other => {
                    return Err(bad(format!(
                        "[clock] out_of_bound = \"{other}\" is not one of \"mark\", \"refuse\""
                    )));
                }
            },
        };
        let witnessing = parse_witnessing(raw.witnessing).map_err(bad)?;
        Ok(Self {
            clock,
            witnessing,
            default_tenant,
            checkpoint_every_entries: every_entries,
            checkpoint_every_ms: i64::try_from(every_seconds * 1000).unwrap_or(i64::MAX),
            redaction: RedactionPolicy {
                raw_fields,
                personal_fields,
            },
        })
    }
}

fn parse_witnessing(raw: RawWitnessing) -> Result<Witnessing, String> {
    let mut witnesses = Vec::new();
    for (i, w) in raw.witnesses.into_iter().enumerate() {
        let url = w.url.trim().to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "[witnessing] witnesses[{i}].url must be an http:// or https:// URL, not {url:?}"
            ));
        }
        let key = blackbox_core::cosignature::CosignerKey::from_vkey(&w.key)
            .map_err(|e| format!("[witnessing] witnesses[{i}].key: {e}"))?;
        if witnesses
            .iter()
            .any(|o: &WitnessConfig| o.key.name() == key.name())
        {
            return Err(format!(
                "[witnessing] witnesses[{i}]: a witness named {:?} is listed twice",
                key.name()
            ));
        }
        witnesses.push(WitnessConfig { url, key });
    }
    let quorum = match raw.quorum.unwrap_or(0) {
        0 => witnesses.len(),
        q if q > witnesses.len() => {
            return Err(format!(
                "[witnessing] quorum = {q} but only {} witnesses are listed",
                witnesses.len()
            ));
        }
        q => q,
    };
    let timeout = raw.timeout_seconds.unwrap_or(10);
    if timeout == 0 || timeout > 600 {
        return Err("[witnessing] timeout_seconds must be between 1 and 600".into());
    }
    let retry = raw.retry_max_seconds.unwrap_or(300);
    if retry == 0 || retry > 86_400 {
        return Err("[witnessing] retry_max_seconds must be between 1 and 86400".into());
    }
    Ok(Witnessing {
        witnesses,
        quorum,
        timeout_ms: timeout * 1000,
        retry_max_ms: retry * 1000,
        public_tiles: raw.public_tiles.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_the_policy() {
        let c = LedgerConfig::default();
        assert_eq!(c.checkpoint_every_entries, 10_000);
        assert_eq!(c.redaction, RedactionPolicy::default());
        assert_eq!(c.default_tenant.as_str(), "default");
    }

    #[test]
    fn errors_name_the_problem() {
        let p = Path::new("x.toml");
        let e = LedgerConfig::parse("[checkpoints]\nevery_entries = 0\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every_entries"), "{e}");
        let e = LedgerConfig::parse("[checkpoints]\nevery_entrys = 5\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every_entrys"), "{e}");
        let e = LedgerConfig::parse("[redaction]\nextra_raw_fields = [\"data_subjects\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_subjects"), "{e}");
        let c = LedgerConfig::parse("[redaction]\nextra_raw_fields = [\"ssn\"]\n", p).unwrap();
        assert!(
            c.redaction.raw_fields.contains("ssn") && c.redaction.raw_fields.contains("prompt")
        );
    }
}
