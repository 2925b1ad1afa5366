//! RFC 6962 / RFC 9162 Merkle trees: leaf and node hashes, tree roots, the compact range a log
//! appends to, and inclusion and consistency proofs (generation and verification).
//!
//! The tree is the Merkle Tree Hash (MTH) of RFC 6962 §2.1
//! (<https://www.rfc-editor.org/rfc/rfc6962#section-2.1>), restated in RFC 9162 §2.1
//! (<https://www.rfc-editor.org/rfc/rfc9162#section-2.1>): a leaf hashes as `SHA-256(0x00 || data)`,
//! an interior node as `SHA-256(0x01 || left || right)`, the empty tree as `SHA-256("")`, and a list
//! of `n > 1` leaves is split at `k`, the largest power of two smaller than `n`.
//!
//! Proofs are lists of hashes ordered from the leaf towards the root, exactly as PATH (RFC 6962
//! §2.1.1) and PROOF / SUBPROOF (RFC 6962 §2.1.2) produce them, and are checked with the
//! verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! Proof generation never needs the whole tree in memory. It asks a caller-supplied closure
//! `subtree(start, level)` for the hash of the *perfect* subtree of the `2^level` leaves
//! `start .. start + 2^level`; `start` is always a multiple of `2^level`, and level 0 means the leaf
//! hash itself. Those are exactly the nodes a store can persist as the log grows (see
//! [`CompactRange::push`]); hashes of the ragged right edge of a tree are rebuilt here from them.
//!
//! Everything here is pure: no I/O, no global state, no panics.

use sha2::{Digest as _, Sha256};

use crate::hash::Hash;

/// Why a Merkle computation or proof check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// The 0-based leaf index that was asked about.
        index: u64,
        /// The tree size it was asked about.
        size: u64,
    },
    /// No consistency proof exists between these sizes: the old size is larger than the new one,
    /// or (when generating a proof) the old size is 0.
    #[error("there is no consistency proof from tree size {old} to tree size {new}")]
    BadSizes {
        /// The older (smaller) tree size.
        old: u64,
        /// The newer (larger) tree size.
        new: u64,
    },
    /// The proof does not have the number of hashes these sizes and index require.
    #[error("the proof has {got} hashes, but this index and tree size need exactly {expected}")]
    BadProofLength {
        /// How many hashes a valid proof has.
        expected: usize,
        /// How many hashes were supplied.
        got: usize,
    },
    /// The proof leads to a different (new) root than the one expected.
    #[error("the proof leads to root {computed}, but the expected root is {expected}")]
    RootMismatch {
        /// The root the caller expected (e.g. from a signed checkpoint).
        expected: Hash,
        /// The root the proof leads to.
        computed: Hash,
    },
    /// A consistency proof leads to a different old root than the one expected.
    #[error("the proof leads to old root {computed}, but the expected old root is {expected}")]
    OldRootMismatch {
        /// The old root the caller expected.
        expected: Hash,
        /// The old root the proof leads to.
        computed: Hash,
    },
    /// Serialised [`CompactRange`] state has the wrong length for the size it declares.
    #[error(
        "malformed compact range state: {got} bytes, expected {expected} \
         (an 8-byte size, then 32 bytes per set bit of the size)"
    )]
    MalformedState {
        /// The length the declared size implies, or 8 when even the size is incomplete.
        expected: usize,
        /// The length supplied.
        got: usize,
    },
    /// A frontier does not have one hash per set bit of the tree size it is given for.
    #[error("a frontier for tree size {size} has {expected} hashes (one per set bit), not {got}")]
    FrontierLength {
        /// The tree size.
        size: u64,
        /// `size.count_ones()`.
        expected: usize,
        /// The number of hashes supplied.
        got: usize,
    },
}

/// Why a proof could not be made (not why one is rejected: that is [`crate::proof::ProofError`]):
/// bad parameters, or the storage callback failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    /// The index or sizes asked for do not describe a proof.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The `subtree` callback returned this error.
    #[error("could not read a subtree hash from storage")]
    Storage(#[source] E),
}

/// The leaf hash of an entry: `SHA-256(0x00 || data)`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    // SHA-256(0x00 || data)  https://www.rfc-editor.org/rfc/rfc9162#section-2.1.1
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  https://www.rfc-editor.org/rfc/rfc9162#section-2.1.1
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    // MTH({}) = SHA-256()  https://www.rfc-editor.org/rfc/rfc9162#section-2.1.1
    Hash::digest(&[])
}

