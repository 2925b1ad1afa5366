//! API tokens: created once, stored only as hashes, compared in constant time.
//!
//! A token is `bbx_<16 hex: id>_<43 base64url: 32 random bytes>`. The id is public (it names the
//! token in listings, logs and the audit log); the service keeps SHA-256 of the secret part in
//! `DIR/tokens.db` (a small SQLite file, mode 0600) and never the token itself. The CLI
//! (`blackbox tokens …`) and a running service share that file: a new or revoked token takes
//! effect on the service's next request.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use blackbox_core::ids::TenantId;
use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ServerError;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tokens(
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT,
    scopes        TEXT NOT NULL,
    label         TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_ms    INTEGER NOT NULL,
    revoked_ms    INTEGER
);";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Scopes {
    /// Write events for its tenant.
    pub ingest: bool,
    /// Read its tenant's log.
    pub read: bool,
    /// Everything, for every tenant, and manage tokens.
    pub admin: bool,
}

impl Scopes {
    /// The scopes as an entry's origin names them (docs/FORMAT.md §2): comma-separated, in the
    /// order `admin,ingest,read`.
    #[must_use]
    pub fn origin_scope(&self) -> String {
        let names = [
            (self.admin, "admin"),
            (self.ingest, "ingest"),
            (self.read, "read"),
        ];
        let v: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(",")
        }
    }

    /// Parses `ingest`, `read`, `admin` or a comma-separated list of them.
    ///
    /// # Errors
    /// A message naming the unknown scope.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "ingest" => out.ingest = true,
                "read" => out.read = true,
                "admin" => out.admin = true,
                other => {
                    return Err(format!(
                        "unknown scope `{other}`; scopes are ingest, read and admin (comma-separated)"
                    ));
                }
            }
        }
        if out == Self::default() {
            return Err("at least one scope is needed: ingest, read or admin".to_owned());
        }
        Ok(out)
    }

    /// The scope names, as a list.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.ingest {
            v.push("ingest");
        }
        if self.read {
            v.push("read");
        }
        if self.admin {
            v.push("admin");
        }
        v
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Public id (`16 hex digits`).
    pub id: String,
    /// Tenant the token is bound to (`None` for an admin token of every tenant).
    pub tenant_id: Option<String>,
    /// What it may do.
    pub scopes: Scopes,
    /// Free text given at creation.
    pub label: String,
    /// Unix ms of creation.
    pub created_ms: i64,
    /// Unix ms of revocation, if revoked.
    pub revoked_ms: Option<i64>,
}

impl TokenInfo {
    /// The origin of an entry this token's holder supplied through `via` (docs/FORMAT.md §2).
    ///
    /// # Errors
    /// A token id or intake name outside the origin grammar (token ids are 16 hex digits).
    pub fn origin(&self, via: &str) -> Result<blackbox_core::origin::Origin, String> {
        blackbox_core::origin::Origin::token(&self.id, &self.scopes.origin_scope(), via)
    }
}

/// A token as kept: its listing and the SHA-256 of its secret (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// What the token is.
    pub info: TokenInfo,
    /// SHA-256 of the token's secret part.
    pub secret_sha256: [u8; 32],
}

/// Where API tokens are kept: the storage behind [`Tokens`].
///
/// Implementations MUST keep only what a [`TokenRecord`] holds (never a token's secret), and
/// MUST make a change made through another handle (the CLI's, while the service runs) visible to
/// the next [`TokenStore::records`] of this one.
pub trait TokenStore: Send {
    /// Adds a token.
    ///
    /// # Errors
    /// [`ServerError::Tokens`] for storage failures.
    fn insert(&mut self, record: &TokenRecord) -> Result<(), ServerError>;

    /// Marks token `id` revoked at `at_ms`. Returns false when there is no such token or it was
    /// revoked already.
    ///
    /// # Errors
    /// [`ServerError::Tokens`] for storage failures.
    fn revoke(&mut self, id: &str, at_ms: i64) -> Result<bool, ServerError>;

    /// Every token by id, as currently stored (re-read when another handle changed them).
    /// Runs on every request: an implementation SHOULD answer from memory while nothing changed.
    ///
    /// # Errors
    /// [`ServerError::Tokens`] for storage failures; [`ServerError::Config`] for a malformed
    /// stored record.
    fn records(&mut self) -> Result<&HashMap<String, TokenRecord>, ServerError>;

