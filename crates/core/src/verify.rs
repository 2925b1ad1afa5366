//! Verification of one or many chains: HMACs, hash links, sequence, ids, personal sidecars, and
//! Merkle roots against signed checkpoints.
//!
//! Work is split in two so callers can use every core:
//!
//! 1. [`check_entry`] is independent per entry (parse, SHA-256, HMAC, sidecar digest): run it in
//!    parallel over chunks;
//! 2. [`LogVerifier::feed`] consumes the results in log order and classifies what is wrong
//!    (modification, deletion, insertion, reordering, replay, truncation, wrong key, bad or
//!    inconsistent checkpoints). Its memory is bounded by a window of recent entries per chain.
//!
//! A log read from the middle of a chain starts with an anchor record ([`crate::anchor`]); feed
//! it with [`LogVerifier::add_anchor`] in log order, like an entry. Several files of one log are
//! verified as one stream: an anchor met in a chain already in progress must match the state
//! reached.
//!
//! Nothing here reads files or spawns threads.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::anchor::{Anchor, AnchorError};
use crate::checkpoint::SignedCheckpoint;
use crate::cosignature::{WitnessMark, WitnessPolicy};
use crate::entry::{
    EntryView, GENESIS_HASH, HmacStatus, check_hmac_digest, check_suffix_mac, line_digests,
};
use crate::hash::Hash;
use crate::ids::{KeyId, TenantId, group_thousands};
use crate::keys::{Keyring, split_epoch_id};
use crate::line_scan::{EnvelopeFields, scan, scan_envelope};
use crate::merkle::{CompactRange, leaf_hash};
use crate::note::NoteVerifier;

/// How many recent entries per chain are remembered for link, replay and reorder checks.
pub const WINDOW: usize = 8_192;
/// How many findings are kept in full (the rest are counted).
pub const MAX_FINDINGS: usize = 10_000;
/// How many missing sequence numbers are tracked individually per chain.
const MAX_MISSING: usize = 1_000_000;

/// What kind of problem a finding reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// An entry's bytes changed after it was signed (HMAC or hash link mismatch).
    Modification,
    /// Entries are missing from the chain.
    Deletion,
    /// An entry was added that the writer never wrote.
    Insertion,
    /// Entries are out of order.
    Reordering,
    /// An entry appears more than once.
    Replay,
    /// The log is shorter than a checkpoint says it was.
    Truncation,
    /// No entry signed with a key id verifies under the key given.
    WrongKey,
    /// An entry names a key id that is not in the keyring.
    UnknownKey,
    /// A checkpoint's signature does not verify with the public key.
    BadCheckpointSignature,
    /// A checkpoint's root differs from the root of the entries it covers.
    CheckpointMismatch,
    /// A line is not a valid v1 entry or checkpoint.
    Malformed,
    /// Personal data was removed without an erasure marker, or its sidecar does not match.
    UnmarkedRedaction,
    /// Entry ids do not increase along the chain (clock manipulation or reordering).
    IdNotIncreasing,
    /// An erasure marker lists an entry whose personal data was not erased (its sidecar is still
    /// present, it never had one, or its id differs), or an entry that does not precede it.
    ErasureIncomplete,
    /// An entry of a forward-secure key generation names an earlier epoch than an entry before
    /// it in the chain (a writer never goes back: a key forged for an earlier epoch, or
    /// reordering).
    EpochNotIncreasing,
    /// A checkpoint carries a cosignature line of a witness of the policy that does not verify
    /// (a forged cosignature, or a checkpoint altered after it was cosigned).
    BadCosignature,
    /// With a witness policy: no checkpoint of the chain is cosigned by the quorum of witnesses.
    NotWitnessed,
}

impl FindingKind {
    /// Every kind, in declaration order (docs/FORMAT.md §9, "Verdicts", has a row for each).
    pub const ALL: [Self; 17] = [
        Self::Modification,
        Self::Deletion,
        Self::Insertion,
        Self::Reordering,
        Self::Replay,
        Self::Truncation,
        Self::WrongKey,
        Self::UnknownKey,
        Self::BadCheckpointSignature,
        Self::CheckpointMismatch,
        Self::Malformed,
        Self::UnmarkedRedaction,
        Self::IdNotIncreasing,
        Self::ErasureIncomplete,
        Self::EpochNotIncreasing,
        Self::BadCosignature,
        Self::NotWitnessed,
    ];

    /// Stable machine name (used in `--format json`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Modification => "modification",
            Self::Deletion => "deletion",
            Self::Insertion => "insertion",
            Self::Reordering => "reordering",
            Self::Replay => "replay",
            Self::Truncation => "truncation",
            Self::WrongKey => "wrong_key",
            Self::UnknownKey => "unknown_key",
            Self::BadCheckpointSignature => "bad_checkpoint_signature",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::Malformed => "malformed",
            Self::UnmarkedRedaction => "unmarked_redaction",
            Self::IdNotIncreasing => "id_not_increasing",
            Self::ErasureIncomplete => "erasure_incomplete",
            Self::EpochNotIncreasing => "epoch_not_increasing",
            Self::BadCosignature => "bad_cosignature",
            Self::NotWitnessed => "not_witnessed",
        }
    }

    /// The words after the message in the one-line verdict: `(deletion detected)`.
    #[must_use]
    pub const fn detected(self) -> &'static str {
        match self {
            Self::Modification => "modification detected",
            Self::Deletion => "deletion detected",
            Self::Insertion => "insertion detected",
            Self::Reordering => "reordering detected",
            Self::Replay => "replayed entry detected",
            Self::Truncation => "truncation detected",
            Self::WrongKey => "wrong key",
            Self::UnknownKey => "unknown key",
            Self::BadCheckpointSignature => "bad checkpoint signature",
            Self::CheckpointMismatch => "checkpoint inconsistent with entries",
            Self::Malformed => "malformed entry",
            Self::UnmarkedRedaction => "unmarked redaction",
            Self::IdNotIncreasing => "clock manipulation or reordering detected",
            Self::ErasureIncomplete => "erasure marker does not match the entries",
            Self::EpochNotIncreasing => "forward-secure epoch went back",
            Self::BadCosignature => "bad witness cosignature",
            Self::NotWitnessed => "not cosigned by the witness quorum",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Chain of the problem (empty when unknown, e.g. an unparseable line).
    pub tenant_id: String,
    /// Sequence number of the first bad entry (0 when it cannot be told).
    pub seq: u64,
    /// Where in the input: 1-based line of a file (counted across all files when several are
    /// read as one log), or row order in a store.
    pub position: u64,
    /// When several files are read as one log: the file and 1-based line `position` falls in
    /// (set by the driver that reads the files).
    pub source: Option<SourceLine>,
    /// What kind of problem.
    pub kind: FindingKind,
    /// Plain-English detail, e.g. `hash mismatch`.
    pub message: String,
    /// Expected digest, when a digest comparison failed.
    pub expected: Option<Hash>,
    /// Digest found or computed.
    pub actual: Option<Hash>,
    /// For HMAC failures: the key id, and whether the next entry still links to this one.
    hmac_fail: Option<(String, bool)>,
}

impl Finding {
    fn new(
        tenant: &str,
        seq: u64,
        position: u64,
        kind: FindingKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant.to_owned(),
            seq,
            position,
            source: None,
            kind,
            message: message.into(),
            expected: None,
            actual: None,
            hmac_fail: None,
        }
    }

    fn digests(mut self, expected: Hash, actual: Hash) -> Self {
        self.expected = Some(expected);
        self.actual = Some(actual);
        self
    }

    /// `entry 9,421 hash mismatch (deletion detected)`.
    #[must_use]
    pub fn headline(&self) -> String {
        if self.seq == 0 {
            format!("{} ({})", self.message, self.kind.detected())
        } else {
            format!(
                "entry {} {} ({})",
                group_thousands(self.seq),
                self.message,
                self.kind.detected()
            )
        }
    }
}

/// A line of one of several input files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line in that file.
    pub line: u64,
}

/// Whether an entry's personal sidecar matches its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarStatus {
    /// The entry has no personal data.
    None,
    /// The sidecar is present and matches `personal_digest`.
    Valid,
    /// The entry commits to personal data but the sidecar is absent (erased or removed).
    Absent,
    /// The sidecar is present but does not match the digest.
    Mismatch,
    /// A sidecar is present but the entry has no digest.
    Unexpected,
}

