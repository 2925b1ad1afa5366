//! The archive's object storage: a local directory or an S3-compatible bucket, through
//! `object_store`, behind a small blocking interface (the callers are a CLI command and a
//! background thread of the service, neither of which runs on an async executor).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::error::ArchiveError;

/// An opened archive location.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// For a local directory: its path (objects are fsynced there, as object_store does not).
    local_root: Option<PathBuf>,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The URL without user info or query (never shown with credentials).
fn display_url(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

impl Archive {
    /// Opens `url` (`archive_url` of the retention settings): a directory (relative paths are
    /// relative to `data_dir`; created if missing), `file:///abs/path`, or `s3://bucket/prefix`
    /// (region, credentials and endpoint from the `AWS_*` environment variables).
    ///
    /// # Errors
    /// [`ArchiveError::Location`] naming what is wrong.
    pub fn open(url: &str, data_dir: &Path) -> Result<Self, ArchiveError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::Location {
                url: url.to_owned(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        let bad = |u: &str, m: String| ArchiveError::Location {
            url: u.to_owned(),
            message: m,
        };
        if url.contains("://") {
            let parsed = url::Url::parse(url).map_err(|e| bad(url, format!("not a URL: {e}")))?;
            let shown = display_url(&parsed);
            match parsed.scheme() {
                "file" => {
                    let dir = parsed
                        .to_file_path()
                        .map_err(|()| bad(&shown, "not an absolute file path".to_owned()))?;
                    Self::local(&dir, shown, rt)
                }
                "s3" => {
                    let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                        bad(
                            &shown,
                            "s3:// URLs name a bucket: s3://bucket/prefix".to_owned(),
                        )
                    })?;
                    let s3 = object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| bad(&shown, e.to_string()))?;
                    let prefix = ObjectPath::parse(parsed.path().trim_matches('/'))
                        .map_err(|e| bad(&shown, format!("bad prefix: {e}")))?;
                    Ok(Self {
                        store: Arc::new(s3),
                        prefix,
                        local_root: None,
                        url: shown,
                        rt,
                    })
                }
                other => Err(bad(
                    &shown,
                    format!(
                        "unsupported scheme `{other}`: use a directory, file:///path or s3://bucket/prefix"
                    ),
                )),
            }
        } else {
            let dir = data_dir.join(url);
            let shown = dir.display().to_string();
            Self::local(&dir, shown, rt)
        }
    }

    fn local(dir: &Path, shown: String, rt: tokio::runtime::Runtime) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(|e| ArchiveError::Location {
            url: shown.clone(),
            message: format!("cannot create the directory: {e}"),
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            ArchiveError::Location {
                url: shown.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            local_root: Some(dir.to_owned()),
            url: shown,
            rt,
        })
    }

    /// The location, as shown to people (no credentials).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> Result<ObjectPath, ArchiveError> {
        let rel = ObjectPath::parse(name).map_err(|e| ArchiveError::Object {
            object: name.to_owned(),
            message: format!("not a valid object path: {e}"),
        })?;
        Ok(self.prefix.parts().chain(rel.parts()).collect())
    }

    fn err(name: &str, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Object {
            object: name.to_owned(),
            message: e.to_string(),
        }
    }

    /// Writes an object (replacing one of the same name atomically) and makes it durable.
    ///
    /// # Errors
    /// [`ArchiveError::Object`].
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        self.rt
            .block_on(self.store.put(&path, bytes.into()))
            .map_err(|e| Self::err(name, e))?;
        if let Some(root) = &self.local_root {
            let file = root.join(name);
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&file).map_err(|e| Self::err(name, format!("fsync: {e}")))?;
            if let Some(dir) = file.parent() {
                sync(dir).map_err(|e| Self::err(name, format!("fsync of its directory: {e}")))?;
            }
        }
        Ok(())
    }

    /// Reads a whole object.
    ///
    /// # Errors
    /// [`ArchiveError::Object`] (also when it does not exist).
    pub fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.path(name)?;
        self.rt
            .block_on(async {
                let r = self.store.get(&path).await?;
                r.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| Self::err(name, e))
    }

    /// Deletes an object; one that is already gone is not an error.
    ///
    /// # Errors
    /// [`ArchiveError::Object`].
    pub fn delete(&self, name: &str) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::err(name, e)),
        }
    }

    /// Names of the objects under `dir` (relative to the archive root), sorted.
    ///
    /// # Errors
    /// [`ArchiveError::Location`].
    pub fn list(&self, dir: &str) -> Result<Vec<String>, ArchiveError> {
        let path = self.path(dir)?;
        let prefix_len = self.prefix.parts().count();
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|e| ArchiveError::Location {
                url: self.url.clone(),
                message: format!("cannot list {dir}: {e}"),
            })?;
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(prefix_len)
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