    /// A token id was presented that [`Self::records`] does not hold: a store shared with
    /// other writers may read its tokens again sooner than it would otherwise (a token just
    /// made through another instance works at once). Returns whether it will.
    fn missed(&mut self) -> bool {
        false
    }
}

/// Maps a SQLite failure of the token file into the typed store error.
fn sqlite_error(e: rusqlite::Error) -> ServerError {
    ServerError::Tokens(blackbox_store::StoreError::from(e))
}

/// Tokens in a small SQLite file (`DIR/tokens.db`), cached in memory and re-read when
/// `PRAGMA data_version` (another connection's commits) or our own changes say it changed.
pub struct SqliteTokens {
    conn: Connection,
    version: i64,
    tokens: HashMap<String, TokenRecord>,
}

impl fmt::Debug for SqliteTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteTokens(..)")
    }
}

/// The tokens of a data directory: creation rules, authentication in constant time, over a
/// [`TokenStore`].
pub struct Tokens {
    store: Mutex<Box<dyn TokenStore>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens(..)")
    }
}

use crate::now_ms;

fn load(conn: &Connection) -> Result<HashMap<String, TokenRecord>, ServerError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, tenant_id, scopes, label, secret_sha256, created_ms, revoked_ms FROM tokens",
        )
        .map_err(sqlite_error)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })
        .map_err(sqlite_error)?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, tenant_id, scopes, label, hash, created_ms, revoked_ms) =
            row.map_err(sqlite_error)?;
        let scopes = Scopes::parse(&scopes).map_err(|e| {
            ServerError::Config(format!("the token file holds token {id} with {e}"))
        })?;
        let secret_sha256 = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
            ServerError::Config(format!("the token file holds a malformed hash for {id}"))
        })?;
        out.insert(
            id.clone(),
            TokenRecord {
                info: TokenInfo {
                    id,
                    tenant_id,
                    scopes,
                    label,
                    created_ms,
                    revoked_ms,
                },
                secret_sha256,
            },
        );
    }
    Ok(out)
}

impl SqliteTokens {
    /// Opens (creating if needed) the token file at `path`, readable by its owner only.
    ///
    /// # Errors
    /// I/O and SQLite failures; [`ServerError::Config`] when the file is readable by others.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let existed = path.exists();
        if existed {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(ServerError::Config(format!(
                    "{} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let conn = Connection::open(path).map_err(sqlite_error)?;
        if !existed {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite_error)?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sqlite_error)?;
        conn.execute_batch(SCHEMA).map_err(sqlite_error)?;
        // The write-ahead log and its index hold the same hashes: owner only, like the file.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if Path::new(&side).exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        let version: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sqlite_error)?;
        let tokens = load(&conn)?;
        Ok(Self {
            conn,
            version,
            tokens,
        })
    }

    /// Re-reads the token table when another connection (the CLI) has changed it.
    fn refresh(&mut self) -> Result<(), ServerError> {
        // Runs on every request: a cached statement, no SQL parsing.
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sqlite_error)?;
        let changes = i64::try_from(self.conn.total_changes()).unwrap_or(i64::MAX);
        // data_version changes with other connections' commits; our own writes are tracked by
        // total_changes. Reload on either.
        let key = version.wrapping_mul(1_000_003).wrapping_add(changes);
        if key != self.version {
            self.tokens = load(&self.conn)?;
            self.version = key;
        }
        Ok(())
    }
}

impl TokenStore for SqliteTokens {
    fn insert(&mut self, record: &TokenRecord) -> Result<(), ServerError> {
        let info = &record.info;
        self.conn
            .execute(
                "INSERT INTO tokens(id, tenant_id, scopes, label, secret_sha256, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    info.id,
                    info.tenant_id,
                    info.scopes.to_string(),
                    info.label,
                    record.secret_sha256.as_slice(),
                    info.created_ms
                ],
            )
            .map_err(sqlite_error)?;
        Ok(())
    }

    fn revoke(&mut self, id: &str, at_ms: i64) -> Result<bool, ServerError> {
        let n = self
            .conn
            .execute(
                "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, at_ms],
            )
            .map_err(sqlite_error)?;
        Ok(n == 1)
    }

    fn records(&mut self) -> Result<&HashMap<String, TokenRecord>, ServerError> {
        self.refresh()?;
        Ok(&self.tokens)
    }
}