/// A short string kept inline, so that reading an entry allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// `s` if it is at most `N` (and at most 255) bytes long.
    #[must_use]
    pub fn new(s: &str) -> Option<Self> {
        let len = u8::try_from(s.len())
            .ok()
            .filter(|&l| usize::from(l) <= N)?;
        let mut bytes = [0u8; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self { len, bytes })
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Built from a &str, cut at its own length: always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What an entry says about its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Chain.
    pub tenant_id: InlineStr<{ TenantId::MAX_LEN }>,
    /// Sequence number.
    pub seq: u64,
    /// UUIDv7 as a number (ordered like the UUID).
    pub entry_id: u128,
    /// Link to the previous entry.
    pub prev_entry_hash: Hash,
    /// HMAC key generation.
    pub key_id: InlineStr<{ KeyId::MAX_LEN }>,
    /// Who supplied the entry (format version 2; `None` in version 1).
    pub origin: Option<crate::line_scan::OriginKind>,
}

/// The per-entry, order-independent part of verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// 1-based line or row position.
    pub position: u64,
    /// SHA-256 of the line as found.
    pub entry_hash: Hash,
    /// The Merkle leaf of the entry: SHA-256(0x00 || entry hash).
    pub leaf: Hash,
    /// Parsed fields, or why the line is not an entry.
    pub meta: Result<EntryMeta, String>,
    /// HMAC outcome.
    pub hmac: HmacStatus,
    /// Personal sidecar outcome.
    pub sidecar: SidecarStatus,
    /// For an erasure marker (`event_type` `erasure`, FORMAT.md §5): the `(seq, entry id)` of
    /// each entry it lists, or why its payload cannot be read. `None` for every other entry
    /// (their payload is never parsed).
    pub erasure: Option<Result<Vec<(u64, u128)>, String>>,
}

/// The fields the verifier needs, from the lean reader or, off its layout, the full parser.
struct Envelope<'a> {
    tenant_id: Cow<'a, str>,
    event_type: Cow<'a, str>,
    key_id: Cow<'a, str>,
    seq: u64,
    entry_id: u128,
    prev_entry_hash: Hash,
    personal_digest: Option<Hash>,
    hmac: [u8; 32],
    origin: Option<crate::line_scan::OriginKind>,
}

impl<'a> From<EnvelopeFields<'a>> for Envelope<'a> {
    fn from(e: EnvelopeFields<'a>) -> Self {
        Self {
            tenant_id: Cow::Borrowed(e.tenant_id),
            event_type: Cow::Borrowed(e.event_type),
            key_id: Cow::Borrowed(e.key_id),
            seq: e.seq,
            entry_id: e.entry_id,
            prev_entry_hash: e.prev_entry_hash,
            personal_digest: e.personal_digest,
            origin: e.origin,
            hmac: e.hmac,
        }
    }
}

/// The envelope of `line` and its HMAC outcome. With the key, the envelope is first read without
/// the payload ([`scan_envelope`]) and kept if the MAC then verifies: an authentic line is one
/// the writer produced, so its payload needs no syntax check. Otherwise the line is read with the
/// full grammar (the lean reader, or off its layout the parser).
fn envelope<'a>(
    line: &'a [u8],
    body_digest: Option<Hash>,
    keys: Option<&Keyring>,
) -> Result<(Envelope<'a>, HmacStatus), String> {
    if keys.is_some()
        && let Some(e) = scan_envelope(line)
        && check_suffix_mac(e.key_id, body_digest, &e.hmac, keys) == HmacStatus::Valid
    {
        return Ok((e.into(), HmacStatus::Valid));
    }
    let env = if let Some(e) = scan(line) {
        e.envelope().into()
    } else {
        let v = EntryView::parse(line).map_err(|e| e.to_string())?;
        Envelope {
            tenant_id: v.tenant_id,
            event_type: v.event_type,
            key_id: v.key_id,
            seq: v.seq,
            entry_id: v.entry_id.as_u128(),
            prev_entry_hash: v.prev_entry_hash,
            personal_digest: v.personal_digest,
            hmac: v.hmac,
            origin: v.origin.as_ref().map(Into::into),
        }
    };
    let hmac = check_hmac_digest(&env.key_id, body_digest, &env.hmac, line, keys);
    Ok((env, hmac))
}

/// Checks one entry line on its own (parse, hash, HMAC, sidecar). Safe to run in parallel.
#[must_use]
pub fn check_entry(
    position: u64,
    line: &[u8],
    sidecar: Option<&[u8]>,
    keys: Option<&Keyring>,
) -> EntryCheck {
    let digests = line_digests(line);
    let entry_hash = digests.entry_hash;
    let leaf = leaf_hash(entry_hash.as_bytes());
    let malformed = |why: String| EntryCheck {
        position,
        entry_hash,
        leaf,
        meta: Err(why),
        hmac: HmacStatus::NotChecked,
        sidecar: SidecarStatus::None,
        erasure: None,
    };
    let (env, hmac) = match envelope(line, digests.body_digest, keys) {
        Ok(e) => e,
        Err(why) => return malformed(why),
    };
    let Some(tenant_id) = InlineStr::new(&env.tenant_id) else {
        return malformed(format!(
            "tenant_id is longer than {} bytes",
            TenantId::MAX_LEN
        ));
    };
    let Some(key_id) = InlineStr::new(&env.key_id) else {
        return malformed(format!("key_id is longer than {} bytes", KeyId::MAX_LEN));
    };
    let sidecar = sidecar_status(env.personal_digest, sidecar);
    // Only markers have their payload read: every other entry pays one string comparison.
    let erasure = (env.event_type == crate::erasure::EVENT_TYPE).then(|| marker_entries(line));
    EntryCheck {
        position,
        entry_hash,
        leaf,
        erasure,
        meta: Ok(EntryMeta {
            tenant_id,
            seq: env.seq,
            entry_id: env.entry_id,
            prev_entry_hash: env.prev_entry_hash,
            key_id,
            origin: env.origin,
        }),
        hmac,
        sidecar,
    }
}

/// How a personal sidecar compares with the digest its entry commits to.
fn sidecar_status(digest: Option<Hash>, sidecar: Option<&[u8]>) -> SidecarStatus {
    match (digest, sidecar) {
        (None, None) => SidecarStatus::None,
        (None, Some(_)) => SidecarStatus::Unexpected,
        (Some(_), None) => SidecarStatus::Absent,
        (Some(d), Some(bytes)) if Hash::digest(bytes) == d => SidecarStatus::Valid,
        (Some(_), Some(_)) => SidecarStatus::Mismatch,
    }
}

/// The entries an erasure marker line lists.
fn marker_entries(line: &[u8]) -> Result<Vec<(u64, u128)>, String> {
    let view = EntryView::parse(line).map_err(|e| e.to_string())?;
    let p = crate::erasure::MarkerPayload::parse(view.payload.get().as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(p.redacted.iter().map(|r| (r.seq, r.id())).collect())
}

/// Per-chain summary in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Tenant.
    pub tenant_id: String,
    /// Entries read for this chain, replays and duplicates not counted (`size - start` when
    /// nothing is missing).
    pub entries: u64,
    /// Entries before the first one read: the size of the anchor the chain was picked up from
    /// (0 when the log starts at the genesis hash).
    pub start: u64,
    /// Merkle tree size reached: `start` plus the entries read, or the size of a later anchor
    /// that continued the chain past missing entries.
    pub size: u64,
    /// Hash of the last entry read.
    pub head: Hash,
    /// Merkle root of the tree reached (over the entries read, continuing an anchor's frontier).
    pub root: Hash,
    /// Checkpoints whose signature and root were verified.
    pub checkpoints_verified: u64,
    /// Largest checkpointed size verified.
    pub largest_checkpoint: u64,
    /// Entries whose personal sidecar is absent and that an erasure marker accounts for
    /// (absent sidecars no marker accounts for are `unmarked_redaction` findings instead).
    pub redacted: u64,
    /// Erasure markers read whose HMAC verified (or was not checked) and whose payload is valid.
    pub erasure_markers: u64,
    /// With a witness policy: the largest verified checkpoint cosigned by the quorum, and who
    /// cosigned it (witness name, cosignature time in seconds since the epoch).
    pub witnessed: Option<Witnessed>,
    /// With a witness policy: per listed witness, the largest verified checkpoint size it
    /// cosigned (witnesses that cosigned none are absent).
    pub cosigned_by: BTreeMap<String, u64>,
}

/// The largest checkpoint of a chain that met the witness policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// Its tree size.
    pub size: u64,
    /// The listed witnesses that cosigned it, in the policy's order, with their cosignature
    /// times (seconds since the epoch).
    pub cosigners: Vec<(String, u64)>,
    /// The listed witnesses that did not.
    pub missing: Vec<String>,
}

