//! HMAC-SHA256 keys and the keyring (RFC 2104, RFC 4231 test vectors in the tests), with
//! forward-secure generations (docs/FORMAT.md §17).
//!
//! A forward-secure generation holds an evolving state `S_e` instead of a fixed key: each epoch
//! has its own MAC key `K_e` derived from `S_e`, and `S_{e+1}` is derived one-way from `S_e`, so
//! whoever holds `S_k` can derive the keys of epochs `k, k+1, …` but not of any epoch before `k`.
//!
//! Key material never leaves this module in printable form: `Debug` shows only the key id, and
//! no error message contains key bytes. Comparisons of MACs are constant-time
//! (`hmac::Mac::verify_slice`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use zeroize::Zeroize as _;

use hmac::{KeyInit as _, Mac as _};

use crate::error::{Error, FssError};
use crate::ids::KeyId;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// First line of a keyring file.
pub const KEYRING_HEADER: &str = "# blackbox hmac keyring v1";

/// A 256-bit HMAC-SHA256 key. Zeroed when dropped.
///
/// The keyed HMAC state (the key XOR ipad and opad blocks already absorbed) is prepared once, so
/// each MAC costs only the compressions of its message: per-entry MACs are over a 32-byte digest.
#[derive(Clone)]
pub struct HmacKey {
    bytes: [u8; 32],
    keyed: HmacSha256,
}

