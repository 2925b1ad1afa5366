//! The tenant → database map (`--store FILE.toml`): which PostgreSQL database keeps each
//! tenant's chain, so that write capacity grows with databases (docs/SCALING.md, "Several
//! databases").
//!
//! ```toml
//! version = 1
//! default_database = "eu"        # tenants not listed below (optional: else refused)
//!
//! [databases]
//! eu = "postgres://blackbox@db-eu.internal/blackbox?sslmode=verify-full"
//! us = "postgres://blackbox@db-us.internal/blackbox?sslmode=verify-full"
//!
//! [tenants]
//! acme = "eu"
//! globex = "us"
//! ```
//!
//! Commands that read or write the whole log see every database as one store
//! ([`blackbox_store::sharded::ShardedStore`]); `blackbox serve --database NAME` serves the
//! tenants of one database (instances per database: the write capacity of several).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use blackbox_store::sharded::TenantMap;
use serde::Deserialize;

use crate::error::LedgerError;

/// A tenant map file, read and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantMapFile {
    path: PathBuf,
    /// (name, URL) in file order.
    databases: Vec<(String, String)>,
    map: TenantMap,
}

impl std::fmt::Debug for TenantMapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantMapFile")
            .field("path", &self.path)
            .field(
                "databases",
                &self
                    .databases
                    .iter()
                    .map(|(n, u)| (n.clone(), blackbox_store_pg::redact(u)))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    default_database: Option<String>,
    databases: toml::Table,
    #[serde(default)]
    tenants: BTreeMap<String, String>,
}

/// Whether `s` names a tenant map file rather than a database (`--store`).
#[must_use]
pub fn is_map_path(s: &str) -> bool {
    !blackbox_store_pg::is_postgres_url(s) && s.ends_with(".toml")
}

impl TenantMapFile {
    /// Reads and checks the map at `path`.
    ///
    /// # Errors
    /// [`LedgerError::Config`] naming the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<Self, LedgerError> {
        let bad = |what: String| LedgerError::Config {
            path: path.to_owned(),
            problem: what,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the tenant map ({e})")))?;
        let raw: Raw = toml::from_str(&text).map_err(|e| bad(format!("{e}")))?;
        if raw.version != 1 {
            return Err(bad(format!(
                "version {} is not a tenant map version this build reads (1)",
                raw.version
            )));
        }
        let mut databases = Vec::new();
        let mut passwords = false;
        for (name, url) in &raw.databases {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(format!(
                    "[databases] {name:?}: a database name is letters, digits, `-` and `_`"
                )));
            }
            let Some(url) = url
                .as_str()
                .filter(|u| blackbox_store_pg::is_postgres_url(u))
            else {
                return Err(bad(format!(
                    "[databases] {name}: give a postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL"
                )));
            };
            passwords |= blackbox_store_pg::redact(url) != url;
            if databases.iter().any(|(_, u)| u == url) {
                return Err(bad(format!(
                    "[databases] {name}: the same database is listed twice"
                )));
            }
            databases.push((name.clone(), url.to_owned()));
        }
        if passwords {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(format!("{e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "it holds database passwords and others may read it (mode {:o}); run \
                     `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        for t in raw.tenants.keys() {
            blackbox_core::ids::TenantId::parse(t)
                .map_err(|e| bad(format!("[tenants] {t:?}: {e}")))?;
        }
        let map = TenantMap::new(
            databases.iter().map(|(n, _)| n.clone()).collect(),
            &raw.tenants,
            raw.default_database.as_deref(),
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            databases,
            map,
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The routing of tenants to databases.
    #[must_use]
    pub fn map(&self) -> &TenantMap {
        &self.map
    }

    /// Every database, as (name, URL), in the map's order.
    #[must_use]
    pub fn databases(&self) -> &[(String, String)] {
        &self.databases
    }

    /// The URL of database `name`.
    ///
    /// # Errors
    /// [`LedgerError::Config`] naming the databases there are.
    pub fn url_of(&self, name: &str) -> Result<&str, LedgerError> {
        self.databases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.as_str())
            .ok_or_else(|| LedgerError::Config {
                path: self.path.clone(),
                problem: format!(
                    "no database {name:?} (there are: {})",
                    self.map.names().join(", ")
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("tenants.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_map_routes_tenants_and_says_what_is_wrong_where() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "version = 1\ndefault_database = \"eu\"\n[databases]\neu = \"postgres://h/eu\"\nus = \"postgres://h/us\"\n[tenants]\nglobex = \"us\"\n",
        );
        let m = TenantMapFile::load(&p).unwrap();
        assert_eq!(m.map().database_of("globex"), Some("us"));
        assert_eq!(m.map().database_of("acme"), Some("eu"));
        assert_eq!(m.url_of("us").unwrap(), "postgres://h/us");
        let e = m.url_of("ap").unwrap_err().to_string();
        assert!(e.contains("eu, us"), "{e}");
        for (text, says) in [
            (
                "version = 2\n[databases]\neu = \"postgres://h/eu\"\n",
                "version 2",
            ),
            (
                "version = 1\n[databases]\neu = \"mysql://h/eu\"\n",
                "postgres://",
            ),
            (
                "version = 1\n[databases]\neu = \"postgres://h/eu\"\n[tenants]\nacme = \"us\"\n",
                "\"us\"",
            ),
            ("version = 1\n[databases]\n", "at least one database"),
            ("version = 1\ncolour = 1\n[databases]\n", "colour"),
            (
                "version = 1\n[databases]\neu = \"postgres://h/eu\"\nus = \"postgres://h/eu\"\n",
                "twice",
            ),
        ] {
            let p = write(d.path(), text);
            let e = TenantMapFile::load(&p).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("tenants.toml"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn the_example_map_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tenants.toml");
        let m = TenantMapFile::load(&p).unwrap();
        assert_eq!(m.map().names(), ["eu", "us"]);
        assert_eq!(m.map().database_of("globex"), Some("us"));
        assert_eq!(m.map().database_of("initech"), Some("eu"));
    }

    #[test]
    fn a_map_with_passwords_must_be_private_and_never_shows_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "version = 1\n[databases]\neu = \"postgres://bb:s3cret@h/eu\"\n",
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = TenantMapFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let m = TenantMapFile::load(&p).unwrap();
        assert!(!format!("{m:?}").contains("s3cret"));
    }
}