/// The outcome of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Per chain.
    pub chains: Vec<ChainSummary>,
    /// Problems, ordered by (tenant, seq, entry before checkpoint problems, position); at most
    /// [`MAX_FINDINGS`].
    pub findings: Vec<Finding>,
    /// How many problems in all (may exceed `findings.len()`).
    pub findings_total: u64,
    /// Whether HMACs were checked (a keyring was given).
    pub hmac_checked: bool,
    /// Whether checkpoint signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// Entries per key id whose HMAC verified (forward-secure epochs under their generation).
    pub hmac_valid_by_key: BTreeMap<String, u64>,
    /// Entries read per origin (docs/FORMAT.md §2): `service`, `token`, `local`, and `none`
    /// for version-1 entries, which have no origin.
    pub entries_by_origin: BTreeMap<&'static str, u64>,
    /// Entries of forward-secure epochs before the state the keyring holds, whose HMAC could
    /// not be checked (see [`Report::not_checked`]).
    pub hmac_erased: u64,
    /// Checkpoints seen, verified or not.
    pub checkpoints_seen: u64,
    /// What could not be checked, in plain words.
    pub not_checked: Vec<String>,
    /// The witness policy applied: the quorum and the witnesses' names (`None`: no policy).
    pub witness_policy: Option<(usize, Vec<String>)>,
}

impl Report {
    /// True when no problem was found.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.findings_total == 0
    }

    /// The first problem (lowest tenant, seq, then entry problems before checkpoint ones).
    #[must_use]
    pub fn first(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

struct PendingCheckpoint {
    position: u64,
    cp: SignedCheckpoint,
    trusted: bool,
}

#[derive(Default)]
struct ChainState {
    /// An entry or anchor of this chain has been fed (so a later anchor continues it).
    started: bool,
    /// The size of the anchor the chain was started from (0: from genesis).
    start: u64,
    /// Entries read into the tree (not counting replays and duplicates).
    read: u64,
    next: u64,
    recent: Window,
    pending_links: BTreeMap<u64, Vec<(u64, Hash, u64)>>,
    missing: BTreeSet<u64>,
    last_entry_id: u128,
    tree: CompactRange,
    head: Hash,
    checkpoints: BTreeMap<u64, Vec<PendingCheckpoint>>,
    checkpoints_verified: u64,
    largest_checkpoint: u64,
    witnessed: Option<Witnessed>,
    cosigned_by: BTreeMap<String, u64>,
    redacted: u64,
    erasure_markers: u64,
    /// Entries read without their sidecar, waiting for a marker: seq -> (entry id, position).
    unmarked: BTreeMap<u64, (u128, u64)>,
    /// Entries a marker has accounted for (a later marker may list them again).
    erased: BTreeSet<u64>,
    modified: BTreeSet<u64>,
    hmac_fail_finding: HashMap<u64, usize>,
    /// Latest epoch seen per forward-secure generation.
    fss_epochs: BTreeMap<String, u64>,
}

/// Where a fed entry sits: its chain, number, hash and position in the input.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    tenant: &'a str,
    seq: u64,
    hash: Hash,
    pos: u64,
}

/// What checking an entry's link to its predecessor found about HMAC failures before it.
#[derive(Debug, Default)]
struct LinkOutcome {
    /// The HMAC failure of the predecessor, whose link no longer holds.
    mark_broken: Option<usize>,
    /// The HMAC failure of an entry this one links past: that entry was inserted.
    inserted: Option<usize>,
    /// A deletion explains this entry's HMAC failure (renumbering).
    hmac_explained: bool,
}

impl ChainState {
    /// Sequence order: `Some(true)` for an entry that fills a gap (reordered), `Some(false)` in
    /// order or ahead (the numbers skipped are remembered as missing), `None` for a number
    /// already passed and not missing (a replay; `new` holds its finding).
    fn check_order(&mut self, at: &At<'_>, new: &mut Vec<Finding>) -> Option<bool> {
        let s = at.seq;
        if s < self.next {
            if self.missing.remove(&s) {
                new.push(Finding::new(
                    at.tenant,
                    s,
                    at.pos,
                    FindingKind::Reordering,
                    format!(
                        "is out of order: it appears after entry {}",
                        group_thousands(self.next - 1)
                    ),
                ));
                return Some(true);
            }
            new.push(Finding::new(
                at.tenant,
                s,
                at.pos,
                FindingKind::Replay,
                format!(
                    "appears again after entry {} (replayed or reordered)",
                    group_thousands(self.next - 1)
                ),
            ));
            return None;
        }
        if s > self.next {
            for m in self.next..s {
                if self.missing.len() >= MAX_MISSING {
                    break;
                }
                self.missing.insert(m);
            }
        }
        Some(false)
    }

    /// Entry ids increase with position, and forward-secure epochs never go back (entries in
    /// sequence only).
    fn check_ids(&mut self, at: &At<'_>, meta: &EntryMeta, new: &mut Vec<Finding>) {
        let (tenant, s, pos) = (at.tenant, at.seq, at.pos);
        if meta.entry_id <= self.last_entry_id {
            new.push(Finding::new(
                tenant,
                s,
                pos,
                FindingKind::IdNotIncreasing,
                "has an entry_id that is not greater than the previous entry's",
            ));
        }
        self.last_entry_id = meta.entry_id;
        if let Some((generation, epoch)) = split_epoch_id(meta.key_id.as_str()) {
            match self.fss_epochs.get_mut(generation) {
                Some(last) if epoch < *last => new.push(Finding::new(
                    tenant,
                    s,
                    pos,
                    FindingKind::EpochNotIncreasing,
                    format!(
                        "is signed for epoch {epoch} of key generation `{generation}` after an entry signed for epoch {last}: the writer never goes back to an earlier epoch"
                    ),
                )),
                Some(last) => *last = epoch,
                None => {
                    self.fss_epochs.insert(generation.to_owned(), epoch);
                }
            }
        }
    }

    /// The link to the predecessor: genesis, a modified or deleted predecessor, an inserted
    /// entry linked past, or (predecessor not read yet) a link to check when it comes.
    fn check_link(
        &mut self,
        at: &At<'_>,
        meta: &EntryMeta,
        hmac: HmacStatus,
        hmac_checked: bool,
        new: &mut Vec<Finding>,
    ) -> LinkOutcome {
        let (tenant, s, pos) = (at.tenant, at.seq, at.pos);
        let mut out = LinkOutcome::default();
        if s == 1 {
            if meta.prev_entry_hash != GENESIS_HASH {
                new.push(
                    Finding::new(
                        tenant,
                        s,
                        pos,
                        FindingKind::Modification,
                        "does not start from the genesis hash",
                    )
                    .digests(GENESIS_HASH, meta.prev_entry_hash),
                );
            }
        } else if let preds = self.recent.get(s - 1)
            && !preds.is_empty()
        {
            let pred_pos_hash = preds.first().copied();
            let linked = preds.iter().any(|(ph, _)| *ph == meta.prev_entry_hash);
            if !linked {
                out.mark_broken = self.hmac_fail_finding.get(&(s - 1)).copied();
            }
            if linked {
            } else if let Some(j) = self
                .recent
                .seq_of(&meta.prev_entry_hash)
                .filter(|&j| j + 1 < s)
            {
                out.inserted = self.hmac_fail_finding.get(&(j + 1)).copied();
                new.push(Finding::new(
                    tenant,
                    j + 1,
                    pos,
                    FindingKind::Insertion,
                    format!(
                        "was inserted: entry {} links to entry {}",
                        group_thousands(s),
                        group_thousands(j)
                    ),
                ));
            } else if !self.modified.contains(&(s - 1)) {
                let (ph, _) = pred_pos_hash.unwrap_or((GENESIS_HASH, 0));
                let prev_hmac_ok = !self.hmac_fail_finding.contains_key(&(s - 1));
                let this_hmac_bad = hmac == HmacStatus::Invalid;
                if hmac_checked && prev_hmac_ok && this_hmac_bad {
                    out.hmac_explained = true;
                    new.push(Finding::new(tenant, s, pos, FindingKind::Deletion, "hash mismatch: it does not link to the authentic entry before it (entries deleted and renumbered, or forged)").digests(meta.prev_entry_hash, ph));
                } else {
                    new.push(
                        Finding::new(
                            tenant,
                            s - 1,
                            pos,
                            FindingKind::Modification,
                            format!(
                                "hash mismatch: entry {} recorded a different hash for it",
                                group_thousands(s)
                            ),
                        )
                        .digests(meta.prev_entry_hash, ph),
                    );
                    self.modified.insert(s - 1);
                }
            }
        } else if self.missing.contains(&(s - 1)) {
            self.pending_links
                .entry(s - 1)
                .or_default()
                .push((s, meta.prev_entry_hash, pos));
        }
        out
    }

