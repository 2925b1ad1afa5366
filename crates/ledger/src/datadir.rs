//! The data directory: store, keys, public key and configuration.
//!
//! ```text
//! DIR/
//!   blackbox.db            the embedded SQLite store (plus -wal / -shm while open)
//!   store.postgres         instead, when the store is a PostgreSQL database (`--store URL`):
//!                          the database it was initialised with, without its password
//!   blackbox.toml          settings (checkpoint policy, redaction lists)
//!   checkpoint.pub         the checkpoint verifier key (public; give it to auditors)
//!   keys/                  0700
//!     hmac.keys            HMAC keyring, 0600 (secret)
//!     <gen>.fss-initial.keys  initial state of a forward-secure generation, 0600 (secret: move
//!                          it to the auditor, offline, and delete it here)
//!     checkpoint.key       Ed25519 checkpoint-signing seed, 0600 (secret)
//!     subject-index.key    key of the store's keyed data-subject index, 0600 (secret)
//! ```

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use blackbox_core::keys::{FssParams, FssState, HmacKey, Keyring};
use blackbox_core::note::{NoteSigner, NoteVerifier};

use crate::error::LedgerError;

/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./blackbox-data";

/// The store the binary was told to use (`--store` / `BLACKBOX_STORE`), for every
/// [`DataDir::new`] of the process; see [`select_store`].
static SELECTED_STORE: std::sync::OnceLock<Option<StoreSpec>> = std::sync::OnceLock::new();

/// Where a process keeps its entries instead of a data directory's embedded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// One PostgreSQL database (its URL: never print it as is).
    Postgres(String),
    /// The databases of a tenant map: all of them as one store, or only `database`.
    Map {
        /// The map.
        map: std::sync::Arc<crate::tenant_map::TenantMapFile>,
        /// One of its databases (`serve --database`), or all.
        database: Option<String>,
    },
}

/// Makes every data directory of this process use the store at `url` (`postgres://…`) instead
/// of its embedded SQLite file; `None` keeps the embedded store. Called once by the binary with
/// `--store` / `BLACKBOX_STORE`; later calls change nothing.
pub fn select_store(url: Option<String>) {
    let _ = SELECTED_STORE.set(url.filter(|u| !u.is_empty()).map(StoreSpec::Postgres));
}

/// Makes every data directory of this process keep its entries in the databases of `map`
/// (`--store FILE.toml`), or in its database `database` only. Called once by the binary.
///
/// # Errors
/// [`LedgerError::Config`] when `database` is not in the map.
pub fn select_map(
    map: crate::tenant_map::TenantMapFile,
    database: Option<String>,
) -> Result<(), LedgerError> {
    if let Some(d) = &database {
        map.url_of(d)?;
    }
    let _ = SELECTED_STORE.set(Some(StoreSpec::Map {
        map: std::sync::Arc::new(map),
        database,
    }));
    Ok(())
}

/// Where a data directory's entries are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded SQLite file (the default).
    Sqlite(PathBuf),
    /// The databases of a tenant map, as one store (`blackbox_store::sharded`).
    Sharded {
        /// The map.
        map: std::sync::Arc<crate::tenant_map::TenantMapFile>,
        /// Where each database's sealing key is (`personal-seal-<name>.key`).
        keys_dir: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// Its URL, which may hold a password: never print it as is.
        url: String,
        /// The key file its personal sidecars are sealed with (the data directory's
        /// `keys/personal-seal.key`; `blackbox_store_pg::seal`).
        seal_key: PathBuf,
    },
}

/// Paths inside a data directory, and the store it uses.
#[derive(Clone)]
pub struct DataDir {
    root: PathBuf,
    store: Option<StoreSpec>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("root", &self.root)
            .field(
                "store",
                &match &self.store {
                    None => None,
                    Some(StoreSpec::Postgres(u)) => Some(blackbox_store_pg::redact(u)),
                    Some(StoreSpec::Map { map, database }) => Some(format!(
                        "{}{}",
                        map.path().display(),
                        database
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )),
                },
            )
            .finish()
    }
}

