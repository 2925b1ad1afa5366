//! The manifest of an export: what was exported, from which checkpoint, and the SHA-256 of
//! every file written, signed with the log's Ed25519 checkpoint key as a C2SP signed note
//! (docs/FORMAT.md §16). Anyone holding the public key (`checkpoint.pub`) can check it.

use std::path::{Path, PathBuf};

use blackbox_core::note::{NoteSigner, NoteVerifier, SignedNote};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ExportError;

/// First line of a manifest note.
pub const HEADER: &str = "blackbox export manifest v1";

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    /// File name, relative to the manifest's directory.
    pub name: String,
    /// `sha256:<hex>` of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A checkpoint the figures were computed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCheckpoint {
    /// Tenant chain.
    pub tenant_id: String,
    /// Tree size.
    pub size: u64,
    /// Merkle root, base64 (as in the checkpoint note).
    pub root: String,
    /// When it was signed.
    pub timestamp: String,
}

/// The manifest body (the second line of the note, as compact JSON in this member order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `soc2`, `iso27001` or `gdpr`.
    pub standard: String,
    /// `CC7.2`, `A.8.15` or `art30`.
    pub control: String,
    /// Tenant.
    pub tenant_id: String,
    /// First day, `YYYY-MM-DD`.
    pub period_start: String,
    /// Last day, `YYYY-MM-DD`.
    pub period_end: String,
    /// Checkpoints the figures were computed against.
    pub checkpoints: Vec<ManifestCheckpoint>,
    /// Files written.
    pub files: Vec<FileHash>,
    /// Fingerprint of the signing key.
    pub public_key_fingerprint: String,
}

/// `sha256:<hex>` of `bytes`.
#[must_use]
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn sha256_file(path: &Path) -> Result<(String, u64), ExportError> {
    let bytes = std::fs::read(path).map_err(|cause| ExportError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    Ok((
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        bytes.len() as u64,
    ))
}

/// Hashes `files` (all in one directory) for a manifest.
///
/// # Errors
/// A file cannot be read.
pub fn hash_files(files: &[PathBuf]) -> Result<Vec<FileHash>, ExportError> {
    files
        .iter()
        .map(|p| {
            let (sha256, bytes) = sha256_file(p)?;
            Ok(FileHash {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256,
                bytes,
            })
        })
        .collect()
}

/// The signed manifest text.
///
/// # Errors
/// Signing failed.
pub fn sign(m: &Manifest, signer: &NoteSigner) -> Result<String, ExportError> {
    let json = serde_json::to_string(m).map_err(|e| ExportError::Manifest(e.to_string()))?;
    signer
        .sign(&format!("{HEADER}\n{json}\n"))
        .map_err(|e| ExportError::Manifest(format!("signing the manifest: {e}")))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Per file: name and problem (`None` when it matches).
    pub files: Vec<(String, Option<String>)>,
}

impl Verified {
    /// Whether every file matched.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.files.iter().all(|(_, p)| p.is_none())
    }
}

/// Checks a manifest's signature with `verifier`, then every file it lists (looked up next to
/// the manifest).
///
/// # Errors
/// The manifest is malformed or its signature does not verify (a file mismatch is not an
/// error: see [`Verified::files`]).
pub fn verify(path: &Path, verifier: &NoteVerifier) -> Result<Verified, ExportError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ExportError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    let note = SignedNote::parse(&text).map_err(|e| {
        ExportError::Manifest(format!("{}: not a signed manifest: {e}", path.display()))
    })?;
    note.verify(verifier).map_err(|e| {
        ExportError::Manifest(format!(
            "{}: the signature does not verify with key {} ({e}): the manifest was altered or signed by another key",
            path.display(),
            verifier.fingerprint()
        ))
    })?;
    let mut lines = note.text.lines();
    if lines.next() != Some(HEADER) {
        return Err(ExportError::Manifest(format!(
            "{}: the first line is not `{HEADER}`",
            path.display()
        )));
    }
    let manifest: Manifest = serde_json::from_str(lines.next().unwrap_or(""))
        .map_err(|e| ExportError::Manifest(format!("{}: manifest body: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for f in &manifest.files {
        if f.name.contains('/') || f.name.contains('\\') || f.name == ".." {
            files.push((
                f.name.clone(),
                Some("a file name with a path is refused".into()),
            ));
            continue;
        }
        let problem = match sha256_file(&dir.join(&f.name)) {
            Err(e) => Some(format!("cannot be read: {e}")),
            Ok((h, _)) if h != f.sha256 => Some(format!(
                "SHA-256 differs: the file is {h}, the manifest says {}",
                f.sha256
            )),
            Ok(_) => None,
        };
        files.push((f.name.clone(), problem));
    }
    Ok(Verified { manifest, files })
}
