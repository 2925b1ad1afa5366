//! C2SP signed notes (<https://c2sp.org/signed-note>), Ed25519 only.
//!
//! A signed note is a UTF-8 text ending in a newline, a blank line, and one or more signature
//! lines:
//!
//! ```text
//! <text, ending in "\n">
//! <empty line>
//! — <key name> <base64(4-byte key hash || signature)>
//! ```
//!
//! The dash is an em dash (U+2014). The bytes this module produces and accepts are the same as
//! those of Go's `golang.org/x/mod/sumdb/note`, whose published test vectors are checked in the
//! tests below.
//!
//! Verifier keys are written as `<name>+<8 hex digits of key hash>+<base64(0x01 || public key)>`
//! and the key hash is the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
//!
//! Parsing is strict: base64 must be canonical (standard alphabet, canonical padding, zero trailing
//! bits), so a signed note has exactly one textual form and [`SignedNote`]'s `Display` reproduces
//! the parsed bytes exactly.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::hash::Hash;

/// The signature type identifier byte for Ed25519 (C2SP signed-note, "Signature types").
pub const ALG_ED25519: u8 = 0x01;

/// The maximum number of signature lines [`SignedNote::parse`] accepts (the same limit as Go's
/// `note.Open`; the specification requires at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of every signature line: em dash (U+2014) and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note, a key name or a verifier key was rejected.
///
/// No variant ever carries key material: at most a key name, which is public.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note (or the text to be signed) does not follow the signed-note syntax.
    #[error("malformed note: {reason}")]
    Malformed {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    #[error("malformed note: more than {max} signatures")]
    TooManySignatures {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A key name is empty or contains a Unicode space or a `+`.
    #[error("invalid key name: it must be non-empty and contain neither Unicode spaces nor '+'")]
    BadName,
    /// The note carries no signature whose key name and key hash match the verifier.
    #[error("the note has no signature by key {name:?}")]
    NoSignatureForKey {
        /// The verifier's key name.
        name: String,
    },
    /// A signature claiming to be by the verifier's key does not verify over the note text.
    #[error("invalid signature by key {name:?}")]
    BadSignature {
        /// The verifier's key name.
        name: String,
    },
    /// A verifier key string is malformed, uses an unknown algorithm or has a wrong key hash.
    #[error("invalid verifier key: {reason}")]
    BadVerifierKey {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
}

/// Reports whether `name` is a valid key name: non-empty, no Unicode white space, no `+`.
///
/// Rust's [`char::is_whitespace`] and Go's `unicode.IsSpace` both follow the Unicode
/// `White_Space` property, so this accepts exactly the names Go accepts.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key hash of an Ed25519 key: `SHA-256(name || "\n" || 0x01 || public key)[..4]`.
#[must_use]
pub fn ed25519_key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 2 + public_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(ALG_ED25519);
    buf.extend_from_slice(public_key);
    let h = Hash::digest(&buf).0;
    [h[0], h[1], h[2], h[3]]
}

/// Checks that `s` contains no ASCII control character other than newline.
fn check_no_controls(s: &str) -> Result<(), NoteError> {
    if s.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed {
            reason: "contains an ASCII control character other than newline",
        });
    }
    Ok(())
}

/// Checks that `text` can be the text of a signed note: it ends in a newline and contains no
/// control characters other than newline. (Empty lines inside the text are allowed.)
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed {
            reason: "text must end with a newline",
        });
    }
    check_no_controls(text)
}

/// Strict standard base64 decoding (canonical padding and trailing bits).
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

