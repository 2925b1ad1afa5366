//! Anchor records: where a JSONL log that does not start at the genesis hash picks its chain up.
//!
//! A file cut from the middle of a chain (a rotated mirror, an archive segment) starts with an
//! anchor: a signed checkpoint of the chain at tree size `N`, the Merkle frontier of that tree,
//! the hash of entry `N` and its RFC 9162 inclusion proof. Checked with the public key, it lets
//! the entries `N + 1, …` that follow be verified exactly as if entries `1 ..= N` had been read:
//! the next entry must link to `head`, and the Merkle tree continues from `frontier`.
//! docs/FORMAT.md §8 defines the bytes:
//!
//! ```text
//! {"anchor":{"checkpoint":"<signed note>","frontier":["<base64>",…],"head":"sha256:<hex>",
//!  "head_proof":["<base64>",…],"size":N,"tenant_id":"<tenant>"}}
//! ```
//!
//! (one line; members in this, the JCS, order). The checks are those of FORMAT.md §8: the
//! checkpoint's signature, that its origin names `tenant_id` and its size is `N`, that the
//! frontier's root is its root, and that `head_proof` proves `SHA-256(0x00 || head)` is leaf
//! `N - 1` of that tree (RFC 9162 §2.1.3.2).

use serde::Deserialize;

use crate::checkpoint::origin_tenant;
use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::entry::GENESIS_HASH;
use crate::hash::Hash;
use crate::ids::TenantId;
use crate::merkle::{CompactRange, MerkleError, leaf_hash, verify_inclusion};
use crate::note::NoteVerifier;

/// The first bytes of every anchor record; records are told apart by them.
pub const ANCHOR_PREFIX: &[u8] = b"{\"anchor\":";

/// Why an anchor record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The line is not an anchor record of the documented shape.
    #[error("malformed anchor record: {reason}")]
    Malformed {
        /// What is wrong (the JSON parser's words, or which rule is broken).
        reason: String,
    },
    /// The frontier does not have one hash per set bit of the size.
    #[error("malformed anchor record: {0}")]
    Frontier(#[source] MerkleError),
    /// An anchor of size 0 must name the genesis hash and carry no hashes.
    #[error(
        "malformed anchor record: at size 0 the head must be the genesis hash and frontier and head_proof must be empty"
    )]
    BadEmpty,
    /// The checkpoint cannot be read, or (when verifying) its signature does not verify.
    #[error("anchor checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint's origin names another chain.
    #[error("the anchor is for tenant `{anchor}` but its checkpoint's origin names `{origin}`")]
    TenantMismatch {
        /// `tenant_id` of the record.
        anchor: String,
        /// The last `/` part of the checkpoint's origin.
        origin: String,
    },
    /// The checkpoint is for another tree size.
    #[error("the anchor is for tree size {anchor} but its checkpoint commits to {checkpoint}")]
    SizeMismatch {
        /// `size` of the record.
        anchor: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// The frontier does not lead to the checkpoint's root.
    #[error(
        "the anchor's frontier leads to Merkle root {frontier}, but its checkpoint commits to {checkpoint}"
    )]
    RootMismatch {
        /// The signed root.
        checkpoint: Hash,
        /// The root of the frontier.
        frontier: Hash,
    },
    /// `head_proof` does not prove that `head` is the last leaf of the checkpointed tree.
    #[error(
        "the anchor's head is not proven to be entry {size} of the checkpointed tree: {source}"
    )]
    HeadProof {
        /// The tree size (and the seq of the head entry).
        size: u64,
        /// What the RFC 9162 check found.
        source: MerkleError,
    },
}

/// An anchor record (see the [module docs](self)): structurally valid, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    tenant_id: TenantId,
    range: CompactRange,
    head: Hash,
    head_proof: Vec<Hash>,
    checkpoint: SignedCheckpoint,
}

impl Anchor {
    /// An anchor of `tenant_id`'s chain at tree size `range.size()`: `range` is the Merkle state
    /// after that many entries, `head` the hash of the last of them and `head_proof` its inclusion
    /// proof; `checkpoint` should be a signed checkpoint of exactly that tree. Nothing is
    /// verified here but the shape; see [`Anchor::check`].
    ///
    /// # Errors
    /// [`AnchorError::BadEmpty`] when the size is 0 but the head is not the genesis hash or the
    /// proof is not empty.
    pub fn new(
        tenant_id: TenantId,
        range: CompactRange,
        head: Hash,
        head_proof: Vec<Hash>,
        checkpoint: SignedCheckpoint,
    ) -> Result<Self, AnchorError> {
        if range.size() == 0 && (head != GENESIS_HASH || !head_proof.is_empty()) {
            return Err(AnchorError::BadEmpty);
        }
        Ok(Self {
            tenant_id,
            range,
            head,
            head_proof,
            checkpoint,
        })
    }