impl DataDir {
    /// Names a data directory (nothing is touched), with the store the process selected
    /// ([`select_store`]; the embedded SQLite file by default).
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            store: SELECTED_STORE.get().cloned().flatten(),
        }
    }

    /// This directory with its entries kept at `url` (`postgres://…`), or in the embedded
    /// SQLite file (`None`).
    #[must_use]
    pub fn with_store(mut self, url: Option<String>) -> Self {
        self.store = url.map(StoreSpec::Postgres);
        self
    }

    /// Where the entries are kept.
    #[must_use]
    pub fn store_location(&self) -> StoreLocation {
        match &self.store {
            Some(StoreSpec::Postgres(url)) => StoreLocation::Postgres {
                url: url.clone(),
                seal_key: self.seal_key_path(),
            },
            Some(StoreSpec::Map {
                map,
                database: Some(d),
            }) => StoreLocation::Postgres {
                // Checked when it was selected.
                url: map.url_of(d).map(str::to_owned).unwrap_or_default(),
                seal_key: self.database_seal_key_path(d),
            },
            Some(StoreSpec::Map {
                map,
                database: None,
            }) => StoreLocation::Sharded {
                map: map.clone(),
                keys_dir: self.keys_dir(),
            },
            None => StoreLocation::Sqlite(self.store_path()),
        }
    }

    /// The tenant map the process selected, and the one database of it when one was chosen.
    #[must_use]
    pub fn tenant_map(&self) -> Option<(&crate::tenant_map::TenantMapFile, Option<&str>)> {
        match &self.store {
            Some(StoreSpec::Map { map, database }) => Some((map, database.as_deref())),
            _ => None,
        }
    }

    /// The file `init` writes when the store is a PostgreSQL database (its marker of
    /// "initialised").
    #[must_use]
    pub fn postgres_marker_path(&self) -> PathBuf {
        self.root.join("store.postgres")
    }

    /// The directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite store file.
    #[must_use]
    pub fn store_path(&self) -> PathBuf {
        self.root.join("blackbox.db")
    }

    /// The commit journal (`DIR/commit.journal`, docs/FORMAT.md §19).
    #[must_use]
    pub fn commit_journal_path(&self) -> PathBuf {
        self.root.join(crate::journal::JOURNAL_FILE)
    }

    /// The settings file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.root.join("blackbox.toml")
    }

    /// The public checkpoint verifier key.
    #[must_use]
    pub fn public_key_path(&self) -> PathBuf {
        self.root.join("checkpoint.pub")
    }

    /// The keys directory.
    #[must_use]
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The HMAC keyring.
    #[must_use]
    pub fn hmac_keys_path(&self) -> PathBuf {
        self.keys_dir().join("hmac.keys")
    }

    /// The auditor's copy of forward-secure generation `generation`'s initial state: written
    /// when the generation is created, to be moved offline.
    #[must_use]
    pub fn fss_initial_path(&self, generation: &str) -> PathBuf {
        self.keys_dir()
            .join(format!("{generation}.fss-initial.keys"))
    }

    /// The checkpoint-signing key.
    #[must_use]
    pub fn signing_key_path(&self) -> PathBuf {
        self.keys_dir().join("checkpoint.key")
    }

    /// The key of the keyed hashes the store indexes data-subject ids under.
    #[must_use]
    pub fn subject_key_path(&self) -> PathBuf {
        self.keys_dir().join("subject-index.key")
    }

    /// The sealing key of database `name` of a tenant map (each database moves its own key
    /// forward at its erasures).
    #[must_use]
    pub fn database_seal_key_path(&self, name: &str) -> PathBuf {
        database_seal_key(&self.keys_dir(), name)
    }

    /// The key a PostgreSQL store's personal sidecars are sealed with (it moves forward at
    /// every erasure; see `blackbox_store_pg::seal`).
    #[must_use]
    pub fn seal_key_path(&self) -> PathBuf {
        self.keys_dir().join("personal-seal.key")
    }

    /// Whether `init` has run here, whatever the kind of store (the files of the directory
    /// itself, such as tokens, need nothing more).
    #[must_use]
    pub fn is_data_dir(&self) -> bool {
        self.store_path().exists() || self.postgres_marker_path().exists()
    }

    /// Whether `init` has run here (for this directory's kind of store).
    #[must_use]
    pub fn is_initialised(&self) -> bool {
        match self.store {
            None => self.store_path().exists(),
            Some(_) => self.postgres_marker_path().exists(),
        }
    }
}

/// The sealing key of database `name` of a tenant map, in `keys_dir`.
#[must_use]
pub fn database_seal_key(keys_dir: &Path, name: &str) -> PathBuf {
    keys_dir.join(format!("personal-seal-{name}.key"))
}

