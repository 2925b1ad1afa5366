//! Personal sidecars sealed at rest, and erased by destroying their keys (crypto-shredding).
//!
//! A PostgreSQL server keeps deleted rows' bytes in its write-ahead log, in free space of its
//! pages, on its standbys and in its backups: deleting a sidecar row cannot remove its bytes
//! "physically" as the storage contract requires. So no sidecar is ever stored in clear:
//!
//! - Each chain has a **data key** per *generation* (`personal_keys`), random, stored wrapped
//!   (ChaCha20-Poly1305) under the **epoch key** of the instance's key file
//!   (`keys/personal-seal.key` of the data directory, never in the database).
//! - Each sidecar is sealed with ChaCha20-Poly1305 under a key of its own,
//!   HMAC-SHA256(data key, "blackbox sidecar v1" ‖ salt) with a random 32-byte salt stored in
//!   front of the ciphertext (so no nonce is ever reused, even by a rolled-back write).
//! - An **erasure** deletes the rows, gives each chain it touched a new data key (its other
//!   sidecars are sealed again under it; the old key row is deleted), then moves the epoch key
//!   forward, K(e+1) = HMAC-SHA256(K(e), "blackbox personal-seal ratchet v1"), and wraps every
//!   remaining data key under K(e+1), all in the erasure's transaction. Once it has committed,
//!   the key file is rewritten with K(e+1) ([`blackbox_store::ErasureStore::purge_erased`]).
//!   What the database's files, standbys or backups still hold of the erased sidecars is
//!   sealed under a data key that only K(e) could unwrap, and K(e) is gone: it cannot be
//!   computed from K(e+1).
//! - Every instance sharing the database moves its own key file forward when it sees a newer
//!   epoch in the database (`meta.personal_seal`: the epoch and a check value of its key), and
//!   refuses a key file that does not match (another log's, or one from before a restore).
//!
//! docs/STORAGE.md ("Erasure on PostgreSQL") states the byte layouts.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use blackbox_store::StoreError;
use zeroize::{Zeroize as _, Zeroizing};

use crate::{corrupt, invalid, pg};

/// The key file's first line.
const HEADER: &str = "# blackbox personal-data sealing key (PostgreSQL store); secret; it moves \
                      forward at every erasure: keep no older copy";
const RATCHET: &[u8] = b"blackbox personal-seal ratchet v1";
const CHECK: &[u8] = b"blackbox personal-seal check v1";
const SIDECAR_KEY: &[u8] = b"blackbox sidecar v1";
const SIDECAR_AAD: &[u8] = b"blackbox sealed sidecar v1";
const WRAP_AAD: &[u8] = b"blackbox sidecar key v1";
/// Salt in front of a sealed sidecar.
const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// How many epochs a key file may be moved forward in one go (a database far ahead of a key
/// file is more likely another log's than a million erasures later).
const MAX_RATCHET: u64 = 1_000_000;

type Key = Zeroizing<[u8; 32]>;

fn hmac32(key: &[u8; 32], parts: &[&[u8]]) -> Key {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, StoreError> {
    let mut out = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(&mut out[..])
        .map_err(|_| invalid("the system's random number generator failed"))?;
    Ok(out)
}

fn aead(key: &[u8; 32]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| invalid("a sealing key could not be used (internal error)"))
}

/// The epoch key after `k`.
fn ratchet(k: &[u8; 32]) -> Key {
    hmac32(k, &[RATCHET])
}

