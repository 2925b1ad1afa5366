//! Secrets (read at each attempt, zeroized, never shown) and Standard Webhooks signatures.

use std::fmt;
use std::io::Read as _;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD};
use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::{SecretRef, WebhookError};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Largest secret read from a file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A webhook's HMAC key. Zeroized on drop; `Debug` shows nothing of it; compared in constant
/// time.
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        // ct_eq of slices of different lengths is false (only the length is not hidden).
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for WebhookSecret {}

/// Turns the text of a secret into key bytes (`whsec_<base64>` or raw).
fn decode_secret(raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let key = match raw.strip_prefix(b"whsec_") {
        Some(b64) => Zeroizing::new(
            B64.decode(b64)
                .or_else(|_| B64_NO_PAD.decode(b64))
                .map_err(|_| "starts with whsec_ but the rest is not valid base64")?,
        ),
        None => Zeroizing::new(raw.to_vec()),
    };
    if key.is_empty() {
        return Err("is empty");
    }
    Ok(key)
}

impl WebhookSecret {
    /// A secret as written in a secret store: `whsec_<base64>` (Standard Webhooks) is
    /// base64-decoded to get the key; any other text is the key as raw bytes.
    ///
    /// # Errors
    /// [`WebhookError::SecretMalformed`] for an empty secret or bad base64 after `whsec_`.
    pub fn from_text(text: &str) -> Result<Self, WebhookError> {
        decode_secret(text.as_bytes())
            .map(Self)
            .map_err(|reason| WebhookError::SecretMalformed {
                secret_ref: "given inline".to_owned(),
                reason,
            })
    }

    /// A key given as raw bytes.
    ///
    /// # Errors
    /// [`WebhookError::SecretMalformed`] for an empty key.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, WebhookError> {
        let key = Zeroizing::new(key);
        if key.is_empty() {
            return Err(WebhookError::SecretMalformed {
                secret_ref: "given inline".to_owned(),
                reason: "is empty",
            });
        }
        Ok(Self(key))
    }
}

/// Reads at most [`MAX_SECRET_BYTES`] of a secret file, without its trailing newline.
fn read_secret_file(path: &Path, r: &SecretRef) -> Result<Zeroizing<Vec<u8>>, WebhookError> {
    let unavailable = |e: std::io::Error| WebhookError::SecretUnavailable {
        secret_ref: r.to_string(),
        reason: format!("cannot read {} ({e})", path.display()),
    };
    let file = std::fs::File::open(path).map_err(unavailable)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(unavailable)?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(WebhookError::SecretMalformed {
            secret_ref: r.to_string(),
            reason: "is larger than 64 KiB",
        });
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(buf)
}

/// Reads the secret a reference names. `k8s-secret/NAME` is the file `k8s_dir/NAME`.
///
/// `file:` secrets must not be readable by group or others. Kubernetes secret volumes are
/// mode 0644 by default (the mount is private to the pod), so `k8s-secret/` files are not
/// checked.
///
/// # Errors
/// [`WebhookError::SecretUnavailable`] (variable not set, file missing or unreadable),
/// [`WebhookError::SecretPermissions`], [`WebhookError::SecretMalformed`] (empty, bad base64
/// after `whsec_`, over 64 KiB). None of them contains the secret.
pub fn resolve_secret(r: &SecretRef, k8s_dir: &Path) -> Result<WebhookSecret, WebhookError> {
    let raw = match r {
        SecretRef::Env(name) => match std::env::var_os(name) {
            Some(v) => Zeroizing::new(v.into_vec()),
            None => {
                return Err(WebhookError::SecretUnavailable {
                    secret_ref: r.to_string(),
                    reason: format!("the environment variable {name} is not set"),
                });
            }
        },
        SecretRef::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| WebhookError::SecretUnavailable {
                secret_ref: r.to_string(),
                reason: format!("cannot read {} ({e})", path.display()),
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(WebhookError::SecretPermissions {
                    path: path.clone(),
                    mode,
                });
            }
            read_secret_file(path, r)?
        }
        SecretRef::K8s(name) => read_secret_file(&k8s_dir.join(name), r)?,
    };
    decode_secret(&raw)
        .map(WebhookSecret)
        .map_err(|reason| WebhookError::SecretMalformed {
            secret_ref: r.to_string(),
            reason,
        })
}

fn mac(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut m = match HmacSha256::new_from_slice(&secret.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The `webhook-signature` header value: `v1,<base64 of HMAC-SHA256(secret,
/// "<msg_id>.<timestamp>.<body>")>` (Standard Webhooks, symmetric signature).
#[must_use]
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(mac(secret, msg_id, timestamp, body)))
}

/// Whether a `webhook-signature` header holds a valid `v1` signature of the message (the header
/// may list several space-separated signatures, e.g. during a secret rotation). Comparison is
/// constant-time. Receivers should also refuse timestamps too far from their clock.
#[must_use]
pub fn verify_signature(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = mac(secret, msg_id, timestamp, body);
    let mut ok = subtle::Choice::from(0);
    for sig in header.split(' ').filter(|s| !s.is_empty()) {
        if let Some(b64) = sig.strip_prefix("v1,")
            && let Ok(bytes) = B64.decode(b64)
        {
            ok |= bytes.as_slice().ct_eq(expected.as_slice());
        }
    }
    ok.into()
}

/// The `webhook-id` of an entry sent to `url`: `msg_<entry_id>_<first 8 hex of SHA-256(url)>`.
#[must_use]
pub fn webhook_id(entry_id: &str, url: &str) -> String {
    let h = Sha256::digest(url.as_bytes());
    format!("msg_{entry_id}_{}", hex::encode(&h[..4]))
}
