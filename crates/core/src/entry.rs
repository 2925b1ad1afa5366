//! Entry format v1: from an agent's event to a signed entry line, and back.
//!
//! The normative description is docs/FORMAT.md ("Entry line"). In short:
//!
//! - `body` = RFC 8785 (JCS) serialisation of the entry object without `hmac_sha256`;
//! - `hmac_sha256` = lowercase hex of HMAC-SHA256(key named by `key_id`, SHA-256(body));
//! - `line` = `body` with its final `}` replaced by `,"hmac_sha256":"<hex>"}` — so the HMAC is
//!   always the last member and `body` is recovered from a line by a fixed-length suffix cut;
//! - entry hash = SHA-256(line), written `sha256:<hex>` in the next entry's `prev_entry_hash`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, FieldError};
use crate::hash::Hash;
use crate::ids::{KeyId, MAX_SAFE_INTEGER, TenantId};
use crate::keys::{HmacKey, KeyLookup, Keyring};

pub use crate::event::{NormalizedEvent, RedactionPolicy};
pub(crate) use crate::format::push_json_str;
pub use crate::format::{
    FORMAT_V1, FORMAT_VERSION, MAX_DEPTH, format_timestamp, parse_time_bound, parse_timestamp,
    written_ms,
};

/// `prev_entry_hash` of the first entry of every chain: `sha256:` followed by 64 zeros.
pub const GENESIS_HASH: Hash = Hash([0u8; 32]);

/// `,"hmac_sha256":"` — the start of the fixed suffix of every line.
const HMAC_MEMBER_PREFIX: &[u8] = b",\"hmac_sha256\":\"";
/// Length of the suffix `,"hmac_sha256":"<64 hex>"}`.
pub const HMAC_SUFFIX_LEN: usize = HMAC_MEMBER_PREFIX.len() + 64 + 2;

fn field_err(field: &str, problem: impl Into<String>) -> Error {
    Error::Field(FieldError::new(field, problem))
}

/// RFC 8785 serialisation of a JSON value.
///
/// # Errors
/// None in practice (a `serde_json::Value` holds no NaN or infinity); kept fallible so the
/// signature can carry future limits.
pub fn canonical_json(v: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    crate::event::write_jcs(&crate::event::Node::from_value(v), &mut out);
    Ok(out)
}

/// The hash a raw value is replaced with: SHA-256 of the UTF-8 text for strings, of the RFC 8785
/// form for any other JSON value.
///
/// # Errors
/// As [`canonical_json`].
pub fn content_hash(v: &Value) -> Result<Hash, Error> {
    Ok(match v {
        Value::String(s) => Hash::digest(s.as_bytes()),
        other => Hash::digest(&canonical_json(other)?),
    })
}

/// Validates, redacts and canonicalises one input event (see [`crate::event::normalize`], which
/// this applies to a `serde_json::Value`; [`crate::event::normalize_json`] reads the event's text
/// directly and is faster).
///
/// Top-level fields other than the envelope (`tenant_id agent_id session_id event_type timestamp
/// client_seq payload`) are moved into `payload`, so the seed's flat `tool_call` shape is
/// accepted as is.
///
/// # Errors
/// [`Error::Field`] naming the offending field (its JSON path) and the problem.
pub fn normalize_event(
    event: Value,
    policy: &RedactionPolicy,
    origin: &crate::origin::Origin,
) -> Result<NormalizedEvent, Error> {
    crate::event::normalize(crate::event::Node::from_value(&event), policy, origin)
}

/// The personal-data sidecar of an entry and the digest the entry commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// JCS bytes of `{"fields":{…},"salt":"<64 hex>"}`.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: the entry's `personal_digest`.
    pub digest: Hash,
}

/// Builds the sidecar for `fields` with a fresh 32-byte random `salt`. The salt makes the digest
/// useless for guessing a low-entropy subject id once the sidecar is erased.
///
/// # Errors
/// As [`canonical_json`].
pub fn make_sidecar(fields: &Map<String, Value>, salt: [u8; 32]) -> Result<Sidecar, Error> {
    let mut obj = Map::new();
    obj.insert("fields".to_owned(), Value::Object(fields.clone()));
    obj.insert("salt".to_owned(), Value::String(hex::encode(salt)));
    let bytes = canonical_json(&Value::Object(obj))?;
    let digest = Hash::digest(&bytes);
    Ok(Sidecar { bytes, digest })
}

