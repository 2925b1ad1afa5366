//! Inclusion and consistency proof documents (JSON), and their verification with nothing but the
//! checkpoint public key. See docs/FORMAT.md, "Proofs".

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::SignedCheckpoint;
use crate::checkpoint::origin_tenant;
use crate::entry::EntryView;
use crate::hash::Hash;
use crate::ids::group_thousands;
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use crate::note::NoteVerifier;

/// `type` of an inclusion proof document.
pub const INCLUSION_TYPE: &str = "blackbox.inclusion_proof.v1";
/// `type` of a consistency proof document.
pub const CONSISTENCY_TYPE: &str = "blackbox.consistency_proof.v1";
/// `type` of a log slice: entries of one selection, each with its inclusion proof against one
/// signed checkpoint.
pub const SLICE_TYPE: &str = "blackbox.log_slice.v1";

/// Proves that one entry is in the tree a signed checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always [`INCLUSION_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Chain.
    pub tenant_id: String,
    /// The entry's UUIDv7.
    pub entry_id: String,
    /// The entry's sequence number; its leaf index is `seq - 1`.
    pub seq: u64,
    /// `sha256:<hex>` of the entry line (the leaf is SHA-256(0x00 || these 32 bytes)).
    pub entry_hash: String,
    /// The entry line itself, when included, so the verifier can recompute `entry_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Audit path, leaf to root, standard base64.
    pub hashes: Vec<String>,
    /// The signed checkpoint (full note text).
    pub checkpoint: String,
}

/// Proves that an older checkpoint's tree is a prefix of a newer one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Always [`CONSISTENCY_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Chain.
    pub tenant_id: String,
    /// Size of the old tree.
    pub old_size: u64,
    /// Size of the new tree.
    pub new_size: u64,
    /// The old signed checkpoint.
    pub old_checkpoint: String,
    /// The new signed checkpoint.
    pub new_checkpoint: String,
    /// RFC 9162 consistency proof, standard base64.
    pub hashes: Vec<String>,
}

/// A verified log slice: the entries of one agent, session or trace in a time window, each with
/// its inclusion proof against the same signed checkpoint (docs/FORMAT.md §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSlice {
    /// Always [`SLICE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Chain.
    pub tenant_id: String,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// The signed checkpoint (full note text).
    pub checkpoint: String,
    /// What was selected; every entry of the slice must match it.
    pub selection: SliceSelection,
    /// The entries, in query order (claimed time, then seq).
    pub entries: Vec<SliceEntry>,
    /// The service's statement that no entry of the selection covered by the checkpoint was
    /// left out (false when the slice stopped at its limit). Not provable from the slice
    /// alone: completeness needs the whole chain (`blackbox verify`).
    pub complete: bool,
    /// Entries of the selection newer than the checkpoint: left out, not proven.
    pub not_covered: u64,
}

/// The selection of a [`LogSlice`]: each member given must equal the entry's (`trace_id`: its
/// `payload.trace_id`); `start` and `end` bound its claimed `timestamp`, both included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceSelection {
    /// Agent.
    pub agent_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
    /// Trace (`payload.trace_id`).
    pub trace_id: Option<String>,
    /// Earliest claimed time (RFC 3339, UTC, milliseconds).
    pub start: Option<String>,
    /// Latest claimed time (RFC 3339, UTC, milliseconds).
    pub end: Option<String>,
}

/// One entry of a [`LogSlice`] and its audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceEntry {
    /// Sequence number; the leaf index is `seq - 1`.
    pub seq: u64,
    /// The entry's UUIDv7.
    pub entry_id: String,
    /// `sha256:<hex>` of the entry line.
    pub entry_hash: String,
    /// The entry line.
    pub entry: String,
    /// Audit path, leaf to root, standard base64.
    pub hashes: Vec<String>,
}

