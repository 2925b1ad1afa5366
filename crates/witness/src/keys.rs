//! The witness's key files: the secret `<name> <64 hex digits of the Ed25519 seed>` (mode 0600,
//! the same layout as a log's `checkpoint.key`) and the public verifier key, a C2SP vkey of type
//! 0x04 (`<name>+<key ID>+<base64>`) that logs and auditors put in their witness policies.

use std::path::Path;

use blackbox_core::cosignature::{Cosigner, CosignerKey};
use blackbox_core::note::{NoteVerifier, is_valid_name};
use blackbox_ledger::datadir::{random32, read_secret, write_public, write_secret};

use crate::WitnessError;

fn key_err(path: &Path, problem: impl Into<String>) -> WitnessError {
    WitnessError::KeyFile {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The first line of a key file that is not empty or a comment.
fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("")
}

/// Makes a new witness key named `name`: writes the secret to `key_file` (0600; refuses to
/// overwrite) and the public vkey to `key_file` with `.pub` appended. Returns the public key.
///
/// # Errors
/// [`WitnessError::KeyFile`] / [`WitnessError::Config`].
pub fn generate(name: &str, key_file: &Path) -> Result<CosignerKey, WitnessError> {
    if !is_valid_name(name) {
        return Err(WitnessError::Config(format!(
            "witness name {name:?} is not a valid key name: non-empty, no spaces, no '+' (e.g. witness.example.com/w1)"
        )));
    }
    if key_file.exists() {
        return Err(key_err(
            key_file,
            "already exists; choose another path or remove it first (a witness's key is its identity)",
        ));
    }
    let seed = random32().map_err(|e| key_err(key_file, e.to_string()))?;
    let cosigner = Cosigner::new(name, seed).map_err(|e| key_err(key_file, e.to_string()))?;
    write_secret(
        key_file,
        &format!(
            "# blackbox witness key (secret): <name> <64 hex digits of the Ed25519 seed>\n{name} {}\n",
            blackbox_core::Hash(seed).to_hex()
        ),
    )
    .map_err(|e| key_err(key_file, e.to_string()))?;
    let public = public_path(key_file);
    write_public(&public, &format!("{}\n", cosigner.key().to_vkey()))
        .map_err(|e| key_err(&public, e.to_string()))?;
    Ok(cosigner.key().clone())
}

/// `<key_file>.pub`.
#[must_use]
pub fn public_path(key_file: &Path) -> std::path::PathBuf {
    let mut p = key_file.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// Loads the witness's signing key.
///
/// # Errors
/// [`WitnessError::KeyFile`] (a file readable by group or others is refused).
pub fn load_cosigner(path: &Path) -> Result<Cosigner, WitnessError> {
    let text = read_secret(path).map_err(|e| key_err(path, e.to_string()))?;
    let line = first_line(&text);
    let (name, seed_hex) = line
        .split_once(' ')
        .ok_or_else(|| key_err(path, "expected `<witness name> <64 hex digits>`"))?;
    let mut seed = [0u8; 32];
    if seed_hex.len() != 64 || hex_decode(seed_hex, &mut seed).is_err() {
        return Err(key_err(path, "the seed must be 64 hex digits"));
    }
    Cosigner::new(name, seed).map_err(|e| key_err(path, e.to_string()))
}

fn hex_decode(s: &str, out: &mut [u8; 32]) -> Result<(), ()> {
    let h = blackbox_core::Hash::from_hex(s).map_err(|_| ())?;
    *out = h.0;
    Ok(())
}

/// The text of the key file `arg`, or `arg` itself when it is no file but a verifier key
/// (`name+keyid+base64`).
fn vkey_text(arg: &Path) -> Result<String, WitnessError> {
    match std::fs::read_to_string(arg) {
        Ok(t) => Ok(t),
        Err(e) => {
            let s = arg.to_string_lossy();
            if s.matches('+').count() >= 2 && !arg.exists() {
                Ok(s.into_owned())
            } else {
                Err(key_err(arg, format!("cannot read it ({e})")))
            }
        }
    }
}

/// Loads a witness public key (a vkey of type 0x04) from a file, or takes `arg` itself when it
/// is a vkey rather than a path.
///
/// # Errors
/// [`WitnessError::KeyFile`] saying what is wrong.
pub fn load_witness_key(arg: &Path) -> Result<CosignerKey, WitnessError> {
    let text = vkey_text(arg)?;
    CosignerKey::from_vkey(first_line(&text)).map_err(|e| {
        key_err(
            arg,
            format!("not a witness public key ({e}); `blackbox witness keygen` writes one to <key file>.pub"),
        )
    })
}

/// Loads a log's checkpoint public key (a vkey of type 0x01, e.g. a Blackbox data directory's
/// `checkpoint.pub`), from a file or given inline.
///
/// # Errors
/// [`WitnessError::KeyFile`].
pub fn load_log_key(arg: &Path) -> Result<NoteVerifier, WitnessError> {
    let text = vkey_text(arg)?;
    NoteVerifier::from_vkey(first_line(&text)).map_err(|e| {
        key_err(
            arg,
            format!("not a log's checkpoint public key ({e}); give the log's checkpoint.pub"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generate_load_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("w.key");
        let public = generate("witness.example/w1", &k).unwrap();
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = load_cosigner(&k).unwrap();
        assert_eq!(c.key(), &public);
        assert_eq!(load_witness_key(&public_path(&k)).unwrap(), public);
        // Given inline too.
        assert_eq!(
            load_witness_key(Path::new(&public.to_vkey())).unwrap(),
            public
        );
        // Never overwritten; the secret never in the message.
        let e = generate("witness.example/w1", &k).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let secret = std::fs::read_to_string(&k).unwrap();
        let seed = secret.lines().nth(1).unwrap().split(' ').nth(1).unwrap();
        assert!(!e.contains(seed));
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_cosigner(&k).is_err());
        assert!(generate("bad name", &dir.path().join("x")).is_err());
        // A log key is not a witness key, and the reverse.
        let e = load_log_key(&public_path(&k)).unwrap_err().to_string();
        assert!(e.contains("checkpoint public key"), "{e}");
    }
}