/// Everything the writer decides for one entry.
#[derive(Debug)]
pub struct SealParams<'a> {
    /// Chain of the entry.
    pub tenant_id: &'a TenantId,
    /// Sequence number in that chain.
    pub seq: u64,
    /// UUIDv7, strictly increasing within the chain.
    pub entry_id: uuid::Uuid,
    /// Entry time, Unix ms.
    pub timestamp_ms: i64,
    /// Key generation used.
    pub key_id: &'a KeyId,
    /// The key itself.
    pub key: &'a HmacKey,
    /// Entry hash of the previous entry ([`GENESIS_HASH`] for seq 1).
    pub prev_entry_hash: Hash,
    /// Digest of the personal sidecar, if any.
    pub personal_digest: Option<Hash>,
    /// `timestamp - written_at` in ms when the claimed time lies outside the writer's bound
    /// (docs/FORMAT.md §2, "The writer's clock"); version 2 only.
    pub clock_skew_ms: Option<i64>,
}

/// How far an agent's claimed `timestamp` may lie from the writer's clock before the writer marks
/// it (`clock_skew_ms`, docs/FORMAT.md §2) or, when `refuse` is set, the intake refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockBound {
    /// Largest lead of the claimed time over the writer's, ms (default 5 minutes).
    pub max_ahead_ms: i64,
    /// Largest lag of the claimed time behind the writer's, ms (default 24 hours).
    pub max_behind_ms: i64,
    /// Refuse events outside the bound instead of marking them.
    pub refuse: bool,
    /// Raise a `clock_skew` alert for a marked event (at most one per agent every 5 minutes).
    pub alert: bool,
}

impl Default for ClockBound {
    fn default() -> Self {
        Self {
            max_ahead_ms: 5 * 60_000,
            max_behind_ms: 86_400_000,
            refuse: false,
            alert: false,
        }
    }
}

impl ClockBound {
    /// `claimed - written` when the claimed time lies outside the bound, else `None`.
    #[must_use]
    pub fn skew(&self, claimed_ms: i64, written_ms: i64) -> Option<i64> {
        let d = claimed_ms.saturating_sub(written_ms);
        (d > self.max_ahead_ms || d < -self.max_behind_ms).then_some(d)
    }

    /// For an intake: `Err` with a message when the bound refuses `claimed_ms` at `now_ms`.
    ///
    /// # Errors
    /// The claimed time is outside the bound and `refuse` is set.
    pub fn admit(&self, claimed_ms: Option<i64>, now_ms: i64) -> Result<(), String> {
        match claimed_ms.and_then(|c| self.skew(c, now_ms)) {
            Some(d) if self.refuse => Err(format!(
                "timestamp is {} the service's clock by {}; this service refuses events more \
                 than {} ahead or {} behind ([clock] in blackbox.toml): send the time the event \
                 happened, or none",
                if d > 0 { "ahead of" } else { "behind" },
                human_ms(d.unsigned_abs()),
                human_ms(self.max_ahead_ms.unsigned_abs()),
                human_ms(self.max_behind_ms.unsigned_abs()),
            )),
            _ => Ok(()),
        }
    }
}

fn human_ms(ms: u64) -> String {
    match ms {
        m if m >= 86_400_000 => format!("{:.1} days", m as f64 / 86_400_000.0),
        m if m >= 3_600_000 => format!("{:.1} hours", m as f64 / 3_600_000.0),
        m if m >= 60_000 => format!("{:.1} minutes", m as f64 / 60_000.0),
        m => format!("{:.1} seconds", m as f64 / 1000.0),
    }
}

/// A signed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// The exact bytes stored and exported (no trailing newline).
    pub line: Vec<u8>,
    /// SHA-256 of `line`.
    pub entry_hash: Hash,
}