/// Tokens in the log's PostgreSQL database (table `api_tokens`), shared by every service
/// instance on it: read again at most every [`PG_REFRESH`] (a token revoked through another
/// instance is refused within that) and at once after this handle's own changes.
pub struct PgTokens {
    store: blackbox_store_pg::PgStore,
    tokens: HashMap<String, TokenRecord>,
    /// When the table was last looked at, and last read successfully.
    read: Option<std::time::Instant>,
    good: Option<std::time::Instant>,
}

/// How long the tokens last read answer while the database cannot be read.
pub const PG_STALE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a [`PgTokens`] answers from memory before reading the table again.
pub const PG_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// How soon after its last read a [`PgTokens`] reads the table again for a token id it does
/// not know (at most ten reads a second, whatever ids a caller makes up).
pub const PG_MISS_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

impl fmt::Debug for PgTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTokens({})", self.store.target())
    }
}

impl PgTokens {
    /// The tokens of the database at `url` (its tables created or migrated first). When the
    /// table is empty and `import` names a token file (a data directory's `tokens.db` from
    /// before its tokens moved into the database), its tokens are copied in once.
    ///
    /// # Errors
    /// Database failures; an unreadable token file.
    pub fn open(url: &str, import: Option<&Path>) -> Result<Self, ServerError> {
        let store = off_runtime(|| {
            blackbox_store_pg::PgStore::open(
                url,
                &blackbox_store_pg::PgOptions {
                    pool_size: 2,
                    ..blackbox_store_pg::PgOptions::default()
                },
            )
        })
        .map_err(ServerError::Tokens)?;
        let mut me = Self {
            store,
            tokens: HashMap::new(),
            read: None,
            good: None,
        };
        if let Some(file) = import.filter(|f| f.exists())
            && me.records()?.is_empty()
        {
            let mut old = SqliteTokens::open(file)?;
            let rows: Vec<_> = old.records()?.values().map(row_of).collect();
            let store = &me.store;
            let added =
                off_runtime(|| store.tokens().import(&rows)).map_err(ServerError::Tokens)?;
            me.read = None;
            if added > 0 {
                tracing::info!(
                    tokens = added,
                    file = %file.display(),
                    "the token file's tokens (revoked ones as revoked) were copied into the database"
                );
            }
        }
        Ok(me)
    }
}

use blackbox_store_pg::off_runtime;

fn row_of(record: &TokenRecord) -> blackbox_store_pg::tokens::TokenRow {
    let info = &record.info;
    blackbox_store_pg::tokens::TokenRow {
        id: info.id.clone(),
        tenant_id: info.tenant_id.clone(),
        scopes: info.scopes.to_string(),
        label: info.label.clone(),
        secret_sha256: record.secret_sha256,
        created_ms: info.created_ms,
        revoked_ms: info.revoked_ms,
    }
}

fn record_of(row: blackbox_store_pg::tokens::TokenRow) -> Result<TokenRecord, ServerError> {
    let scopes = Scopes::parse(&row.scopes).map_err(|e| {
        ServerError::Config(format!("the database holds token {} with {e}", row.id))
    })?;
    Ok(TokenRecord {
        info: TokenInfo {
            id: row.id,
            tenant_id: row.tenant_id,
            scopes,
            label: row.label,
            created_ms: row.created_ms,
            revoked_ms: row.revoked_ms,
        },
        secret_sha256: row.secret_sha256,
    })
}

impl TokenStore for PgTokens {
    fn insert(&mut self, record: &TokenRecord) -> Result<(), ServerError> {
        let row = row_of(record);
        let store = &self.store;
        off_runtime(|| store.tokens().insert(&row)).map_err(ServerError::Tokens)?;
        self.read = None;
        Ok(())
    }

    fn revoke(&mut self, id: &str, at_ms: i64) -> Result<bool, ServerError> {
        let store = &self.store;
        let done = off_runtime(|| store.tokens().revoke(id, at_ms)).map_err(ServerError::Tokens)?;
        self.read = None;
        Ok(done)
    }

    fn missed(&mut self) -> bool {
        if self.read.is_some_and(|t| t.elapsed() >= PG_MISS_REFRESH) {
            self.read = None;
            return true;
        }
        false
    }