/// The `payload.trace_id` of an entry, when it has a string one.
#[must_use]
pub fn payload_trace_id(view: &EntryView<'_>) -> Option<String> {
    #[derive(Deserialize)]
    struct Trace {
        trace_id: Option<Value>,
    }
    match serde_json::from_str::<Trace>(view.payload.get())
        .ok()?
        .trace_id
    {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

impl SliceSelection {
    /// A selection whose bounds are written as full timestamps (RFC 3339 UTC with
    /// milliseconds), so that a verifier reads them without knowing how a date was meant: a date
    /// `start` is its first millisecond, a date `end` its last.
    ///
    /// # Errors
    /// Which bound is not a time or a date, and why.
    pub fn resolved(
        agent_id: Option<String>,
        session_id: Option<String>,
        trace_id: Option<String>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Self, String> {
        let bound = |name: &str, v: Option<&str>, end: bool| {
            v.map(|s| {
                crate::format::parse_time_bound(s, end)
                    .and_then(crate::format::format_timestamp)
                    .map_err(|e| format!("{name}={s:?}: {e}"))
            })
            .transpose()
        };
        Ok(Self {
            agent_id,
            session_id,
            trace_id,
            start: bound("start", start, false)?,
            end: bound("end", end, true)?,
        })
    }

    /// Whether an entry matches the selection; `None` when it does, else which member it
    /// does not match.
    ///
    /// # Errors
    /// `start` or `end` is not a timestamp.
    pub fn mismatch(&self, view: &EntryView<'_>) -> Result<Option<&'static str>, String> {
        if self.agent_id.as_deref().is_some_and(|a| a != view.agent_id) {
            return Ok(Some("agent_id"));
        }
        if self
            .session_id
            .as_deref()
            .is_some_and(|s| s != view.session_id)
        {
            return Ok(Some("session_id"));
        }
        if let Some(t) = &self.trace_id
            && payload_trace_id(view).as_deref() != Some(t.as_str())
        {
            return Ok(Some("trace_id"));
        }
        if let Some(s) = &self.start
            && view.timestamp_ms < crate::format::parse_timestamp(s)?
        {
            return Ok(Some("start"));
        }
        if let Some(e) = &self.end
            && view.timestamp_ms > crate::format::parse_timestamp(e)?
        {
            return Ok(Some("end"));
        }
        Ok(None)
    }
}

/// Why a proof is rejected. Every variant names what was checked and carries what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The document is not JSON of a proof's shape.
    #[error("not a Blackbox proof document: {0}")]
    Json(#[source] serde_json::Error),
    /// The document's `type` is not a known proof type.
    #[error("not a Blackbox proof document: unknown proof type `{given}`")]
    UnknownType {
        /// The `type` given.
        given: String,
    },
    /// A hash of the proof cannot be read.
    #[error("not a Blackbox proof document: {field} {value:?}: {source}")]
    BadHash {
        /// Which field (`proof hash`, `entry_hash`).
        field: &'static str,
        /// The text found.
        value: String,
        /// Why it is not a hash.
        source: crate::hash::HashParseError,
    },
    /// A checkpoint of the proof cannot be read.
    #[error("not a Blackbox proof document: checkpoint: {0}")]
    Checkpoint(#[source] crate::checkpoint::CheckpointError),
    /// The entry line included in the proof is not an entry.
    #[error("not a Blackbox proof document: {0}")]
    Entry(#[source] crate::Error),
    /// `seq` 0 (sequence numbers start at 1).
    #[error("not a Blackbox proof document: seq starts at 1")]
    SeqZero,
    /// A checkpoint in the proof does not verify with the public key.
    #[error("the checkpoint in the proof does not verify with the public key: {0}")]
    BadSignature(#[source] crate::checkpoint::CheckpointError),
    /// The checkpoint is for another chain than the proof.
    #[error(
        "the proof and its checkpoint disagree: checkpoint is for tenant `{checkpoint}`, proof for `{proof}`"
    )]
    OtherTenant {
        /// The tenant the checkpoint's origin names.
        checkpoint: String,
        /// The tenant the proof names.
        proof: String,
    },
    /// The proof's tree size is not the checkpoint's.
    #[error(
        "the proof and its checkpoint disagree: tree_size {proof} but the checkpoint says {checkpoint}"
    )]
    TreeSize {
        /// The proof's `tree_size`.
        proof: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// A consistency proof's sizes are not its checkpoints' sizes.
    #[error(
        "the proof and its checkpoint disagree: old_size/new_size differ from the checkpoints' sizes"
    )]
    Sizes {
        /// The proof's `old_size` and `new_size`.
        proof: (u64, u64),
        /// The checkpoints' sizes.
        checkpoints: (u64, u64),
    },
    /// The included entry does not hash to `entry_hash`.
    #[error(
        "the proof and its checkpoint disagree: the included entry does not hash to entry_hash"
    )]
    EntryHash {
        /// `entry_hash` of the proof.
        expected: Hash,
        /// The hash of the included entry.
        actual: Hash,
    },
    /// The included entry is another one than the proof names.
    #[error(
        "the proof and its checkpoint disagree: the included entry's seq, tenant or id differ from the proof's"
    )]
    OtherEntry {
        /// The included entry's `seq`.
        seq: u64,
        /// Its tenant.
        tenant_id: String,
        /// Its id.
        entry_id: String,
    },
    /// The Merkle proof does not lead to the signed root.
    #[error("the Merkle proof does not match the signed root: {0}")]
    Merkle(#[source] crate::merkle::MerkleError),
    /// An entry of a slice is refused; `index` is its place in `entries` (0-based).
    #[error("entry {index} of the slice (seq {seq}): {source}")]
    SliceEntry {
        /// Place in `entries`.
        index: usize,
        /// Its `seq`.
        seq: u64,
        /// What is wrong with it.
        #[source]
        source: Box<ProofError>,
    },
    /// An entry of a slice does not match the slice's selection.
    #[error(
        "entry {index} of the slice (seq {seq}) is outside the selection: its {member} differs"
    )]
    OutsideSelection {
        /// Place in `entries`.
        index: usize,
        /// Its `seq`.
        seq: u64,
        /// The member of the selection it fails.
        member: &'static str,
    },
    /// Two entries of a slice have the same seq.
    #[error("the slice holds seq {seq} twice")]
    DuplicateSeq {
        /// The repeated seq.
        seq: u64,
    },
    /// The slice's selection cannot be read.
    #[error("not a Blackbox proof document: selection: {0}")]
    Selection(String),
    /// A C2SP tlog-proof that cannot be read.
    #[error("{0}")]
    TlogProof(#[source] crate::tlog_proof::TlogProofError),
    /// A C2SP tlog-proof without the entry line as its extra data: the record it proves is
    /// the entry's hash, which only the entry line gives.
    #[error(
        "the tlog-proof has no extra data: a Blackbox tlog-proof carries the entry line there (blackbox prove --format tlog-proof)"
    )]
    TlogNoEntry,
}