/// The Merkle Tree Hash (root) of a list of already-computed leaf hashes.
///
/// Follows the RFC definition literally (split at the largest power of two below `n`); use
/// [`CompactRange`] to maintain a root incrementally.
#[must_use]
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            // len >= 2, so len - 1 >= 1 and k < len: the split is in bounds.
            let k = 1usize << (leaves.len() - 1).ilog2();
            let (left, right) = leaves.split_at(k);
            node_hash(&root_from_leaf_hashes(left), &root_from_leaf_hashes(right))
        }
    }
}

/// The right frontier of a Merkle tree growing from leaf 0: the roots of the perfect subtrees
/// that make up the leaves `[0, size)`, one per set bit of `size` (so at most 64), largest first.
///
/// This is all a log needs to append leaves and compute its root without reading old leaves.
///
/// Serialised form ([`to_bytes`](Self::to_bytes) / [`from_bytes`](Self::from_bytes)):
/// `size` as 8 bytes big-endian, followed by exactly `size.count_ones()` 32-byte hashes, the
/// frontier from the largest (leftmost) subtree to the smallest (rightmost). Subtree `j` in that
/// order covers `2^b` leaves, where `b` is the `j`-th highest set bit of `size`, starting right
/// after the leaves of the subtrees before it. Nothing else: no version byte, no trailing data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    /// Invariant: `frontier.len() == size.count_ones()`; largest subtree first.
    frontier: Vec<Hash>,
}

impl CompactRange {
    /// An empty range (size 0).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            size: 0,
            frontier: Vec::new(),
        }
    }

    /// The range of a tree of `size` leaves whose right frontier is `frontier` (largest subtree
    /// first, as [`frontier`](Self::frontier) returns it), e.g. from an anchor record.
    ///
    /// # Errors
    /// [`MerkleError::FrontierLength`] unless there is exactly one hash per set bit of `size`.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if frontier.len() != expected {
            return Err(MerkleError::FrontierLength {
                size,
                expected,
                got: frontier.len(),
            });
        }
        Ok(Self { size, frontier })
    }

    /// The number of leaves appended so far.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, largest (leftmost) subtree first.
    #[must_use]
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// Appends a leaf hash and reports every perfect subtree this append completes.
    ///
    /// `on_complete(level, index, hash)` is called once for each subtree of `2^level` leaves
    /// (`level >= 1`) that the new leaf completes, lowest level first; `index` is its position at
    /// that level, so it covers leaves `index * 2^level .. (index + 1) * 2^level`. Every perfect
    /// subtree is reported exactly once as the range grows (from empty), which lets a store
    /// persist, say, every level-8 node and later serve any `subtree` callback from them.
    ///
    /// A range that already holds `u64::MAX` leaves cannot grow (the next tree would have 2^64
    /// leaves, which no size field can express); `push` leaves such a range unchanged.
    pub fn push(&mut self, leaf: Hash, mut on_complete: impl FnMut(u8, u64, &Hash)) {
        let Some(new_size) = self.size.checked_add(1) else {
            return;
        };
        let (mut node, mut level, mut index) = (leaf, 0u8, self.size);
        // Each trailing 1 bit of the old size is a left sibling waiting for this right child.
        while index & 1 == 1 {
            let Some(left) = self.frontier.pop() else {
                break; // unreachable: one frontier hash per set bit of `size`
            };
            node = node_hash(&left, &node);
            level += 1;
            index >>= 1;
            on_complete(level, index, &node);
        }
        self.frontier.push(node);
        self.size = new_size;
    }

    /// Appends a leaf hash; [`push`](Self::push) without the callback.
    pub fn append(&mut self, leaf: Hash) {
        self.push(leaf, |_, _, _| {});
    }

    /// The RFC 6962 Merkle Tree Hash of leaves `[0, size)`; [`empty_root`] when empty.
    #[must_use]
    pub fn root(&self) -> Hash {
        // The RFC split decomposes [0, size) into exactly these perfect subtrees, and combines
        // them right to left: MTH = node(F0, node(F1, ... node(F(m-2), F(m-1)))).
        let mut rest = self.frontier.iter().rev();
        match rest.next() {
            None => empty_root(),
            Some(last) => rest.fold(*last, |right, left| node_hash(left, &right)),
        }
    }

    /// The serialised state (format in the [type docs](Self)).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.frontier.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for h in &self.frontier {
            out.extend_from_slice(&h.0);
        }
        out
    }

    /// Reads state written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`MerkleError::MalformedState`] unless `bytes` is an 8-byte big-endian size followed by
    /// exactly one 32-byte hash per set bit of that size (shorter or longer input is rejected).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MerkleError> {
        let Some((size, hashes)) = bytes.split_first_chunk::<8>() else {
            return Err(MerkleError::MalformedState {
                expected: 8,
                got: bytes.len(),
            });
        };
        let size = u64::from_be_bytes(*size);
        let expected = 8 + 32 * size.count_ones() as usize;
        if bytes.len() != expected {
            return Err(MerkleError::MalformedState {
                expected,
                got: bytes.len(),
            });
        }
        let (chunks, _) = hashes.as_chunks::<32>(); // the remainder is empty: length checked
        Ok(Self {
            size,
            frontier: chunks.iter().map(|c| Hash(*c)).collect(),
        })
    }
}

