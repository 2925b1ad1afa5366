//! C2SP transparency-log cosignatures (<https://c2sp.org/tlog-cosignature>), the Ed25519
//! `cosignature/v1` type, and witness policies over them.
//!
//! A cosignature is a signed-note signature line on a checkpoint, by a *witness* that checked the
//! checkpoint is consistent with every earlier one it saw for the same origin:
//!
//! ```text
//! — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)
//! ```
//!
//! The key ID is `SHA-256(<name> || "\n" || 0x04 || 32-byte public key)[:4]` and the signed
//! message is
//!
//! ```text
//! cosignature/v1
//! time <timestamp, decimal seconds since the epoch>
//! <the whole checkpoint text, extension lines included>
//! ```
//!
//! Witness public keys are written as signed-note verifier keys with signature type 0x04:
//! `<name>+<8 hex digits of key ID>+<base64(0x04 || public key)>`.
//!
//! ML-DSA-44 cosignatures (type 0x06) are not produced or checked here: no well-kept Rust
//! implementation of ML-DSA is in this workspace yet, and a line of an unknown type is ignored
//! by every verifier, as the specification requires (docs/FORMAT.md §7).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::hash::Hash;
use crate::note::{NoteError, NoteSignature, SignedNote, is_valid_name};

/// The signature type byte of Ed25519 `cosignature/v1` keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The first line of the signed message (domain separation).
pub const HEADER: &str = "cosignature/v1";
/// The largest timestamp a cosignature may carry (2^63 − 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The key ID of a witness's Ed25519 key: `SHA-256(name || "\n" || 0x04 || public key)[:4]`.
#[must_use]
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 2 + public_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(ALG_COSIGNATURE_V1);
    buf.extend_from_slice(public_key);
    let h = Hash::digest(&buf).0;
    [h[0], h[1], h[2], h[3]]
}

/// The message a `cosignature/v1` signs: the header line, `time <timestamp>` and the checkpoint
/// text (which ends in a newline).
#[must_use]
pub fn message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    let mut m = format!("{HEADER}\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text.as_bytes());
    m
}

/// A witness: its name and Ed25519 signing key. `Debug` shows no key material.
#[derive(Clone)]
pub struct Cosigner {
    key: CosignerKey,
    signing: SigningKey,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.key.name)
            .field("key_id", &hex::encode(self.key.key_id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A witness named `name` whose Ed25519 key is derived from the 32-byte `seed`.
    ///
    /// # Errors
    /// [`NoteError::BadName`] if `name` is empty or contains a Unicode space or `+`.
    pub fn new(name: impl Into<String>, seed: [u8; 32]) -> Result<Self, NoteError> {
        let signing = SigningKey::from_bytes(&seed);
        let key = CosignerKey::new(name, signing.verifying_key())?;
        Ok(Self { key, signing })
    }

    /// The public side (for clients' policies).
    #[must_use]
    pub const fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// Cosigns `checkpoint_text` (a checkpoint's note text, ending in a newline) at `timestamp`
    /// (seconds since the epoch, at most [`MAX_TIMESTAMP`]).
    ///
    /// # Errors
    /// [`NoteError::Malformed`] when the text does not end in a newline or the timestamp is too
    /// large.
    pub fn cosign(
        &self,
        checkpoint_text: &str,
        timestamp: u64,
    ) -> Result<NoteSignature, NoteError> {
        if !checkpoint_text.ends_with('\n') {
            return Err(NoteError::Malformed {
                reason: "text must end with a newline",
            });
        }
        if timestamp > MAX_TIMESTAMP {
            return Err(NoteError::Malformed {
                reason: "a cosignature timestamp is at most 2^63-1",
            });
        }
        let sig = self.signing.sign(&message(timestamp, checkpoint_text));
        let mut raw = Vec::with_capacity(72);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.key.name.clone(),
            key_hash: self.key.key_id,
            signature: raw,
        })
    }
}

/// A witness's public key: name, key ID and Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// Why a cosignature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// Not 8 + 64 bytes after the key ID.
    #[error("cosignature by {name:?} is not a timestamp and an Ed25519 signature (72 bytes)")]
    Length {
        /// The witness name.
        name: String,
    },
    /// The timestamp exceeds 2^63 − 1.
    #[error("cosignature by {name:?} has a timestamp above 2^63-1")]
    Timestamp {
        /// The witness name.
        name: String,
    },
    /// The Ed25519 signature does not verify over the message.
    #[error("cosignature by {name:?} does not verify over this checkpoint")]
    Bad {
        /// The witness name.
        name: String,
    },
}