/// A note signer: a key name and an Ed25519 signing key.
///
/// `Debug` shows only the name and the key hash, never key material.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_hash: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_hash", &hex::encode(self.key_hash))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` whose Ed25519 key is derived from the 32-byte `seed` (RFC 8032
    /// private key).
    ///
    /// # Errors
    /// [`NoteError::BadName`] if `name` is empty or contains a Unicode space or `+`.
    pub fn new(name: impl Into<String>, seed: [u8; 32]) -> Result<Self, NoteError> {
        let name = name.into();
        if !is_valid_name(&name) {
            return Err(NoteError::BadName);
        }
        let key = SigningKey::from_bytes(&seed);
        let key_hash = ed25519_key_hash(&name, key.verifying_key().as_bytes());
        Ok(Self {
            name,
            key_hash,
            key,
        })
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key hash (key ID) written at the start of every signature.
    #[must_use]
    pub const fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The matching verifier (public key).
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_hash: self.key_hash,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` and returns the signed note as a structure.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] if `text` does not end with a newline or contains an ASCII
    /// control character other than newline.
    pub fn sign_note(&self, text: &str) -> Result<SignedNote, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        Ok(SignedNote {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.name.clone(),
                key_hash: self.key_hash,
                signature: sig.to_bytes().to_vec(),
            }],
        })
    }

    /// Signs `text` and returns the full signed note: the text, a blank line and
    /// `— <name> <base64(key hash || signature)>\n`.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] if `text` does not end with a newline or contains an ASCII
    /// control character other than newline.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        Ok(self.sign_note(text)?.to_string())
    }
}

/// A note verifier: a key name, its key hash and an Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_hash: [u8; 4],
    key: VerifyingKey,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteVerifier")
            .field("name", &self.name)
            .field("key_hash", &hex::encode(self.key_hash))
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl NoteVerifier {
    /// A verifier for the Ed25519 public key `key` under the key name `name`.
    ///
    /// # Errors
    /// [`NoteError::BadName`] if `name` is empty or contains a Unicode space or `+`.
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        if !is_valid_name(&name) {
            return Err(NoteError::BadName);
        }
        let key_hash = ed25519_key_hash(&name, key.as_bytes());
        Ok(Self {
            name,
            key_hash,
            key,
        })
    }

    /// Parses a verifier key `<name>+<8 hex digits>+<base64(0x01 || 32-byte public key)>`.
    ///
    /// As in Go, the hex digits may be upper or lower case; [`NoteVerifier::to_vkey`] always
    /// writes lower case.
    ///
    /// # Errors
    /// [`NoteError::BadVerifierKey`] if the string is malformed, the name is invalid, the algorithm
    /// byte is not 0x01, the key is not 32 bytes or not a valid Ed25519 point, or the key hash
    /// does not match the name and key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let malformed = NoteError::BadVerifierKey {
            reason: "expected <name>+<8 hex digits>+<base64 key>",
        };
        let (name, rest) = vkey.split_once('+').ok_or_else(|| malformed.clone())?;
        let (hash_hex, key_b64) = rest.split_once('+').ok_or_else(|| malformed.clone())?;
        if !is_valid_name(name) {
            return Err(NoteError::BadVerifierKey {
                reason: "invalid key name",
            });
        }
        if hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey {
                reason: "key hash must be 8 hex digits",
            });
        }
        let mut key_hash = [0u8; 4];
        hex::decode_to_slice(hash_hex, &mut key_hash).map_err(|_| NoteError::BadVerifierKey {
            reason: "key hash must be 8 hex digits",
        })?;
        let key = decode_b64(key_b64).ok_or(NoteError::BadVerifierKey {
            reason: "key is not canonical standard base64",
        })?;
        let Some((&alg, public)) = key.split_first() else {
            return Err(NoteError::BadVerifierKey {
                reason: "empty key",
            });
        };
        // Same order of checks as Go: the key hash covers the algorithm byte and the key bytes.
        let computed = {
            let mut buf = Vec::with_capacity(name.len() + 1 + key.len());
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(&key);
            let h = Hash::digest(&buf).0;
            [h[0], h[1], h[2], h[3]]
        };
        if computed != key_hash {
            return Err(NoteError::BadVerifierKey {
                reason: "key hash does not match the name and key",
            });
        }
        if alg != ALG_ED25519 {
            return Err(NoteError::BadVerifierKey {
                reason: "unknown signature algorithm (only Ed25519, 0x01, is supported)",
            });
        }
        let public: &[u8; 32] = public.try_into().map_err(|_| NoteError::BadVerifierKey {
            reason: "Ed25519 public key must be 32 bytes",
        })?;
        let key = VerifyingKey::from_bytes(public).map_err(|_| NoteError::BadVerifierKey {
            reason: "not a valid Ed25519 public key",
        })?;
        Ok(Self {
            name: name.to_owned(),
            key_hash,
            key,
        })
    }

    /// The verifier key string `<name>+<8 lowercase hex>+<base64(0x01 || public key)>`.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash),
            B64.encode(raw)
        )
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key hash (key ID).
    #[must_use]
    pub const fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The Ed25519 public key.
    #[must_use]
    pub const fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// A fingerprint for humans to compare: `sha256:` and the lowercase hex SHA-256 of the
    /// 32-byte public key.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        Hash::digest(self.key.as_bytes()).to_prefixed()
    }

    /// Whether `sig` is by this key (same name and key hash).
    #[must_use]
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_hash == self.key_hash
    }
}

impl fmt::Display for NoteVerifier {
    /// Writes the verifier key string ([`NoteVerifier::to_vkey`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_vkey(s)
    }
}

/// One signature line of a note: `— <name> <base64(key hash || signature)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The 4-byte key hash (key ID), big-endian as written.
    pub key_hash: [u8; 4],
    /// The signature bytes after the key hash (64 bytes for Ed25519; at least 1 when parsed).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The base64 field of the signature line: `base64(key hash || signature)`.
    #[must_use]
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_hash);
        raw.extend_from_slice(&self.signature);
        B64.encode(raw)
    }

    /// Parses one signature line without its final newline.
    fn parse_line(line: &str) -> Result<Self, NoteError> {
        let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(NoteError::Malformed {
                reason: "signature line must start with an em dash and a space",
            });
        };
        let Some((name, b64)) = rest.split_once(' ') else {
            return Err(NoteError::Malformed {
                reason: "signature line must be \"\u{2014} <name> <base64>\"",
            });
        };
        if !is_valid_name(name) {
            return Err(NoteError::Malformed {
                reason: "invalid key name in signature line",
            });
        }
        let raw = decode_b64(b64).ok_or(NoteError::Malformed {
            reason: "signature is not canonical standard base64",
        })?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed {
                reason: "signature is shorter than 5 bytes",
            });
        }
        let (hash, sig) = raw.split_at(4);
        let key_hash: [u8; 4] = hash.try_into().map_err(|_| NoteError::Malformed {
            reason: "signature is shorter than 5 bytes",
        })?;
        Ok(Self {
            name: name.to_owned(),
            key_hash,
            signature: sig.to_vec(),
        })
    }
}

