//! # blackbox-store-pg
//!
//! The PostgreSQL backend of the Blackbox storage contract ([`blackbox_store`]): the same
//! [`Store`] the embedded SQLite store is, kept in a PostgreSQL database so that a team can run
//! the log on a database they already operate. It passes the contract's conformance suite
//! unchanged (`crates/store-pg/tests/conformance.rs`).
//!
//! - **Schema** by versioned migrations (`crates/store-pg/migrations`, applied by `refinery`
//!   when a store is opened for writing; a database with a newer schema is refused).
//! - **Connections** from a pool (`r2d2`); TLS by rustls with libpq's `sslmode` meanings
//!   (`prefer` by default; `verify-full` checks the certificate and host name against the
//!   system's roots plus the PEM certificates of `BLACKBOX_PG_CA`; see `tls.rs`).
//! - **Durability:** every batch is one transaction committed with `synchronous_commit = on`
//!   (whatever the server's default), so `commit` returns once the server has flushed its WAL.
//! - **One writer at a time:** a batch takes a transaction-level advisory lock
//!   ([`WRITER_LOCK`]) before anything else, waiting at most the lock timeout
//!   ([`PgOptions::lock_timeout`]) and then failing with [`StoreError::Busy`]; the lock goes
//!   with the transaction, so a writer that dies releases it with its connection.
//! - **Entry bytes** are kept in a `bytea` column exactly as given.
//! - **Filter indexes as posting lists** (schema 5): `entries` has only its primary key
//!   `(chain_id, seq)` and the unique entry id; the time, agent, session, event-type and tool
//!   filters are rows of `postings`, one per batch and (kind, name, time bucket, chain), each
//!   listing its entries' timestamps and seqs, so a batch of thousands of entries adds a few
//!   hundred index rows instead of six B-tree inserts per entry. Queries unnest the posting
//!   lists of a window of buckets, sort the keys in query order and then read the entries by
//!   primary key (`read::query`).
//!
//! Errors say what failed and what to do: an unreachable server, a read-only database (a
//! standby, `default_transaction_read_only`), a full disk, a lock timeout.
#![forbid(unsafe_code)]

mod batch;
mod read;
pub mod seal;
mod tls;
pub mod tokens;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use blackbox_core::Hash;
use blackbox_store::{ChainHead, Store, StoreError, TenantRef, WriteBatch};
use postgres::error::SqlState;
use r2d2_postgres::PostgresConnectionManager;

pub use tls::{MakeRustls, Verify};

/// The schema version this build reads and writes (the last migration's).
pub const SCHEMA_VERSION: u32 = 6;

/// Runs `f` (calls of the blocking PostgreSQL client) off the async runtime: the client
/// drives a runtime of its own and panics on a thread that drives async tasks. Inside a tokio
/// runtime `f` runs on a thread of its own, joined before this returns; elsewhere, right here.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The advisory lock key a write batch holds for its whole transaction (`"BBXW"` as an integer):
/// at most one batch is open on a database at a time.
pub const WRITER_LOCK: i64 = 0x4242_5857;

/// The advisory lock key held while migrations run (`"BBXM"`).
const MIGRATION_LOCK: i64 = 0x4242_584D;

mod embedded {
    refinery::embed_migrations!("migrations");
}

type Manager = PostgresConnectionManager<MakeRustls>;
type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections kept in the pool at most (readers and the writer share it).
    pub pool_size: u32,
    /// How long to wait for a connection (a new one, or one from a full pool).
    pub connect_timeout: Duration,
    /// How long a write batch waits for the writer lock before [`StoreError::Busy`].
    pub lock_timeout: Duration,
    /// The personal-data sealing key file (a data directory's `keys/personal-seal.key`; see
    /// [`seal`]). Without it the store neither writes nor reads personal sidecars (what the
    /// service's token and outbox tables open it for). Opened for writing, a store creates
    /// the file when neither it nor the database has a key yet.
    pub seal_key: Option<PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(30),
            seal_key: None,
        }
    }
}