impl CosignerKey {
    /// The key of witness `name`.
    ///
    /// # Errors
    /// [`NoteError::BadName`] for an invalid key name.
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        if !is_valid_name(&name) {
            return Err(NoteError::BadName);
        }
        let key_id = key_id(&name, key.as_bytes());
        Ok(Self { name, key_id, key })
    }

    /// Parses a witness verifier key `<name>+<8 hex>+<base64(0x04 || public key)>`.
    ///
    /// # Errors
    /// [`NoteError::BadVerifierKey`] saying what is wrong (a checkpoint key, type 0x01, is
    /// named as such: it is the log's key, not a witness's).
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = |reason| NoteError::BadVerifierKey { reason };
        let vkey = vkey.trim();
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(bad("expected <name>+<8 hex digits>+<base64 key>"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(bad("expected <name>+<8 hex digits>+<base64 key>"))?;
        if !is_valid_name(name) {
            return Err(bad("invalid key name"));
        }
        let mut id = [0u8; 4];
        if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
            return Err(bad("key ID must be 8 hex digits"));
        }
        let raw = B64
            .decode(key_b64)
            .map_err(|_| bad("key is not canonical standard base64"))?;
        match raw.split_first() {
            Some((&ALG_COSIGNATURE_V1, public)) => {
                let public: &[u8; 32] = public
                    .try_into()
                    .map_err(|_| bad("Ed25519 public key must be 32 bytes"))?;
                let key = VerifyingKey::from_bytes(public)
                    .map_err(|_| bad("not a valid Ed25519 public key"))?;
                let k = Self::new(name, key)?;
                if k.key_id != id {
                    return Err(bad("key ID does not match the name and key"));
                }
                Ok(k)
            }
            Some((&crate::note::ALG_ED25519, _)) => Err(bad(
                "this is a log's checkpoint key (type 0x01), not a witness key (type 0x04, cosignature/v1)",
            )),
            Some((0x06, _)) => Err(bad(
                "ML-DSA-44 cosignatures (type 0x06) are not supported; use an Ed25519 cosignature/v1 key (type 0x04)",
            )),
            _ => Err(bad(
                "unknown key type: a witness key is cosignature/v1 (type 0x04)",
            )),
        }
    }

    /// The verifier key string, type 0x04.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }

    /// The witness name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    #[must_use]
    pub const fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Whether `sig` claims to be by this key (same name and key ID).
    #[must_use]
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_hash == self.key_id
    }

    /// Checks `sig` (one that [`Self::matches`]) over `checkpoint_text` and returns its timestamp.
    ///
    /// # Errors
    /// [`CosignatureError`].
    pub fn verify(
        &self,
        checkpoint_text: &str,
        sig: &NoteSignature,
    ) -> Result<u64, CosignatureError> {
        let name = || self.name.clone();
        let Some((ts, ed)) = sig.signature.split_first_chunk::<8>() else {
            return Err(CosignatureError::Length { name: name() });
        };
        if ed.len() != 64 {
            return Err(CosignatureError::Length { name: name() });
        }
        let timestamp = u64::from_be_bytes(*ts);
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Timestamp { name: name() });
        }
        let signature =
            Signature::from_slice(ed).map_err(|_| CosignatureError::Bad { name: name() })?;
        self.key
            .verify_strict(&message(timestamp, checkpoint_text), &signature)
            .map_err(|_| CosignatureError::Bad { name: name() })?;
        Ok(timestamp)
    }
}

/// A witness policy: the witnesses an auditor trusts and how many of them must have cosigned.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    witnesses: Vec<CosignerKey>,
    quorum: usize,
}

/// Why a witness policy cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No witness key was given.
    #[error("a witness policy needs at least one witness key")]
    NoWitness,
    /// The quorum is 0 or more than the number of witnesses.
    #[error(
        "the witness quorum must be between 1 and the number of witness keys ({keys}); got {quorum}"
    )]
    Quorum {
        /// The quorum asked for.
        quorum: usize,
        /// Distinct witness keys given.
        keys: usize,
    },
    /// Two keys share a name: their cosignatures could not be told apart in a report.
    #[error("two witness keys are named {name:?}: give each witness one key")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// One listed witness's part in a checkpoint's cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessMark {
    /// It cosigned, at this time (seconds since the epoch).
    Cosigned(u64),
    /// Its line is there but does not verify (a forgery, or the note was altered).
    Invalid(CosignatureError),
    /// No cosignature by it.
    Missing,
}