/// Reads a secret file after checking it is not readable by group or others.
///
/// # Errors
/// [`LedgerError::KeyPermissions`], [`LedgerError::KeyFile`], [`LedgerError::Io`].
pub fn read_secret(path: &Path) -> Result<String, LedgerError> {
    let meta = fs::metadata(path).map_err(|e| LedgerError::KeyFile {
        path: path.to_owned(),
        problem: format!("cannot read it ({e})"),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LedgerError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(LedgerError::io(path))
}

/// Writes a secret file with mode 0600 atomically (temp file, fsync, rename, fsync dir).
///
/// # Errors
/// [`LedgerError::Io`].
pub fn write_secret(path: &Path, contents: &str) -> Result<(), LedgerError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(LedgerError::io(&tmp))?;
        // The mode given to open() is filtered by the umask; set it explicitly too.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(LedgerError::io(&tmp))?;
        f.write_all(contents.as_bytes())
            .map_err(LedgerError::io(&tmp))?;
        f.sync_all().map_err(LedgerError::io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(LedgerError::io(path))?;
    sync_dir(parent_dir(path))
}

/// Writes a public file atomically.
///
/// # Errors
/// [`LedgerError::Io`].
pub fn write_public(path: &Path, contents: &str) -> Result<(), LedgerError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(LedgerError::io(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(LedgerError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(LedgerError::io(path))?;
    sync_dir(parent_dir(path))
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(LedgerError::io(dir))
}

/// Loads the HMAC keyring (permission-checked).
///
/// # Errors
/// See [`read_secret`]; [`LedgerError::KeyFile`] when malformed.
pub fn load_keyring(path: &Path) -> Result<Keyring, LedgerError> {
    let text = read_secret(path)?;
    Keyring::parse(&text).map_err(|e| LedgerError::KeyFile {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// Loads the checkpoint signer: the key file holds `<log name> <64 hex seed>`.
///
/// # Errors
/// See [`read_secret`]; [`LedgerError::KeyFile`] when malformed.
pub fn load_signer(path: &Path) -> Result<NoteSigner, LedgerError> {
    let text = read_secret(path)?;
    let bad = |problem: &str| LedgerError::KeyFile {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| bad("empty; expected `<log name> <64 hex digits>`"))?;
    let (name, seed_hex) = line
        .split_once(' ')
        .ok_or_else(|| bad("expected `<log name> <64 hex digits>`"))?;
    let mut seed = [0u8; 32];
    if seed_hex.len() != 64 || hex::decode_to_slice(seed_hex, &mut seed).is_err() {
        return Err(bad("the seed must be 64 hex digits"));
    }
    NoteSigner::new(name, seed).map_err(|e| bad(&e.to_string()))
}

/// Loads a public verifier key file (`name+hash+base64`, C2SP signed-note vkey).
///
/// # Errors
/// [`LedgerError::Io`] or [`LedgerError::KeyFile`].
pub fn load_verifier(path: &Path) -> Result<NoteVerifier, LedgerError> {
    let text = fs::read_to_string(path).map_err(LedgerError::io(path))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    NoteVerifier::from_vkey(line).map_err(|e| LedgerError::KeyFile {
        path: path.to_owned(),
        problem: format!("not a checkpoint public key ({e})"),
    })
}

/// 32 bytes from the OS random number generator.
///
/// # Errors
/// [`LedgerError::Random`].
pub fn random32() -> Result<[u8; 32], LedgerError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(LedgerError::Random)?;
    Ok(b)
}

/// Adds a fresh generation to `ring` (forward-secure with `fss`); for a forward-secure one, first
/// writes its initial state to [`DataDir::fss_initial_path`]. Returns its id and that file.
fn add_generation(
    dir: &DataDir,
    ring: &mut Keyring,
    fss: Option<FssParams>,
) -> Result<(String, Option<PathBuf>), LedgerError> {
    let id = ring.next_id();
    let inconsistent = |e: blackbox_core::Error| LedgerError::Inconsistent(e.to_string());
    let Some(params) = fss else {
        ring.push(id.clone(), HmacKey::from_bytes(random32()?))
            .map_err(inconsistent)?;
        return Ok((id.to_string(), None));
    };
    let state = FssState::initial(random32()?);
    let mut initial = Keyring::new();
    initial
        .push_forward_secure(id.clone(), params, state.clone())
        .map_err(inconsistent)?;
    ring.push_forward_secure(id.clone(), params, state)
        .map_err(inconsistent)?;
    let path = dir.fss_initial_path(id.as_str());
    write_secret(
        &path,
        &format!(
            "# blackbox: initial state of forward-secure HMAC generation {id}, for the auditor.\n# Move this file offline and delete it from the server: whoever holds it can forge\n# entries of every epoch. `blackbox verify --key-file` accepts it.\n{}",
            initial.to_secret_text()
        ),
    )?;
    Ok((id.to_string(), Some(path)))
}

/// Creates the keys directory (0700) and fresh keys, the HMAC generation forward-secure when
/// `fss` is given (its initial state is then also written to
/// [`DataDir::fss_initial_path`]). Returns the verifier key.
///
/// # Errors
/// [`LedgerError::Io`], [`LedgerError::Random`].
pub fn create_keys(
    dir: &DataDir,
    log_name: &str,
    fss: Option<FssParams>,
) -> Result<NoteVerifier, LedgerError> {
    let keys = dir.keys_dir();
    fs::create_dir_all(&keys).map_err(LedgerError::io(&keys))?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))
        .map_err(LedgerError::io(&keys))?;
    let mut ring = Keyring::new();
    add_generation(dir, &mut ring, fss)?;
    write_secret(&dir.hmac_keys_path(), &ring.to_secret_text())?;
    let seed = random32()?;
    let signer = NoteSigner::new(log_name, seed).map_err(|e| LedgerError::KeyFile {
        path: dir.signing_key_path(),
        problem: format!("invalid log name `{log_name}`: {e}"),
    })?;
    write_secret(
        &dir.signing_key_path(),
        &format!(
            "# blackbox checkpoint signing key (Ed25519 seed); secret\n{log_name} {}\n",
            hex::encode(seed)
        ),
    )?;
    load_or_create_subject_key(dir)?;
    let verifier = signer.verifier();
    write_public(&dir.public_key_path(), &format!("{}\n", verifier.to_vkey()))?;
    Ok(verifier)
}

/// Loads the subject-index key (`keys/subject-index.key`, permission-checked), creating it
/// (0600, 32 random bytes) if the data directory does not have one yet (stores made before it
/// existed).
///
/// # Errors
/// As [`read_secret`] and [`write_secret`]; [`LedgerError::KeyFile`] when malformed.
pub fn load_or_create_subject_key(dir: &DataDir) -> Result<HmacKey, LedgerError> {
    let path = dir.subject_key_path();
    if !path.exists() {
        write_secret(
            &path,
            &format!(
                "# blackbox subject-index key (HMAC-SHA256 of data-subject ids); secret\n{}\n",
                hex::encode(random32()?)
            ),
        )?;
    }
    let text = read_secret(&path)?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let bytes =
        blackbox_core::hash::decode_hex32(line.as_bytes()).ok_or_else(|| LedgerError::KeyFile {
            path: path.clone(),
            problem: "expected one line of 64 lower-case hex digits (32 bytes)".to_owned(),
        })?;
    Ok(HmacKey::from_bytes(bytes))
}

/// A generation added by [`rotate_hmac_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGeneration {
    /// Its id (`k<N>`).
    pub id: String,
    /// For a forward-secure generation: the file holding its initial state, for the auditor.
    pub initial_file: Option<PathBuf>,
}

/// Adds a new HMAC key generation (forward-secure with `fss`). The generations before it keep
/// their keys or states, so their entries still verify.
///
/// # Errors
/// As [`load_keyring`] and [`write_secret`].
pub fn rotate_hmac_key(
    dir: &DataDir,
    fss: Option<FssParams>,
) -> Result<NewGeneration, LedgerError> {
    let path = dir.hmac_keys_path();
    let mut ring = load_keyring(&path)?;
    let (id, initial_file) = add_generation(dir, &mut ring, fss)?;
    write_secret(&path, &ring.to_secret_text())?;
    Ok(NewGeneration { id, initial_file })
}

/// Moves forward-secure generation `generation` of the keyring file at `path` to epoch `epoch`
/// (the writer's evolution), keeping every other line of the file as it is on disk (a rotation
/// since the file was loaded is not undone). Written atomically: temp file 0600, fsync, rename,
/// fsync of the directory, so the earlier state is gone from the file once this returns.
///
/// # Errors
/// As [`load_keyring`] and [`write_secret`]; [`LedgerError::KeyFile`] when the file's
/// generation is not forward-secure or already holds a later epoch (another writer?).
pub fn advance_keyring_file(path: &Path, generation: &str, epoch: u64) -> Result<(), LedgerError> {
    let mut ring = load_keyring(path)?;
    ring.advance_generation(generation, epoch)
        .map_err(|e| LedgerError::KeyFile {
            path: path.to_owned(),
            problem: format!("cannot move the forward-secure key to epoch {epoch}: {e}"),
        })?;
    write_secret(path, &ring.to_secret_text())
}

/// The directory holding `path` (`.` for a bare file name, whose parent is the empty path).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