    fn records(&mut self) -> Result<&HashMap<String, TokenRecord>, ServerError> {
        if self.read.is_none_or(|t| t.elapsed() >= PG_REFRESH) {
            let store = &self.store;
            match off_runtime(|| store.tokens().all()) {
                Ok(rows) => {
                    let mut tokens = HashMap::with_capacity(rows.len());
                    for row in rows {
                        let r = record_of(row)?;
                        tokens.insert(r.info.id.clone(), r);
                    }
                    self.tokens = tokens;
                    self.read = Some(std::time::Instant::now());
                    self.good = self.read;
                }
                // The database away for a moment: the tokens read last answer for at most
                // PG_STALE (every request would otherwise wait for the connection timeout),
                // and the table is tried again after PG_REFRESH.
                Err(e) if self.good.is_some_and(|g| g.elapsed() < PG_STALE) => {
                    tracing::warn!(error = %e, "cannot read the tokens again; using those read last");
                    self.read = Some(std::time::Instant::now());
                }
                Err(e) => return Err(ServerError::Tokens(e)),
            }
        }
        Ok(&self.tokens)
    }
}

/// Copies the tokens of the PostgreSQL database at `url` into the token file `file` (a log
/// moved back to its data directory's embedded store keeps its tokens, revoked ones revoked).
/// A file already there is renamed `<file>.before-<ms>` first. Returns how many were copied.
///
/// # Errors
/// Database and token-file failures.
pub fn copy_tokens_to_file(url: &str, file: &Path) -> Result<usize, ServerError> {
    let mut from = PgTokens::open(url, None)?;
    let records: Vec<TokenRecord> = from.records()?.values().cloned().collect();
    if file.exists() {
        let aside = file.with_extension(format!("db.before-{}", now_ms()));
        std::fs::rename(file, &aside)?;
    }
    let mut to = SqliteTokens::open(file)?;
    for r in &records {
        to.insert(r)?;
        if let Some(at) = r.info.revoked_ms {
            to.revoke(&r.info.id, at)?;
        }
    }
    Ok(records.len())
}

impl Tokens {
    /// The tokens of the data directory `dir`: in its log's PostgreSQL database when that is
    /// where its entries are ([`PgTokens`]; a `tokens.db` left in the directory is copied in
    /// once), else in `DIR/tokens.db` ([`SqliteTokens`]).
    ///
    /// # Errors
    /// As [`Self::open`] and [`PgTokens::open`].
    pub fn open_for(dir: &blackbox_ledger::datadir::DataDir) -> Result<Self, ServerError> {
        let file = dir.root().join("tokens.db");
        match dir.store_location() {
            blackbox_ledger::datadir::StoreLocation::Postgres { url, .. } => {
                Ok(Self::new(Box::new(PgTokens::open(&url, Some(&file))?)))
            }
            blackbox_ledger::datadir::StoreLocation::Sharded { map, .. } => {
                Err(ServerError::Config(format!(
                    "each database of the tenant map {} keeps its own tokens: give --database \
                     NAME (for a tenant's token, its database: `--tenant` picks it)",
                    map.path().display()
                )))
            }
            blackbox_ledger::datadir::StoreLocation::Sqlite(_)
                if dir.postgres_marker_path().exists() =>
            {
                Err(ServerError::Config(format!(
                    "{} keeps its log and its tokens in a PostgreSQL database: give its URL with --store or BLACKBOX_STORE",
                    dir.root().display()
                )))
            }
            blackbox_ledger::datadir::StoreLocation::Sqlite(_) => Self::open(&file),
        }
    }