/// A ledger store in a PostgreSQL database.
pub struct PgStore {
    /// Always `Some` but while the store is dropped (see its `Drop`).
    pool: Option<Pool>,
    read_only: bool,
    /// The URL without its password, for messages.
    target: String,
    lock_timeout: Duration,
    /// Personal sidecars' keys (shared with this store's write batches).
    seal: Arc<Mutex<seal::Sealer>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the client's connections blocks on its own runtime: whoever drops a store on
        // a thread that drives async tasks (a service's handlers, its token and outbox tables)
        // has it closed on a thread of its own.
        if let Some(pool) = self.pool.take() {
            off_runtime(move || drop(pool));
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Whether `s` names a PostgreSQL store (`postgres://…` or `postgresql://…`).
#[must_use]
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` with any password replaced by `***` (for messages and logs).
#[must_use]
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let auth = auth.map(|a| match a.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => format!("{a}@"),
    });
    // A password given as a query parameter is hidden too.
    let host = match host.split_once('?') {
        Some((h, q)) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{h}?{}", q.join("&"))
        }
        None => host.to_owned(),
    };
    format!("{scheme}://{}{host}", auth.unwrap_or_default())
}

impl PgStore {
    /// Opens (creating its tables on first use) the store in the database at `url`, for
    /// writing: pending migrations are applied.
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] when the server cannot be reached or refuses the login;
    /// [`StoreError::Schema`] for a database written by a newer Blackbox; backend failures.
    pub fn open(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let store = Self::connect(url, options, false)?;
        let mut conn = store.conn()?;
        store.check_version(&mut conn)?;
        // Instances starting together migrate one after the other (the lock is the session's,
        // released below or with the connection).
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg)?;
        let migrated = embedded::migrations::runner()
            .set_migration_table_name("blackbox_schema_history")
            .run(&mut *conn);
        let unlocked = conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        migrated.map_err(|e| StoreError::Backend {
            backend: "PostgreSQL",
            message: format!(
                "applying the schema to {} failed: {e}; check that the user may create tables in the database",
                store.target
            ),
        })?;
        unlocked.map_err(pg)?;
        let mut store = store;
        store.load_seal(&mut conn, options)?;
        drop(conn);
        store.seal_clear_sidecars()?;
        Ok(store)
    }

    /// Loads the sealing key (creating it for a database that has none yet, when writing) and
    /// checks it against the database's.
    fn load_seal(&mut self, conn: &mut Conn, options: &PgOptions) -> Result<(), StoreError> {
        let Some(path) = &options.seal_key else {
            return Ok(());
        };
        let sealed = conn
            .query_opt("SELECT value FROM meta WHERE key = 'personal_seal'", &[])
            .map_err(pg)?
            .is_some();
        let mut sealer = if path.exists() {
            seal::Sealer::open(Some(path))?
        } else if sealed {
            // Said when a sidecar is read or written (commands that touch none still run,
            // and a copy refused for another reason says that first).
            seal::Sealer::missing(format!(
                "{}: the database's personal data is sealed with a key this data directory \
                 lacks ({}); copy keys/personal-seal.key from the data directory of an \
                 instance of this log",
                self.target,
                path.display()
            ))
        } else if self.read_only {
            seal::Sealer::open(None)?
        } else {
            seal::create_key_file(path)?;
            seal::Sealer::open(Some(path))?
        };
        sealer.sync(&mut **conn, false, false)?;
        self.seal = Arc::new(Mutex::new(sealer));
        Ok(())
    }

    /// Seals the sidecars a schema-3 store kept in clear (each chain's under a new data key).
    fn seal_clear_sidecars(&mut self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let chains: Vec<i64> = conn
            .query(
                "SELECT DISTINCT chain_id FROM personal WHERE generation IS NULL",
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if chains.is_empty() || self.sealer().is_unkeyed() {
            return Ok(());
        }
        let mut b = batch::PgBatch::begin(conn, self.lock_timeout, self.seal.clone())?;
        b.rekey_now(&chains)?;
        Ok(())
    }

    /// The sealing state ([`seal::lock`]).
    pub(crate) fn sealer(&self) -> MutexGuard<'_, seal::Sealer> {
        seal::lock(&self.seal)
    }

    /// Opens the store at `url` for reading only (no migration; writes are refused).
    ///
    /// # Errors
    /// As [`Self::open`]; [`StoreError::NotAStore`] when the database holds no Blackbox store.
    pub fn open_read_only(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let store = Self::connect(url, options, true)?;
        let mut conn = store.conn()?;
        if store.check_version(&mut conn)?.is_none() {
            return Err(StoreError::NotAStore {
                path: store.target.clone(),
            });
        }
        let mut store = store;
        store.load_seal(&mut conn, options)?;
        drop(conn);
        Ok(store)
    }

    fn connect(url: &str, options: &PgOptions, read_only: bool) -> Result<Self, StoreError> {
        let target = redact(url);
        // libpq's verify-ca / verify-full are TLS required plus the certificate checks the
        // connector makes (the postgres crate knows disable, prefer and require only).
        let (url, verify) = sslmode_verify(url);
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Invalid {
            what: format!(
                "{target} is not a PostgreSQL connection URL ({e}); write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]"
            ),
        })?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("blackbox");
        }
        // Committed means flushed on the server, whatever its default; reads never block on
        // the writer; statements run in UTC.
        let mut opts = String::from("-c synchronous_commit=on -c timezone=UTC");
        if read_only {
            opts.push_str(" -c default_transaction_read_only=on");
        }
        if let Some(o) = config.get_options() {
            opts = format!("{o} {opts}");
        }
        config.options(&opts);
        let tls = MakeRustls::new(verify)?;
        let manager = PostgresConnectionManager::new(config, tls);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(2))
            .min_idle(Some(0))
            .connection_timeout(options.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(Self {
            pool: Some(pool),
            read_only,
            target,
            lock_timeout: options.lock_timeout,
            seal: Arc::new(Mutex::new(seal::Sealer::open(None)?)),
        })
    }

    /// A connection from the pool.
    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        let pool = self.pool.as_ref().ok_or_else(|| StoreError::Invalid {
            what: "the store is closed".to_owned(),
        })?;
        pool.get().map_err(|e| {
            // r2d2 reports the last connection error in its message.
            StoreError::Unreachable {
                backend: "PostgreSQL",
                target: self.target.clone(),
                message: e.to_string(),
            }
        })
    }

    /// The schema version recorded in the database (`None`: no Blackbox store there yet);
    /// refuses a newer one.
    fn check_version(&self, conn: &mut Conn) -> Result<Option<u32>, StoreError> {
        let row = conn
            .query_opt(
                "SELECT to_regclass('blackbox_schema_history') IS NOT NULL",
                &[],
            )
            .map_err(pg)?;
        let exists: bool = row.map(|r| r.get(0)).unwrap_or(false);
        if !exists {
            return Ok(None);
        }
        let v: Option<i32> = conn
            .query_one("SELECT max(version) FROM blackbox_schema_history", &[])
            .map_err(pg)?
            .get(0);
        let v = u32::try_from(v.unwrap_or(0)).unwrap_or(0);
        if v > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Some(v))
    }

    /// Runs `f` with a connection of the pool: for the service's own tables beside the
    /// ledger (API tokens, the webhook outbox), whose errors `f` maps (with [`pg`] for the
    /// client's). Call it off any async runtime ([`off_runtime`]).
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] without a connection; what `f` returns.
    pub fn with_client<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut c = self.conn()?;
        f(&mut c)
    }

    /// The database this store is in, without its password.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Deletes every Blackbox table of the database (tests and `migrate` clean-up only).
    ///
    /// # Errors
    /// Backend failures.
    pub fn drop_all(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute(
            "DROP TABLE IF EXISTS archive_segments, anchors, merkle_nodes, checkpoints, \
             subject_index, personal_keys, personal, postings, entries, chains, meta, \
             api_tokens, webhook_deliveries, webhook_high_water, blackbox_schema_history CASCADE",
        )
        .map_err(pg)
    }
}

/// `url` with `sslmode=verify-ca|verify-full` turned into `sslmode=require`, and how the
/// certificate is to be checked.
fn sslmode_verify(url: &str) -> (String, Verify) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Verify::None);
    };
    let mut verify = Verify::None;
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("sslmode", "verify-full")) => {
                verify = Verify::Full;
                "sslmode=require".to_owned()
            }
            Some(("sslmode", "verify-ca")) => {
                verify = Verify::Ca;
                "sslmode=require".to_owned()
            }
            _ => kv.to_owned(),
        })
        .collect();
    (format!("{base}?{}", params.join("&")), verify)
}

/// A PostgreSQL error as a [`StoreError`]: lock time-outs are [`StoreError::Busy`], and the
/// database's common refusals say what to do. For the service's own tables too
/// ([`PgStore::with_client`]).
pub fn pg(e: postgres::Error) -> StoreError {
    let code = e.code().cloned();
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned());
    match code {
        Some(c) if c == SqlState::LOCK_NOT_AVAILABLE => StoreError::Busy,
        Some(c) if c == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Backend {
            backend: "PostgreSQL",
            message: format!(
                "the database refuses writes ({detail}): it is a standby or read-only; point --store at the primary"
            ),
        },
        Some(c) if c == SqlState::DISK_FULL || c == SqlState::OUT_OF_MEMORY => {
            StoreError::Backend {
                backend: "PostgreSQL",
                message: format!(
                    "the database server is out of space ({detail}); nothing of the batch was written; free space on the server and retry"
                ),
            }
        }
        Some(c)
            if c == SqlState::ADMIN_SHUTDOWN
                || c == SqlState::CRASH_SHUTDOWN
                || c == SqlState::CANNOT_CONNECT_NOW
                || c == SqlState::CONNECTION_FAILURE =>
        {
            StoreError::Backend {
                backend: "PostgreSQL",
                message: format!(
                    "the database server went away ({detail}); an uncommitted batch was not written; retry once it is back"
                ),
            }
        }
        _ if e.is_closed() => StoreError::Backend {
            backend: "PostgreSQL",
            message: format!(
                "the connection to the database was lost ({detail}); an uncommitted batch was not written; retry once the server is back"
            ),
        },
        _ => StoreError::Backend {
            backend: "PostgreSQL",
            message: detail,
        },
    }
}

pub(crate) fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: what.into() }
}

pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what: what.into() }
}

/// A `u64` the store keeps in a `bigint`.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| invalid(format!("{what} {v} is beyond this store's limits")))
}

/// A `bigint` read back as the `u64` it was written from.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative ({v})")))
}

pub(crate) fn to_hash(v: &[u8], what: &str) -> Result<Hash, StoreError> {
    <[u8; 32]>::try_from(v)
        .map(Hash)
        .map_err(|_| corrupt(format!("{what} has {} bytes, not 32", v.len())))
}

pub(crate) const HEAD_COLUMNS: &str = "tenant_id, size, head_hash, last_entry_id, merkle_state, \
     last_checkpoint_size, last_checkpoint_ms";

pub(crate) fn read_head(r: &postgres::Row) -> Result<ChainHead, StoreError> {
    let tenant_id: String = r.get(0);
    let last: Vec<u8> = r.get(3);
    Ok(ChainHead {
        size: to_u64(r.get(1), "a chain size")?,
        head_hash: to_hash(r.get::<_, &[u8]>(2), "a chain head hash")?,
        last_entry_id: <[u8; 16]>::try_from(last.as_slice()).map_err(|_| {
            corrupt(format!(
                "the last entry id of {tenant_id:?} is not 16 bytes"
            ))
        })?,
        merkle_state: r.get(4),
        last_checkpoint_size: to_u64(r.get(5), "a checkpoint size")?,
        last_checkpoint_ms: r.get(6),
        tenant_id,
    })
}

impl Store for PgStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let conn = self.conn()?;
        Ok(Box::new(batch::PgBatch::begin(
            conn,
            self.lock_timeout,
            self.seal.clone(),
        )?))
    }

    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        read::chains(self)
    }

    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(blackbox_store::StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        read::scan(self, tenant, from_seq, to_seq, f)
    }

    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut blackbox_store::LineBlock,
        f: &mut blackbox_store::BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        read::scan_line_blocks(self, tenant, from_seq, to_seq, block, f)
    }

    fn query(
        &self,
        q: &blackbox_store::Query,
        f: &mut dyn FnMut(blackbox_store::StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        read::query(self, q, f)
    }

    fn entry_by_id(
        &self,
        entry_id: &[u8; 16],
    ) -> Result<Option<blackbox_store::StoredEntry>, StoreError> {
        read::entry_by_id(self, entry_id)
    }

    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        read::entry_hashes(self, tenant, first_seq, last_seq)
    }

    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        read::nodes(self, tenant, level, first, last)
    }

    fn checkpoints(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Vec<blackbox_store::StoredCheckpoint>, StoreError> {
        read::checkpoints(self, tenant, None)
    }

    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<blackbox_store::StoredCheckpoint>, StoreError> {
        read::checkpoints(self, tenant, Some((min_size, after_ms)))
    }

    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<blackbox_store::StoredCheckpoint>, StoreError> {
        read::latest_checkpoint(self, tenant)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn()?;
        Ok(
            c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .map_err(pg)?
                .map(|r| r.get(0)),
        )
    }

    fn anchor(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<blackbox_store::StoredAnchor>, StoreError> {
        read::anchor(self, tenant)
    }

    fn retention(&self) -> Result<&dyn blackbox_store::RetentionStore, StoreError> {
        Ok(self)
    }

    fn retention_mut(&mut self) -> Result<&mut dyn blackbox_store::RetentionStore, StoreError> {
        Ok(self)
    }

    fn erasure(&self) -> Result<&dyn blackbox_store::ErasureStore, StoreError> {
        Ok(self)
    }

    fn erasure_mut(&mut self) -> Result<&mut dyn blackbox_store::ErasureStore, StoreError> {
        Ok(self)
    }
}

impl blackbox_store::ErasureStore for PgStore {
    fn entries_for_subject(
        &self,
        subject_key: &[u8; 32],
    ) -> Result<Vec<blackbox_store::SubjectEntry>, StoreError> {
        let mut c = self.conn()?;
        read::subject_rows(&mut *c, subject_key)
    }

    /// The erasure's transaction deleted the rows and moved every key forward; what is left is
    /// to write the key file's next epoch (the old epoch key then exists nowhere: see [`seal`]).
    fn purge_erased(&mut self, _wait: Duration) -> Result<blackbox_store::Purge, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.sealer().persist()?;
        Ok(blackbox_store::Purge { attempts: 1 })
    }
}

impl blackbox_store::RetentionStore for PgStore {
    fn archive_segments(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Vec<blackbox_store::ArchiveSegment>, StoreError> {
        read::archive_segments(self, tenant)
    }

    fn reclaim_space(&mut self) -> Result<u64, StoreError> {
        // Deleted rows are reclaimed by PostgreSQL's autovacuum; nothing is kept outside it.
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://bb:s3cret@db:5432/ledger?sslmode=require"),
            "postgres://bb:***@db:5432/ledger?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/ledger?user=bb&password=s3cret"),
            "postgresql://db/ledger?user=bb&password=***"
        );
        assert_eq!(
            redact("postgres://bb@127.0.0.1/x"),
            "postgres://bb@127.0.0.1/x"
        );
    }

    #[test]
    fn verify_modes_become_require_with_checks() {
        assert_eq!(
            sslmode_verify("postgres://h/d?sslmode=verify-full&application_name=x"),
            (
                "postgres://h/d?sslmode=require&application_name=x".to_owned(),
                Verify::Full
            )
        );
        assert_eq!(
            sslmode_verify("postgres://h/d?sslmode=verify-ca"),
            ("postgres://h/d?sslmode=require".to_owned(), Verify::Ca)
        );
        assert_eq!(sslmode_verify("postgres://h/d").1, Verify::None);
    }

    #[test]
    fn urls_are_recognised() {
        assert!(is_postgres_url("postgres://h/d"));
        assert!(is_postgres_url("postgresql://h/d"));
        assert!(!is_postgres_url("/var/lib/blackbox"));
    }
}