/// Assembles, signs and hashes one entry. Members are written in RFC 8785 order (keys sorted by
/// UTF-16 code units); the golden and property tests check the result against a JCS library.
///
/// # Errors
/// When the timestamp is out of range.
pub fn seal(ev: &NormalizedEvent, p: &SealParams<'_>) -> Result<SealedEntry, Error> {
    let ts = format_timestamp(p.timestamp_ms).map_err(|e| field_err("timestamp", e))?;
    if ev.origin.is_none() && p.clock_skew_ms.is_some() {
        return Err(field_err(
            "clock_skew_ms",
            "exists only in format version 2 (an entry with an origin)",
        ));
    }
    // The envelope (ids, names, origin, hashes, times, the HMAC) takes 600–900 bytes: one
    // allocation for the whole line.
    let mut out = Vec::with_capacity(ev.payload_jcs.len() + 1024);
    out.extend_from_slice(b"{\"agent_id\":");
    push_json_str(&mut out, ev.agent_id.as_str());
    if let Some(cs) = ev.client_seq {
        out.extend_from_slice(b",\"client_seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(cs).as_bytes());
    }
    if let Some(skew) = p.clock_skew_ms {
        out.extend_from_slice(b",\"clock_skew_ms\":");
        out.extend_from_slice(itoa::Buffer::new().format(skew).as_bytes());
    }
    out.extend_from_slice(b",\"entry_id\":\"");
    out.extend_from_slice(
        p.entry_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"event_type\":");
    push_json_str(&mut out, ev.event_type.as_str());
    out.extend_from_slice(b",\"key_id\":");
    push_json_str(&mut out, p.key_id.as_str());
    if let Some(origin) = &ev.origin {
        out.extend_from_slice(b",\"origin\":");
        origin.write_jcs(&mut out);
    }
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(&ev.payload_jcs);
    if let Some(d) = p.personal_digest {
        out.extend_from_slice(b",\"personal_digest\":\"");
        d.push_prefixed(&mut out);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"prev_entry_hash\":\"");
    p.prev_entry_hash.push_prefixed(&mut out);
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(p.seq).as_bytes());
    out.extend_from_slice(b",\"session_id\":");
    push_json_str(&mut out, ev.session_id.as_str());
    out.extend_from_slice(b",\"tenant_id\":");
    push_json_str(&mut out, p.tenant_id.as_str());
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(ts.as_bytes());
    if ev.origin.is_some() {
        let written = format_timestamp(written_ms(p.entry_id.as_u128()))
            .map_err(|e| field_err("entry_id", e))?;
        out.extend_from_slice(b"\",\"v\":2,\"written_at\":\"");
        out.extend_from_slice(written.as_bytes());
        out.extend_from_slice(b"\"}");
    } else {
        out.extend_from_slice(b"\",\"v\":1}");
    }
    // One pass over the bytes: the body and the line share everything but the body's final `}`.
    out.pop(); // the closing brace of the body
    let mut prefix = Sha256::new();
    prefix.update(&out);
    let body_digest = Hash(prefix.clone().chain_update(b"}").finalize().into());
    let mac = p.key.sign(body_digest.as_bytes());
    let cut = out.len();
    out.extend_from_slice(HMAC_MEMBER_PREFIX);
    crate::hash::push_hex(&mut out, &mac);
    out.extend_from_slice(b"\"}");
    let entry_hash = Hash(prefix.chain_update(&out[cut..]).finalize().into());
    Ok(SealedEntry {
        line: out,
        entry_hash,
    })
}