/// `k` for the RFC split of `n >= 2` leaves: the largest power of two smaller than `n`.
const fn split(n: u64) -> u64 {
    // n >= 2 at every call site, so n - 1 >= 1 and ilog2 is defined.
    1 << (n - 1).ilog2()
}

/// The level of a perfect subtree of `k` leaves (`k` a power of two).
const fn level_of(k: u64) -> u8 {
    k.trailing_zeros() as u8 // at most 63
}

/// MTH(D[start .. start + n]) built from perfect subtrees: the binary decomposition of `n`,
/// smallest (rightmost) subtree first, combined right to left as the RFC split would.
/// `start` must be a multiple of the largest power of two <= `n`, as every RFC subrange is.
fn range_hash<X>(
    start: u64,
    n: u64,
    subtree: &mut impl FnMut(u64, u8) -> Result<Hash, X>,
) -> Result<Hash, X> {
    let (mut end, mut bits, mut acc) = (start + n, n, None);
    while bits != 0 {
        let width = bits & bits.wrapping_neg(); // lowest set bit
        bits ^= width;
        end -= width;
        let h = subtree(end, level_of(width))?;
        acc = Some(acc.map_or(h, |right| node_hash(&h, &right)));
    }
    Ok(acc.unwrap_or_else(empty_root))
}

/// Generates the inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
///
/// `subtree(start, level)` must return the hash of the perfect subtree of `2^level` leaves
/// starting at leaf `start` (level 0: the leaf hash); see the [module docs](self).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] (wrapped in [`ProveError::Merkle`]) when `index >= size`;
/// [`ProveError::Storage`] with the callback's error when it fails.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mut subtree: impl FnMut(u64, u8) -> Result<Hash, E>,
) -> Result<Vec<Hash>, ProveError<E>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    let mut get = |start, level| subtree(start, level).map_err(ProveError::Storage);
    // PATH(m, D[n]), https://www.rfc-editor.org/rfc/rfc6962#section-2.1.1, walked from the root
    // down (collecting the suffix hashes) and reversed at the end into leaf-to-root order.
    let (mut start, mut n, mut m) = (0, size, index);
    let mut path = Vec::new();
    while n > 1 {
        let k = split(n);
        if m < k {
            // PATH(m, D[0:k]) : MTH(D[k:n])
            path.push(range_hash(start + k, n - k, &mut get)?);
            n = k;
        } else {
            // PATH(m - k, D[k:n]) : MTH(D[0:k]), and D[0:k] is perfect.
            path.push(get(start, level_of(k))?);
            (start, m, n) = (start + k, m - k, n - k);
        }
    }
    path.reverse();
    Ok(path)
}

/// Generates the consistency proof between the tree of `old_size` leaves and the tree of
/// `new_size` leaves (RFC 6962 §2.1.2). Equal sizes give an empty proof.
///
/// `subtree` is as for [`inclusion_proof`], over the tree of `new_size` leaves.
///
/// # Errors
/// [`MerkleError::BadSizes`] (wrapped in [`ProveError::Merkle`]) when `old_size == 0` or
/// `old_size > new_size`; [`ProveError::Storage`] with the callback's error when it fails.
pub fn consistency_proof<E>(
    old_size: u64,
    new_size: u64,
    mut subtree: impl FnMut(u64, u8) -> Result<Hash, E>,
) -> Result<Vec<Hash>, ProveError<E>> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::BadSizes {
            old: old_size,
            new: new_size,
        }
        .into());
    }
    let mut get = |start, level| subtree(start, level).map_err(ProveError::Storage);
    // SUBPROOF(m, D[n], b), https://www.rfc-editor.org/rfc/rfc6962#section-2.1.2, walked from the
    // root down and reversed at the end. PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
    let (mut start, mut n, mut m, mut whole_old_tree) = (0, new_size, old_size, true);
    let mut proof = Vec::new();
    while m < n {
        let k = split(n); // m >= 1 and m < n, so n >= 2
        if m <= k {
            // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.push(range_hash(start + k, n - k, &mut get)?);
            n = k;
        } else {
            // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]), and D[0:k] is perfect.
            proof.push(get(start, level_of(k))?);
            (start, m, n) = (start + k, m - k, n - k);
            whole_old_tree = false;
        }
    }
    // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}.
    if !whole_old_tree {
        proof.push(range_hash(start, n, &mut get)?);
    }
    proof.reverse();
    Ok(proof)
}