    /// Entries read earlier that were waiting for this one as their predecessor.
    fn check_waiting_links(&mut self, at: &At<'_>, new: &mut Vec<Finding>) {
        if let Some(waiting) = self.pending_links.remove(&at.seq) {
            for (succ, link, succ_pos) in waiting {
                if link != at.hash {
                    new.push(
                        Finding::new(
                            at.tenant,
                            at.seq,
                            succ_pos,
                            FindingKind::Modification,
                            format!(
                                "hash mismatch: entry {} recorded a different hash for it",
                                group_thousands(succ)
                            ),
                        )
                        .digests(link, at.hash),
                    );
                }
            }
        }
    }

    /// The personal-data sidecar against the digest the entry commits to.
    fn check_sidecar(
        &mut self,
        at: &At<'_>,
        meta: &EntryMeta,
        sidecar: SidecarStatus,
        new: &mut Vec<Finding>,
    ) {
        match sidecar {
            SidecarStatus::None | SidecarStatus::Valid => {}
            SidecarStatus::Absent => {
                // Legitimate only if a later erasure marker lists it: held until then, and an
                // `unmarked_redaction` at `finish` if none does.
                self.unmarked.insert(at.seq, (meta.entry_id, at.pos));
            }
            SidecarStatus::Mismatch => new.push(Finding::new(
                at.tenant,
                at.seq,
                at.pos,
                FindingKind::Modification,
                "personal-data sidecar does not match the digest the entry commits to",
            )),
            SidecarStatus::Unexpected => new.push(Finding::new(
                at.tenant,
                at.seq,
                at.pos,
                FindingKind::Modification,
                "has a personal-data sidecar but commits to none",
            )),
        }
    }

    /// Adds the entry to the Merkle tree over the entries as they appear, and to the window.
    fn append(&mut self, at: &At<'_>, leaf: Hash) {
        self.tree.append(leaf);
        self.read += 1;
        self.head = at.hash;
        if let Some(old) = self.recent.insert(at.seq, at.hash, at.pos) {
            self.forget(old);
        }
        self.next = self.next.max(at.seq + 1);
    }
}

/// The last [`WINDOW`] sequence numbers of a chain: a ring indexed by `seq % WINDOW` whose slots
/// keep their vectors (no allocation per entry once warm). A map from entry hash to seq is built
/// only when a link first fails to match (an intact log never needs it), then kept up to date.
#[derive(Default)]
struct Window {
    slots: Vec<(u64, Vec<(Hash, u64)>)>,
    by_hash: Option<HashMap<Hash, u64, BuildDigestHasher>>,
}

impl Window {
    fn slot(seq: u64) -> usize {
        // WINDOW is far below usize::MAX, so the remainder always fits.
        usize::try_from(seq % WINDOW as u64).unwrap_or(0)
    }

    /// The (hash, position) of every entry seen with this seq (usually one; two or more means
    /// a duplicate).
    fn get(&self, seq: u64) -> &[(Hash, u64)] {
        match self.slots.get(Self::slot(seq)) {
            Some((s, v)) if *s == seq => v,
            _ => &[],
        }
    }

    /// Records an entry; returns the seq it evicted from the window, if any.
    fn insert(&mut self, seq: u64, h: Hash, pos: u64) -> Option<u64> {
        if self.slots.is_empty() {
            self.slots = (0..WINDOW).map(|_| (u64::MAX, Vec::new())).collect();
        }
        let i = Self::slot(seq);
        let mut evicted = None;
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.0 != seq {
                for (old_hash, _) in slot.1.drain(..) {
                    if let Some(m) = self.by_hash.as_mut() {
                        m.remove(&old_hash);
                    }
                }
                if slot.0 != u64::MAX {
                    evicted = Some(slot.0);
                }
                slot.0 = seq;
            }
            slot.1.push((h, pos));
        }
        if let Some(m) = self.by_hash.as_mut() {
            m.insert(h, seq);
        }
        evicted
    }

    /// The seq of the entry with this hash, if it is in the window.
    fn seq_of(&mut self, h: &Hash) -> Option<u64> {
        let slots = &self.slots;
        let map = self.by_hash.get_or_insert_with(|| {
            let mut m = HashMap::with_capacity_and_hasher(WINDOW, BuildDigestHasher);
            for (seq, hashes) in slots {
                for (hh, _) in hashes {
                    m.insert(*hh, *seq);
                }
            }
            m
        });
        map.get(h).copied()
    }
}

/// Hashes a SHA-256 digest by its first eight bytes: they are already uniformly distributed,
/// and SipHash over 32 bytes per entry showed up in verification profiles. (An attacker cannot
/// choose entry hashes to collide without breaking SHA-256.)
#[derive(Clone, Copy, Default)]
struct BuildDigestHasher;

impl std::hash::BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the 32-byte array carries no information.
    }
}

impl ChainState {
    /// Drops bookkeeping about a seq that left the window.
    fn forget(&mut self, seq: u64) {
        self.hmac_fail_finding.remove(&seq);
        self.modified.remove(&seq);
    }
}

/// Streaming verifier over any number of chains. See the module docs.
pub struct LogVerifier {
    /// Entries read per origin kind (index: service, token, local, none).
    by_origin: [u64; 4],
    hmac_checked: bool,
    note_verifier: Option<NoteVerifier>,
    chains: BTreeMap<String, ChainState>,
    findings: Vec<Finding>,
    findings_total: u64,
    entries: u64,
    checkpoints_seen: u64,
    hmac_valid_by_key: BTreeMap<String, u64>,
    hmac_invalid_by_key: BTreeMap<String, u64>,
    expected_heads: BTreeMap<String, (u64, Hash)>,
    late_checkpoints: Vec<(String, u64, u64)>,
    /// Plain-words notes for [`Report::not_checked`] about anchors.
    anchor_notes: Vec<String>,
    /// Per forward-secure generation: entries whose epoch key was erased, and the epoch held.
    erased: BTreeMap<String, (u64, u64)>,
    /// Per forward-secure generation: erasure markers of erased epochs that were applied without
    /// their HMAC being checked, and the redactions they resolved (FORMAT.md §5, §17).
    unchecked_markers: BTreeMap<String, (u64, u64)>,
    /// The witness policy, if any.
    witnesses: Option<WitnessPolicy>,
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogVerifier")
            .field("entries", &self.entries)
            .field("chains", &self.chains.len())
            .field("findings_total", &self.findings_total)
            .finish_non_exhaustive()
    }
}

/// Adds one to `map[key]` without allocating a key when it is already there (the common case).
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Whether an erasure marker with this HMAC outcome may resolve the redactions it lists
/// (FORMAT.md §5 "Verifying redactions", §17 "Verification").
///
/// A marker whose MAC verifies was written by the log itself (clients cannot send the `erasure`
/// type). A marker whose MAC was not checked — no keyring, or a forward-secure epoch before the
/// state the keyring holds — is in the position of every other entry whose MAC was not checked:
/// it is trusted as far as the chain links, Merkle roots and checkpoints around it, and the report
/// says its MAC was not checked. A marker whose MAC could be checked and fails, or whose key id
/// the keyring does not know, resolves nothing: otherwise anyone who can write the log's storage
/// could hide the removal of personal data behind a marker of their own.
#[must_use]
const fn marker_trusted(hmac: HmacStatus) -> bool {
    match hmac {
        HmacStatus::Valid | HmacStatus::NotChecked | HmacStatus::Erased { .. } => true,
        HmacStatus::Invalid | HmacStatus::UnknownKey => false,
    }
}

pub use crate::checkpoint::origin_tenant;

impl LogVerifier {
    /// A verifier. `hmac_checked` says whether the [`EntryCheck`]s it will be fed were made with
    /// a keyring; `note_verifier` is the checkpoint public key, if any.
    #[must_use]
    pub fn new(hmac_checked: bool, note_verifier: Option<NoteVerifier>) -> Self {
        Self {
            by_origin: [0; 4],
            hmac_checked,
            note_verifier,
            chains: BTreeMap::new(),
            findings: Vec::new(),
            findings_total: 0,
            entries: 0,
            checkpoints_seen: 0,
            hmac_valid_by_key: BTreeMap::new(),
            hmac_invalid_by_key: BTreeMap::new(),
            expected_heads: BTreeMap::new(),
            late_checkpoints: Vec::new(),
            anchor_notes: Vec::new(),
            erased: BTreeMap::new(),
            unchecked_markers: BTreeMap::new(),
            witnesses: None,
        }
    }