/// Recovers the HMAC input (`body`) and the MAC from a line by the fixed suffix rule.
///
/// # Errors
/// [`Error::MalformedEntry`] when the line does not end in `,"hmac_sha256":"<64 hex>"}`.
pub fn split_line(line: &[u8]) -> Result<(Vec<u8>, [u8; 32]), Error> {
    let n = line.len();
    if n < HMAC_SUFFIX_LEN + 2 || line.first() != Some(&b'{') {
        return Err(Error::MalformedEntry(
            "too short, or not a JSON object".to_owned(),
        ));
    }
    let cut = n - HMAC_SUFFIX_LEN;
    let suffix = &line[cut..];
    if !suffix.starts_with(HMAC_MEMBER_PREFIX) || !suffix.ends_with(b"\"}") {
        return Err(Error::MalformedEntry(
            "the last member must be \"hmac_sha256\":\"<64 lowercase hex>\"".to_owned(),
        ));
    }
    let hex_part = &suffix[HMAC_MEMBER_PREFIX.len()..HMAC_MEMBER_PREFIX.len() + 64];
    let mac = crate::hash::decode_hex32(hex_part).ok_or_else(|| {
        Error::MalformedEntry("hmac_sha256 must be 64 lowercase hex digits".to_owned())
    })?;
    let mut body = Vec::with_capacity(cut + 1);
    body.extend_from_slice(&line[..cut]);
    body.push(b'}');
    Ok((body, mac))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    v: u32,
    seq: u64,
    #[serde(borrow)]
    entry_id: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    tenant_id: Cow<'a, str>,
    #[serde(borrow)]
    agent_id: Cow<'a, str>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(default)]
    client_seq: Option<u64>,
    #[serde(default)]
    clock_skew_ms: Option<i64>,
    #[serde(default, borrow)]
    origin: Option<&'a RawValue>,
    #[serde(default, borrow)]
    written_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default, borrow)]
    personal_digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    prev_entry_hash: Cow<'a, str>,
    #[serde(borrow)]
    hmac_sha256: Cow<'a, str>,
}

/// A parsed entry line, borrowing from the line.
#[derive(Debug, Clone)]
pub struct EntryView<'a> {
    /// Chain sequence number.
    pub seq: u64,
    /// UUIDv7.
    pub entry_id: uuid::Uuid,
    /// Entry time, Unix ms.
    pub timestamp_ms: i64,
    /// The timestamp text as written.
    pub timestamp: Cow<'a, str>,
    /// Chain.
    pub tenant_id: Cow<'a, str>,
    /// Agent.
    pub agent_id: Cow<'a, str>,
    /// Session.
    pub session_id: Cow<'a, str>,
    /// Event type.
    pub event_type: Cow<'a, str>,
    /// Agent's per-session counter.
    pub client_seq: Option<u64>,
    /// Payload, exactly as in the line.
    pub payload: &'a RawValue,
    /// Digest of the personal sidecar.
    pub personal_digest: Option<Hash>,
    /// HMAC key generation.
    pub key_id: Cow<'a, str>,
    /// Link to the previous entry.
    pub prev_entry_hash: Hash,
    /// The MAC.
    pub hmac: [u8; 32],
    /// Format version (1 or 2).
    pub version: u32,
    /// Who supplied the entry (version 2; `None` in version 1).
    pub origin: Option<crate::origin::Origin>,
    /// The writer's clock when it sequenced the entry, Unix ms (`written_at` in version 2; the
    /// entry id's millisecond in both versions).
    pub written_ms: i64,
    /// `timestamp - written_at` when the writer marked the claimed time as out of its bound.
    pub clock_skew_ms: Option<i64>,
}

impl<'a> EntryView<'a> {
    /// Whether the service itself wrote the entry (origin `service`, format version 2). Entries
    /// of version 1 have no origin and are never taken as the service's: anything that rebuilds
    /// state, fires alerts or feeds compliance figures from the chain reads only these.
    #[must_use]
    pub fn by_service(&self) -> bool {
        matches!(self.origin, Some(crate::origin::Origin::Service))
    }