/// What a valid proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proven {
    /// Entry `seq` (hash) is in `tenant`'s tree of `tree_size`.
    Inclusion {
        /// Chain.
        tenant_id: String,
        /// Entry.
        seq: u64,
        /// Entry id.
        entry_id: String,
        /// Tree size.
        tree_size: u64,
        /// Whether the entry line was included and hashed.
        entry_checked: bool,
    },
    /// Every entry of a slice is in `tenant`'s tree of `tree_size`, unaltered, and matches the
    /// selection.
    Slice {
        /// Chain.
        tenant_id: String,
        /// Entries proven.
        entries: usize,
        /// Tree size.
        tree_size: u64,
        /// The service said no covered entry of the selection was left out.
        complete: bool,
        /// Entries of the selection newer than the checkpoint (not proven).
        not_covered: u64,
    },
    /// The old tree is a prefix of the new one.
    Consistency {
        /// Chain.
        tenant_id: String,
        /// Old size.
        old_size: u64,
        /// New size.
        new_size: u64,
    },
}

impl std::fmt::Display for Proven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inclusion {
                tenant_id,
                seq,
                entry_id,
                tree_size,
                entry_checked,
            } if *entry_checked => write!(
                f,
                "OK — entry {} ({entry_id}) of tenant {tenant_id} is included in the signed tree of {} entries; entry bytes match",
                group_thousands(*seq),
                group_thousands(*tree_size),
            ),
            // Without the entry line only its hash is proven: the id is the document's claim.
            Self::Inclusion {
                tenant_id,
                seq,
                entry_id,
                tree_size,
                ..
            } => write!(
                f,
                "OK — entry {} of tenant {tenant_id} is included in the signed tree of {} entries (its hash; the id {entry_id} is not checked without the entry line)",
                group_thousands(*seq),
                group_thousands(*tree_size),
            ),
            Self::Slice {
                tenant_id,
                entries,
                tree_size,
                complete,
                not_covered,
            } => {
                write!(
                    f,
                    "OK — {} of tenant {tenant_id} included in the signed tree of {} entries; entry bytes match and each is in the selection",
                    match *entries {
                        1 => "1 entry".to_owned(),
                        n => format!("{} entries", group_thousands(n as u64)),
                    },
                    group_thousands(*tree_size),
                )?;
                if !complete {
                    write!(f, "; the slice stopped at its limit: more entries matched")?;
                }
                if *not_covered > 0 {
                    write!(
                        f,
                        "; {} newer entries matched but no checkpoint covered them yet",
                        group_thousands(*not_covered)
                    )?;
                }
                Ok(())
            }
            Self::Consistency {
                tenant_id,
                old_size,
                new_size,
            } => write!(
                f,
                "OK — tenant {tenant_id}: the signed tree of {} entries is a prefix of the signed tree of {} entries (append-only)",
                group_thousands(*old_size),
                group_thousands(*new_size)
            ),
        }
    }
}

