//! Inclusion and consistency proof documents (JSON), and their verification with nothing but the
//! checkpoint public key. See docs/FORMAT.md, "Proofs".

use serde::{Deserialize, Serialize};

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

/// Verifies a proof document (either type) with the checkpoint public key alone.
///
/// # Errors
/// [`ProofError`] saying which check failed.
pub fn verify_proof_document(json: &str, verifier: &NoteVerifier) -> Result<Proven, ProofError> {
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
            if cp.checkpoint.size != p.tree_size {
                return Err(ProofError::TreeSize {
                    proof: p.tree_size,
                    checkpoint: cp.checkpoint.size,
                });
            }
            let entry_hash =
                Hash::from_prefixed(&p.entry_hash).map_err(|source| ProofError::BadHash {
                    field: "entry_hash",
                    value: p.entry_hash.clone(),
                    source,
                })?;
            let mut entry_checked = false;
            if let Some(line) = &p.entry {
                let actual = Hash::digest(line.as_bytes());
                if actual != entry_hash {
                    return Err(ProofError::EntryHash {
                        expected: entry_hash,
                        actual,
                    });
                }
                let view = EntryView::parse(line.as_bytes()).map_err(ProofError::Entry)?;
                if view.seq != p.seq
                    || view.tenant_id != p.tenant_id
                    || view.entry_id.to_string() != p.entry_id
                {
                    return Err(ProofError::OtherEntry {
                        seq: view.seq,
                        tenant_id: view.tenant_id.to_string(),
                        entry_id: view.entry_id.to_string(),
                    });
                }
                entry_checked = true;
            }
            if p.seq == 0 {
                return Err(ProofError::SeqZero);
            }
            let hashes = decode_hashes(&p.hashes)?;
            verify_inclusion(
                &leaf_hash(entry_hash.as_bytes()),
                p.seq - 1,
                p.tree_size,
                &hashes,
                &cp.checkpoint.root,
            )
            .map_err(ProofError::Merkle)?;
            Ok(Proven::Inclusion {
                tenant_id: p.tenant_id,
                seq: p.seq,
                entry_id: p.entry_id,
                tree_size: p.tree_size,
                entry_checked,
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