/// Right-shifts `fn_` and `sn` equally until the lowest bit of `fn_` is set or `fn_` is 0.
const fn shift_to_set_bit(fn_: u64, sn: u64) -> (u64, u64) {
    if fn_ == 0 {
        return (0, sn);
    }
    let t = fn_.trailing_zeros(); // < 64 because fn_ != 0
    (fn_ >> t, sn >> t)
}

/// How many hashes the inclusion proof of `index` in a tree of `size > index` leaves has:
/// the levels below the point where the paths to `index` and to `size - 1` meet, plus one
/// per left sibling above it.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// How many hashes the consistency proof from `old` to `new` leaves has (`0 < old < new`).
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let shift = old.trailing_zeros() as usize;
    let from_old_root = usize::from(!old.is_power_of_two());
    (from_old_root + inclusion_proof_len(old - 1, new)).saturating_sub(shift)
}

/// Recomputes the root a leaf's inclusion proof leads to (RFC 9162 §2.1.3.2, without the final
/// comparison).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] when `index >= size`; [`MerkleError::BadProofLength`] when
/// the proof has the wrong number of hashes for `index` and `size`.
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    // https://www.rfc-editor.org/rfc/rfc9162#section-2.1.3.2
    // 1. If leaf_index is greater than or equal to tree_size, then stop and fail.
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let bad_len = MerkleError::BadProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(bad_len);
    }
    // 2.-3. fn = leaf_index, sn = tree_size - 1, r = hash.
    let (mut fn_, mut sn, mut r) = (index, size - 1, *leaf);
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(bad_len);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then r = HASH(0x01 || p || r), and if
        //    LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
        //    Otherwise r = HASH(0x01 || r || p).
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            (fn_, sn) = shift_to_set_bit(fn_, sn);
        } else {
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        (fn_, sn) = (fn_ >> 1, sn >> 1);
    }
    // 5. Compare sn to 0 (the root comparison is the caller's).
    if sn != 0 {
        return Err(bad_len);
    }
    Ok(r)
}