fn decode_hashes(v: &[String]) -> Result<Vec<Hash>, ProofError> {
    v.iter()
        .map(|s| {
            Hash::from_base64(s).map_err(|source| ProofError::BadHash {
                field: "proof hash",
                value: s.clone(),
                source,
            })
        })
        .collect()
}

fn open_checkpoint(
    text: &str,
    verifier: &NoteVerifier,
    tenant: &str,
) -> Result<SignedCheckpoint, ProofError> {
    let cp = SignedCheckpoint::parse(text).map_err(ProofError::Checkpoint)?;
    cp.verify(verifier).map_err(ProofError::BadSignature)?;
    let t = origin_tenant(&cp.checkpoint.origin);
    if t != tenant {
        return Err(ProofError::OtherTenant {
            checkpoint: t.to_owned(),
            proof: tenant.to_owned(),
        });
    }
    Ok(cp)
}

fn check_size(tree_size: u64, cp: &SignedCheckpoint) -> Result<(), ProofError> {
    if cp.checkpoint.size == tree_size {
        Ok(())
    } else {
        Err(ProofError::TreeSize {
            proof: tree_size,
            checkpoint: cp.checkpoint.size,
        })
    }
}

/// Checks one entry's inclusion: its line (when given) hashes to `entry_hash` and is the entry
/// named, and the audit path leads from its leaf to the checkpoint's root.
#[allow(clippy::too_many_arguments)]
fn check_inclusion(
    tenant_id: &str,
    seq: u64,
    entry_id: &str,
    entry_hash: &str,
    entry: Option<&str>,
    tree_size: u64,
    hashes: &[String],
    cp: &SignedCheckpoint,
) -> Result<(), ProofError> {
    let hash = Hash::from_prefixed(entry_hash).map_err(|source| ProofError::BadHash {
        field: "entry_hash",
        value: entry_hash.to_owned(),
        source,
    })?;
    if let Some(line) = entry {
        let actual = Hash::digest(line.as_bytes());
        if actual != hash {
            return Err(ProofError::EntryHash {
                expected: hash,
                actual,
            });
        }
        let view = EntryView::parse(line.as_bytes()).map_err(ProofError::Entry)?;
        if view.seq != seq || view.tenant_id != tenant_id || view.entry_id.to_string() != entry_id {
            return Err(ProofError::OtherEntry {
                seq: view.seq,
                tenant_id: view.tenant_id.to_string(),
                entry_id: view.entry_id.to_string(),
            });
        }
    }
    if seq == 0 {
        return Err(ProofError::SeqZero);
    }
    let hashes = decode_hashes(hashes)?;
    verify_inclusion(
        &leaf_hash(hash.as_bytes()),
        seq - 1,
        tree_size,
        &hashes,
        &cp.checkpoint.root,
    )
    .map_err(ProofError::Merkle)
}