/// The check value of an epoch key, as `meta.personal_seal` records it.
fn check_value(k: &[u8; 32]) -> String {
    hmac32(k, &[CHECK])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `meta.personal_seal`: `<epoch> <check hex>`.
fn parse_meta(v: &str) -> Result<(u64, String), StoreError> {
    let (e, c) = v.split_once(' ').ok_or_else(|| {
        corrupt(format!(
            "meta.personal_seal is {v:?}, not `<epoch> <check>`"
        ))
    })?;
    let e = e
        .parse()
        .map_err(|_| corrupt(format!("meta.personal_seal has the epoch {e:?}")))?;
    Ok((e, c.to_owned()))
}

/// The epoch key as the instance's key file holds it.
struct EpochKey {
    path: PathBuf,
    epoch: u64,
    key: Key,
    /// The epoch the file on disk holds (behind `epoch` between an erasure's commit and its
    /// purge).
    on_disk: u64,
}

impl EpochKey {
    fn load(path: &Path) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| {
            invalid(format!(
                "the personal-data sealing key {} cannot be read: {e}",
                path.display()
            ))
        };
        let meta = fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(invalid(format!(
                    "the personal-data sealing key {} is readable by others (mode {mode:o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                )));
            }
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        let bad = |what: &str| {
            invalid(format!(
                "the personal-data sealing key {} is not valid ({what}); restore it from the \
                 instance that holds the log's current key",
                path.display()
            ))
        };
        let mut lines = text.lines().filter(|l| !l.starts_with('#'));
        let epoch = lines
            .next()
            .and_then(|l| l.strip_prefix("epoch "))
            .and_then(|e| e.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("no `epoch N` line"))?;
        let hex = lines
            .next()
            .map(str::trim)
            .ok_or_else(|| bad("no key line"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        if hex.len() != 64 {
            return Err(bad("the key is not 64 hex digits"));
        }
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("the key is not 64 hex digits"))?;
        }
        Ok(Self {
            path: path.to_owned(),
            epoch,
            key,
            on_disk: epoch,
        })
    }

    /// Writes `epoch` and `key` to `path` (0600, synced, renamed over the old file), unless the
    /// file already holds a later epoch. Under an exclusive lock on `path.lock`: processes that
    /// share the file never move it backwards.
    fn store(path: &Path, epoch: u64, key: &[u8; 32]) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |e: std::io::Error| {
            invalid(format!(
                "the personal-data sealing key {} cannot be written: {e}",
                path.display()
            ))
        };
        let lock_path = path.with_extension("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        if path.exists()
            && let Ok(current) = Self::load(path)
            && current.epoch >= epoch
        {
            return Ok(());
        }
        let tmp = path.with_extension("key.new");
        let _ = fs::remove_file(&tmp);
        let mut text = Zeroizing::new(format!("{HEADER}\nepoch {epoch}\n"));
        for b in key {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
        let mut f = fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Moves the key forward to `epoch` (in memory; [`Self::persist`] writes it).
    fn advance_to(&mut self, epoch: u64) -> Result<(), StoreError> {
        if epoch < self.epoch {
            return Err(invalid(format!(
                "the database's personal data is sealed at epoch {epoch} but the key file {} \
                 is at epoch {}: the database was restored from before {} erasure(s), whose \
                 keys no longer exist; its sealed personal data cannot be read (the entries \
                 and their chain still verify)",
                self.path.display(),
                self.epoch,
                self.epoch - epoch
            )));
        }
        if epoch - self.epoch > MAX_RATCHET {
            return Err(invalid(format!(
                "the database is at personal-seal epoch {epoch}, the key file {} at {}: is this \
                 the key file of this database's log?",
                self.path.display(),
                self.epoch
            )));
        }
        while self.epoch < epoch {
            self.key = ratchet(&self.key);
            self.epoch += 1;
        }
        Ok(())
    }

    fn persist(&mut self) -> Result<(), StoreError> {
        if self.on_disk < self.epoch {
            Self::store(&self.path, self.epoch, &self.key)?;
            self.on_disk = self.epoch;
        }
        Ok(())
    }
}

/// The sealing state behind `m`, even after a panic elsewhere poisoned its lock (it holds no
/// invariant a panic could break half-way: keys change only after a commit).
pub(crate) fn lock(m: &std::sync::Mutex<Sealer>) -> std::sync::MutexGuard<'_, Sealer> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A store's sealing state: its epoch key and the data keys it has unwrapped.
pub(crate) struct Sealer {
    key: Option<EpochKey>,
    /// Why there is no key, when the database has one (said instead of the generic message).
    missing: Option<String>,
    /// Unwrapped data keys by (chain, generation), all of the key's epoch.
    data_keys: HashMap<(i64, i32), Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("epoch", &self.key.as_ref().map(|k| k.epoch))
            .finish_non_exhaustive()
    }
}

/// Creates a sealing key file (epoch 0, a random key, mode 0600) at `path` unless one is there.
///
/// # Errors
/// The file cannot be written.
pub fn create_key_file(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let key = random::<32>()?;
    EpochKey::store(path, 0, &key)
}

/// Where a stored sidecar is: its chain, entry and data key generation (`None`: in clear).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SidecarAt {
    pub(crate) chain: i64,
    pub(crate) seq: i64,
    pub(crate) generation: Option<i32>,
}

/// One chain's data key for new sidecars, as a write batch holds it.
pub(crate) struct WriteKey {
    pub(crate) generation: i32,
    key: Key,
}

impl WriteKey {
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl Sealer {
    /// Loads the key file (when given).
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        Ok(Self {
            key: path.map(EpochKey::load).transpose()?,
            missing: None,
            data_keys: HashMap::new(),
        })
    }

    /// No key, for the reason given (the database has one this store was not given).
    pub(crate) fn missing(why: String) -> Self {
        Self {
            key: None,
            missing: Some(why),
            data_keys: HashMap::new(),
        }
    }

    /// Whether no key file was given.
    pub(crate) fn is_unkeyed(&self) -> bool {
        self.key.is_none()
    }

    fn key(&self) -> Result<&EpochKey, StoreError> {
        if let (None, Some(why)) = (&self.key, &self.missing) {
            return Err(invalid(why.clone()));
        }
        self.key.as_ref().ok_or_else(|| {
            invalid(
                "personal data on this PostgreSQL store is sealed, and no sealing key was given \
                 (open the store through its data directory, whose keys/personal-seal.key \
                 holds it)",
            )
        })
    }

    /// Brings the key to the database's epoch (`meta.personal_seal`, read with `c`) and checks
    /// it is the database's key. `record`: with no epoch recorded yet, record this key's (the
    /// caller holds the writer lock). `snapshot`: `c` reads an older snapshot, where an epoch
    /// behind this key's means an erasure committed since the read began.
    pub(crate) fn sync(
        &mut self,
        c: &mut impl postgres::GenericClient,
        record: bool,
        snapshot: bool,
    ) -> Result<(), StoreError> {
        let Some(k) = self.key.as_mut() else {
            return Ok(());
        };
        let row = c
            .query_opt("SELECT value FROM meta WHERE key = 'personal_seal'", &[])
            .map_err(pg)?;
        let Some(row) = row else {
            if record {
                let v = format!("{} {}", k.epoch, check_value(&k.key));
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('personal_seal', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&v],
                )
                .map_err(pg)?;
            }
            return Ok(());
        };
        let (epoch, check) = parse_meta(row.get(0))?;
        if snapshot && epoch < k.epoch {
            return Err(invalid(format!(
                "an erasure committed while this read was in progress (it read personal-seal \
                 epoch {epoch}, the store is now at {}); run the read again",
                k.epoch
            )));
        }
        if epoch > k.epoch {
            k.advance_to(epoch)?;
            // Keys unwrapped under the old epoch may belong to erased generations.
            self.data_keys.clear();
            k.persist()?;
        } else if epoch < k.epoch {
            k.advance_to(epoch)?; // the restore error
        }
        let ours = check_value(&k.key);
        if !constant_time_eq(ours.as_bytes(), check.as_bytes()) {
            return Err(invalid(format!(
                "the personal-data sealing key {} is not the one this database's personal data \
                 is sealed with (epoch {epoch}); copy keys/personal-seal.key from the data \
                 directory of the instance that created the log",
                k.path.display()
            )));
        }
        Ok(())
    }

    /// The data key of (chain, generation), unwrapped from `personal_keys` through `c` when
    /// not known yet.
    fn data_key(
        &mut self,
        c: &mut impl postgres::GenericClient,
        chain: i64,
        generation: i32,
        snapshot: bool,
    ) -> Result<Key, StoreError> {
        if let Some(k) = self.data_keys.get(&(chain, generation)) {
            return Ok(k.clone());
        }
        self.sync(c, false, snapshot)?;
        let row = c
            .query_opt(
                "SELECT epoch, wrapped FROM personal_keys WHERE chain_id = $1 AND generation = $2",
                &[&chain, &generation],
            )
            .map_err(pg)?
            .ok_or_else(|| {
                if snapshot {
                    invalid(
                        "a sidecar's key is not in the store: an erasure committed while this \
                         read was in progress; run the read again",
                    )
                } else {
                    corrupt(format!(
                        "the key of generation {generation} of chain {chain}'s sealed sidecars is missing"
                    ))
                }
            })?;
        let epoch: i64 = row.get(0);
        let k = self.key()?;
        if u64::try_from(epoch).ok() != Some(k.epoch) {
            return Err(invalid(format!(
                "a sidecar key is wrapped at personal-seal epoch {epoch}, this store's key is \
                 at {}; run the read again",
                k.epoch
            )));
        }
        let dk = unwrap_key(&k.key, k.epoch, chain, generation, row.get(1))?;
        self.data_keys.insert((chain, generation), dk.clone());
        Ok(dk)
    }

    /// Opens a sealed sidecar (`generation` `None`: stored in clear by schema 3).
    pub(crate) fn open_sidecar(
        &mut self,
        c: &mut impl postgres::GenericClient,
        at: SidecarAt,
        stored: &[u8],
        snapshot: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let SidecarAt {
            chain,
            seq,
            generation,
        } = at;
        let Some(g) = generation else {
            out.extend_from_slice(stored);
            return Ok(());
        };
        let dk = self.data_key(c, chain, g, snapshot)?;
        open_with(&dk, chain, seq, g, stored, out)
    }

    /// The current data key of `chain` for new sidecars, created (generation 1) on the first
    /// one. The caller holds the writer lock.
    pub(crate) fn write_key(
        &mut self,
        c: &mut impl postgres::GenericClient,
        chain: i64,
    ) -> Result<WriteKey, StoreError> {
        self.key()?;
        self.sync(c, true, false)?;
        let row = c
            .query_opt(
                "SELECT generation FROM personal_keys WHERE chain_id = $1 \
                 ORDER BY generation DESC LIMIT 1",
                &[&chain],
            )
            .map_err(pg)?;
        if let Some(r) = row {
            let generation: i32 = r.get(0);
            let key = self.data_key(c, chain, generation, false)?;
            return Ok(WriteKey { generation, key });
        }
        self.new_generation(c, chain, 1, None)
    }

    /// Creates data key `generation` of `chain`, wrapped under `epoch_key` (the current key
    /// when `None`).
    fn new_generation(
        &mut self,
        c: &mut impl postgres::GenericClient,
        chain: i64,
        generation: i32,
        next: Option<(u64, &[u8; 32])>,
    ) -> Result<WriteKey, StoreError> {
        let k = self.key()?;
        let (epoch, ek) = next.unwrap_or((k.epoch, &k.key));
        let key = random::<32>()?;
        let wrapped = wrap_key(ek, epoch, chain, generation, &key)?;
        let e = i64::try_from(epoch).map_err(|_| invalid("the personal-seal epoch overflowed"))?;
        c.execute(
            "INSERT INTO personal_keys(chain_id, generation, epoch, wrapped) VALUES ($1, $2, $3, $4)",
            &[&chain, &generation, &e, &wrapped],
        )
        .map_err(pg)?;
        if next.is_none() {
            self.data_keys.insert((chain, generation), key.clone());
        }
        Ok(WriteKey { generation, key })
    }

    /// Seals every sidecar of each chain in `chains` again under a new data key and deletes the
    /// old keys; then, when `advance`, moves the epoch forward and wraps every data key under
    /// the next epoch key. In the caller's transaction (holding the writer lock); the new
    /// state is adopted by [`Self::committed`] once it has committed.
    pub(crate) fn rekey(
        &mut self,
        c: &mut impl postgres::GenericClient,
        chains: &[i64],
        advance: bool,
    ) -> Result<Pending, StoreError> {
        self.key()?;
        self.sync(c, true, false)?;
        let k = self.key()?;
        let (epoch, next_key) = if advance {
            (k.epoch + 1, ratchet(&k.key))
        } else {
            (k.epoch, k.key.clone())
        };
        let mut fresh = HashMap::new();
        for &chain in chains {
            let top: Option<i32> = c
                .query_one(
                    "SELECT max(generation) FROM personal_keys WHERE chain_id = $1",
                    &[&chain],
                )
                .map_err(pg)?
                .get(0);
            let generation = top.unwrap_or(0) + 1;
            let wk = self.new_generation(c, chain, generation, Some((epoch, &next_key)))?;
            // Sealed again in slices of the seq order (a large chain is not held in memory).
            let mut after = 0i64;
            loop {
                let rows = c
                    .query(
                        "SELECT seq, generation, sidecar FROM personal \
                         WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT 2000",
                        &[&chain, &after],
                    )
                    .map_err(pg)?;
                let Some(last) = rows.last() else { break };
                after = last.get(0);
                let mut seqs = Vec::with_capacity(rows.len());
                let mut sealed = Vec::with_capacity(rows.len());
                let mut plain = Zeroizing::new(Vec::new());
                for r in &rows {
                    let seq: i64 = r.get(0);
                    plain.clear();
                    let at = SidecarAt {
                        chain,
                        seq,
                        generation: r.get(1),
                    };
                    self.open_sidecar(c, at, r.get(2), false, &mut plain)?;
                    sealed.push(seal_with(&wk.key, chain, seq, generation, &plain)?);
                    seqs.push(seq);
                }
                c.execute(
                    "UPDATE personal p SET generation = $2, sidecar = u.s \
                     FROM unnest($3::bigint[], $4::bytea[]) AS u(q, s) \
                     WHERE p.chain_id = $1 AND p.seq = u.q",
                    &[&chain, &generation, &seqs, &sealed],
                )
                .map_err(pg)?;
            }
            c.execute(
                "DELETE FROM personal_keys WHERE chain_id = $1 AND generation < $2",
                &[&chain, &generation],
            )
            .map_err(pg)?;
            fresh.insert((chain, generation), wk.key);
        }
        if advance {
            // Every other data key, wrapped under the next epoch key.
            let k = self.key()?;
            let e = i64::try_from(k.epoch).map_err(|_| invalid("the epoch overflowed"))?;
            let rows = c
                .query(
                    "SELECT chain_id, generation, wrapped FROM personal_keys WHERE epoch = $1",
                    &[&e],
                )
                .map_err(pg)?;
            let next_e = e + 1;
            for r in &rows {
                let (chain, generation): (i64, i32) = (r.get(0), r.get(1));
                let dk = unwrap_key(&k.key, k.epoch, chain, generation, r.get(2))?;
                let w = wrap_key(&next_key, epoch, chain, generation, &dk)?;
                c.execute(
                    "UPDATE personal_keys SET epoch = $3, wrapped = $4 \
                     WHERE chain_id = $1 AND generation = $2",
                    &[&chain, &generation, &next_e, &w],
                )
                .map_err(pg)?;
            }
            let v = format!("{epoch} {}", check_value(&next_key));
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('personal_seal', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&v],
            )
            .map_err(pg)?;
        }
        Ok(Pending {
            advance: advance.then_some((epoch, next_key)),
            fresh,
            chains: chains.to_vec(),
        })
    }

    /// Adopts what a committed [`Self::rekey`] wrote.
    pub(crate) fn committed(&mut self, p: Pending) {
        self.data_keys
            .retain(|(chain, _), _| !p.chains.contains(chain));
        if let (Some((epoch, key)), Some(k)) = (p.advance, self.key.as_mut()) {
            k.epoch = epoch;
            k.key = key;
            // Every other data key is the same key, wrapped anew.
        }
        self.data_keys.extend(p.fresh);
    }

    /// Writes the key file when an erasure moved the epoch forward since it was last written.
    pub(crate) fn persist(&mut self) -> Result<(), StoreError> {
        match self.key.as_mut() {
            Some(k) => k.persist(),
            None => Ok(()),
        }
    }
}