    /// Parses an anchor record line (without its newline). Members may come in any order and
    /// with any JSON white space; unknown or repeated members are refused.
    ///
    /// # Errors
    /// [`AnchorError::Malformed`], [`AnchorError::Frontier`], [`AnchorError::BadEmpty`], or
    /// [`AnchorError::Checkpoint`] when the checkpoint is not a signed checkpoint note.
    pub fn parse(line: &[u8]) -> Result<Self, AnchorError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Inner {
            checkpoint: String,
            frontier: Vec<String>,
            head: String,
            head_proof: Vec<String>,
            size: u64,
            tenant_id: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Record {
            anchor: Inner,
        }
        let malformed = |reason: String| AnchorError::Malformed { reason };
        let r: Record = serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
        let a = r.anchor;
        let tenant_id =
            TenantId::parse(&a.tenant_id).map_err(|e| malformed(format!("tenant_id: {e}")))?;
        let hashes = |list: &[String], what: &str| {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    Hash::from_base64(s)
                        .ok()
                        .filter(|h| h.to_base64() == *s)
                        .ok_or_else(|| {
                            malformed(format!("{what}[{i}] is not standard base64 of 32 bytes"))
                        })
                })
                .collect::<Result<Vec<Hash>, AnchorError>>()
        };
        let frontier = hashes(&a.frontier, "frontier")?;
        let head_proof = hashes(&a.head_proof, "head_proof")?;
        let head = Hash::from_prefixed(&a.head)
            .map_err(|_| malformed("head is not a sha256:<64 hex> digest string".to_owned()))?;
        let range = CompactRange::from_frontier(a.size, frontier).map_err(AnchorError::Frontier)?;
        let checkpoint = SignedCheckpoint::parse(&a.checkpoint)?;
        Self::new(tenant_id, range, head, head_proof, checkpoint)
    }

    /// The record line, without a newline: members in JCS order, no white space.
    #[must_use]
    pub fn to_line(&self) -> String {
        let json_string = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let list = |hs: &[Hash]| {
            hs.iter()
                .map(|h| format!("\"{}\"", h.to_base64()))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{{\"anchor\":{{\"checkpoint\":{},\"frontier\":[{}],\"head\":\"{}\",\"head_proof\":[{}],\"size\":{},\"tenant_id\":{}}}}}",
            json_string(&self.checkpoint.note_text()),
            list(self.range.frontier()),
            self.head.to_prefixed(),
            list(&self.head_proof),
            self.range.size(),
            json_string(self.tenant_id.as_str()),
        )
    }

    /// The chain.
    #[must_use]
    pub const fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    /// The tree size `N`: entries `1 ..= N` come before the anchor.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.range.size()
    }

    /// The Merkle state after entry `N`, as the record states it.
    #[must_use]
    pub const fn range(&self) -> &CompactRange {
        &self.range
    }

    /// The entry hash of entry `N` (the genesis hash when `N` is 0).
    #[must_use]
    pub const fn head(&self) -> Hash {
        self.head
    }

    /// The inclusion proof of the head's leaf, leaf to root.
    #[must_use]
    pub fn head_proof(&self) -> &[Hash] {
        &self.head_proof
    }

    /// The signed checkpoint.
    #[must_use]
    pub const fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// Checks everything but the signature: the checkpoint's origin names the tenant, its size is
    /// the anchor's, the frontier's root is its root, and the head proof leads to that root.
    /// Without the signature this proves only that the record is self-consistent, not that the
    /// log's owner made it.
    ///
    /// # Errors
    /// [`AnchorError::TenantMismatch`], [`AnchorError::SizeMismatch`],
    /// [`AnchorError::RootMismatch`] or [`AnchorError::HeadProof`].
    pub fn check(&self) -> Result<(), AnchorError> {
        let cp = &self.checkpoint.checkpoint;
        let origin = origin_tenant(&cp.origin);
        if origin != self.tenant_id.as_str() {
            return Err(AnchorError::TenantMismatch {
                anchor: self.tenant_id.as_str().to_owned(),
                origin: origin.to_owned(),
            });
        }
        let size = self.range.size();
        if cp.size != size {
            return Err(AnchorError::SizeMismatch {
                anchor: size,
                checkpoint: cp.size,
            });
        }
        let root = self.range.root();
        if root != cp.root {
            return Err(AnchorError::RootMismatch {
                checkpoint: cp.root,
                frontier: root,
            });
        }
        if size > 0 {
            let leaf = leaf_hash(self.head.as_bytes());
            verify_inclusion(&leaf, size - 1, size, &self.head_proof, &cp.root)
                .map_err(|source| AnchorError::HeadProof { size, source })?;
        }
        Ok(())
    }

    /// Checks the checkpoint's signature with `verifier`, then everything [`Anchor::check`]
    /// checks. On success the chain may be continued from [`Anchor::range`] and [`Anchor::head`].
    ///
    /// # Errors
    /// [`AnchorError::Checkpoint`] when the signature does not verify; the errors of
    /// [`Anchor::check`].
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), AnchorError> {
        self.checkpoint.verify(verifier)?;
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::merkle::inclusion_proof;
    use crate::note::{NoteError, NoteSigner};
    use proptest::prelude::*;
    use serde_json::Value;

    fn signer() -> NoteSigner {
        NoteSigner::new("blackbox/test", [7; 32]).unwrap()
    }

    fn heads(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Hash::digest(&i.to_le_bytes())).collect()
    }

    /// An anchor over `n` made-up entry hashes, signed by `signer()`.
    fn anchor(n: u64, tenant: &str) -> Anchor {
        let hs = heads(n);
        let leaves: Vec<Hash> = hs.iter().map(|h| leaf_hash(h.as_bytes())).collect();
        let mut range = CompactRange::new();
        for l in &leaves {
            range.append(*l);
        }
        let proof = if n == 0 {
            Vec::new()
        } else {
            inclusion_proof(n - 1, n, |start, level| {
                let (a, b) = (start as usize, (start + (1 << level)) as usize);
                Ok::<_, ()>(crate::merkle::root_from_leaf_hashes(&leaves[a..b]))
            })
            .unwrap()
        };
        let cp = Checkpoint {
            origin: format!("blackbox/test/{tenant}"),
            size: n,
            root: range.root(),
            extensions: vec!["timestamp 2026-04-14T18:00:00.000Z".into()],
        };
        let cp = SignedCheckpoint::sign(cp, &signer()).unwrap();
        let head = hs.last().copied().unwrap_or(GENESIS_HASH);
        Anchor::new(TenantId::parse(tenant).unwrap(), range, head, proof, cp).unwrap()
    }

    /// The record as a JSON value, to tamper with.
    fn value(a: &Anchor) -> Value {
        serde_json::from_str(&a.to_line()).unwrap()
    }

    fn reparse(v: &Value) -> Result<Anchor, AnchorError> {
        Anchor::parse(v.to_string().as_bytes())
    }

    #[test]
    fn round_trips_and_verifies_at_every_size_up_to_70() {
        let v = signer().verifier();
        for n in 0..=70 {
            let a = anchor(n, "acme");
            let line = a.to_line();
            assert!(line.as_bytes().starts_with(ANCHOR_PREFIX));
            assert!(!line.contains('\n'));
            let parsed = Anchor::parse(line.as_bytes()).unwrap();
            assert_eq!(parsed, a);
            assert_eq!(parsed.to_line(), line);
            parsed.verify(&v).unwrap();
            assert_eq!(parsed.range().frontier().len(), n.count_ones() as usize);
        }
    }

    #[test]
    fn members_are_in_jcs_order() {
        let line = anchor(5, "acme").to_line();
        let keys = [
            "\"checkpoint\":",
            "\"frontier\":",
            "\"head\":",
            "\"head_proof\":",
            "\"size\":5,",
            "\"tenant_id\":\"acme\"}}",
        ];
        let at: Vec<usize> = keys.iter().map(|k| line.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
        assert!(line.ends_with("\"tenant_id\":\"acme\"}}"));
    }

    #[test]
    fn tampering_is_detected() {
        let v = signer().verifier();
        let good = anchor(13, "acme");
        let base = value(&good);
        let flip = |s: &str| {
            let mut h = Hash::from_base64(s).unwrap();
            h.0[3] ^= 0x10;
            h.to_base64()
        };
        // A frontier hash changed: the root no longer matches.
        let mut t = base.clone();
        let f0 = t["anchor"]["frontier"][0].as_str().unwrap().to_owned();
        t["anchor"]["frontier"][0] = Value::from(flip(&f0));
        assert!(matches!(
            reparse(&t).unwrap().verify(&v),
            Err(AnchorError::RootMismatch { .. })
        ));
        // The head changed: the head proof fails.
        let mut t = base.clone();
        t["anchor"]["head"] = Value::from(Hash::digest(b"other").to_prefixed());
        assert!(matches!(
            reparse(&t).unwrap().verify(&v),
            Err(AnchorError::HeadProof { size: 13, .. })
        ));
        // A head proof hash changed, or one dropped.
        let mut t = base.clone();
        let p0 = t["anchor"]["head_proof"][0].as_str().unwrap().to_owned();
        t["anchor"]["head_proof"][0] = Value::from(flip(&p0));
        assert!(matches!(
            reparse(&t).unwrap().check(),
            Err(AnchorError::HeadProof { .. })
        ));
        let mut t = base.clone();
        t["anchor"]["head_proof"].as_array_mut().unwrap().pop();
        assert!(reparse(&t).unwrap().check().is_err());
        // Another tenant's name.
        let mut t = base.clone();
        t["anchor"]["tenant_id"] = Value::from("globex");
        assert!(matches!(
            reparse(&t).unwrap().check(),
            Err(AnchorError::TenantMismatch { .. })
        ));
        // Another size (with a frontier that fits it): the checkpoint disagrees.
        let other = anchor(12, "acme");
        let mut t = base.clone();
        t["anchor"]["size"] = Value::from(12);
        t["anchor"]["frontier"] = value(&other)["anchor"]["frontier"].clone();
        assert!(matches!(
            reparse(&t).unwrap().check(),
            Err(AnchorError::SizeMismatch {
                anchor: 12,
                checkpoint: 13
            })
        ));
        // A checkpoint from another key, or with its text changed.
        let foreign = NoteSigner::new("blackbox/test", [8; 32]).unwrap();
        let mut t = base.clone();
        let cp = SignedCheckpoint::sign(good.checkpoint().checkpoint.clone(), &foreign).unwrap();
        t["anchor"]["checkpoint"] = Value::from(cp.note_text());
        let a = reparse(&t).unwrap();
        assert!(a.check().is_ok(), "self-consistent without the key");
        assert!(matches!(
            a.verify(&v),
            Err(AnchorError::Checkpoint(CheckpointError::Note(
                NoteError::NoSignatureForKey { .. }
            )))
        ));
        let mut t = base.clone();
        let text = good
            .checkpoint()
            .note_text()
            .replace("18:00:00", "18:00:01");
        t["anchor"]["checkpoint"] = Value::from(text);
        assert!(matches!(
            reparse(&t).unwrap().verify(&v),
            Err(AnchorError::Checkpoint(_))
        ));
    }

    #[test]
    fn malformed_records_are_refused() {
        let base = value(&anchor(6, "acme"));
        let mut cases: Vec<Value> = Vec::new();
        for member in [
            "checkpoint",
            "frontier",
            "head",
            "head_proof",
            "size",
            "tenant_id",
        ] {
            let mut t = base.clone();
            t["anchor"].as_object_mut().unwrap().remove(member);
            cases.push(t);
        }
        let mut t = base.clone();
        t["anchor"]["extra"] = Value::from(1);
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["frontier"].as_array_mut().unwrap().pop();
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["frontier"][0] = Value::from("AAAA");
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["head"] = Value::from("sha256:00");
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["tenant_id"] = Value::from("a b");
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["size"] = Value::from(-1);
        cases.push(t);
        let mut t = base.clone();
        t["anchor"]["checkpoint"] = Value::from("not a note\n");
        cases.push(t);
        for t in cases {
            assert!(reparse(&t).is_err(), "{t}");
        }
        assert!(Anchor::parse(b"{\"anchor\":").is_err());
        // Size 0 must be the genesis.
        let mut t = value(&anchor(0, "acme"));
        assert!(reparse(&t).is_ok());
        t["anchor"]["head"] = Value::from(Hash::digest(b"x").to_prefixed());
        assert_eq!(reparse(&t), Err(AnchorError::BadEmpty));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut line = ANCHOR_PREFIX.to_vec();
            line.extend_from_slice(&bytes);
            let _ = Anchor::parse(&line);
        }

        #[test]
        fn any_single_hash_bit_flip_is_detected(n in 1u64..200, pick in any::<prop::sample::Index>(), bit in 0usize..256) {
            let good = anchor(n, "acme");
            let v = signer().verifier();
            prop_assert!(good.verify(&v).is_ok());
            let mut hashes: Vec<Hash> = good.range().frontier().to_vec();
            hashes.extend_from_slice(good.head_proof());
            hashes.push(good.head());
            let i = pick.index(hashes.len());
            hashes[i].0[bit / 8] ^= 1 << (bit % 8);
            let nf = good.range().frontier().len();
            let np = good.head_proof().len();
            let range = CompactRange::from_frontier(n, hashes[..nf].to_vec()).unwrap();
            let proof = hashes[nf..nf + np].to_vec();
            let head = hashes[nf + np];
            let bad = Anchor::new(good.tenant_id().clone(), range, head, proof, good.checkpoint().clone()).unwrap();
            prop_assert!(bad.verify(&v).is_err());
            prop_assert!(bad.check().is_err());
        }
    }
}