impl HmacKey {
    /// Wraps 32 secret bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
        let keyed = match HmacSha256::new_from_slice(&bytes) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        };
        Self { bytes, keyed }
    }

    /// HMAC-SHA256 of `data` under this key.
    #[must_use]
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag` against HMAC-SHA256(key, data) in constant time.
    #[must_use]
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    fn hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the memory is released (the keyed HMAC state is
        // wiped by its own Drop: `hmac` is built with its `zeroize` feature).
        for b in &mut self.bytes {
            // volatile-free wipe is fine here: the struct is being dropped and not read again.
            *b = 0;
        }
        std::hint::black_box(&self.bytes);
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<secret>)")
    }
}

/// Domain-separation label of the state evolution: `S_{e+1} = HMAC(S_e, label || u64be(e+1))`.
pub const FSS_EVOLVE_LABEL: &[u8] = b"blackbox fss v1 evolve";
/// Domain-separation label of an epoch's MAC key: `K_e = HMAC(S_e, label || u64be(e))`.
pub const FSS_MAC_LABEL: &[u8] = b"blackbox fss v1 mac";
/// Shortest epoch accepted, in seconds.
pub const MIN_EPOCH_SECS: u64 = 60;
/// Longest epoch accepted, in seconds (366 days).
pub const MAX_EPOCH_SECS: u64 = 366 * 86_400;
/// Longest name of a forward-secure generation, so that `<gen>-e<u64>` fits a key id (32).
pub const MAX_FSS_GENERATION_LEN: usize = 10;
/// A verifier derives at most this many seconds' worth of epochs past the state it holds (ten
/// years): an entry claiming a later epoch is reported as signed with an unknown key, rather
/// than costing an unbounded derivation.
pub const MAX_DERIVE_AHEAD_SECS: u64 = 10 * 366 * 86_400;
/// States kept by a verifier's derivation cache: every this many epochs.
const SPARSE_EVERY: u64 = 256;
/// Epoch MAC keys kept by a verifier's derivation cache before it starts afresh.
const MAX_CACHED_KEYS: usize = 1024;

fn hmac_parts(key: &[u8; 32], label: &[u8], n: u64) -> [u8; 32] {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(label);
    mac.update(&n.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// Epoch length and origin of a forward-secure generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FssParams {
    epoch_secs: u64,
    origin: u64,
}

impl FssParams {
    /// Epochs of `epoch_secs` seconds counted from `origin` (Unix seconds, a multiple of the
    /// epoch length).
    ///
    /// # Errors
    /// [`Error::ForwardSecure`] when the length is outside [`MIN_EPOCH_SECS`]..=[`MAX_EPOCH_SECS`]
    /// or the origin is not aligned.
    pub fn new(epoch_secs: u64, origin: u64) -> Result<Self, Error> {
        if !(MIN_EPOCH_SECS..=MAX_EPOCH_SECS).contains(&epoch_secs) {
            return Err(FssError::EpochLength {
                given: epoch_secs,
                min: MIN_EPOCH_SECS,
                max: MAX_EPOCH_SECS,
            }
            .into());
        }
        if !origin.is_multiple_of(epoch_secs) {
            return Err(FssError::Unaligned { origin, epoch_secs }.into());
        }
        Ok(Self { epoch_secs, origin })
    }

    /// Epochs of `epoch_secs` seconds whose epoch 0 contains `now_ms` (the origin is `now`
    /// rounded down to a multiple of the length).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn starting_at(epoch_secs: u64, now_ms: i64) -> Result<Self, Error> {
        if epoch_secs == 0 {
            return Self::new(0, 0);
        }
        let now_s = u64::try_from(now_ms.max(0)).unwrap_or(0) / 1000;
        Self::new(epoch_secs, now_s - now_s % epoch_secs)
    }

    /// Epoch length in seconds.
    #[must_use]
    pub fn epoch_secs(&self) -> u64 {
        self.epoch_secs
    }

    /// Start of epoch 0, Unix seconds.
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The epoch containing `now_ms` (Unix milliseconds): `floor((now_ms / 1000 - origin) /
    /// epoch_secs)` in exact integer arithmetic; 0 before the origin.
    #[must_use]
    pub fn epoch_at(&self, now_ms: i64) -> u64 {
        let now_s = u64::try_from(now_ms.max(0)).unwrap_or(0) / 1000;
        now_s.saturating_sub(self.origin) / self.epoch_secs
    }

    /// Unix milliseconds at which epoch `e` starts (saturating).
    #[must_use]
    pub fn epoch_start_ms(&self, e: u64) -> i64 {
        let s = self
            .origin
            .saturating_add(e.saturating_mul(self.epoch_secs));
        i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The evolving secret `S_e` of a forward-secure generation at epoch `e`. Zeroed when dropped.
#[derive(Clone)]
pub struct FssState {
    epoch: u64,
    secret: [u8; 32],
}

impl FssState {
    /// `S_0`, the initial secret.
    #[must_use]
    pub fn initial(secret: [u8; 32]) -> Self {
        Self { epoch: 0, secret }
    }

    /// The state of epoch `epoch` (as read from a keyring).
    #[must_use]
    pub fn at(epoch: u64, secret: [u8; 32]) -> Self {
        Self { epoch, secret }
    }

    /// The epoch of this state.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// `S_{e+1} = HMAC-SHA256(S_e, "blackbox fss v1 evolve" || u64be(e+1))`. One-way: `S_e`
    /// cannot be computed from `S_{e+1}`.
    #[must_use]
    pub fn next(&self) -> Self {
        let epoch = self.epoch.saturating_add(1);
        Self {
            epoch,
            secret: hmac_parts(&self.secret, FSS_EVOLVE_LABEL, epoch),
        }
    }

    /// The state of epoch `target`, derived forward; `None` when `target` is before this one.
    #[must_use]
    pub fn advanced_to(&self, target: u64) -> Option<Self> {
        if target < self.epoch {
            return None;
        }
        let mut s = self.clone();
        while s.epoch < target {
            s = s.next();
        }
        Some(s)
    }

    /// `K_e = HMAC-SHA256(S_e, "blackbox fss v1 mac" || u64be(e))`, the MAC key of this epoch.
    #[must_use]
    pub fn mac_key(&self) -> HmacKey {
        HmacKey::from_bytes(hmac_parts(&self.secret, FSS_MAC_LABEL, self.epoch))
    }

    /// Constant-time equality of two states of the same epoch.
    fn same_as(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.epoch == other.epoch && bool::from(self.secret.ct_eq(&other.secret))
    }

    fn hex(&self) -> String {
        hex::encode(self.secret)
    }
}

impl Drop for FssState {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for FssState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FssState(epoch {}, <secret>)", self.epoch)
    }
}

/// The key id of epoch `epoch` of the forward-secure generation `generation`: `<gen>-e<epoch>`.
///
/// # Errors
/// [`Error::ForwardSecure`] when the result would not be a valid key id.
pub fn epoch_key_id(generation: &KeyId, epoch: u64) -> Result<KeyId, Error> {
    KeyId::parse(&format!("{generation}-e{epoch}")).map_err(|source| {
        FssError::KeyId {
            generation: generation.to_string(),
            epoch,
            source,
        }
        .into()
    })
}

/// Splits a forward-secure key id `<gen>-e<epoch>` (epoch in decimal without leading zeros)
/// into its generation and epoch; `None` for any other id.
#[must_use]
pub fn split_epoch_id(id: &str) -> Option<(&str, u64)> {
    // Byte search: a `str` pattern builds a searcher on every call, and this runs per entry.
    let cut = id.as_bytes().windows(2).rposition(|w| w == b"-e")?;
    let (generation, digits) = (&id[..cut], &id[cut + 2..]);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if generation.is_empty() || !canonical {
        return None;
    }
    digits.parse().ok().map(|e| (generation, e))
}

/// An HMAC key found in a keyring: held by it, or derived for a forward-secure epoch.
#[derive(Debug)]
pub enum KeyRef<'a> {
    /// A key the keyring holds.
    Held(&'a HmacKey),
    /// The key of a later epoch, derived from the state the keyring holds.
    Derived(Arc<HmacKey>),
}

impl std::ops::Deref for KeyRef<'_> {
    type Target = HmacKey;

    fn deref(&self) -> &HmacKey {
        match self {
            Self::Held(k) => k,
            Self::Derived(k) => k,
        }
    }
}