/// A parsed signed note: its text and its signatures, verified or not.
///
/// `Display` writes the note back: the text, a blank line, then one line per signature, in
/// order. For a note obtained from [`SignedNote::parse`] that is exactly the parsed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, including its final newline (but not the separating blank line).
    pub text: String,
    /// The signatures, in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses a signed note, strictly following C2SP signed-note (and Go's `note.Open`).
    ///
    /// The note must be free of ASCII control characters other than newline. The text is
    /// everything up to and including the first newline of the *last* `"\n\n"`; it may itself
    /// contain empty lines. What follows must be one or more signature lines
    /// `— <name> <base64>\n` where the name is valid and the base64 (canonical, standard) decodes
    /// to at least 5 bytes, at most [`MAX_SIGNATURES`] of them. Signatures are not verified here.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] on any syntax violation and [`NoteError::TooManySignatures`] if
    /// there are more than [`MAX_SIGNATURES`] signature lines.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        check_no_controls(note)?;
        let Some(split) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed {
                reason: "missing blank line before the signatures",
            });
        };
        let text = note.get(..=split).ok_or(NoteError::Malformed {
            reason: "missing blank line before the signatures",
        })?;
        let sigs = note.get(split + 2..).ok_or(NoteError::Malformed {
            reason: "missing signatures",
        })?;
        if sigs.is_empty() {
            return Err(NoteError::Malformed {
                reason: "missing signatures",
            });
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed {
                reason: "the last signature line must end with a newline",
            });
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Checks that the note is signed by `verifier`'s key.
    ///
    /// Signatures whose name or key hash differ from the verifier's are ignored, as the
    /// specification requires. Every signature whose name *and* key hash match must verify
    /// (Ed25519 `verify_strict` over the text bytes), and there must be at least one.
    ///
    /// # Errors
    /// [`NoteError::NoSignatureForKey`] if no signature matches the verifier's name and key hash;
    /// [`NoteError::BadSignature`] if a matching signature does not verify.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), NoteError> {
        let mut found = false;
        for sig in self.signatures.iter().filter(|s| verifier.matches(s)) {
            found = true;
            let bad = || NoteError::BadSignature {
                name: verifier.name.clone(),
            };
            let signature = Signature::from_slice(&sig.signature).map_err(|_| bad())?;
            verifier
                .key
                .verify_strict(self.text.as_bytes(), &signature)
                .map_err(|_| bad())?;
        }
        if found {
            Ok(())
        } else {
            Err(NoteError::NoSignatureForKey {
                name: verifier.name.clone(),
            })
        }
    }
}