    /// Parses a line (strictly: unknown members, a wrong version or malformed values are errors).
    ///
    /// # Errors
    /// [`Error::MalformedEntry`] saying what is wrong.
    pub fn parse(line: &'a [u8]) -> Result<Self, Error> {
        let raw: RawEntry<'a> =
            serde_json::from_slice(line).map_err(|e| Error::MalformedEntry(e.to_string()))?;
        if raw.v != FORMAT_VERSION && raw.v != FORMAT_V1 {
            return Err(Error::MalformedEntry(format!(
                "format version {} is not supported (this build reads v1 and v{FORMAT_VERSION})",
                raw.v
            )));
        }
        let entry_id = uuid::Uuid::parse_str(&raw.entry_id)
            .map_err(|e| Error::MalformedEntry(format!("entry_id: {e}")))?;
        if entry_id.get_version_num() != 7 {
            return Err(Error::MalformedEntry(
                "entry_id must be a UUIDv7".to_owned(),
            ));
        }
        let written_ms = written_ms(entry_id.as_u128());
        let origin = if raw.v == FORMAT_V1 {
            if raw.origin.is_some() || raw.written_at.is_some() || raw.clock_skew_ms.is_some() {
                return Err(Error::MalformedEntry(
                    "origin, written_at and clock_skew_ms exist only in format version 2"
                        .to_owned(),
                ));
            }
            None
        } else {
            let origin = raw.origin.ok_or_else(|| {
                Error::MalformedEntry("origin is required in format version 2".to_owned())
            })?;
            let written = raw.written_at.as_deref().ok_or_else(|| {
                Error::MalformedEntry("written_at is required in format version 2".to_owned())
            })?;
            let w = parse_timestamp(written)
                .map_err(|e| Error::MalformedEntry(format!("written_at {e}")))?;
            if w != written_ms || format_timestamp(w).ok().as_deref() != Some(written) {
                return Err(Error::MalformedEntry(format!(
                    "written_at {written} is not the millisecond of entry_id ({})",
                    format_timestamp(written_ms).unwrap_or_default()
                )));
            }
            if let Some(skew) = raw.clock_skew_ms
                && skew.unsigned_abs() > MAX_SAFE_INTEGER
            {
                return Err(Error::MalformedEntry(
                    "clock_skew_ms must be within ±(2^53-1)".to_owned(),
                ));
            }
            Some(crate::origin::Origin::from_json(origin.get()).map_err(Error::MalformedEntry)?)
        };
        let timestamp_ms = parse_timestamp(&raw.timestamp)
            .map_err(|e| Error::MalformedEntry(format!("timestamp {e}")))?;
        let bad_hash = |f: &'static str| {
            move |e: crate::hash::HashParseError| Error::MalformedEntry(format!("{f}: {e}"))
        };
        let prev_entry_hash =
            Hash::from_prefixed(&raw.prev_entry_hash).map_err(bad_hash("prev_entry_hash"))?;
        let personal_digest = raw
            .personal_digest
            .as_deref()
            .map(Hash::from_prefixed)
            .transpose()
            .map_err(bad_hash("personal_digest"))?;
        let hmac = crate::hash::decode_hex32(raw.hmac_sha256.as_bytes()).ok_or_else(|| {
            Error::MalformedEntry("hmac_sha256 must be 64 lowercase hex digits".to_owned())
        })?;
        Ok(Self {
            seq: raw.seq,
            entry_id,
            timestamp_ms,
            timestamp: raw.timestamp,
            tenant_id: raw.tenant_id,
            agent_id: raw.agent_id,
            session_id: raw.session_id,
            event_type: raw.event_type,
            client_seq: raw.client_seq,
            payload: raw.payload,
            personal_digest,
            key_id: raw.key_id,
            prev_entry_hash,
            hmac,
            version: raw.v,
            origin,
            written_ms,
            clock_skew_ms: raw.clock_skew_ms,
        })
    }
}

/// Outcome of checking an entry's HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacStatus {
    /// The MAC verifies under the key named by `key_id`.
    Valid,
    /// The MAC does not verify.
    Invalid,
    /// The keyring has no key with the entry's `key_id`.
    UnknownKey,
    /// The entry names an epoch of a forward-secure generation before the state the keyring
    /// holds: that epoch's key was erased, so only an earlier state (the auditor's initial
    /// key) can check it. Not a sign of tampering by itself.
    Erased {
        /// The epoch of the state the keyring holds.
        held_epoch: u64,
    },
    /// No keyring was given (public-key-only verification).
    NotChecked,
}

/// Where the HMAC suffix `,"hmac_sha256":"…"}` of a line starts, if the line has its shape.
fn suffix_cut(line: &[u8]) -> Option<usize> {
    let cut = line.len().checked_sub(HMAC_SUFFIX_LEN)?;
    (cut > 0 && line[cut..].starts_with(HMAC_MEMBER_PREFIX) && line.ends_with(b"\"}"))
        .then_some(cut)
}

/// The digests of an entry line, computed in one pass over its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineDigests {
    /// SHA-256 of the whole line: the entry hash.
    pub entry_hash: Hash,
    /// SHA-256 of the body (the HMAC's message), when the line ends in the HMAC suffix.
    pub body_digest: Option<Hash>,
}