/// What a keyring knows about a key id.
#[derive(Debug)]
pub enum KeyLookup<'a> {
    /// The key.
    Found(KeyRef<'a>),
    /// A forward-secure epoch before the state the keyring holds: its key was erased, only a
    /// keyring holding an earlier state (the auditor's initial one) can derive it.
    Erased {
        /// The epoch of the state held.
        held_epoch: u64,
    },
    /// No such key.
    Unknown,
}

/// Derived states and keys of a forward-secure generation, shared by verifying threads.
#[derive(Default)]
struct EpochCache {
    /// States at every [`SPARSE_EVERY`]-th epoch derived so far.
    sparse: BTreeMap<u64, FssState>,
    /// The last state derived.
    cursor: Option<FssState>,
    /// Recently derived MAC keys by epoch.
    keys: HashMap<u64, Arc<HmacKey>>,
}

struct FssGeneration {
    params: FssParams,
    state: FssState,
    /// `K_e` of the state's epoch.
    mac: HmacKey,
    cache: Mutex<EpochCache>,
}

impl FssGeneration {
    fn new(params: FssParams, state: FssState) -> Self {
        let mac = state.mac_key();
        Self {
            params,
            state,
            mac,
            cache: Mutex::new(EpochCache::default()),
        }
    }

    fn lookup(&self, epoch: u64) -> KeyLookup<'_> {
        let held = self.state.epoch;
        if epoch < held {
            return KeyLookup::Erased { held_epoch: held };
        }
        if epoch == held {
            return KeyLookup::Found(KeyRef::Held(&self.mac));
        }
        if epoch - held > MAX_DERIVE_AHEAD_SECS / self.params.epoch_secs {
            return KeyLookup::Unknown;
        }
        // The cache is only a memo: a panic elsewhere cannot leave it wrong, so a poisoned lock
        // is taken over.
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = cache.keys.get(&epoch) {
            return KeyLookup::Found(KeyRef::Derived(Arc::clone(k)));
        }
        let mut start = cache
            .sparse
            .range(..=epoch)
            .next_back()
            .map_or(&self.state, |(_, s)| s);
        if let Some(c) = &cache.cursor
            && c.epoch <= epoch
            && c.epoch > start.epoch
        {
            start = c;
        }
        let mut s = start.clone();
        let mut new_sparse = Vec::new();
        while s.epoch < epoch {
            s = s.next();
            if s.epoch.is_multiple_of(SPARSE_EVERY) {
                new_sparse.push(s.clone());
            }
        }
        for st in new_sparse {
            cache.sparse.insert(st.epoch, st);
        }
        let key = Arc::new(s.mac_key());
        if cache.keys.len() >= MAX_CACHED_KEYS {
            cache.keys.clear();
        }
        cache.keys.insert(epoch, Arc::clone(&key));
        cache.cursor = Some(s);
        KeyLookup::Found(KeyRef::Derived(key))
    }
}

