//! Creating and opening a data directory.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use blackbox_core::keys::{FssParams, Keyring};
use blackbox_core::note::NoteVerifier;
use blackbox_store::Store;
use blackbox_store::sqlite::SqliteStore;
use blackbox_store_pg::{PgOptions, PgStore};

use crate::config::{DEFAULT_CONFIG, LedgerConfig};
use crate::datadir::{
    DataDir, StoreLocation, create_keys, load_keyring, load_or_create_subject_key, load_signer,
    load_verifier, random32,
};
use crate::error::LedgerError;
use crate::writer::{CheckpointSigner, Writer, WriterSettings};

/// What `init` created.
#[derive(Debug)]
pub struct InitOutcome {
    /// The checkpoint verifier (public) key.
    pub verifier: NoteVerifier,
    /// The log name (checkpoint origins are `<log name>/<tenant>`).
    pub log_name: String,
    /// The HMAC key generation created (`k1`).
    pub hmac_key_id: String,
    /// When that generation is forward-secure: the file holding its initial state, to be moved
    /// to the auditor.
    pub fss_initial_file: Option<PathBuf>,
}

/// A default log name: `blackbox/<8 random hex digits>`, unique per installation.
///
/// # Errors
/// [`LedgerError::Random`].
pub fn default_log_name() -> Result<String, LedgerError> {
    Ok(format!("blackbox/{}", hex::encode(&random32()?[..4])))
}

/// Creates the data directory, keys, settings and store. Refuses to touch an existing store.
///
/// # Errors
/// [`LedgerError::AlreadyInitialised`], I/O and store failures.
pub fn init(dir: &DataDir, log_name: &str) -> Result<InitOutcome, LedgerError> {
    init_with(dir, log_name, None)
}

/// As [`init`], with a forward-secure first HMAC generation when `fss` is given.
///
/// # Errors
/// As [`init`].
pub fn init_with(
    dir: &DataDir,
    log_name: &str,
    fss: Option<FssParams>,
) -> Result<InitOutcome, LedgerError> {
    if dir.is_initialised() {
        return Err(LedgerError::AlreadyInitialised {
            dir: dir.root().to_owned(),
        });
    }
    // A log of the other kind of store lives here: its keys must never be written over.
    if dir.is_data_dir() {
        let (has, asked) = match dir.store_location() {
            StoreLocation::Postgres { .. } | StoreLocation::Sharded { .. } => {
                ("its embedded SQLite store", "a PostgreSQL store")
            }
            StoreLocation::Sqlite(_) => (
                "a PostgreSQL store (give its URL with --store or BLACKBOX_STORE)",
                "an embedded SQLite store",
            ),
        };
        return Err(LedgerError::Inconsistent(format!(
            "{} already holds a Blackbox log in {has}; refusing to start a new log in {asked} \
             with new keys there: choose another data directory",
            dir.root().display()
        )));
    }
    fs::create_dir_all(dir.root()).map_err(LedgerError::io(dir.root()))?;
    fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o700))
        .map_err(LedgerError::io(dir.root()))?;
    // Keys first and the store last: a store's presence means "initialised", so an interrupted
    // init can simply be run again.
    let verifier = create_keys(dir, log_name, fss)?;
    if !dir.config_path().exists() {
        crate::datadir::write_public(&dir.config_path(), DEFAULT_CONFIG)?;
    }
    // The databases get their tables and the log's name; the marker, written last, says
    // "initialised" (an interrupted init can be run again).
    let databases = match dir.store_location() {
        StoreLocation::Postgres { url, seal_key } => Some((vec![(url, seal_key)], None)),
        StoreLocation::Sharded { map, keys_dir } => Some((
            map.databases()
                .iter()
                .map(|(n, u)| (u.clone(), crate::datadir::database_seal_key(&keys_dir, n)))
                .collect(),
            Some(map),
        )),
        StoreLocation::Sqlite(_) => None,
    };
    if let Some((databases, map)) = databases {
        let mut stores = Vec::new();
        // Every database is checked before any is written.
        for (url, seal_key) in databases {
            let store = PgStore::open(&url, &PgOptions::default())?;
            if let Some(name) = store.meta("log_name")? {
                return Err(LedgerError::Inconsistent(format!(
                    "the database {} already holds the Blackbox log `{name}`; refusing to start \
                     a second log in it: give another database, or use this one with its data \
                     directory's keys",
                    store.target()
                )));
            }
            stores.push((store, seal_key));
        }
        let mut targets = Vec::new();
        for (mut store, seal_key) in stores {
            // The key its personal data will be sealed with (kept here, never in the database).
            blackbox_store_pg::seal::create_key_file(&seal_key)?;
            let mut b = store.begin()?;
            b.set_meta("log_name", log_name)?;
            b.set_meta("public_key", &verifier.to_vkey())?;
            b.commit()?;
            targets.push(store.target().to_owned());
        }
        let marker = match map {
            Some(m) => format!(
                "tenant map {} ({})\n",
                m.path().display(),
                targets.join(", ")
            ),
            None => format!("{}\n", targets.join("")),
        };
        crate::datadir::write_public(&dir.postgres_marker_path(), &marker)?;
        let hmac_key_id = Keyring::new().next_id().to_string();
        return Ok(InitOutcome {
            verifier,
            log_name: log_name.to_owned(),
            fss_initial_file: fss.map(|_| dir.fss_initial_path(&hmac_key_id)),
            hmac_key_id,
        });
    }
    let tmp = dir.root().join("blackbox.db.init");
    let tmp_lines = blackbox_store::segments::lines_dir(&tmp);
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir_all(&tmp_lines);
    {
        let mut store = SqliteStore::create(&tmp)?;
        let mut b = store.begin()?;
        b.set_meta("log_name", log_name)?;
        b.set_meta("public_key", &verifier.to_vkey())?;
        b.commit()?;
    }
    // The entry-line segments first: the database's presence means "initialised".
    let lines = blackbox_store::segments::lines_dir(&dir.store_path());
    fs::rename(&tmp_lines, &lines).map_err(LedgerError::io(&lines))?;
    fs::rename(&tmp, dir.store_path()).map_err(LedgerError::io(dir.store_path()))?;
    let hmac_key_id = Keyring::new().next_id().to_string();
    Ok(InitOutcome {
        verifier,
        log_name: log_name.to_owned(),
        fss_initial_file: fss.map(|_| dir.fss_initial_path(&hmac_key_id)),
        hmac_key_id,
    })
}