impl fmt::Display for SignedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            writeln!(f, "{SIGNATURE_PREFIX}{} {}", sig.name, sig.to_base64())?;
        }
        Ok(())
    }
}

impl FromStr for SignedNote {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const GO_VECTORS: &str = include_str!("../tests/data/note/go_vectors.json");
    const C2SP_EXAMPLES: &str = include_str!("../tests/data/note/c2sp_examples.json");

    fn go() -> Value {
        serde_json::from_str(GO_VECTORS).unwrap()
    }

    fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_str().unwrap()
    }

    /// Decodes Go's `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>` (test helper only).
    fn seed_from_go_skey(skey: &str) -> (String, [u8; 32]) {
        let parts: Vec<&str> = skey.splitn(5, '+').collect();
        assert_eq!(&parts[..2], &["PRIVATE", "KEY"]);
        let raw = B64.decode(parts[4]).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        (parts[2].to_owned(), raw[1..].try_into().unwrap())
    }

    fn peter_signer() -> NoteSigner {
        let v = go();
        let (name, seed) = seed_from_go_skey(s(&v, &["peter", "skey"]));
        NoteSigner::new(name, seed).unwrap()
    }

    #[test]
    fn vectors_have_a_source() {
        assert!(s(&go(), &["source"]).contains("golang.org/x/mod/sumdb/note"));
        let c: Value = serde_json::from_str(C2SP_EXAMPLES).unwrap();
        assert!(s(&c, &["source"]).contains("C2SP"));
    }

    #[test]
    fn go_verifier_keys_parse_and_round_trip() {
        let v = go();
        for who in ["peter", "enoch"] {
            let vkey = s(&v, &[who, "vkey"]);
            let ver = NoteVerifier::from_vkey(vkey).unwrap();
            assert_eq!(ver.name(), s(&v, &[who, "name"]));
            assert_eq!(hex::encode(ver.key_hash()), s(&v, &[who, "key_hash"]));
            assert_eq!(ver.to_vkey(), vkey);
            assert_eq!(ver.to_string(), vkey);
            assert_eq!(vkey.parse::<NoteVerifier>().unwrap(), ver);
            assert!(ver.fingerprint().starts_with("sha256:"));
            assert_eq!(ver.fingerprint().len(), 7 + 64);
        }
    }

    #[test]
    fn go_bad_verifier_keys_rejected() {
        let v = go();
        let bad = v["bad_vkeys"].as_array().unwrap();
        assert_eq!(bad.len(), 2);
        for k in bad {
            assert!(matches!(
                NoteVerifier::from_vkey(k.as_str().unwrap()),
                Err(NoteError::BadVerifierKey { .. })
            ));
        }
        // Go's TestNewVerifier manglings: every proper substring and every incremented byte.
        let vkey = s(&v, &["peter", "vkey"]).as_bytes().to_vec();
        for i in 0..=vkey.len() {
            for j in i + 1..=vkey.len() {
                if i == 0 && j == vkey.len() {
                    continue;
                }
                let sub = String::from_utf8_lossy(&vkey[i..j]);
                assert!(NoteVerifier::from_vkey(&sub).is_err(), "{sub}");
            }
        }
        for i in 0..vkey.len() {
            let mut b = vkey.clone();
            b[i] += 1;
            let m = String::from_utf8(b).unwrap();
            assert!(NoteVerifier::from_vkey(&m).is_err(), "{m}");
        }
    }

    #[test]
    fn verifier_key_specific_rejections() {
        let good = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        assert!(NoteVerifier::from_vkey(good).is_ok());
        // Go accepts upper-case hex; so do we, and we write lower case back.
        let upper = good.replace("c74f20a3", "C74F20A3");
        assert_eq!(NoteVerifier::from_vkey(&upper).unwrap().to_vkey(), good);
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
            "PeterNeumann+c74f20a3+",
        ] {
            assert!(
                matches!(
                    NoteVerifier::from_vkey(bad),
                    Err(NoteError::BadVerifierKey { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signing_reproduces_go_signature_exactly() {
        let v = go();
        let signer = peter_signer();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(hex::encode(signer.key_hash()), "c74f20a3");
        assert_eq!(signer.verifier().to_vkey(), s(&v, &["peter", "vkey"]));
        let signed = signer.sign(s(&v, &["text"])).unwrap();
        assert_eq!(signed, s(&v, &["signed_note"]));
        assert_eq!(
            signed,
            format!(
                "{}\n{}",
                s(&v, &["text"]),
                s(&v, &["peter", "signature_line"])
            )
        );
    }

    #[test]
    fn go_signed_note_parses_verifies_and_round_trips() {
        let v = go();
        let msg = s(&v, &["signed_note"]);
        let note = SignedNote::parse(msg).unwrap();
        assert_eq!(note.text, s(&v, &["text"]));
        assert_eq!(note.signatures.len(), 1);
        assert_eq!(note.signatures[0].name, "PeterNeumann");
        assert_eq!(note.signatures[0].key_hash, [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(note.signatures[0].signature.len(), 64);
        assert_eq!(note.to_string(), msg);
        let peter = NoteVerifier::from_vkey(s(&v, &["peter", "vkey"])).unwrap();
        note.verify(&peter).unwrap();
        let enoch = NoteVerifier::from_vkey(s(&v, &["enoch", "vkey"])).unwrap();
        assert_eq!(
            note.verify(&enoch),
            Err(NoteError::NoSignatureForKey {
                name: "EnochRoot".into()
            })
        );
    }

    #[test]
    fn go_doubly_signed_note() {
        let v = go();
        let msg = format!(
            "{}\n{}{}",
            s(&v, &["text"]),
            s(&v, &["peter", "signature_line"]),
            s(&v, &["enoch", "signature_line"])
        );
        let note = SignedNote::parse(&msg).unwrap();
        assert_eq!(note.signatures.len(), 2);
        assert_eq!(note.to_string(), msg);
        for who in ["peter", "enoch"] {
            let ver = NoteVerifier::from_vkey(s(&v, &[who, "vkey"])).unwrap();
            note.verify(&ver).unwrap();
        }
        // A different key under the same name is an unknown key: ignored, so no signature.
        let other = NoteSigner::new("PeterNeumann", [7; 32]).unwrap();
        assert!(matches!(
            note.verify(&other.verifier()),
            Err(NoteError::NoSignatureForKey { .. })
        ));
    }

    #[test]
    fn go_malformed_messages_rejected() {
        let v = go();
        let text = s(&v, &["text"]);
        let peter_sig = s(&v, &["peter", "signature_line"]);
        let bad = [
            text.to_owned(),
            format!("{text}\n"),
            format!("{text}\n{}", &peter_sig[..peter_sig.len() - 1]),
            format!("\x01{text}\n{peter_sig}"),
            format!(
                "{text}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            format!("{text}\n{peter_sig}Unexpected line.\n"),
        ];
        for msg in &bad {
            assert!(
                matches!(SignedNote::parse(msg), Err(NoteError::Malformed { .. })),
                "{msg:?}"
            );
        }
        // Go's "\xff" case is invalid UTF-8, which a &str cannot hold.
        let mut bytes = format!("{text}\n{peter_sig}").into_bytes();
        bytes.insert(0, 0xff);
        assert!(std::str::from_utf8(&bytes).is_err());
    }

    #[test]
    fn go_invalid_and_mismatched_signatures() {
        let v = go();
        let text = s(&v, &["text"]);
        let peter_sig = s(&v, &["peter", "signature_line"]);
        let peter = NoteVerifier::from_vkey(s(&v, &["peter", "vkey"])).unwrap();

        // Go: peterSig[:60]+"ABCD"+peterSig[60:] is "invalid signature for key".
        let corrupt = format!("{text}\n{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
        let note = SignedNote::parse(&corrupt).unwrap();
        assert_eq!(
            note.verify(&peter),
            Err(NoteError::BadSignature {
                name: "PeterNeumann".into()
            })
        );
        // A failing duplicate poisons the note even next to a valid signature.
        let dup = format!(
            "{text}\n{peter_sig}{}ABCD{}",
            &peter_sig[..60],
            &peter_sig[60..]
        );
        assert!(matches!(
            SignedNote::parse(&dup).unwrap().verify(&peter),
            Err(NoteError::BadSignature { .. })
        ));

        let misnamed = format!(
            "{text}\n{}",
            peter_sig.replace("PeterNeumann", "CarmenSandiego")
        );
        assert!(matches!(
            SignedNote::parse(&misnamed).unwrap().verify(&peter),
            Err(NoteError::NoSignatureForKey { .. })
        ));
        let wrong_hash = format!("{text}\n{}", peter_sig.replace("x08g", "xxxx"));
        assert!(matches!(
            SignedNote::parse(&wrong_hash).unwrap().verify(&peter),
            Err(NoteError::NoSignatureForKey { .. })
        ));
    }

    #[test]
    fn tampered_text_and_signature_fail() {
        let v = go();
        let peter = NoteVerifier::from_vkey(s(&v, &["peter", "vkey"])).unwrap();
        let msg = s(&v, &["signed_note"]);

        let tampered_text = msg.replace("cryptography", "cryptographY");
        assert!(matches!(
            SignedNote::parse(&tampered_text).unwrap().verify(&peter),
            Err(NoteError::BadSignature { .. })
        ));

        let mut note = SignedNote::parse(msg).unwrap();
        note.signatures[0].signature[10] ^= 1;
        assert!(matches!(
            note.verify(&peter),
            Err(NoteError::BadSignature { .. })
        ));
        // Wrong-length Ed25519 signature.
        let mut note = SignedNote::parse(msg).unwrap();
        note.signatures[0].signature.pop();
        assert!(matches!(
            note.verify(&peter),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn too_many_signatures() {
        let v = go();
        let text = s(&v, &["text"]);
        let peter_sig = s(&v, &["peter", "signature_line"]);
        let peter = NoteVerifier::from_vkey(s(&v, &["peter", "vkey"])).unwrap();
        let ok = format!("{text}\n{}", peter_sig.repeat(MAX_SIGNATURES));
        let note = SignedNote::parse(&ok).unwrap();
        assert_eq!(note.signatures.len(), MAX_SIGNATURES);
        note.verify(&peter).unwrap();
        assert_eq!(note.to_string(), ok);
        let too_many = format!("{text}\n{}", peter_sig.repeat(MAX_SIGNATURES + 1));
        assert_eq!(
            SignedNote::parse(&too_many),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
    }

    #[test]
    fn bad_base64_in_signature_rejected() {
        let v = go();
        let text = s(&v, &["text"]);
        for b64 in [
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM",
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAN=",
            "x08go_ZJkuBS9UG-SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            "x08go/ZJkuBS9UG/Sffcv IAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            "AAAAAA==",
            "",
        ] {
            let msg = format!("{text}\n\u{2014} PeterNeumann {b64}\n");
            assert!(
                matches!(SignedNote::parse(&msg), Err(NoteError::Malformed { .. })),
                "{b64}"
            );
        }
        // Non-em-dash prefixes.
        for prefix in ["- ", "\u{2013} ", "\u{2014}", "\u{2014}  "] {
            let msg = format!(
                "{text}\n{prefix}PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            );
            assert!(SignedNote::parse(&msg).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn blank_lines_split_at_the_last_one() {
        // C2SP's example note has an empty line inside its text.
        let c: Value = serde_json::from_str(C2SP_EXAMPLES).unwrap();
        let msg = s(&c, &["signed_note_example", "note"]);
        let note = SignedNote::parse(msg).unwrap();
        assert_eq!(note.text, s(&c, &["signed_note_example", "text"]));
        assert!(note.text.contains("\n\n"));
        assert_eq!(
            note.signatures[0].name,
            s(&c, &["signed_note_example", "signature_name"])
        );
        assert_eq!(note.to_string(), msg);

        // Texts with empty lines, including a trailing one and a lone newline, round-trip.
        let signer = peter_signer();
        let ver = signer.verifier();
        for text in ["a\n\nb\n", "a\n\n", "\n", "\n\n\n", "x\n\n\ny\n"] {
            let signed = signer.sign(text).unwrap();
            let note = SignedNote::parse(&signed).unwrap();
            assert_eq!(note.text, text);
            note.verify(&ver).unwrap();
            assert_eq!(note.to_string(), signed);
        }
        // A blank line after the signatures, or between them, is malformed.
        let signed = signer.sign("a\n").unwrap();
        assert!(SignedNote::parse(&format!("{signed}\n")).is_err());
        // A blank line between two signature lines moves the split: the first signature line
        // becomes part of the text, so the remaining signature no longer verifies.
        let sig_line = signed.trim_start_matches("a\n\n");
        let two = format!("{signed}\n{sig_line}");
        let note = SignedNote::parse(&two).unwrap();
        assert_eq!(note.text, format!("a\n\n{sig_line}"));
        assert!(matches!(
            note.verify(&ver),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn sign_rejects_bad_text() {
        let signer = peter_signer();
        for text in ["", "abc", "a\n\x01\n", "tab\there\n", "cr\r\n"] {
            assert!(
                matches!(signer.sign(text), Err(NoteError::Malformed { .. })),
                "{text:?}"
            );
        }
        assert!(signer.sign("h\u{e9}llo\n").is_ok());
    }

    #[test]
    fn signer_names_validated() {
        for bad in [
            "",
            "a b",
            "a+b",
            "a\nb",
            "a\u{a0}b",
            "a\u{3000}b",
            "a\u{85}b",
        ] {
            assert_eq!(
                NoteSigner::new(bad, [1; 32]).unwrap_err(),
                NoteError::BadName
            );
        }
        assert!(NoteSigner::new("example.com/log", [1; 32]).is_ok());
        assert!(NoteSigner::new("\u{e9}t\u{e9}", [1; 32]).is_ok());
    }

    #[test]
    fn signer_debug_has_no_key_material() {
        let (_, seed) = seed_from_go_skey(s(&go(), &["peter", "skey"]));
        let signer = peter_signer();
        for dbg in [format!("{signer:?}"), format!("{signer:#?}")] {
            assert!(dbg.contains("PeterNeumann"));
            assert!(dbg.contains("c74f20a3"));
            assert!(!dbg.contains(&hex::encode(seed)));
            assert!(!dbg.contains(&hex::encode_upper(seed)));
            assert!(!dbg.contains(&B64.encode(seed)));
            assert!(!dbg.contains(format!("{:?}", &seed[..4]).trim_end_matches(']')));
            assert!(!dbg.contains(&hex::encode(&seed[..8])));
        }
    }

    #[test]
    fn errors_carry_no_key_material() {
        let msg = format!(
            "{}",
            NoteError::BadSignature {
                name: "PeterNeumann".into()
            }
        );
        assert_eq!(msg, "invalid signature by key \"PeterNeumann\"");
        let e = NoteVerifier::from_vkey(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("ARpc2Qc"));
    }

    #[test]
    fn generated_keys_round_trip() {
        let signer = NoteSigner::new("blackbox.example/log", [42; 32]).unwrap();
        let ver = signer.verifier();
        let parsed = NoteVerifier::from_vkey(&ver.to_vkey()).unwrap();
        assert_eq!(parsed, ver);
        assert_eq!(
            NoteVerifier::new("blackbox.example/log", *ver.verifying_key()).unwrap(),
            ver
        );
        let note = signer.sign_note("hello\n").unwrap();
        note.verify(&parsed).unwrap();
        assert_eq!(SignedNote::parse(&note.to_string()).unwrap(), note);
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = SignedNote::parse(&input);
            let _ = NoteVerifier::from_vkey(&input);
        }

        #[test]
        fn parse_never_panics_on_note_like_input(
            text in "[a-z\n]{0,20}",
            sep in prop::sample::select(vec!["\n", "\n\n", ""]),
            lines in prop::collection::vec("(\u{2014} )?[A-Za-z+ ]{0,6}( [A-Za-z0-9+/=]{0,12})?\n?", 0..4),
        ) {
            let msg = format!("{text}{sep}{}", lines.concat());
            if let Ok(note) = SignedNote::parse(&msg) {
                prop_assert_eq!(note.to_string(), msg);
            }
        }

        #[test]
        fn sign_parse_verify_round_trip(text in "([ -~\u{e9}\u{2014}]{0,30}\n){1,4}", seed in any::<[u8; 32]>()) {
            let signer = NoteSigner::new("prop.example", seed).unwrap();
            let signed = signer.sign(&text).unwrap();
            let note = SignedNote::parse(&signed).unwrap();
            prop_assert_eq!(&note.text, &text);
            prop_assert_eq!(note.to_string(), signed);
            prop_assert!(note.verify(&signer.verifier()).is_ok());
        }
    }
}