impl Clone for FssGeneration {
    fn clone(&self) -> Self {
        Self::new(self.params, self.state.clone())
    }
}

#[derive(Clone)]
enum Generation {
    Plain(HmacKey),
    ForwardSecure(FssGeneration),
}

/// A forward-secure generation as shown to users (no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FssInfo {
    /// Epoch length and origin.
    pub params: FssParams,
    /// The epoch of the state held.
    pub epoch: u64,
}

/// All HMAC key generations of a ledger; the last one added is the current signing key.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, Generation>,
    order: Vec<KeyId>,
}

impl Keyring {
    /// An empty keyring.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, id: KeyId, g: Generation) -> Result<(), Error> {
        let line = self.order.len() + 1;
        if self.keys.contains_key(&id) {
            return Err(Error::Keyring {
                line,
                problem: format!("key id `{id}` appears twice"),
            });
        }
        if split_epoch_id(id.as_str()).is_some() {
            return Err(Error::Keyring {
                line,
                problem: format!(
                    "key id `{id}` has the form `<generation>-e<number>`, which names epochs of forward-secure generations; choose another id"
                ),
            });
        }
        self.keys.insert(id.clone(), g);
        self.order.push(id);
        Ok(())
    }

    /// Adds a key generation; it becomes current.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the id is already present or has the form of an epoch key id.
    pub fn push(&mut self, id: KeyId, key: HmacKey) -> Result<(), Error> {
        self.insert(id, Generation::Plain(key))
    }

    /// Adds a forward-secure generation holding `state`; it becomes current.
    ///
    /// # Errors
    /// [`Error::Keyring`] as [`Self::push`], or when the id is longer than
    /// [`MAX_FSS_GENERATION_LEN`].
    pub fn push_forward_secure(
        &mut self,
        id: KeyId,
        params: FssParams,
        state: FssState,
    ) -> Result<(), Error> {
        if id.as_str().len() > MAX_FSS_GENERATION_LEN {
            return Err(Error::Keyring {
                line: self.order.len() + 1,
                problem: format!(
                    "forward-secure generation `{id}` has a name longer than {MAX_FSS_GENERATION_LEN} characters"
                ),
            });
        }
        self.insert(
            id,
            Generation::ForwardSecure(FssGeneration::new(params, state)),
        )
    }

    /// The id entries are signed with now and its key: the current generation's id, or for a
    /// forward-secure generation `<gen>-e<epoch>` of the state held.
    #[must_use]
    pub fn current(&self) -> Option<(KeyId, &HmacKey)> {
        let id = self.order.last()?;
        match self.keys.get(id)? {
            Generation::Plain(k) => Some((id.clone(), k)),
            Generation::ForwardSecure(g) => {
                let eid = epoch_key_id(id, g.state.epoch).ok()?;
                Some((eid, &g.mac))
            }
        }
    }

    /// The current (newest) generation.
    #[must_use]
    pub fn current_generation(&self) -> Option<&KeyId> {
        self.order.last()
    }

    /// Epoch length, origin and held epoch of a forward-secure generation.
    #[must_use]
    pub fn forward_secure(&self, generation: &str) -> Option<FssInfo> {
        match self.keys.get(generation)? {
            Generation::Plain(_) => None,
            Generation::ForwardSecure(g) => Some(FssInfo {
                params: g.params,
                epoch: g.state.epoch,
            }),
        }
    }

    /// Finds the key of `id`: a plain generation by its id, a forward-secure one by
    /// `<gen>-e<epoch>` (derived forward from the state held when the epoch is later).
    #[must_use]
    pub fn lookup(&self, id: &str) -> KeyLookup<'_> {
        // KeyId borrows as its string (same Eq and Ord): no allocation per lookup.
        if let Some(g) = self.keys.get(id) {
            return match g {
                Generation::Plain(k) => KeyLookup::Found(KeyRef::Held(k)),
                // Entries of a forward-secure generation always name their epoch.
                Generation::ForwardSecure(_) => KeyLookup::Unknown,
            };
        }
        match split_epoch_id(id) {
            Some((generation, epoch)) => match self.keys.get(generation) {
                Some(Generation::ForwardSecure(g)) => g.lookup(epoch),
                _ => KeyLookup::Unknown,
            },
            None => KeyLookup::Unknown,
        }
    }

    /// The key with this id, if the keyring has or can derive it.
    #[must_use]
    pub fn key(&self, id: &str) -> Option<KeyRef<'_>> {
        match self.lookup(id) {
            KeyLookup::Found(k) => Some(k),
            KeyLookup::Erased { .. } | KeyLookup::Unknown => None,
        }
    }

    /// Key generation ids, oldest first.
    #[must_use]
    pub fn ids(&self) -> &[KeyId] {
        &self.order
    }

    /// The id the next rotation will use: `k<N+1>` where N is the number of keys.
    #[must_use]
    pub fn next_id(&self) -> KeyId {
        let mut n = self.order.len() + 1;
        loop {
            if let Ok(id) = KeyId::parse(&format!("k{n}"))
                && !self.keys.contains_key(&id)
            {
                return id;
            }
            n += 1;
        }
    }

    /// When the current generation is forward-secure: the Unix millisecond at which the epoch
    /// after the held one starts (the writer evolves the key then).
    #[must_use]
    pub fn next_epoch_at_ms(&self) -> Option<i64> {
        let id = self.order.last()?;
        match self.keys.get(id)? {
            Generation::Plain(_) => None,
            Generation::ForwardSecure(g) => {
                Some(g.params.epoch_start_ms(g.state.epoch.saturating_add(1)))
            }
        }
    }

    /// The keyring a writer must sign with at `now_ms`: when the current generation is
    /// forward-secure and `now_ms` is in a later epoch than the state held, a copy whose
    /// current generation holds the state of that epoch (the earlier state is not kept; the
    /// other generations are unchanged). `None` when nothing is to change: a clock that steps
    /// back never takes a generation back to an earlier epoch, and one more than
    /// [`MAX_DERIVE_AHEAD_SECS`] ahead of the epoch held does not move it either.
    #[must_use]
    pub fn advanced_for(&self, now_ms: i64) -> Option<Keyring> {
        let id = self.order.last()?;
        let Some(Generation::ForwardSecure(g)) = self.keys.get(id) else {
            return None;
        };
        let target = g.params.epoch_at(now_ms);
        // A clock more than ten years ahead is a broken clock: signing on in the epoch held is
        // always verifiable, an unbounded derivation is not affordable.
        if target <= g.state.epoch
            || target - g.state.epoch > MAX_DERIVE_AHEAD_SECS / g.params.epoch_secs
        {
            return None;
        }
        let mut next = self.clone();
        next.advance_generation(id.as_str(), target).ok()?;
        Some(next)
    }

    /// Moves the forward-secure generation `generation` to the state of epoch `target`.
    ///
    /// # Errors
    /// [`Error::ForwardSecure`] when the generation is not forward-secure here or already holds
    /// a later epoch (its earlier states are gone).
    pub fn advance_generation(&mut self, generation: &str, target: u64) -> Result<(), Error> {
        let Some(Generation::ForwardSecure(g)) = self.keys.get_mut(generation) else {
            return Err(FssError::NotForwardSecure {
                generation: generation.to_owned(),
            }
            .into());
        };
        let Some(state) = g.state.advanced_to(target) else {
            return Err(FssError::EpochPassed {
                generation: generation.to_owned(),
                held: g.state.epoch,
                target,
            }
            .into());
        };
        *g = FssGeneration::new(g.params, state);
        Ok(())
    }

    /// Adds the generations of `other` (for a verifier given several key files). A generation in
    /// both must be the same key; for a forward-secure one the earlier state is kept, after
    /// checking that it derives the later one.
    ///
    /// # Errors
    /// [`Error::Keyring`] when the two disagree about a generation.
    pub fn merge(&mut self, other: &Keyring) -> Result<(), Error> {
        for id in &other.order {
            let Some(theirs) = other.keys.get(id) else {
                continue;
            };
            let disagree = |what: &str| Error::Keyring {
                line: 0,
                problem: format!("the key files disagree about generation `{id}`: {what}"),
            };
            let replace = match (self.keys.get(id), theirs) {
                (None, _) => {
                    self.insert(id.clone(), theirs.clone())?;
                    continue;
                }
                (Some(Generation::Plain(a)), Generation::Plain(b)) => {
                    use subtle::ConstantTimeEq as _;
                    if !bool::from(a.bytes.ct_eq(&b.bytes)) {
                        return Err(disagree("two different keys"));
                    }
                    false
                }
                (Some(Generation::ForwardSecure(a)), Generation::ForwardSecure(b)) => {
                    if a.params != b.params {
                        return Err(disagree("different epoch lengths or origins"));
                    }
                    let (early, late) = if a.state.epoch <= b.state.epoch {
                        (&a.state, &b.state)
                    } else {
                        (&b.state, &a.state)
                    };
                    if late.epoch - early.epoch > MAX_DERIVE_AHEAD_SECS / a.params.epoch_secs {
                        return Err(disagree("their epochs are more than ten years apart"));
                    }
                    let derived = early.advanced_to(late.epoch);
                    if !derived.is_some_and(|d| d.same_as(late)) {
                        return Err(disagree(
                            "the later state does not derive from the earlier one",
                        ));
                    }
                    b.state.epoch < a.state.epoch
                }
                _ => return Err(disagree("forward-secure in one file and not in the other")),
            };
            if replace && let Some(slot) = self.keys.get_mut(id) {
                *slot = theirs.clone();
            }
        }
        Ok(())
    }

    /// Parses keyring text: the header line, then one line per key generation, oldest first:
    /// `<key_id> <64 hex>` for a plain key, `<gen> fss <epoch seconds> <origin> <epoch> <64 hex>`
    /// for a forward-secure state. Blank lines and lines starting with `#` are ignored.
    ///
    /// # Errors
    /// [`Error::Keyring`] with the line number; the message never quotes the key.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut ring = Self::new();
        let mut saw_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line == KEYRING_HEADER {
                saw_header = true;
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: &str| Error::Keyring {
                line: line_no,
                problem: problem.to_owned(),
            };
            let fields: Vec<&str> = line.split(' ').collect();
            let (id, hex_key) = match fields.as_slice() {
                [id, hex_key] => (*id, *hex_key),
                [id, "fss", _, _, _, hex_key] => (*id, *hex_key),
                _ => {
                    return Err(bad(
                        "expected `<key_id> <64 hex digits>` or `<key_id> fss <epoch seconds> <origin> <epoch> <64 hex digits>`",
                    ));
                }
            };
            let id = KeyId::parse(id).map_err(|e| bad(&e.to_string()))?;
            let mut bytes = [0u8; 32];
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut bytes).is_err() {
                return Err(bad("the key must be 64 hex digits (256 bits)"));
            }
            let result = if let [_, "fss", len, origin, epoch, _] = fields.as_slice() {
                let num = |s: &str, what: &str| {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(&format!("{what} must be a decimal number")));
                    }
                    s.parse::<u64>()
                        .map_err(|_| bad(&format!("{what} is too large")))
                };
                let params = FssParams::new(
                    num(len, "the epoch length")?,
                    num(origin, "the epoch origin")?,
                )
                .map_err(|e| bad(&e.to_string()))?;
                let state = FssState::at(num(epoch, "the epoch")?, bytes);
                bytes.zeroize();
                ring.push_forward_secure(id, params, state)
            } else {
                ring.push(id, HmacKey::from_bytes(bytes))
            };
            result.map_err(|e| match e {
                Error::Keyring { problem, .. } => bad(&problem),
                other => bad(&other.to_string()),
            })?;
        }
        if !saw_header {
            return Err(Error::Keyring {
                line: 1,
                problem: format!("missing header `{KEYRING_HEADER}`; is this a Blackbox keyring?"),
            });
        }
        if ring.order.is_empty() {
            return Err(Error::Keyring {
                line: 1,
                problem: "the keyring holds no key".to_owned(),
            });
        }
        Ok(ring)
    }

    /// Serialises the keyring (secret: callers write it to a 0600 file and nowhere else).
    #[must_use]
    pub fn to_secret_text(&self) -> String {
        let mut out = String::from(KEYRING_HEADER);
        out.push('\n');
        for id in &self.order {
            match self.keys.get(id) {
                Some(Generation::Plain(k)) => {
                    out.push_str(&format!("{id} {}\n", k.hex()));
                }
                Some(Generation::ForwardSecure(g)) => {
                    out.push_str(&format!(
                        "{id} fss {} {} {} {}\n",
                        g.params.epoch_secs,
                        g.params.origin,
                        g.state.epoch,
                        g.state.hex()
                    ));
                }
                None => {}
            }
        }
        out
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.order)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 §4.2-4.7 test cases for HMAC-SHA-256 (key, data, expected MAC), stored as hex.
    #[test]
    fn rfc4231_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/rfc4231.json")).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 6);
        for c in cases {
            let key = hex::decode(c["key"].as_str().unwrap()).unwrap();
            let data = hex::decode(c["data"].as_str().unwrap()).unwrap();
            let expected = hex::decode(c["hmac_sha256"].as_str().unwrap()).unwrap();
            let mut mac = HmacSha256::new_from_slice(&key).unwrap();
            mac.update(&data);
            let out = mac.finalize().into_bytes();
            let n = expected.len(); // case 5 is truncated to 128 bits
            assert_eq!(&out[..n], &expected[..], "RFC 4231 case {}", c["case"]);
            if key.len() == 32 {
                let k = HmacKey::from_bytes(key.clone().try_into().unwrap());
                assert!(k.verify(&data, &out));
            }
        }
    }

    #[test]
    fn keyring_round_trip_and_errors_hide_keys() {
        let mut ring = Keyring::new();
        ring.push(KeyId::parse("k1").unwrap(), HmacKey::from_bytes([7; 32]))
            .unwrap();
        ring.push(KeyId::parse("k2").unwrap(), HmacKey::from_bytes([9; 32]))
            .unwrap();
        let text = ring.to_secret_text();
        let back = Keyring::parse(&text).unwrap();
        assert_eq!(back.current().unwrap().0.as_str(), "k2");
        assert!(
            back.key("k1")
                .unwrap()
                .verify(b"x", &ring.key("k1").unwrap().sign(b"x"))
        );
        assert_eq!(back.next_id().as_str(), "k3");
        let secret_hex = hex::encode([9u8; 32]);
        assert!(!format!("{back:?}").contains(&secret_hex));
        assert!(!format!("{:?}", back.key("k2").unwrap()).contains(&secret_hex));
        // A malformed key line: the error names the line, not the key.
        let bad = format!("{KEYRING_HEADER}\nk1 {}\n", &secret_hex[..60]);
        let e = Keyring::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains(&secret_hex[..60]), "{e}");
        assert!(Keyring::parse("k1 00").is_err());
    }

    #[test]
    fn wrong_key_fails_verification() {
        let a = HmacKey::from_bytes([1; 32]);
        let b = HmacKey::from_bytes([2; 32]);
        assert!(!b.verify(b"entry", &a.sign(b"entry")));
    }
}