/// What a [`Sealer::rekey`] leaves to adopt once its transaction commits.
pub(crate) struct Pending {
    advance: Option<(u64, Key)>,
    fresh: HashMap<(i64, i32), Key>,
    chains: Vec<i64>,
}

fn sidecar_aad(chain: i64, seq: i64, generation: i32) -> Vec<u8> {
    let mut a = SIDECAR_AAD.to_vec();
    a.extend_from_slice(&chain.to_be_bytes());
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

/// `salt ‖ ChaCha20-Poly1305(HMAC(dk, "blackbox sidecar v1" ‖ salt), nonce 0, aad, plain)`.
pub(crate) fn seal_with(
    dk: &[u8; 32],
    chain: i64,
    seq: i64,
    generation: i32,
    plain: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let salt = random::<SALT_LEN>()?;
    let rk = hmac32(dk, &[SIDECAR_KEY, &salt[..]]);
    let mut out = Vec::with_capacity(SALT_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(&salt[..]);
    let mut body = plain.to_vec();
    aead(&rk)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(sidecar_aad(chain, seq, generation)),
            &mut body,
        )
        .map_err(|_| invalid("sealing a sidecar failed (internal error)"))?;
    out.extend_from_slice(&body);
    body.zeroize();
    Ok(out)
}

fn open_with(
    dk: &[u8; 32],
    chain: i64,
    seq: i64,
    generation: i32,
    stored: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    if stored.len() < SALT_LEN + TAG_LEN {
        return Err(corrupt(format!(
            "the sealed sidecar of entry {seq} is {} bytes, too short",
            stored.len()
        )));
    }
    let (salt, ct) = stored.split_at(SALT_LEN);
    let rk = hmac32(dk, &[SIDECAR_KEY, salt]);
    let mut body = Zeroizing::new(ct.to_vec());
    let plain = aead(&rk)?
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(sidecar_aad(chain, seq, generation)),
            &mut body,
        )
        .map_err(|_| {
            corrupt(format!(
                "the sealed sidecar of entry {seq} does not open with its key: altered in the \
                 database"
            ))
        })?;
    out.extend_from_slice(plain);
    Ok(())
}