fn require_init(dir: &DataDir) -> Result<(), LedgerError> {
    if dir.is_initialised() {
        Ok(())
    } else if dir.store_location() == StoreLocation::Sqlite(dir.store_path())
        && dir.postgres_marker_path().exists()
    {
        Err(LedgerError::Inconsistent(format!(
            "{} keeps its entries in a PostgreSQL database ({}): give its URL with --store \
             or BLACKBOX_STORE",
            dir.root().display(),
            fs::read_to_string(dir.postgres_marker_path())
                .unwrap_or_default()
                .trim()
        )))
    } else {
        Err(LedgerError::NotInitialised {
            dir: dir.root().to_owned(),
        })
    }
}

/// Opens the store for writing, with the writer (keys loaded and permission-checked).
///
/// # Errors
/// [`LedgerError::NotInitialised`], key, config and store failures.
pub fn open_writer(dir: &DataDir) -> Result<(Box<dyn Store>, Writer, LedgerConfig), LedgerError> {
    require_init(dir)?;
    let lock = lock_writer(dir)?;
    let config = LedgerConfig::load(&dir.config_path())?;
    let keys = load_keyring(&dir.hmac_keys_path())?;
    let signer = load_signer(&dir.signing_key_path())?;
    let subject_key = load_or_create_subject_key(dir)?;
    migrate(dir)?;
    let store = open_location(&dir.store_location(), false)?;
    if store.meta(crate::relocate::MIGRATION_META)?.as_deref() == Some("in progress") {
        return Err(LedgerError::Inconsistent(
            "the store is being filled by `blackbox migrate` (a copy was interrupted): run the same `blackbox migrate` again to finish it before writing to the store".to_owned(),
        ));
    }
    if let Some(name) = store.meta("log_name")?
        && name != signer.name()
    {
        return Err(LedgerError::Inconsistent(format!(
            "the signing key is for log `{}` but the store belongs to `{name}`",
            signer.name()
        )));
    }
    let writer = Writer::new(
        keys,
        CheckpointSigner::new(signer),
        WriterSettings {
            default_tenant: config.default_tenant.clone(),
            checkpoint_every_entries: config.checkpoint_every_entries,
            checkpoint_every_ms: config.checkpoint_every_ms,
            clock: config.clock,
        },
    )?
    .with_subject_key(subject_key)
    .with_keyring_file(dir.hmac_keys_path())
    .with_clock(crate::clock::Clock::from_env())
    .with_lock(lock);
    let mut store = store;
    let writer = match dir.store_location() {
        // The embedded store has one writer at a time (this one, holding the lock): what its
        // journal holds can be appended on top of the store after a crash. (A database other
        // instances append to cannot take a crashed instance's batches later.)
        crate::datadir::StoreLocation::Sqlite(_) => {
            let mut w = writer.with_journal(dir.commit_journal_path());
            w.recover_journal(store.as_mut())?;
            w
        }
        _ => writer,
    };
    Ok((store, writer, config))
}