/// A C2SP tlog-proof of a Blackbox entry: the entry line (its extra data) hashes to the record
/// whose leaf the proof leads from, at index `seq - 1`, to the signed root.
fn verify_tlog_proof(text: &str, verifier: &NoteVerifier) -> Result<Proven, ProofError> {
    let p = crate::tlog_proof::TlogProof::parse(text).map_err(ProofError::TlogProof)?;
    let line = p.extra.as_deref().ok_or(ProofError::TlogNoEntry)?;
    let view = EntryView::parse(line).map_err(ProofError::Entry)?;
    let tenant = view.tenant_id.to_string();
    let cp = open_checkpoint(&p.checkpoint, verifier, &tenant)?;
    if view.seq != p.index.saturating_add(1) {
        return Err(ProofError::OtherEntry {
            seq: view.seq,
            tenant_id: tenant,
            entry_id: view.entry_id.to_string(),
        });
    }
    let entry_hash = Hash::digest(line);
    verify_inclusion(
        &leaf_hash(entry_hash.as_bytes()),
        p.index,
        cp.checkpoint.size,
        &p.hashes,
        &cp.checkpoint.root,
    )
    .map_err(ProofError::Merkle)?;
    Ok(Proven::Inclusion {
        tenant_id: tenant,
        seq: view.seq,
        entry_id: view.entry_id.to_string(),
        tree_size: cp.checkpoint.size,
        entry_checked: true,
    })
}

/// The signed checkpoint notes a proof document rests on, as written in it (for a consistency
/// proof, the old then the new one), for a witness policy to look at their cosignatures. Nothing
/// is verified here: call [`verify_proof_document`] first.
///
/// # Errors
/// [`ProofError`] when the document cannot be read.
pub fn proof_checkpoints(doc: &str) -> Result<Vec<SignedCheckpoint>, ProofError> {
    let texts = if doc.starts_with(crate::tlog_proof::HEADER) {
        let p = crate::tlog_proof::TlogProof::parse(doc).map_err(ProofError::TlogProof)?;
        vec![p.checkpoint]
    } else {
        #[derive(Deserialize)]
        struct Notes {
            #[serde(default)]
            checkpoint: Option<String>,
            #[serde(default)]
            old_checkpoint: Option<String>,
            #[serde(default)]
            new_checkpoint: Option<String>,
        }
        let n: Notes = serde_json::from_str(doc).map_err(ProofError::Json)?;
        [n.checkpoint, n.old_checkpoint, n.new_checkpoint]
            .into_iter()
            .flatten()
            .collect()
    };
    texts
        .iter()
        .map(|t| SignedCheckpoint::parse(t).map_err(ProofError::Checkpoint))
        .collect()
}