    /// Requires every chain to have a verified checkpoint cosigned by the policy's quorum of
    /// witnesses (else a `not_witnessed` finding), and every cosignature line of a listed witness
    /// on a verified checkpoint to verify (else `bad_cosignature`). Cosignatures are only looked
    /// at on checkpoints whose signature (with a public key) and root verified.
    #[must_use]
    pub fn with_witness_policy(mut self, policy: WitnessPolicy) -> Self {
        self.witnesses = Some(policy);
        self
    }

    /// Records what a store's (unsigned) chain head says: `size` entries ending in `head`. A
    /// chain that ends earlier is reported as truncated, one that ends elsewhere as modified.
    pub fn expect_head(&mut self, tenant: &str, size: u64, head: Hash) {
        self.expected_heads.insert(tenant.to_owned(), (size, head));
        self.chain(tenant);
    }

    fn push(&mut self, f: Finding) -> Option<usize> {
        self.findings_total += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
            Some(self.findings.len() - 1)
        } else {
            None
        }
    }

    fn chain(&mut self, tenant: &str) -> &mut ChainState {
        // Look up before inserting: `entry()` would allocate a key for every entry.
        if !self.chains.contains_key(tenant) {
            self.chains.insert(
                tenant.to_owned(),
                ChainState {
                    next: 1,
                    head: GENESIS_HASH,
                    ..ChainState::default()
                },
            );
        }
        match self.chains.get_mut(tenant) {
            Some(s) => s,
            None => unreachable!("inserted above"),
        }
    }

    /// Registers a signed checkpoint (from the log, or `trusted` from the auditor). Must be called
    /// before the entries it covers are fed. The chain is the checkpoint origin's last `/` part.
    pub fn add_checkpoint(&mut self, position: u64, text: &str, trusted: bool) {
        self.checkpoints_seen += 1;
        let cp = match SignedCheckpoint::parse(text) {
            Ok(cp) => cp,
            Err(e) => {
                self.push(Finding::new(
                    "",
                    0,
                    position,
                    FindingKind::Malformed,
                    format!("checkpoint at position {position} cannot be read: {e}"),
                ));
                return;
            }
        };
        let tenant = origin_tenant(&cp.checkpoint.origin).to_owned();
        if let Some(v) = &self.note_verifier
            && let Err(e) = cp.verify(v)
        {
            let size = cp.checkpoint.size;
            self.push(Finding::new(
                &tenant,
                size,
                position,
                FindingKind::BadCheckpointSignature,
                format!(
                    "checkpoint for tree size {} does not verify with the public key: {e}",
                    group_thousands(size)
                ),
            ));
            return;
        }
        let size = cp.checkpoint.size;
        let state = self.chain(&tenant);
        if size < state.tree.size() {
            // Registered after entries beyond its size were fed: a single pass cannot recompute
            // that root. Blackbox's own exports never do this (a checkpoint follows the entry that
            // completes it); say so rather than pass it silently.
            self.late_checkpoints.push((tenant, size, position));
            return;
        }
        state
            .checkpoints
            .entry(size)
            .or_default()
            .push(PendingCheckpoint {
                position,
                cp,
                trusted,
            });
        if size == self.chain(&tenant).tree.size() {
            self.settle_checkpoints(&tenant);
        }
    }

    fn settle_checkpoints(&mut self, tenant: &str) {
        let Some(state) = self.chains.get_mut(tenant) else {
            return;
        };
        let size = state.tree.size();
        let Some(list) = state.checkpoints.remove(&size) else {
            return;
        };
        let root = state.tree.root();
        let mut out = Vec::new();
        for pc in list {
            if pc.cp.checkpoint.root == root {
                state.checkpoints_verified += 1;
                state.largest_checkpoint = state.largest_checkpoint.max(size);
                if let Some(policy) = &self.witnesses {
                    let check = policy.check(&pc.cp.note);
                    for (name, mark) in &check.witnesses {
                        match mark {
                            WitnessMark::Cosigned(_) => {
                                let e = state.cosigned_by.entry(name.clone()).or_insert(0);
                                *e = (*e).max(size);
                            }
                            WitnessMark::Invalid(e) => out.push(Finding::new(
                                tenant,
                                size,
                                pc.position,
                                FindingKind::BadCosignature,
                                format!("checkpoint for tree size {}: {e}", group_thousands(size)),
                            )),
                            WitnessMark::Missing => {}
                        }
                    }
                    if check.met() && state.witnessed.as_ref().is_none_or(|w| w.size <= size) {
                        state.witnessed = Some(Witnessed {
                            size,
                            cosigners: check
                                .witnesses
                                .iter()
                                .filter_map(|(n, m)| match m {
                                    WitnessMark::Cosigned(t) => Some((n.clone(), *t)),
                                    _ => None,
                                })
                                .collect(),
                            missing: check.missing().into_iter().map(str::to_owned).collect(),
                        });
                    }
                }
            } else {
                let what = if pc.trusted {
                    "the trusted checkpoint"
                } else {
                    "checkpoint"
                };
                out.push(
                    Finding::new(tenant, size, pc.position, FindingKind::CheckpointMismatch, format!("{what} for tree size {} has a different Merkle root than the entries (history rewritten)", group_thousands(size)))
                        .digests(pc.cp.checkpoint.root, root),
                );
            }
        }
        for f in out {
            self.push(f);
        }
    }

    /// Reads an anchor record line (FORMAT.md §8) and feeds it with [`Self::add_anchor`]; a
    /// record that cannot be read is a `malformed` finding.
    pub fn add_anchor_line(&mut self, position: u64, line: &[u8]) {
        match Anchor::parse(line) {
            Ok(a) => self.add_anchor(position, &a),
            Err(e) => {
                self.checkpoints_seen += 1;
                self.push(Finding::new(
                    "",
                    0,
                    position,
                    FindingKind::Malformed,
                    format!("anchor record at position {position} cannot be read: {e}"),
                ));
            }
        }
    }

    /// Feeds an anchor record in log order: after the entries before it, before those after it.
    ///
    /// The anchor is checked first (its signature too when there is a public key; a failure is a
    /// `bad_checkpoint_signature` or `checkpoint_mismatch` finding). Then, for a chain not seen
    /// yet, the chain continues from it: the next entry is `N + 1`, linking to its head, and the
    /// Merkle tree grows from its frontier (the first entry's id cannot be compared with entry
    /// `N`'s). For a chain already in progress, the anchor must match the state reached: a larger
    /// size means entries are missing, a smaller one that the log repeats or rewinds, a different
    /// head or Merkle state that history was rewritten.
    pub fn add_anchor(&mut self, position: u64, anchor: &Anchor) {
        self.checkpoints_seen += 1;
        let tenant = anchor.tenant_id().as_str();
        let n = anchor.size();
        let checked = match &self.note_verifier {
            Some(v) => anchor.verify(v),
            None => anchor.check(),
        };
        let valid = match checked {
            Ok(()) => true,
            Err(e) => {
                let kind = match e {
                    AnchorError::Checkpoint(_) => FindingKind::BadCheckpointSignature,
                    _ => FindingKind::CheckpointMismatch,
                };
                let message = if n == 0 {
                    format!(
                        "the anchor for tree size 0 at position {position} does not verify: {e}"
                    )
                } else {
                    format!(
                        "is the head of an anchor at position {position} that does not verify: {e}"
                    )
                };
                self.push(Finding::new(tenant, n, position, kind, message));
                false
            }
        };
        if self.chain(tenant).started {
            self.continue_at_anchor(position, anchor, valid);
        } else {
            self.start_at_anchor(position, anchor, valid);
        }
    }

    /// Makes `anchor` the chain's state: entries `1 ..= N` are taken as the anchor says.
    fn adopt_anchor(&mut self, position: u64, anchor: &Anchor, why: &str) {
        let tenant = anchor.tenant_id().as_str();
        let n = anchor.size();
        let state = self.chain(tenant);
        state.started = true;
        state.tree = anchor.range().clone();
        state.head = anchor.head();
        state.next = n.saturating_add(1);
        if n > 0
            && let Some(old) = state.recent.insert(n, anchor.head(), position)
        {
            state.forget(old);
        }
        // Checkpoints registered for smaller trees cover entries this log does not have.
        let larger = state.checkpoints.split_off(&n);
        let smaller = std::mem::replace(&mut state.checkpoints, larger);
        for (size, list) in smaller {
            for pc in list {
                let what = if pc.trusted {
                    "the trusted checkpoint"
                } else {
                    "the checkpoint"
                };
                self.anchor_notes.push(format!(
                    "{what} of tenant {tenant} for {} entries (position {}): {why} at the anchor for {} entries at position {position}, so its root was not recomputed",
                    group_thousands(size),
                    pc.position,
                    group_thousands(n)
                ));
            }
        }
        self.settle_checkpoints(tenant);
    }

    fn count_anchor_checkpoint(&mut self, tenant: &str, size: u64) {
        let state = self.chain(tenant);
        state.checkpoints_verified += 1;
        state.largest_checkpoint = state.largest_checkpoint.max(size);
    }

    fn start_at_anchor(&mut self, position: u64, anchor: &Anchor, valid: bool) {
        let tenant = anchor.tenant_id().as_str();
        let n = anchor.size();
        self.chain(tenant).start = n;
        if self.note_verifier.is_some() {
            if valid {
                self.count_anchor_checkpoint(tenant, n);
            }
        } else {
            self.anchor_notes.push(format!(
                "the anchor of tenant {tenant} at position {position}: no public key given, so it is not authenticated and the {} entries before it are taken on its word",
                group_thousands(n)
            ));
        }
        self.adopt_anchor(position, anchor, "the log starts after it");
    }

    fn continue_at_anchor(&mut self, position: u64, anchor: &Anchor, valid: bool) {
        let tenant = anchor.tenant_id().as_str();
        let (n, head) = (anchor.size(), anchor.head());
        let state = self.chain(tenant);
        let reached = state.next.saturating_sub(1);
        let known: Vec<Hash> = if n == 0 {
            vec![GENESIS_HASH]
        } else {
            state.recent.get(n).iter().map(|(h, _)| *h).collect()
        };
        let mut out = Vec::new();
        if n > reached {
            let first = reached + 1;
            let missing = if first == n {
                "is missing".to_owned()
            } else {
                format!(
                    "to {} are missing ({} entries)",
                    group_thousands(n),
                    group_thousands(n - reached)
                )
            };
            out.push(Finding::new(
                tenant,
                first,
                position,
                FindingKind::Deletion,
                format!(
                    "{missing}: the log before the anchor at position {position} ends at entry {}, the anchor continues after entry {}",
                    group_thousands(reached),
                    group_thousands(n)
                ),
            ));
            for f in out {
                self.push(f);
            }
            // Nothing read can confirm it: it counts only if its signature was checked.
            if valid && self.note_verifier.is_some() {
                self.count_anchor_checkpoint(tenant, n);
            }
            self.adopt_anchor(position, anchor, "entries before it are missing");
            return;
        }
        if let Some(&ours) = known.first()
            && !known.contains(&head)
        {
            out.push(
                Finding::new(
                    tenant,
                    n,
                    position,
                    FindingKind::Modification,
                    format!(
                        "hash mismatch: the anchor at position {position} records a different entry {} than the log before it (history rewritten)",
                        group_thousands(n)
                    ),
                )
                .digests(head, ours),
            );
            // Entries after the anchor that link to its head would report the same break again.
            state.modified.insert(n);
        } else if n < reached {
            out.push(Finding::new(
                tenant,
                n + 1,
                position,
                FindingKind::Replay,
                format!(
                    "and later appear again: the anchor at position {position} restarts the chain after entry {}, but the log before it already reached entry {} (overlapping files, or a rewound log)",
                    group_thousands(n),
                    group_thousands(reached)
                ),
            ));
        } else if state.tree.size() != n {
            // Entries before it are missing (already reported): check what follows against the
            // anchor's Merkle state rather than the incomplete one.
            let valid_signed = valid && self.note_verifier.is_some();
            if valid_signed {
                self.count_anchor_checkpoint(tenant, n);
            }
            self.adopt_anchor(position, anchor, "entries before it are missing");
        } else if state.tree != *anchor.range() {
            out.push(
                Finding::new(
                    tenant,
                    n,
                    position,
                    FindingKind::CheckpointMismatch,
                    format!(
                        "the anchor at position {position} has a different Merkle state for tree size {} than the entries before it (history rewritten)",
                        group_thousands(n)
                    ),
                )
                .digests(anchor.range().root(), state.tree.root()),
            );
        } else if valid {
            // Same size, head and tree: like a checkpoint record whose root matches the entries.
            self.count_anchor_checkpoint(tenant, n);
        }
        for f in out {
            self.push(f);
        }
    }

    /// Re-labels the HMAC failure at `idx` as an insertion: the entry was forged, not modified.
    fn mark_inserted(&mut self, idx: usize, message: String) {
        if let Some(f) = self.findings.get_mut(idx)
            && f.kind == FindingKind::Modification
        {
            f.kind = FindingKind::Insertion;
            f.message = message;
        }
    }

    /// Feeds the next entry in log order.
    pub fn feed(&mut self, c: EntryCheck) {
        self.feed_ref(&c);
    }

    /// [`Self::feed`] without giving up the check (callers that recycle their buffers of checks
    /// avoid moving each one).
    pub fn feed_ref(&mut self, c: &EntryCheck) {
        self.entries += 1;
        let meta = match &c.meta {
            Ok(m) => m,
            Err(why) => {
                self.push(Finding::new(
                    "",
                    0,
                    c.position,
                    FindingKind::Malformed,
                    format!("line {} is not a valid entry: {why}", c.position),
                ));
                return;
            }
        };
        self.count_origin(meta.origin);
        let at = At {
            tenant: meta.tenant_id.as_str(),
            seq: meta.seq,
            hash: c.entry_hash,
            pos: c.position,
        };
        let hmac_checked = self.hmac_checked;
        let state = self.chain(at.tenant);
        state.started = true;
        if !state.recent.get(at.seq).is_empty() {
            self.seq_seen_again(&at);
            return;
        }
        let mut new: Vec<Finding> = Vec::new();
        let Some(reordered) = state.check_order(&at, &mut new) else {
            for f in new {
                self.push(f);
            }
            return;
        };
        if !reordered {
            state.check_ids(&at, meta, &mut new);
        }
        let link = state.check_link(&at, meta, c.hmac, hmac_checked, &mut new);
        self.apply_link(&at, &link);
        self.chain(at.tenant).check_waiting_links(&at, &mut new);
        // Entries of a forward-secure generation are counted under the generation.
        let key_label =
            split_epoch_id(meta.key_id.as_str()).map_or(meta.key_id.as_str(), |(g, _)| g);
        let hmac_fail = self.count_hmac(&at, meta, c.hmac, key_label, &mut new);
        let state = self.chain(at.tenant);
        state.check_sidecar(&at, meta, c.sidecar, &mut new);
        state.append(&at, c.leaf);
        self.record(&at, new, hmac_fail, link.hmac_explained, key_label);
        if let Some(listed) = &c.erasure {
            self.check_marker(&at, listed, c.hmac, key_label);
        }
        self.settle_checkpoints(at.tenant);
    }

    /// Counts the entry under who supplied it.
    fn count_origin(&mut self, origin: Option<crate::line_scan::OriginKind>) {
        self.by_origin[match origin {
            Some(crate::line_scan::OriginKind::Service) => 0,
            Some(crate::line_scan::OriginKind::Token) => 1,
            Some(crate::line_scan::OriginKind::Local) => 2,
            None => 3,
        }] += 1;
    }

    /// An entry whose sequence number was seen already: a copy (replay) or another entry with
    /// the same number (insertion).
    fn seq_seen_again(&mut self, at: &At<'_>) {
        let (tenant, s, pos) = (at.tenant, at.seq, at.pos);
        let seen = self.chain(tenant).recent.get(s);
        if let Some((_, first_pos)) = seen.iter().find(|(hh, _)| *hh == at.hash) {
            let f = Finding::new(
                tenant,
                s,
                pos,
                FindingKind::Replay,
                format!("is a copy of the entry at position {first_pos} (replayed or duplicated)"),
            );
            self.push(f);
            return;
        }
        let first_pos = seen.first().map_or(0, |(_, p)| *p);
        let f = Finding::new(
            tenant,
            s,
            pos,
            FindingKind::Insertion,
            format!(
                "appears twice with different content (positions {first_pos} and {pos}): one of them was inserted"
            ),
        );
        let state = self.chain(tenant);
        if let Some(old) = state.recent.insert(s, at.hash, pos) {
            state.forget(old);
        }
        // An earlier copy whose MAC failed is the forged one, not a modified entry.
        if let Some(idx) = state.hmac_fail_finding.get(&s).copied() {
            self.mark_inserted(idx, format!("was inserted: its HMAC does not verify and another entry with this number follows at position {pos}"));
        }
        self.push(f);
    }

    /// Acts on what the link check found about earlier entries' HMAC failures.
    fn apply_link(&mut self, at: &At<'_>, link: &LinkOutcome) {
        if let Some(idx) = link.inserted {
            self.mark_inserted(
                idx,
                format!(
                    "was inserted: its HMAC does not verify and entry {} links past it",
                    group_thousands(at.seq)
                ),
            );
        }
        if let Some(idx) = link.mark_broken
            && let Some((_, intact)) = self
                .findings
                .get_mut(idx)
                .and_then(|f| f.hmac_fail.as_mut())
        {
            *intact = false;
        }
    }

    /// Counts the entry's HMAC outcome by key; returns whether it failed.
    fn count_hmac(
        &mut self,
        at: &At<'_>,
        meta: &EntryMeta,
        hmac: HmacStatus,
        key_label: &str,
        new: &mut Vec<Finding>,
    ) -> bool {
        match hmac {
            HmacStatus::Valid => bump(&mut self.hmac_valid_by_key, key_label),
            HmacStatus::Invalid => {
                bump(&mut self.hmac_invalid_by_key, key_label);
                return true;
            }
            HmacStatus::Erased { held_epoch } => match self.erased.get_mut(key_label) {
                Some((n, held)) => {
                    *n += 1;
                    *held = held_epoch;
                }
                None => {
                    self.erased.insert(key_label.to_owned(), (1, held_epoch));
                }
            },
            HmacStatus::UnknownKey => new.push(Finding::new(
                at.tenant,
                at.seq,
                at.pos,
                FindingKind::UnknownKey,
                format!(
                    "is signed with key id `{}`, which is not in the keyring",
                    meta.key_id
                ),
            )),
            HmacStatus::NotChecked => {}
        }
        false
    }

    /// Reports the entry's findings (an HMAC failure first, unless a deletion explains it) and
    /// remembers which of them are modifications and HMAC failures of this entry.
    fn record(
        &mut self,
        at: &At<'_>,
        mut new: Vec<Finding>,
        hmac_fail: bool,
        hmac_explained: bool,
        key_label: &str,
    ) {
        let (tenant, s) = (at.tenant, at.seq);
        if hmac_fail {
            let mut f = Finding::new(
                tenant,
                s,
                at.pos,
                FindingKind::Modification,
                "HMAC mismatch: content changed after signing",
            );
            f.hmac_fail = Some((key_label.to_owned(), true));
            if hmac_explained {
                // Renumbering after a deletion broke the MAC: the deletion comes first.
                new.push(f);
            } else {
                new.insert(0, f);
            }
        }
        let mut hmac_idx = None;
        for f in new {
            let is_hmac = f.hmac_fail.is_some();
            if f.kind == FindingKind::Modification && f.seq == s {
                self.chain(tenant).modified.insert(s);
            }
            let idx = self.push(f);
            if is_hmac {
                hmac_idx = idx;
            }
        }
        if let Some(idx) = hmac_idx {
            self.chain(tenant).hmac_fail_finding.insert(s, idx);
        }
    }

    /// An erasure marker: resolves the sidecars it lists when its signature can be trusted.
    fn check_marker(
        &mut self,
        at: &At<'_>,
        listed: &Result<Vec<(u64, u128)>, String>,
        hmac: HmacStatus,
        key_label: &str,
    ) {
        match listed {
            Err(why) => {
                self.push(Finding::new(
                    at.tenant,
                    at.seq,
                    at.pos,
                    FindingKind::Malformed,
                    format!("is an erasure marker that cannot be read: {why}"),
                ));
            }
            Ok(list) if marker_trusted(hmac) => {
                let resolved = self.apply_marker(at.tenant, at.seq, at.pos, list);
                if matches!(hmac, HmacStatus::Erased { .. }) {
                    let (markers, redactions) = self
                        .unchecked_markers
                        .entry(key_label.to_owned())
                        .or_default();
                    *markers += 1;
                    *redactions += resolved;
                }
            }
            Ok(_) => {}
        }
    }

    /// Resolves the absent sidecars a trusted erasure marker (entry `marker` at `pos`) lists,
    /// and reports the entries it lists that were not erased. Returns how many it resolved.
    fn apply_marker(&mut self, tenant: &str, marker: u64, pos: u64, list: &[(u64, u128)]) -> u64 {
        let mut out = Vec::new();
        let mut resolved = 0;
        let state = self.chain(tenant);
        state.erasure_markers += 1;
        for &(seq, id) in list {
            if seq >= marker {
                out.push(Finding::new(
                    tenant,
                    marker,
                    pos,
                    FindingKind::ErasureIncomplete,
                    format!(
                        "is an erasure marker that lists entry {}, which does not precede it",
                        group_thousands(seq)
                    ),
                ));
                continue;
            }
            if seq <= state.start || state.missing.contains(&seq) || state.erased.contains(&seq) {
                // Before the anchor the log starts at (not read here), already reported
                // missing, or accounted for by an earlier marker.
                continue;
            }
            match state.unmarked.get(&seq) {
                Some(&(found, _)) if found == id => {
                    state.unmarked.remove(&seq);
                    state.erased.insert(seq);
                    state.redacted += 1;
                    resolved += 1;
                }
                Some(&(found, _)) => out.push(Finding::new(tenant, seq, pos, FindingKind::ErasureIncomplete, format!("is listed by the erasure marker at entry {} under another entry_id ({}; the entry has {})", group_thousands(marker), uuid::Uuid::from_u128(id).hyphenated(), uuid::Uuid::from_u128(found).hyphenated()))),
                None => out.push(Finding::new(tenant, seq, pos, FindingKind::ErasureIncomplete, format!("is listed by the erasure marker at entry {} but its personal data was not erased (its sidecar is present, or it never had one)", group_thousands(marker)))),
            }
        }
        for f in out {
            self.push(f);
        }
        resolved
    }

    /// Ends verification and returns the report.
    #[must_use]
    pub fn finish(mut self) -> Report {
        // Gaps never filled are deletions; checkpoints beyond the end are truncations.
        let tenants: Vec<String> = self.chains.keys().cloned().collect();
        for t in &tenants {
            let mut out = Vec::new();
            if let Some(state) = self.chains.get_mut(t) {
                for (&seq, &(_, pos)) in &state.unmarked {
                    out.push(Finding::new(
                        t,
                        seq,
                        pos,
                        FindingKind::UnmarkedRedaction,
                        "has had its personal data removed without an erasure marker",
                    ));
                }
                let mut runs: Vec<(u64, u64)> = Vec::new();
                for &m in &state.missing {
                    match runs.last_mut() {
                        Some((_, end)) if *end + 1 == m => *end = m,
                        _ => runs.push((m, m)),
                    }
                }
                for (a, b) in runs {
                    let msg = if a == b {
                        "hash mismatch, 1 entry missing".to_owned()
                    } else {
                        format!(
                            "hash mismatch, {} entries missing (through entry {})",
                            group_thousands(b - a + 1),
                            group_thousands(b)
                        )
                    };
                    out.push(Finding::new(t, a, 0, FindingKind::Deletion, msg));
                }
                let size = state.tree.size();
                if let Some((want, head)) = self.expected_heads.get(t) {
                    if *want > size {
                        out.push(Finding::new(t, size + 1, 0, FindingKind::Truncation, format!("and later are missing: the store's chain head records {} entries but {} are present", group_thousands(*want), group_thousands(size))));
                    } else if *want == size && *head != state.head {
                        out.push(Finding::new(t, size, 0, FindingKind::Modification, "hash mismatch: the last entry is not the one the chain head records").digests(*head, state.head));
                    }
                }
                for (cp_size, list) in std::mem::take(&mut state.checkpoints) {
                    for pc in list {
                        let who = if pc.trusted {
                            "the trusted checkpoint"
                        } else {
                            "a signed checkpoint"
                        };
                        out.push(Finding::new(t, size + 1, pc.position, FindingKind::Truncation, format!("and later are missing: {who} commits to {} entries but the chain has {}", group_thousands(cp_size), group_thousands(size))));
                    }
                }
            }
            for f in out {
                self.push(f);
            }
        }

        if let Some(policy) = &self.witnesses {
            let mut out = Vec::new();
            for (t, state) in &self.chains {
                if state.witnessed.is_some() {
                    continue;
                }
                let cosigned: Vec<String> = state
                    .cosigned_by
                    .iter()
                    .map(|(w, s)| format!("{w} up to size {}", group_thousands(*s)))
                    .collect();
                let never: Vec<&str> = policy
                    .witnesses()
                    .iter()
                    .map(|w| w.name())
                    .filter(|n| !state.cosigned_by.contains_key(*n))
                    .collect();
                out.push(Finding::new(
                    t,
                    state.largest_checkpoint,
                    0,
                    FindingKind::NotWitnessed,
                    format!(
                        "no verified checkpoint of this chain is cosigned by {} of the {} witnesses given ({})",
                        policy.quorum(),
                        policy.witnesses().len(),
                        match (cosigned.is_empty(), never.is_empty()) {
                            (true, _) => "none cosigned any".to_owned(),
                            (false, true) => format!("cosigned: {}", cosigned.join(", ")),
                            (false, false) => format!(
                                "cosigned: {}; none by {}",
                                cosigned.join(", "),
                                never.join(", ")
                            ),
                        }
                    ),
                ));
            }
            for f in out {
                self.push(f);
            }
        }

        // Wrong key: every entry under a key id fails its HMAC while the links around them hold.
        let mut wrong: BTreeSet<String> = BTreeSet::new();
        for (k, invalid) in &self.hmac_invalid_by_key {
            let valid = self.hmac_valid_by_key.get(k).copied().unwrap_or(0);
            let all_intact = self
                .findings
                .iter()
                .filter_map(|f| f.hmac_fail.as_ref())
                .filter(|(kid, _)| kid == k)
                .all(|(_, intact)| *intact);
            if valid == 0 && *invalid > 0 && all_intact {
                wrong.insert(k.clone());
            }
        }
        if !wrong.is_empty() {
            let mut firsts: BTreeMap<String, Finding> = BTreeMap::new();
            self.findings.retain(|f| match &f.hmac_fail {
                Some((k, _)) if wrong.contains(k) => {
                    firsts.entry(k.clone()).or_insert_with(|| f.clone());
                    false
                }
                _ => true,
            });
            for (k, f) in firsts {
                let n = self.hmac_invalid_by_key.get(&k).copied().unwrap_or(0);
                self.findings_total = self.findings_total.saturating_sub(n - 1);
                let mut g = Finding::new(
                    &f.tenant_id,
                    f.seq,
                    f.position,
                    FindingKind::WrongKey,
                    format!(
                        "HMAC does not verify: none of the {} entries signed with key id `{k}` verifies with the key given (wrong key file?)",
                        group_thousands(n)
                    ),
                );
                g.hmac_fail = None;
                self.findings.push(g);
            }
        }
        // At one sequence number, what is wrong with the entry comes before what it does to the
        // checkpoints covering it (checkpoint and entry positions are not comparable).
        let from_checkpoint = |k: FindingKind| {
            matches!(
                k,
                FindingKind::CheckpointMismatch
                    | FindingKind::BadCheckpointSignature
                    | FindingKind::Truncation
                    | FindingKind::BadCosignature
                    | FindingKind::NotWitnessed
            )
        };
        // A chain's `not_witnessed` comes after everything else found in it: what is wrong with
        // the log (a forged cosignature among it) is named first.
        let last = |k: FindingKind| k == FindingKind::NotWitnessed;
        self.findings.sort_by(|a, b| {
            (
                &a.tenant_id,
                last(a.kind),
                a.seq,
                from_checkpoint(a.kind),
                a.position,
            )
                .cmp(&(
                    &b.tenant_id,
                    last(b.kind),
                    b.seq,
                    from_checkpoint(b.kind),
                    b.position,
                ))
        });

        let mut not_checked = Vec::new();
        if !self.hmac_checked {
            not_checked.push(
                "HMAC signatures (no HMAC key given: only the service's key can check them)"
                    .to_owned(),
            );
        }
        if self.note_verifier.is_none() {
            not_checked.push("checkpoint signatures (no public key given)".to_owned());
        }
        for (generation, (n, held)) in &self.erased {
            not_checked.push(format!(
                "HMACs of {} {} in forward-secure epochs before e{held} of {generation}: only the auditor's initial key can check them",
                group_thousands(*n),
                if *n == 1 { "entry" } else { "entries" }
            ));
        }
        for (generation, (markers, redactions)) in &self.unchecked_markers {
            let held = self.erased.get(generation).map_or(0, |(_, h)| *h);
            let (them, their) = if *markers == 1 {
                ("it", "its")
            } else {
                ("them", "their")
            };
            not_checked.push(format!(
                "{} {} under {} {} signed in forward-secure epochs before e{held} of {generation}: taken on the chain links and checkpoints around {them}, not on {their} own HMAC (only the auditor's initial key can check {them})",
                group_thousands(*redactions),
                if *redactions == 1 { "redaction" } else { "redactions" },
                group_thousands(*markers),
                if *markers == 1 { "erasure marker" } else { "erasure markers" },
            ));
        }
        not_checked.append(&mut self.anchor_notes);
        for (t, size, pos) in &self.late_checkpoints {
            not_checked.push(format!(
                "the checkpoint of tenant {t} for {} entries at position {pos}: it comes after later entries, so its root was not recomputed",
                group_thousands(*size)
            ));
        }
        let chains = self
            .chains
            .iter()
            .map(|(t, s)| ChainSummary {
                tenant_id: t.clone(),
                entries: s.read,
                start: s.start,
                size: s.tree.size(),
                head: s.head,
                root: s.tree.root(),
                checkpoints_verified: s.checkpoints_verified,
                largest_checkpoint: s.largest_checkpoint,
                redacted: s.redacted,
                erasure_markers: s.erasure_markers,
                witnessed: s.witnessed.clone(),
                cosigned_by: s.cosigned_by.clone(),
            })
            .collect();
        Report {
            entries: self.entries,
            chains,
            findings: self.findings,
            findings_total: self.findings_total,
            hmac_checked: self.hmac_checked,
            signatures_checked: self.note_verifier.is_some(),
            hmac_valid_by_key: self.hmac_valid_by_key,
            entries_by_origin: ["service", "token", "local", "none"]
                .into_iter()
                .zip(self.by_origin)
                .filter(|(_, n)| *n > 0)
                .collect(),
            hmac_erased: self.erased.values().map(|(n, _)| n).sum(),
            checkpoints_seen: self.checkpoints_seen,
            not_checked,
            witness_policy: self.witnesses.as_ref().map(|p| {
                (
                    p.quorum(),
                    p.witnesses().iter().map(|w| w.name().to_owned()).collect(),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` holds every kind once: the match below stops compiling when a kind is added, as a
    /// reminder to add it to `ALL` (and to the table of docs/FORMAT.md §9).
    #[test]
    fn all_kinds_are_listed_once() {
        for k in FindingKind::ALL {
            match k {
                FindingKind::Modification
                | FindingKind::Deletion
                | FindingKind::Insertion
                | FindingKind::Reordering
                | FindingKind::Replay
                | FindingKind::Truncation
                | FindingKind::WrongKey
                | FindingKind::UnknownKey
                | FindingKind::BadCheckpointSignature
                | FindingKind::CheckpointMismatch
                | FindingKind::Malformed
                | FindingKind::UnmarkedRedaction
                | FindingKind::IdNotIncreasing
                | FindingKind::ErasureIncomplete
                | FindingKind::EpochNotIncreasing
                | FindingKind::BadCosignature
                | FindingKind::NotWitnessed => {}
            }
        }
        let distinct: BTreeSet<FindingKind> = FindingKind::ALL.into_iter().collect();
        assert_eq!(distinct.len(), FindingKind::ALL.len());
    }

    /// The machine names are the documented ones: docs/FORMAT.md §9 lists every kind in its
    /// verdict table, one row each, by the name `--format json` prints.
    #[test]
    fn the_verdict_table_names_every_kind_by_its_machine_name() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
                .expect("docs/FORMAT.md");
        let table = doc
            .split("### Verdicts")
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .expect("a Verdicts section in FORMAT.md");
        let rows: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let names: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut sorted_rows = rows.clone();
        sorted_rows.sort_unstable();
        let mut sorted_names = names.clone();
        sorted_names.sort_unstable();
        assert_eq!(sorted_rows, sorted_names, "table rows {rows:?}");
        for k in FindingKind::ALL {
            assert!(
                k.as_str()
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{k:?}"
            );
            assert!(!k.detected().is_empty(), "{k:?}");
            assert_eq!(k.to_string(), k.as_str());
        }
    }
}
