//! The API tokens of a log kept in its database (table `api_tokens`, migration V2), so that
//! every service instance on the database knows every token: one created or revoked through any
//! instance (or the CLI) holds for all. Only the SHA-256 of a token's secret is stored.

use crate::{PgStore, pg};
use blackbox_store::StoreError;

/// One stored token (the service's `TokenRecord`, as columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// Tenant it is bound to (`None`: an admin token of every tenant).
    pub tenant_id: Option<String>,
    /// Scopes, as the service writes them (`ingest,read`).
    pub scopes: String,
    /// Free text.
    pub label: String,
    /// SHA-256 of the token's secret part.
    pub secret_sha256: [u8; 32],
    /// Unix ms of creation.
    pub created_ms: i64,
    /// Unix ms of revocation.
    pub revoked_ms: Option<i64>,
}

const INSERT: &str = "INSERT INTO api_tokens(id, tenant_id, scopes, label, secret_sha256, \
     created_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn params<'a>(
    row: &'a TokenRow,
    hash: &'a Vec<u8>,
) -> [&'a (dyn postgres::types::ToSql + Sync); 7] {
    [
        &row.id,
        &row.tenant_id,
        &row.scopes,
        &row.label,
        hash,
        &row.created_ms,
        &row.revoked_ms,
    ]
}

/// The token table of a [`PgStore`]'s database (connections from its pool).
#[derive(Debug)]
pub struct PgTokenTable<'s> {
    store: &'s PgStore,
}

impl PgStore {
    /// The database's token table.
    #[must_use]
    pub fn tokens(&self) -> PgTokenTable<'_> {
        PgTokenTable { store: self }
    }
}

impl PgTokenTable<'_> {
    /// Adds a token.
    ///
    /// # Errors
    /// An id already stored, a read-only store; backend failures.
    pub fn insert(&self, row: &TokenRow) -> Result<(), StoreError> {
        let mut c = self.store.conn()?;
        let hash = row.secret_sha256.to_vec();
        c.execute(INSERT, &params(row, &hash)).map_err(pg)?;
        Ok(())
    }

    /// Adds `rows` in one transaction, each unless a token of its id is stored already (an
    /// import that several instances may run at once, or run again after an interruption).
    /// Returns how many were added.
    ///
    /// # Errors
    /// Backend failures (nothing is added then).
    pub fn import(&self, rows: &[TokenRow]) -> Result<u64, StoreError> {
        let mut c = self.store.conn()?;
        let mut tx = c.transaction().map_err(pg)?;
        let mut n = 0;
        let sql = format!("{INSERT} ON CONFLICT (id) DO NOTHING");
        for row in rows {
            let hash = row.secret_sha256.to_vec();
            n += tx.execute(&sql, &params(row, &hash)).map_err(pg)?;
        }
        tx.commit().map_err(pg)?;
        Ok(n)
    }

    /// Marks token `id` revoked at `at_ms`; false when there is no such token or it was revoked
    /// already.
    ///
    /// # Errors
    /// Backend failures.
    pub fn revoke(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let mut c = self.store.conn()?;
        let n = c
            .execute(
                "UPDATE api_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                &[&id, &at_ms],
            )
            .map_err(pg)?;
        Ok(n == 1)
    }

    /// Every stored token.
    ///
    /// # Errors
    /// A malformed stored hash; backend failures.
    pub fn all(&self) -> Result<Vec<TokenRow>, StoreError> {
        let mut c = self.store.conn()?;
        let rows = c
            .query(
                "SELECT id, tenant_id, scopes, label, secret_sha256, created_ms, revoked_ms \
                 FROM api_tokens ORDER BY id",
                &[],
            )
            .map_err(pg)?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.get(0);
                let hash: Vec<u8> = r.get(4);
                let secret_sha256 =
                    <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::Invalid {
                        what: format!("the stored hash of token {id} is not 32 bytes"),
                    })?;
                Ok(TokenRow {
                    tenant_id: r.get(1),
                    scopes: r.get(2),
                    label: r.get(3),
                    secret_sha256,
                    created_ms: r.get(5),
                    revoked_ms: r.get(6),
                    id,
                })
            })
            .collect()
    }
}