/// Verifies a proof document (any of the three types, or a C2SP tlog-proof) with the
/// checkpoint public key alone.
///
/// # Errors
/// [`ProofError`] saying which check failed.
pub fn verify_proof_document(json: &str, verifier: &NoteVerifier) -> Result<Proven, ProofError> {
    if json.starts_with(crate::tlog_proof::HEADER) {
        return verify_tlog_proof(json, verifier);
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: String,
    }
    let probe: Probe = serde_json::from_str(json).map_err(ProofError::Json)?;
    match probe.kind.as_str() {
        INCLUSION_TYPE => {
            let p: InclusionProof = serde_json::from_str(json).map_err(ProofError::Json)?;
            let cp = open_checkpoint(&p.checkpoint, verifier, &p.tenant_id)?;
            check_size(p.tree_size, &cp)?;
            let entry_checked = p.entry.is_some();
            check_inclusion(
                &p.tenant_id,
                p.seq,
                &p.entry_id,
                &p.entry_hash,
                p.entry.as_deref(),
                p.tree_size,
                &p.hashes,
                &cp,
            )?;
            Ok(Proven::Inclusion {
                tenant_id: p.tenant_id,
                seq: p.seq,
                entry_id: p.entry_id,
                tree_size: p.tree_size,
                entry_checked,
            })
        }
        SLICE_TYPE => {
            let p: LogSlice = serde_json::from_str(json).map_err(ProofError::Json)?;
            let cp = open_checkpoint(&p.checkpoint, verifier, &p.tenant_id)?;
            check_size(p.tree_size, &cp)?;
            for bound in [&p.selection.start, &p.selection.end].into_iter().flatten() {
                crate::format::parse_timestamp(bound).map_err(ProofError::Selection)?;
            }
            let mut seen = std::collections::HashSet::with_capacity(p.entries.len());
            for (index, e) in p.entries.iter().enumerate() {
                let wrap = |source: ProofError| ProofError::SliceEntry {
                    index,
                    seq: e.seq,
                    source: Box::new(source),
                };
                if !seen.insert(e.seq) {
                    return Err(ProofError::DuplicateSeq { seq: e.seq });
                }
                check_inclusion(
                    &p.tenant_id,
                    e.seq,
                    &e.entry_id,
                    &e.entry_hash,
                    Some(&e.entry),
                    p.tree_size,
                    &e.hashes,
                    &cp,
                )
                .map_err(wrap)?;
                let view = EntryView::parse(e.entry.as_bytes())
                    .map_err(|err| wrap(ProofError::Entry(err)))?;
                if let Some(member) = p.selection.mismatch(&view).map_err(ProofError::Selection)? {
                    return Err(ProofError::OutsideSelection {
                        index,
                        seq: e.seq,
                        member,
                    });
                }
            }
            Ok(Proven::Slice {
                tenant_id: p.tenant_id,
                entries: p.entries.len(),
                tree_size: p.tree_size,
                complete: p.complete,
                not_covered: p.not_covered,
            })
        }
        CONSISTENCY_TYPE => {
            let p: ConsistencyProof = serde_json::from_str(json).map_err(ProofError::Json)?;
            let old = open_checkpoint(&p.old_checkpoint, verifier, &p.tenant_id)?;
            let new = open_checkpoint(&p.new_checkpoint, verifier, &p.tenant_id)?;
            if old.checkpoint.size != p.old_size || new.checkpoint.size != p.new_size {
                return Err(ProofError::Sizes {
                    proof: (p.old_size, p.new_size),
                    checkpoints: (old.checkpoint.size, new.checkpoint.size),
                });
            }
            let hashes = decode_hashes(&p.hashes)?;
            verify_consistency(
                p.old_size,
                p.new_size,
                &hashes,
                &old.checkpoint.root,
                &new.checkpoint.root,
            )
            .map_err(ProofError::Merkle)?;
            Ok(Proven::Consistency {
                tenant_id: p.tenant_id,
                old_size: p.old_size,
                new_size: p.new_size,
            })
        }
        other => Err(ProofError::UnknownType {
            given: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::Proven;

    fn inclusion(entry_checked: bool) -> String {
        Proven::Inclusion {
            tenant_id: "acme".into(),
            seq: 3,
            entry_id: "0192f1e0-0000-7000-8000-000000000003".into(),
            tree_size: 1200,
            entry_checked,
        }
        .to_string()
    }

    #[test]
    fn an_entry_id_is_claimed_only_when_the_entry_line_was_checked() {
        assert_eq!(
            inclusion(true),
            "OK — entry 3 (0192f1e0-0000-7000-8000-000000000003) of tenant acme is included in \
             the signed tree of 1,200 entries; entry bytes match"
        );
        let hash_only = inclusion(false);
        assert!(
            hash_only.starts_with("OK — entry 3 of tenant acme is included"),
            "{hash_only}"
        );
        assert!(
            hash_only.contains("is not checked without the entry line"),
            "{hash_only}"
        );
    }
}