/// The entry hash and the body digest of `line`. The body is the line up to its HMAC suffix plus
/// a closing `}`, so both digests share the hashing of that prefix.
#[must_use]
pub fn line_digests(line: &[u8]) -> LineDigests {
    let Some(cut) = suffix_cut(line) else {
        return LineDigests {
            entry_hash: Hash::digest(line),
            body_digest: None,
        };
    };
    let mut prefix = Sha256::new();
    prefix.update(&line[..cut]);
    let body = prefix.clone().chain_update(b"}").finalize();
    let entry = prefix.chain_update(&line[cut..]).finalize();
    LineDigests {
        entry_hash: Hash(entry.into()),
        body_digest: Some(Hash(body.into())),
    }
}

/// Checks the MAC of `line` (whose parsed form is `view`) against `keys`.
#[must_use]
pub fn check_hmac(line: &[u8], view: &EntryView<'_>, keys: Option<&Keyring>) -> HmacStatus {
    let body_digest = line_digests(line).body_digest;
    check_hmac_digest(&view.key_id, body_digest, &view.hmac, line, keys)
}

/// Checks a MAC given the body digest of its line (see [`line_digests`]): `mac` must equal both
/// the hex in the line's suffix and HMAC-SHA256(key `key_id`, body digest), compared in constant
/// time.
#[must_use]
pub fn check_hmac_digest(
    key_id: &str,
    body_digest: Option<Hash>,
    mac: &[u8; 32],
    line: &[u8],
    keys: Option<&Keyring>,
) -> HmacStatus {
    let status = check_suffix_mac(key_id, body_digest, mac, keys);
    if status != HmacStatus::Valid {
        return status;
    }
    // `mac` must be the line's own.
    let suffix_mac = suffix_cut(line).and_then(|cut| {
        crate::hash::decode_hex32(&line[cut + HMAC_MEMBER_PREFIX.len()..line.len() - 2])
    });
    if suffix_mac == Some(*mac) {
        HmacStatus::Valid
    } else {
        HmacStatus::Invalid
    }
}

/// Checks `mac`, read from the line's own suffix `,"hmac_sha256":"<hex>"}`, against
/// HMAC-SHA256(key `key_id`, body digest), in constant time.
#[must_use]
pub fn check_suffix_mac(
    key_id: &str,
    body_digest: Option<Hash>,
    mac: &[u8; 32],
    keys: Option<&Keyring>,
) -> HmacStatus {
    let Some(keys) = keys else {
        return HmacStatus::NotChecked;
    };
    let key = match keys.lookup(key_id) {
        KeyLookup::Found(k) => k,
        KeyLookup::Erased { held_epoch } => return HmacStatus::Erased { held_epoch },
        KeyLookup::Unknown => return HmacStatus::UnknownKey,
    };
    match body_digest {
        Some(digest) if key.verify(digest.as_bytes(), mac) => HmacStatus::Valid,
        _ => HmacStatus::Invalid,
    }
}

/// The next entry id of a chain: a UUIDv7 for `now_ms` with random bits, unless that would not
/// be greater than `last` (same millisecond, or the clock stepped back), in which case `last + 1`
/// in the 74 random bits (RFC 9562 §6.2, method 2: monotonic random), carrying into the
/// millisecond field if they overflow. Strictly increasing whatever the clock does.
#[must_use]
pub fn next_entry_id(last: Option<uuid::Uuid>, now_ms: u64, random: [u8; 10]) -> uuid::Uuid {
    let fresh = uuid::Builder::from_unix_timestamp_millis(now_ms, &random).into_uuid();
    let Some(last) = last else { return fresh };
    if fresh > last {
        return fresh;
    }
    let v = last.as_u128();
    let ms = v >> 80;
    let rand_a = (v >> 64) & 0xfff;
    let rand_b = v & ((1u128 << 62) - 1);
    let mut counter = (rand_a << 62) | rand_b;
    let mut ms = ms;
    counter += 1;
    if counter >> 74 != 0 {
        counter = 0;
        ms += 1;
    }
    let rand_a = counter >> 62;
    let rand_b = counter & ((1u128 << 62) - 1);
    let out = (ms << 80) | (0x7u128 << 76) | (rand_a << 64) | (0b10u128 << 62) | rand_b;
    uuid::Uuid::from_u128(out)
}