/// Verifies that `leaf` is leaf number `index` (0-based) of the tree of `size` leaves with root
/// `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`], [`MerkleError::BadProofLength`], or
/// [`MerkleError::RootMismatch`] when the proof leads to a different root.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if computed != *root {
        return Err(MerkleError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 is consistent with every
/// tree and needs an empty proof; `old_root` is not consulted then.
///
/// # Errors
/// [`MerkleError::BadSizes`] when `old_size > new_size`; [`MerkleError::BadProofLength`] when
/// the proof has the wrong number of hashes; [`MerkleError::OldRootMismatch`] or
/// [`MerkleError::RootMismatch`] when it leads to different roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    let expected = if old_size == 0 || old_size == new_size {
        0
    } else {
        consistency_proof_len(old_size, new_size)
    };
    let bad_len = MerkleError::BadProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(bad_len);
    }
    if old_size == 0 {
        return Ok(());
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(MerkleError::RootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    // https://www.rfc-editor.org/rfc/rfc9162#section-2.1.4.2
    // 1.-2. The path is non-empty; if first is an exact power of 2, prepend first_hash to it.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        proof.split_first().ok_or(bad_len.clone())?
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    // 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    let t = (old_size - 1).trailing_ones(); // < 64 because old_size - 1 < u64::MAX
    let (mut fn_, mut sn) = ((old_size - 1) >> t, (new_size - 1) >> t);
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let (mut fr, mut sr) = (*seed, *seed);
    // 6. For each subsequent value c in the consistency_path array:
    for c in rest {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(bad_len);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then fr = HASH(0x01 || c || fr),
        //    sr = HASH(0x01 || c || sr), and if LSB(fn) is not set, right-shift fn and sn until
        //    LSB(fn) is set or fn is 0. Otherwise sr = HASH(0x01 || sr || c).
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            (fn_, sn) = shift_to_set_bit(fn_, sn);
        } else {
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        (fn_, sn) = (fn_ >> 1, sn >> 1);
    }
    // 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0 {
        return Err(bad_len);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(MerkleError::RootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    fn h(hex: &str) -> Hash {
        Hash::from_hex(hex).unwrap()
    }

    fn test_leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// A `subtree` callback straight from the leaves, via the literal RFC definition.
    fn from_leaves(leaves: &[Hash]) -> impl FnMut(u64, u8) -> Result<Hash, Infallible> + '_ {
        |start, level| {
            let width = 1u64 << level;
            assert_eq!(start % width, 0, "unaligned subtree ({start}, {level})");
            Ok(root_from_leaf_hashes(
                &leaves[start as usize..(start + width) as usize],
            ))
        }
    }

    /// What a log store would keep: leaf hashes plus every node `push` reported.
    struct Store {
        leaves: Vec<Hash>,
        nodes: HashMap<(u8, u64), Hash>,
        range: CompactRange,
    }

    impl Store {
        fn build(n: u64) -> Self {
            let leaves = test_leaves(n);
            let (mut nodes, mut range) = (HashMap::new(), CompactRange::new());
            for leaf in &leaves {
                range.push(*leaf, |level, index, hash| {
                    assert!(
                        nodes.insert((level, index), *hash).is_none(),
                        "reported twice"
                    );
                });
            }
            Self {
                leaves,
                nodes,
                range,
            }
        }

        fn subtree(&self, start: u64, level: u8) -> Result<Hash, String> {
            let found = match level {
                0 => self.leaves.get(start as usize),
                _ => self.nodes.get(&(level, start >> level)),
            };
            found
                .copied()
                .ok_or(format!("no node at ({start}, {level})"))
        }
    }

    /// The corruptions of transparency-dev/merkle proof/verify_test.go, plus a bit flip in
    /// every proof hash: none of them may verify.
    fn assert_inclusion_probes_fail(l: &Hash, i: u64, n: u64, p: &[Hash], r: &Hash, bit: usize) {
        let (l, r, v) = (*l, *r, p.to_vec());
        let mut probes = vec![
            (l, i.wrapping_sub(1), n, v.clone(), r, "index - 1"),
            (l, i + 1, n, v.clone(), r, "index + 1"),
            (l, i ^ 2, n, v.clone(), r, "index ^ 2"),
            (l, i, n * 2, v.clone(), r, "size * 2"),
            (l, i, n / 2, v.clone(), r, "size / 2"),
            (leaf_hash(b"WrongLeaf"), i, n, v.clone(), r, "wrong leaf"),
            (l, i, n, v.clone(), empty_root(), "empty root"),
            (l, i, n, [p, &[r]].concat(), r, "trailing root"),
            (l, i, n, [&[r], p].concat(), r, "preceding root"),
        ];
        if let Some((_, head)) = p.split_last() {
            probes.push((l, i, n, head.to_vec(), r, "removed component"));
        }
        for j in 0..p.len() {
            let mut flipped = v.clone();
            flipped[j].0[bit / 8] ^= 1 << (bit % 8);
            probes.push((l, i, n, flipped, r, "bit flip"));
        }
        for (l, i, n, p, r, what) in probes {
            let got = verify_inclusion(&l, i, n, &p, &r);
            assert!(got.is_err(), "{what} verified (index {i}, size {n})");
        }
    }

    /// As above, for a non-empty consistency proof from `m` to `n` leaves.
    fn assert_consistency_probes_fail(
        m: u64,
        n: u64,
        p: &[Hash],
        r1: &Hash,
        r2: &Hash,
        bit: usize,
    ) {
        let (r1, r2, v, wrong) = (*r1, *r2, p.to_vec(), Hash::digest(b"WrongRoot"));
        let mut probes = vec![
            (m - 1, n, v.clone(), r1, r2, "old size - 1"),
            (m + 1, n, v.clone(), r1, r2, "old size + 1"),
            (m ^ 2, n, v.clone(), r1, r2, "old size ^ 2"),
            (m, n * 2, v.clone(), r1, r2, "new size * 2"),
            (m, n / 2, v.clone(), r1, r2, "new size / 2"),
            (m, n, v.clone(), wrong, r2, "wrong old root"),
            (m, n, v.clone(), r1, wrong, "wrong new root"),
            (m, n, v.clone(), r2, r1, "swapped roots"),
            (m, n, vec![], r1, r2, "empty proof"),
            (m, n, [p, &[r1]].concat(), r1, r2, "trailing old root"),
            (m, n, [p, &[r2]].concat(), r1, r2, "trailing new root"),
            (m, n, [&[r2], p].concat(), r1, r2, "preceding new root"),
            (m, n, [&p[..1], p].concat(), r1, r2, "preceding proof[0]"),
            (m, n, p[..p.len() - 1].to_vec(), r1, r2, "truncated proof"),
        ];
        for j in 0..p.len() {
            let mut flipped = v.clone();
            flipped[j].0[bit / 8] ^= 1 << (bit % 8);
            probes.push((m, n, flipped, r1, r2, "bit flip"));
        }
        for (m, n, p, r1, r2, what) in probes {
            let got = verify_consistency(m, n, &p, &r1, &r2);
            assert!(got.is_err(), "{what} verified ({m} -> {n})");
        }
    }

    #[derive(Deserialize)]
    struct Vectors {
        source: String,
        leaf_inputs_hex: Vec<String>,
        roots: Vec<String>,
        node_hashes: Vec<Vec<String>>,
        inclusion_proofs: Vec<InclusionVector>,
        consistency_proofs: Vec<ConsistencyVector>,
    }

    #[derive(Deserialize)]
    struct InclusionVector {
        leaf: u64,
        size: u64,
        path: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ConsistencyVector {
        size1: u64,
        size2: u64,
        proof: Vec<String>,
    }

    fn vectors() -> (Vectors, Vec<Hash>, Vec<Hash>) {
        let v: Vectors =
            serde_json::from_str(include_str!("../tests/data/merkle/rfc6962_vectors.json"))
                .unwrap();
        assert!(v.source.contains("transparency-dev/merkle"));
        let leaves = v.leaf_inputs_hex.iter();
        let leaves = leaves
            .map(|x| leaf_hash(&hex::decode(x).unwrap()))
            .collect();
        let roots = v.roots.iter().map(|x| h(x)).collect();
        (v, leaves, roots)
    }

    #[test]
    fn rfc6962_roots_nodes_and_compact_range() {
        let (v, leaves, roots) = vectors();
        assert_eq!(
            leaves,
            v.node_hashes[0].iter().map(|x| h(x)).collect::<Vec<_>>()
        );
        assert_eq!(empty_root(), roots[0]);
        let mut range = CompactRange::new();
        let mut reported = HashMap::new();
        assert_eq!(range.root(), roots[0]);
        for (n, leaf) in leaves.iter().enumerate() {
            assert_eq!(root_from_leaf_hashes(&leaves[..n]), roots[n]);
            range.push(*leaf, |level, index, hash| {
                reported.insert((level, index), *hash);
            });
            let size = n as u64 + 1;
            assert_eq!(range.size(), size);
            assert_eq!(range.root(), roots[n + 1], "root of size {size}");
            // Frontier = the published perfect subtrees of the binary decomposition of size.
            let (mut start, mut want) = (0u64, Vec::new());
            for level in (0..4u32).rev().filter(|b| size & (1 << b) != 0) {
                want.push(h(&v.node_hashes[level as usize][(start >> level) as usize]));
                start += 1 << level;
            }
            assert_eq!(range.frontier(), &want[..]);
        }
        let mut published = HashMap::new();
        for (level, row) in v.node_hashes.iter().enumerate().skip(1) {
            for (index, x) in row.iter().enumerate() {
                published.insert((level as u8, index as u64), h(x));
            }
        }
        assert_eq!(reported, published);
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let (v, leaves, roots) = vectors();
        for t in &v.inclusion_proofs {
            let (index, size) = (t.leaf - 1, t.size);
            let want: Vec<Hash> = t.path.iter().map(|x| h(x)).collect();
            let got = inclusion_proof(index, size, from_leaves(&leaves)).unwrap();
            assert_eq!(got, want, "path for leaf {index} in size {size}");
            let (leaf, root) = (&leaves[index as usize], &roots[size as usize]);
            assert_eq!(root_from_inclusion(leaf, index, size, &want), Ok(*root));
            assert_eq!(verify_inclusion(leaf, index, size, &want, root), Ok(()));
            assert_inclusion_probes_fail(leaf, index, size, &want, root, 3);
        }
    }

    #[test]
    fn rfc6962_consistency_vectors() {
        let (v, leaves, roots) = vectors();
        for t in &v.consistency_proofs {
            let want: Vec<Hash> = t.proof.iter().map(|x| h(x)).collect();
            let got = consistency_proof(t.size1, t.size2, from_leaves(&leaves)).unwrap();
            assert_eq!(got, want, "proof {} -> {}", t.size1, t.size2);
            let (r1, r2) = (&roots[t.size1 as usize], &roots[t.size2 as usize]);
            assert_eq!(verify_consistency(t.size1, t.size2, &want, r1, r2), Ok(()));
            if !want.is_empty() {
                assert_consistency_probes_fail(t.size1, t.size2, &want, r1, r2, 4);
            }
        }
    }

    #[test]
    fn all_proofs_up_to_size_64_verify_and_reject_corruption() {
        let leaves = test_leaves(64);
        for n in 1..=64u64 {
            let root = root_from_leaf_hashes(&leaves[..n as usize]);
            for i in 0..n {
                let proof = inclusion_proof(i, n, from_leaves(&leaves)).unwrap();
                let (leaf, bit) = (&leaves[i as usize], (i * 37 + n) as usize % 256);
                assert_eq!(verify_inclusion(leaf, i, n, &proof, &root), Ok(()));
                assert_inclusion_probes_fail(leaf, i, n, &proof, &root, bit);
            }
            for m in 1..=n {
                let old_root = root_from_leaf_hashes(&leaves[..m as usize]);
                let proof = consistency_proof(m, n, from_leaves(&leaves)).unwrap();
                assert_eq!(verify_consistency(m, n, &proof, &old_root, &root), Ok(()));
                if m < n {
                    let bit = (m * 11) as usize % 256;
                    assert_consistency_probes_fail(m, n, &proof, &old_root, &root, bit);
                }
            }
        }
    }

    #[test]
    fn edge_cases_and_errors() {
        use MerkleError::{BadProofLength, BadSizes, IndexOutOfRange, RootMismatch};
        let leaves = test_leaves(5);
        let (r5, x, e) = (
            root_from_leaf_hashes(&leaves),
            leaf_hash(b"x"),
            empty_root(),
        );
        let mismatch = |expected, computed| Err(RootMismatch { expected, computed });
        let bad_len = |expected, got| Err(BadProofLength { expected, got });
        let merkle = |err| Err(ProveError::Merkle(err));
        let oob = |index, size| IndexOutOfRange { index, size };

        assert_eq!(
            inclusion_proof(5, 5, from_leaves(&leaves)),
            merkle(oob(5, 5))
        );
        assert_eq!(
            inclusion_proof(0, 0, from_leaves(&leaves)),
            merkle(oob(0, 0))
        );
        assert_eq!(verify_inclusion(&x, 0, 0, &[], &e), Err(oob(0, 0)));
        assert_eq!(verify_inclusion(&x, 0, 1, &[], &x), Ok(()));
        assert_eq!(verify_inclusion(&x, 0, 1, &[], &r5), mismatch(r5, x));
        assert_eq!(verify_inclusion(&x, 0, 5, &[x], &r5), bad_len(3, 1));

        let bad_sizes = |old, new| merkle(BadSizes { old, new });
        assert_eq!(
            consistency_proof(0, 5, from_leaves(&leaves)),
            bad_sizes(0, 5)
        );
        assert_eq!(
            consistency_proof(6, 5, from_leaves(&leaves)),
            bad_sizes(6, 5)
        );
        assert_eq!(consistency_proof(5, 5, from_leaves(&leaves)), Ok(vec![]));
        // Old size 0 is consistent with anything, with an empty proof (RFC 9162 §2.1.4).
        assert_eq!(verify_consistency(0, 5, &[], &x, &r5), Ok(()));
        assert_eq!(verify_consistency(0, 0, &[], &e, &e), Ok(()));
        assert_eq!(verify_consistency(0, 5, &[x], &x, &r5), bad_len(0, 1));
        assert_eq!(verify_consistency(5, 5, &[], &r5, &r5), Ok(()));
        assert_eq!(verify_consistency(5, 5, &[], &x, &r5), mismatch(r5, x));
        assert_eq!(verify_consistency(5, 5, &[r5], &r5, &r5), bad_len(0, 1));
        let sizes = Err(BadSizes { old: 6, new: 5 });
        assert_eq!(verify_consistency(6, 5, &[], &r5, &r5), sizes);

        // Storage failures come back unchanged.
        let failing = |_, _| Err::<Hash, _>("disk on fire");
        let storage = Err(ProveError::Storage("disk on fire"));
        assert_eq!(inclusion_proof(1, 5, failing), storage);
        assert_eq!(consistency_proof(3, 5, failing), storage);
    }

    #[test]
    fn compact_range_root_matches_mth_for_every_size_up_to_300() {
        let leaves = test_leaves(300);
        let mut range = CompactRange::new();
        for (n, leaf) in leaves.iter().enumerate() {
            range.append(*leaf);
            assert_eq!(range.root(), root_from_leaf_hashes(&leaves[..=n]));
            assert_eq!(range.frontier().len(), (n + 1).count_ones() as usize);
        }
    }

    #[test]
    fn on_complete_reports_exactly_the_perfect_subtrees() {
        let n = 600u64;
        let store = Store::build(n);
        let mut want = 0;
        for level in 1..=9u8 {
            want += n >> level;
            for index in 0..n >> level {
                let (s, e) = ((index << level) as usize, ((index + 1) << level) as usize);
                let expected = root_from_leaf_hashes(&store.leaves[s..e]);
                assert_eq!(
                    store.nodes.get(&(level, index)),
                    Some(&expected),
                    "node {level}/{index}"
                );
            }
        }
        assert_eq!(store.nodes.len() as u64, want);
        assert_eq!(store.nodes.keys().filter(|(l, _)| *l == 8).count(), 2);
        assert_eq!(store.nodes.keys().filter(|(l, _)| *l == 1).count(), 300);
    }

    #[test]
    fn compact_range_bytes_round_trip_and_reject_bad_lengths() {
        let mut range = CompactRange::new();
        for size in 0..=70u64 {
            let bytes = range.to_bytes();
            assert_eq!(bytes.len(), 8 + 32 * size.count_ones() as usize);
            assert_eq!(bytes[..8], size.to_be_bytes());
            assert_eq!(CompactRange::from_bytes(&bytes), Ok(range.clone()));
            for cut in 0..bytes.len() {
                assert!(
                    CompactRange::from_bytes(&bytes[..cut]).is_err(),
                    "truncated to {cut}"
                );
            }
            for extra in [&[0u8][..], &[0; 32]] {
                let long = [&bytes[..], extra].concat();
                assert_eq!(
                    CompactRange::from_bytes(&long),
                    Err(MerkleError::MalformedState {
                        expected: bytes.len(),
                        got: long.len()
                    })
                );
            }
            range.append(leaf_hash(&size.to_le_bytes()));
        }
        // A full range (u64::MAX leaves) loads, has a root, and refuses to grow.
        let full = [&u64::MAX.to_be_bytes()[..], &[7u8; 64 * 32]].concat();
        let mut range = CompactRange::from_bytes(&full).unwrap();
        let _ = range.root();
        range.append(empty_root());
        assert_eq!(range.to_bytes(), full);
    }

    #[test]
    fn from_frontier_rebuilds_the_range_and_rejects_wrong_lengths() {
        let mut range = CompactRange::new();
        for size in 0..=40u64 {
            let rebuilt = CompactRange::from_frontier(size, range.frontier().to_vec()).unwrap();
            assert_eq!(rebuilt, range);
            let mut longer = range.frontier().to_vec();
            longer.push(empty_root());
            assert_eq!(
                CompactRange::from_frontier(size, longer),
                Err(MerkleError::FrontierLength {
                    size,
                    expected: size.count_ones() as usize,
                    got: size.count_ones() as usize + 1
                })
            );
            if let Some((_, shorter)) = range.frontier().split_last() {
                assert!(CompactRange::from_frontier(size, shorter.to_vec()).is_err());
            }
            range.append(leaf_hash(&size.to_le_bytes()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(range) = CompactRange::from_bytes(&bytes) {
                prop_assert_eq!(range.to_bytes(), bytes);
            }
        }

        #[test]
        fn proofs_from_stored_nodes_verify_and_corruptions_fail(
            n in 1u64..=300,
            i in any::<prop::sample::Index>(),
            m in any::<prop::sample::Index>(),
            bit in 0usize..256,
        ) {
            let store = Store::build(n);
            let subtree = |s, l| store.subtree(s, l);
            let root = root_from_leaf_hashes(&store.leaves);
            prop_assert_eq!(store.range.root(), root);
            let restored = CompactRange::from_bytes(&store.range.to_bytes()).unwrap();
            prop_assert_eq!(&restored, &store.range);

            let index = i.index(n as usize) as u64;
            let proof = inclusion_proof(index, n, subtree).unwrap();
            let reference = inclusion_proof(index, n, from_leaves(&store.leaves)).unwrap();
            prop_assert_eq!(&proof, &reference);
            let leaf = &store.leaves[index as usize];
            prop_assert_eq!(verify_inclusion(leaf, index, n, &proof, &root), Ok(()));
            assert_inclusion_probes_fail(leaf, index, n, &proof, &root, bit);

            let old = m.index(n as usize) as u64 + 1;
            let old_root = root_from_leaf_hashes(&store.leaves[..old as usize]);
            let proof = consistency_proof(old, n, subtree).unwrap();
            prop_assert_eq!(&proof, &consistency_proof(old, n, from_leaves(&store.leaves)).unwrap());
            prop_assert_eq!(verify_consistency(old, n, &proof, &old_root, &root), Ok(()));
            if old < n {
                assert_consistency_probes_fail(old, n, &proof, &old_root, &root, bit);
            }
        }
    }
}