/// Takes the data directory's writer lock (`DIR/writer.lock`, an exclusive `flock`): one
/// writer at a time, so that a command run beside `blackbox serve` is refused instead of
/// moving chains under the service's feet. The OS releases it when the process ends, however
/// it ends.
///
/// # Errors
/// [`LedgerError::InUse`] when another process holds it; I/O failures.
pub fn lock_writer(dir: &DataDir) -> Result<std::fs::File, LedgerError> {
    let path = dir.root().join("writer.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse {
            dir: dir.root().to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io { path, source: e }),
    }
}

/// Migrates a store of an older schema in place (schema 2 kept data-subject ids in clear; see
/// `SqliteStore::migrate`). Needs write access and the subject-index key, which it creates if
/// missing. Returns whether anything was migrated.
///
/// # Errors
/// Key and store failures.
pub fn migrate(dir: &DataDir) -> Result<bool, LedgerError> {
    require_init(dir)?;
    // A PostgreSQL store migrates itself when opened for writing (its migrations).
    if let StoreLocation::Postgres { .. } | StoreLocation::Sharded { .. } = dir.store_location() {
        return Ok(false);
    }
    match SqliteStore::open_read_only(dir.store_path()) {
        Err(blackbox_store::StoreError::Schema { found: 2, .. }) => {}
        _ => return Ok(false),
    }
    let key = load_or_create_subject_key(dir)?;
    let hash = |id: &str| blackbox_core::erasure::subject_index_key(&key, id);
    Ok(SqliteStore::migrate(dir.store_path(), &hash)?)
}

/// Opens the store read-only.
///
/// # Errors
/// [`LedgerError::NotInitialised`], store failures.
pub fn open_reader(dir: &DataDir) -> Result<Box<dyn Store>, LedgerError> {
    require_init(dir)?;
    // A store of schema 2 is migrated first (this needs write access; see `migrate`).
    migrate(dir)?;
    open_location(&dir.store_location(), true)
}

/// Opens the store at `location`, read-only or for writing. This is where a data directory's
/// storage backend is chosen; callers get the storage contract only.
///
/// # Errors
/// Store failures.
pub fn open_location(
    location: &StoreLocation,
    read_only: bool,
) -> Result<Box<dyn Store>, LedgerError> {
    Ok(match (location, read_only) {
        (StoreLocation::Sqlite(p), true) => Box::new(SqliteStore::open_read_only(p)?),
        (StoreLocation::Sqlite(p), false) => Box::new(SqliteStore::open(p)?),
        (StoreLocation::Sharded { map, keys_dir }, read_only) => {
            let mut shards = Vec::new();
            for (name, url) in map.databases() {
                let o = PgOptions {
                    seal_key: Some(crate::datadir::database_seal_key(keys_dir, name)),
                    ..PgOptions::default()
                };
                // The writer first: it brings the schema up to date.
                let writer: Option<Box<dyn Store>> = if read_only {
                    None
                } else {
                    Some(Box::new(PgStore::open(url, &o)?))
                };
                shards.push(blackbox_store::sharded::Shard {
                    writer,
                    reader: Box::new(PgStore::open_read_only(url, &o)?),
                });
            }
            Box::new(blackbox_store::sharded::ShardedStore::new(
                map.map().clone(),
                shards,
            )?)
        }
        (StoreLocation::Postgres { url, seal_key }, read_only) => {
            let o = PgOptions {
                seal_key: Some(seal_key.clone()),
                ..PgOptions::default()
            };
            if read_only {
                Box::new(PgStore::open_read_only(url, &o)?)
            } else {
                Box::new(PgStore::open(url, &o)?)
            }
        }
    })
}

/// Opens the store at `path` read-only, without migrating it (verification reads a store as it
/// is). This module is where a data directory's storage backend is chosen; callers get the
/// storage contract only.
///
/// # Errors
/// Store failures.
pub fn open_store_read_only(path: &Path) -> Result<Box<dyn Store>, LedgerError> {
    Ok(Box::new(SqliteStore::open_read_only(path)?))
}

/// Opens `dir`'s store for reading and for retention's own writes (reclaiming space), without a
/// writer: batches go through the writer that holds the chain state.
///
/// # Errors
/// [`LedgerError::NotInitialised`], store failures.
pub fn open_store(dir: &DataDir) -> Result<Box<dyn Store>, LedgerError> {
    require_init(dir)?;
    open_location(&dir.store_location(), false)
}

/// The checkpoint verifier of a data directory (its `checkpoint.pub`).
///
/// # Errors
/// I/O and key-format failures.
pub fn public_key(dir: &DataDir) -> Result<NoteVerifier, LedgerError> {
    load_verifier(&dir.public_key_path())
}