/// What a checkpoint's cosignatures say under a [`WitnessPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessCheck {
    /// Per listed witness, in the policy's order: its name and mark.
    pub witnesses: Vec<(String, WitnessMark)>,
    /// The quorum asked for.
    pub quorum: usize,
}

impl WitnessCheck {
    /// Witnesses whose cosignature verified.
    #[must_use]
    pub fn cosigned(&self) -> usize {
        self.witnesses
            .iter()
            .filter(|(_, m)| matches!(m, WitnessMark::Cosigned(_)))
            .count()
    }

    /// Whether the quorum is met and no listed witness's line is invalid.
    #[must_use]
    pub fn met(&self) -> bool {
        self.cosigned() >= self.quorum && !self.has_invalid()
    }

    /// Whether a listed witness's cosignature line fails to verify.
    #[must_use]
    pub fn has_invalid(&self) -> bool {
        self.witnesses
            .iter()
            .any(|(_, m)| matches!(m, WitnessMark::Invalid(_)))
    }

    /// The names of the listed witnesses that did not cosign.
    #[must_use]
    pub fn missing(&self) -> Vec<&str> {
        self.witnesses
            .iter()
            .filter(|(_, m)| matches!(m, WitnessMark::Missing))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

impl WitnessPolicy {
    /// A policy requiring `quorum` of `witnesses` (duplicates of one key count once).
    ///
    /// # Errors
    /// [`PolicyError`].
    pub fn new(witnesses: Vec<CosignerKey>, quorum: usize) -> Result<Self, PolicyError> {
        let mut distinct: Vec<CosignerKey> = Vec::with_capacity(witnesses.len());
        for w in witnesses {
            if distinct.contains(&w) {
                continue;
            }
            if distinct.iter().any(|d| d.name == w.name) {
                return Err(PolicyError::DuplicateName { name: w.name });
            }
            distinct.push(w);
        }
        if distinct.is_empty() {
            return Err(PolicyError::NoWitness);
        }
        if quorum == 0 || quorum > distinct.len() {
            return Err(PolicyError::Quorum {
                quorum,
                keys: distinct.len(),
            });
        }
        Ok(Self {
            witnesses: distinct,
            quorum,
        })
    }

    /// The witnesses, in order.
    #[must_use]
    pub fn witnesses(&self) -> &[CosignerKey] {
        &self.witnesses
    }

    /// The quorum.
    #[must_use]
    pub const fn quorum(&self) -> usize {
        self.quorum
    }

    /// Checks the cosignatures of a signed checkpoint note. The log's own signature is not
    /// checked here (verify it with the log's key first).
    #[must_use]
    pub fn check(&self, note: &SignedNote) -> WitnessCheck {
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| {
                let mut mark = WitnessMark::Missing;
                for sig in note.signatures.iter().filter(|s| w.matches(s)) {
                    match w.verify(&note.text, sig) {
                        Ok(t) => {
                            if !matches!(mark, WitnessMark::Invalid(_)) {
                                mark = WitnessMark::Cosigned(t);
                            }
                        }
                        Err(e) => mark = WitnessMark::Invalid(e),
                    }
                }
                (w.name.clone(), mark)
            })
            .collect();
        WitnessCheck {
            witnesses,
            quorum: self.quorum,
        }
    }
}

/// Adds `extra` signature lines to `note`, skipping any line already there (same name, key ID and
/// bytes) and any second line of a key that already has one (the first cosignature of a witness
/// on a checkpoint is kept). Returns how many lines were added.
pub fn add_signatures(note: &mut SignedNote, extra: &[NoteSignature]) -> usize {
    let mut added = 0;
    for s in extra {
        let present = note
            .signatures
            .iter()
            .any(|o| o.name == s.name && o.key_hash == s.key_hash);
        if !present && note.signatures.len() < crate::note::MAX_SIGNATURES {
            note.signatures.push(s.clone());
            added += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    const TEXT: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn note() -> SignedNote {
        NoteSigner::new("example.com/behind-the-sofa", [3; 32])
            .unwrap()
            .sign_note(TEXT)
            .unwrap()
    }

    #[test]
    fn message_is_the_specs_example() {
        // C2SP tlog-cosignature, "Ed25519 signed message".
        let m = message(1_679_315_147, TEXT);
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn cosign_verify_round_trip_and_line_layout() {
        let w = Cosigner::new("witness.example.com/w1", [7; 32]).unwrap();
        let sig = w.cosign(TEXT, 1_679_315_147).unwrap();
        assert_eq!(sig.signature.len(), 72);
        assert_eq!(&sig.signature[..8], &1_679_315_147u64.to_be_bytes());
        assert_eq!(w.key().verify(TEXT, &sig), Ok(1_679_315_147));
        // Another text, another timestamp: refused.
        assert!(w.key().verify("x\n", &sig).is_err());
        let mut forged = sig.clone();
        forged.signature[7] ^= 1;
        assert!(matches!(
            w.key().verify(TEXT, &forged),
            Err(CosignatureError::Bad { .. })
        ));
        let mut short = sig;
        short.signature.truncate(70);
        assert!(matches!(
            w.key().verify(TEXT, &short),
            Err(CosignatureError::Length { .. })
        ));
    }

    #[test]
    fn vkey_round_trip_and_refusals() {
        let w = Cosigner::new("witness.example.com/w1", [7; 32]).unwrap();
        let v = w.key().to_vkey();
        assert!(v.starts_with("witness.example.com/w1+"));
        assert_eq!(CosignerKey::from_vkey(&v).unwrap(), *w.key());
        // The log's key type is named.
        let log = NoteSigner::new("log", [1; 32])
            .unwrap()
            .verifier()
            .to_vkey();
        let e = CosignerKey::from_vkey(&log).unwrap_err().to_string();
        assert!(e.contains("checkpoint key"), "{e}");
        // A wrong key ID.
        let mut bad = v.clone();
        let at = bad.find('+').unwrap() + 1;
        let c = if &bad[at..=at] == "0" { "1" } else { "0" };
        bad.replace_range(at..=at, c);
        assert!(
            CosignerKey::from_vkey(&bad)
                .unwrap_err()
                .to_string()
                .contains("key ID")
        );
        assert!(CosignerKey::from_vkey("nope").is_err());
    }

    #[test]
    fn key_id_uses_type_0x04() {
        let w = Cosigner::new("w", [7; 32]).unwrap();
        let pk = *w.key().key.as_bytes();
        assert_eq!(w.key().key_id(), key_id("w", &pk));
        assert_ne!(key_id("w", &pk), crate::note::ed25519_key_hash("w", &pk));
    }

    #[test]
    fn policy_counts_quorum_and_names_the_missing() {
        let ws: Vec<Cosigner> = (0..3u8)
            .map(|i| Cosigner::new(format!("w{i}"), [i + 10; 32]).unwrap())
            .collect();
        let keys: Vec<CosignerKey> = ws.iter().map(|w| w.key().clone()).collect();
        let mut n = note();
        let sigs: Vec<NoteSignature> = ws[..2].iter().map(|w| w.cosign(TEXT, 5).unwrap()).collect();
        assert_eq!(add_signatures(&mut n, &sigs), 2);
        assert_eq!(add_signatures(&mut n, &sigs), 0, "no line twice");
        let two = WitnessPolicy::new(keys.clone(), 2).unwrap().check(&n);
        assert!(two.met());
        assert_eq!(two.missing(), ["w2"]);
        let three = WitnessPolicy::new(keys.clone(), 3).unwrap().check(&n);
        assert!(!three.met());
        assert_eq!(three.cosigned(), 2);
        // A forged line of a listed witness fails the policy even with a quorum.
        let mut forged = ws[2].cosign(TEXT, 5).unwrap();
        forged.signature[20] ^= 1;
        add_signatures(&mut n, &[forged]);
        let c = WitnessPolicy::new(keys.clone(), 1).unwrap().check(&n);
        assert!(c.has_invalid() && !c.met());
        // The note still verifies with the log's key: cosignatures are other keys' lines.
        let log = NoteSigner::new("example.com/behind-the-sofa", [3; 32]).unwrap();
        n.verify(&log.verifier()).unwrap();
        let reparsed = SignedNote::parse(&n.to_string()).unwrap();
        assert_eq!(reparsed, n);
        assert!(matches!(
            WitnessPolicy::new(keys.clone(), 4),
            Err(PolicyError::Quorum { quorum: 4, keys: 3 })
        ));
        assert!(WitnessPolicy::new(vec![], 1).is_err());
        let same_name = Cosigner::new("w0", [99; 32]).unwrap().key().clone();
        assert!(matches!(
            WitnessPolicy::new(vec![keys[0].clone(), same_name], 1),
            Err(PolicyError::DuplicateName { .. })
        ));
        // Duplicates of one key count once.
        assert_eq!(
            WitnessPolicy::new(vec![keys[0].clone(), keys[0].clone()], 1)
                .unwrap()
                .witnesses()
                .len(),
            1
        );
    }
}