    /// Opens (creating if needed) the token file at `path` ([`SqliteTokens`]).
    ///
    /// # Errors
    /// I/O and SQLite failures; [`ServerError::Config`] when the file is readable by others.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        Ok(Self::new(Box::new(SqliteTokens::open(path)?)))
    }

    /// Tokens kept in `store`.
    #[must_use]
    pub fn new(store: Box<dyn TokenStore>) -> Self {
        Self {
            store: Mutex::new(store),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn TokenStore>> {
        // A poisoned lock only means a panic elsewhere; the records are re-read from disk anyway.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a token. Returns its listing and the token text, which is shown once and never
    /// stored.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a missing tenant on a non-admin token; random and storage
    /// failures.
    pub fn create(
        &self,
        tenant: Option<&TenantId>,
        scopes: Scopes,
        label: &str,
    ) -> Result<(TokenInfo, String), ServerError> {
        if let Some(t) = tenant.filter(|t| crate::is_system_tenant(t.as_str())) {
            return Err(ServerError::Config(format!(
                "the tenant `{t}` is reserved for the service's own records"
            )));
        }
        if tenant.is_none() && (scopes.ingest || scopes.read) && !scopes.admin {
            return Err(ServerError::Config(
                "an ingest or read token needs a tenant (--tenant T)".to_owned(),
            ));
        }
        let mut id_bytes = [0u8; 8];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id_bytes).map_err(|e| ServerError::Config(e.to_string()))?;
        getrandom::fill(&mut secret).map_err(|e| ServerError::Config(e.to_string()))?;
        let id = hex::encode(id_bytes);
        let secret_text = B64URL.encode(secret);
        let token = format!("bbx_{id}_{secret_text}");
        let hash: [u8; 32] = Sha256::digest(secret_text.as_bytes()).into();
        let info = TokenInfo {
            id,
            tenant_id: tenant.map(|t| t.as_str().to_owned()),
            scopes,
            label: label.to_owned(),
            created_ms: now_ms(),
            revoked_ms: None,
        };
        let record = TokenRecord {
            info,
            secret_sha256: hash,
        };
        self.store().insert(&record)?;
        Ok((record.info, token))
    }

    /// Every token, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub fn list(&self) -> Result<Vec<TokenInfo>, ServerError> {
        let mut store = self.store();
        let mut v: Vec<TokenInfo> = store.records()?.values().map(|r| r.info.clone()).collect();
        v.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Revokes a token. Returns false when there is no such token (or it was revoked already).
    ///
    /// # Errors
    /// Storage failures.
    pub fn revoke(&self, id: &str) -> Result<bool, ServerError> {
        self.store().revoke(id, now_ms())
    }

    /// The token a request presented, if it is known and not revoked. The secret is compared in
    /// constant time.
    ///
    /// # Errors
    /// Storage failures while re-reading a changed token file.
    pub fn authenticate(&self, presented: &str) -> Result<Option<TokenInfo>, ServerError> {
        let Some((id, secret)) = presented
            .strip_prefix("bbx_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let mut store = self.store();
        // The tokens are read (or checked for changes) once; again only when the id is unknown
        // and the store says a second look may find it.
        let first = store
            .records()?
            .get(id)
            .map(|rec| (rec.secret_sha256, rec.info.clone()));
        let rec = match first {
            Some(rec) => Some(rec),
            None if store.missed() => store
                .records()?
                .get(id)
                .map(|rec| (rec.secret_sha256, rec.info.clone())),
            None => None,
        };
        let Some((expected, info)) = rec else {
            return Ok(None);
        };
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let same: bool = hash.ct_eq(&expected).into();
        Ok((same && info.revoked_ms.is_none()).then_some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        let store = Tokens::open(&path).unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let (info, token) = store
            .create(
                Some(&tenant),
                Scopes::parse("ingest,read").unwrap(),
                "fleet",
            )
            .unwrap();
        assert!(token.starts_with(&format!("bbx_{}_", info.id)));
        assert_eq!(token.len(), 4 + 16 + 1 + 43);
        assert_eq!(store.authenticate(&token).unwrap(), Some(info.clone()));
        // Wrong secret, unknown id, garbage.
        let mut wrong = token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(store.authenticate(&wrong).unwrap(), None);
        assert_eq!(store.authenticate("bbx_0000000000000000_x").unwrap(), None);
        assert_eq!(store.authenticate("Bearer").unwrap(), None);
        // The file holds the hash only.
        let bytes = std::fs::read(&path).unwrap();
        // The secret is everything after the id (base64url may itself hold `_`).
        let secret = &token[4 + 16 + 1..];
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second handle (the CLI) revokes; the first sees it on its next check.
        let other = Tokens::open(&path).unwrap();
        assert!(other.revoke(&info.id).unwrap());
        assert!(!other.revoke(&info.id).unwrap());
        assert_eq!(store.authenticate(&token).unwrap(), None);
        assert!(store.list().unwrap()[0].revoked_ms.is_some());
    }

    #[test]
    fn scopes_and_tenants_are_checked() {
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("write").unwrap_err().contains("write"));
        assert_eq!(Scopes::parse("admin").unwrap().to_string(), "admin");
        let dir = tempfile::tempdir().unwrap();
        let store = Tokens::open(&dir.path().join("t.db")).unwrap();
        assert!(
            store
                .create(None, Scopes::parse("read").unwrap(), "")
                .is_err()
        );
        assert!(
            store
                .create(None, Scopes::parse("admin").unwrap(), "")
                .is_ok()
        );
        // A token file readable by others is refused.
        let path = dir.path().join("t.db");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Tokens::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