/// Unix milliseconds embedded in a UUIDv7.
#[must_use]
pub fn uuid_millis(id: &uuid::Uuid) -> u64 {
    u64::try_from(id.as_u128() >> 80).unwrap_or(u64::MAX)
}

/// Parses an entry id given by a person: a UUIDv7 in any standard text form.
///
/// # Errors
/// A plain-English reason.
pub fn parse_entry_id(s: &str) -> Result<uuid::Uuid, String> {
    let u = uuid::Uuid::parse_str(s.trim()).map_err(|e| format!("not a UUID ({e})"))?;
    if u.get_version_num() != 7 {
        return Err("entry ids are UUIDv7".to_owned());
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{parse_writer_timestamp, utf16_cmp};
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("\u{e000}"),
                Just("\u{1f600}"),
                Just("\u{7f}"),
                Just("a\"b\\c\n\u{1}")
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        "[a-z_]{1,8}",
                        "\\PC{1,6}",
                        Just("\u{e000}k".to_owned()),
                        Just("\u{1f600}k".to_owned())
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// RFC 8785 output agrees with the reference canonicaliser byte for byte, whether the
        /// value comes as a `Value` or is read from its text into the borrowed tree.
        #[test]
        fn jcs_matches_the_reference(v in json_value()) {
            let reference = serde_json_canonicalizer::to_vec(&v).unwrap();
            prop_assert_eq!(
                String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
                String::from_utf8(reference.clone()).unwrap()
            );
            let text = serde_json::to_vec(&v).unwrap();
            let node: crate::event::Node<'_> = serde_json::from_slice(&text).unwrap();
            let mut out = Vec::new();
            crate::event::write_jcs(&node, &mut out);
            prop_assert_eq!(out, reference);
        }
    }

    #[test]
    fn writer_timestamps_read_as_the_rfc3339_parser_reads_them() {
        let jiff_ms = |s: &str| {
            s.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .ok()
        };
        // A day a week from 1970 to 9998 at shifting times of day, as the writer formats them.
        let mut ms: i64 = 0;
        while ms < 253_370_764_800_000 {
            let s = format_timestamp(ms).unwrap();
            assert_eq!(parse_writer_timestamp(s.as_bytes()), Some(ms), "{s}");
            ms += 86_400_000 * 7 + 3_723_456; // a week, 1 h 2 min 3.456 s
        }
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2100-02-28T12:00:00.000Z",
            "2400-02-29T00:00:00.001Z",
            "9998-12-31T23:59:59.999Z",
            "2026-04-14T18:00:00.123Z",
        ] {
            assert_eq!(parse_writer_timestamp(s.as_bytes()), jiff_ms(s), "{s}");
        }
        // Not the writer's form, or not a date: left to the parser.
        for s in [
            "2100-02-29T00:00:00.000Z",
            "2026-02-30T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-01T00:00:00.000Z",
            "2026-04-00T00:00:00.000Z",
            "2026-04-14T24:00:00.000Z",
            "2026-04-14T18:60:00.000Z",
            "2016-12-31T23:59:60.000Z",
            "1969-12-31T23:59:59.999Z",
            "9999-01-01T00:00:00.000Z",
            "2026-04-14T18:00:00.123+00:00",
            "2026-04-14T18:00:00Z",
            "2026-04-14 18:00:00.123Z",
            "2026-04-14T18:00:00.12aZ",
            "+002026-04-14T18:00:00.1Z",
        ] {
            assert_eq!(parse_writer_timestamp(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn utf16_order_differs_from_utf8_above_e000() {
        // U+E000 sorts after U+1F600 in UTF-8 but before it in UTF-16 (surrogates are D800-DFFF).
        assert!(utf16_cmp("\u{1f600}", "\u{e000}").is_lt());
        assert!("\u{1f600}" > "\u{e000}");
        let v: Value = serde_json::from_str(r#"{"\ue000":1,"\ud83d\ude00":2,"a":3}"#).unwrap();
        assert_eq!(
            canonical_json(&v).unwrap(),
            serde_json_canonicalizer::to_vec(&v).unwrap()
        );
    }
}