fn wrap_aad(epoch: u64, chain: i64, generation: i32) -> Vec<u8> {
    let mut a = WRAP_AAD.to_vec();
    a.extend_from_slice(&chain.to_be_bytes());
    a.extend_from_slice(&generation.to_be_bytes());
    a.extend_from_slice(&epoch.to_be_bytes());
    a
}

/// `nonce ‖ ChaCha20-Poly1305(epoch key, nonce, aad, data key)`.
fn wrap_key(
    ek: &[u8; 32],
    epoch: u64,
    chain: i64,
    generation: i32,
    dk: &[u8; 32],
) -> Result<Vec<u8>, StoreError> {
    let nonce = random::<NONCE_LEN>()?;
    let mut body = dk.to_vec();
    aead(ek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(wrap_aad(epoch, chain, generation)),
            &mut body,
        )
        .map_err(|_| invalid("wrapping a sidecar key failed (internal error)"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    body.zeroize();
    Ok(out)
}

fn unwrap_key(
    ek: &[u8; 32],
    epoch: u64,
    chain: i64,
    generation: i32,
    wrapped: &[u8],
) -> Result<Key, StoreError> {
    let bad = || {
        invalid(format!(
            "the key of generation {generation} of chain {chain}'s sealed sidecars does not open \
             with the personal-data sealing key (epoch {epoch}): the key file is not this \
             database's, or the row was altered"
        ))
    };
    if wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
        return Err(bad());
    }
    let (nonce, ct) = wrapped.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
    let mut body = Zeroizing::new(ct.to_vec());
    let plain = aead(ek)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(epoch, chain, generation)),
            &mut body,
        )
        .map_err(|_| bad())?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(plain);
    Ok(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// For tests of crypto-shredding: whether `key_file`'s key (at its epoch), or any data key
/// the database holds wrapped under it, opens `stored` (a sealed sidecar of `chain`/`seq`
/// captured earlier), or unwraps `old_wrapped` (a data key row captured earlier).
///
/// # Errors
/// The key file cannot be read.
#[doc(hidden)]
pub fn can_open_with_current_keys(
    key_file: &Path,
    c: &mut postgres::Client,
    chain: i64,
    seq: i64,
    stored: &[(i32, Vec<u8>)],
    old_wrapped: &[(i64, i32, i64, Vec<u8>)],
) -> Result<bool, StoreError> {
    let k = EpochKey::load(key_file)?;
    for (ch, g, e, w) in old_wrapped {
        for epoch in [u64::try_from(*e).unwrap_or(0), k.epoch] {
            if unwrap_key(&k.key, epoch, *ch, *g, w).is_ok() {
                return Ok(true);
            }
        }
    }
    let rows = c
        .query(
            "SELECT chain_id, generation, epoch, wrapped FROM personal_keys",
            &[],
        )
        .map_err(pg)?;
    for r in &rows {
        let epoch = u64::try_from(r.get::<_, i64>(2)).unwrap_or(0);
        let Ok(dk) = unwrap_key(&k.key, epoch, r.get(0), r.get(1), r.get(3)) else {
            continue;
        };
        for (g, s) in stored {
            let mut out = Vec::new();
            if open_with(&dk, chain, seq, *g, s, &mut out).is_ok() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_opens_with_its_key_and_place_only() {
        let dk = [7u8; 32];
        let s = seal_with(&dk, 1, 5, 1, b"{\"salt\":\"00\"}").unwrap();
        let mut out = Vec::new();
        open_with(&dk, 1, 5, 1, &s, &mut out).unwrap();
        assert_eq!(out, b"{\"salt\":\"00\"}");
        assert!(
            open_with(&dk, 1, 6, 1, &s, &mut Vec::new()).is_err(),
            "moved"
        );
        assert!(
            open_with(&dk, 1, 5, 2, &s, &mut Vec::new()).is_err(),
            "generation"
        );
        assert!(
            open_with(&[8u8; 32], 1, 5, 1, &s, &mut Vec::new()).is_err(),
            "key"
        );
        // Two seals of the same bytes differ (a salt each).
        assert_ne!(s, seal_with(&dk, 1, 5, 1, b"{\"salt\":\"00\"}").unwrap());
    }

    #[test]
    fn a_wrapped_key_opens_only_at_its_epoch() {
        let k0 = [3u8; 32];
        let k1 = ratchet(&k0);
        let w = wrap_key(&k0, 0, 9, 2, &[5u8; 32]).unwrap();
        assert_eq!(*unwrap_key(&k0, 0, 9, 2, &w).unwrap(), [5u8; 32]);
        assert!(unwrap_key(&k1, 0, 9, 2, &w).is_err());
        assert!(unwrap_key(&k1, 1, 9, 2, &w).is_err());
        assert!(unwrap_key(&k0, 0, 9, 3, &w).is_err());
    }

    #[test]
    fn the_key_file_moves_forward_only_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("personal-seal.key");
        create_key_file(&p).unwrap();
        let k0 = EpochKey::load(&p).unwrap();
        assert_eq!(k0.epoch, 0);
        let mut k = EpochKey::load(&p).unwrap();
        k.advance_to(2).unwrap();
        k.persist().unwrap();
        let k2 = EpochKey::load(&p).unwrap();
        assert_eq!(k2.epoch, 2);
        assert_eq!(*k2.key, *ratchet(&ratchet(&k0.key)));
        // An older epoch is never written over a newer one.
        EpochKey::store(&p, 1, &ratchet(&k0.key)).unwrap();
        assert_eq!(EpochKey::load(&p).unwrap().epoch, 2);
        assert!(k.advance_to(1).is_err(), "backwards");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = EpochKey::load(&p).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let hex: String = k2.key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!e.contains(&hex), "the key in a message");
    }
}
