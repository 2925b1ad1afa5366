//! C2SP transparency-log checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! A checkpoint is a signed note (see [`crate::note`]) whose text is:
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 of the 32-byte RFC 6962 Merkle root>
//! [extension lines, each non-empty]
//! ```
//!
//! every line ending in a newline. Blackbox adds one extension line,
//! `timestamp <RFC 3339 UTC with milliseconds>`; this module keeps extension lines as opaque
//! strings and offers [`Checkpoint::extension`] to look one up by its first word.

use std::fmt;
use std::str::FromStr;

use crate::hash::Hash;
use crate::note::{NoteError, NoteSigner, NoteVerifier, SignedNote};

/// Why a checkpoint was rejected.
///
/// No variant ever carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed note around the checkpoint is malformed, or its signature is missing or bad.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The checkpoint text does not have the required line structure.
    #[error("malformed checkpoint: {reason}")]
    Malformed {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The origin line is empty.
    #[error("malformed checkpoint: the origin line is empty")]
    EmptyOrigin,
    /// The tree size is not a decimal number without leading zeros that fits in 64 bits.
    #[error(
        "malformed checkpoint: the tree size must be decimal digits without leading zeros, at most 2^64-1"
    )]
    BadSize,
    /// The root hash is not standard base64 of exactly 32 bytes.
    #[error("malformed checkpoint: the root hash must be standard base64 of 32 bytes")]
    BadRoot,
    /// An extension line is empty.
    #[error("malformed checkpoint: extension lines must be non-empty")]
    EmptyExtension,
    /// The parsed [`Checkpoint`] of a [`SignedCheckpoint`] differs from its signed note text.
    #[error("the checkpoint fields do not match the signed note text")]
    Mismatch,
}

/// The body of a checkpoint: origin, tree size, root hash and extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (its identity, e.g. `example.com/log42`). Non-empty, one line.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle tree root at `size`.
    pub root: Hash,
    /// Extension lines, in order, without their newlines. Each non-empty, one line.
    pub extensions: Vec<String>,
}

/// Checks that `line` is a single line without ASCII control characters.
fn check_line(line: &str) -> Result<(), CheckpointError> {
    if line.chars().any(|c| c < ' ') {
        return Err(CheckpointError::Malformed {
            reason: "a line contains a newline or another ASCII control character",
        });
    }
    Ok(())
}

/// Parses a tree size: ASCII digits, no leading zeros (except `0` itself), fits in `u64`.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let digits_ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok || (s.len() > 1 && s.starts_with('0')) {
        return Err(CheckpointError::BadSize);
    }
    s.parse::<u64>().map_err(|_| CheckpointError::BadSize)
}

impl Checkpoint {
    /// Checks that the fields can be written as a checkpoint text that parses back to them:
    /// the origin is non-empty, every extension line is non-empty, and no field contains a
    /// newline or another ASCII control character.
    ///
    /// # Errors
    /// [`CheckpointError::EmptyOrigin`], [`CheckpointError::EmptyExtension`] or
    /// [`CheckpointError::Malformed`].
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&self.origin)?;
        for ext in &self.extensions {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension);
            }
            check_line(ext)?;
        }
        Ok(())
    }

    /// The note text: `origin\nsize\nbase64(root)\n` followed by each extension line and a
    /// newline.
    ///
    /// This only formats; call [`Checkpoint::validate`] first if the fields are untrusted
    /// ([`SignedCheckpoint::sign`] does).
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint text (the note text, without signatures).
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] if the text does not end with a newline, has fewer than
    /// three lines or contains an ASCII control character other than newline;
    /// [`CheckpointError::EmptyOrigin`], [`CheckpointError::BadSize`],
    /// [`CheckpointError::BadRoot`] or [`CheckpointError::EmptyExtension`] for the field at
    /// fault.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(CheckpointError::Malformed {
                reason: "the text must end with a newline",
            });
        };
        if body.chars().any(|c| c < ' ' && c != '\n') {
            return Err(CheckpointError::Malformed {
                reason: "a line contains an ASCII control character",
            });
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed {
                reason: "a checkpoint has at least three lines: origin, size, root",
            });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let root_hash = Hash::from_base64(root).map_err(|_| CheckpointError::BadRoot)?;
        if root_hash.to_base64() != root {
            return Err(CheckpointError::BadRoot);
        }
        let mut extensions = Vec::new();
        for ext in lines {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension);
            }
            extensions.push(ext.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root: root_hash,
            extensions,
        })
    }

    /// The rest of the first extension line that starts with `key` followed by a space, e.g.
    /// `extension("timestamp")` on the line `timestamp 2025-01-02T03:04:05.678Z` gives
    /// `2025-01-02T03:04:05.678Z`.
    #[must_use]
    pub fn extension(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// A checkpoint together with the signed note that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note whose text is `checkpoint.to_text()`.
    pub note: SignedNote,
}

impl SignedCheckpoint {
    /// Validates `checkpoint` and signs its text with `signer`.
    ///
    /// The specification recommends that the signer's key name equal the origin; that is left to
    /// the caller.
    ///
    /// # Errors
    /// The errors of [`Checkpoint::validate`], or [`CheckpointError::Note`] if signing fails.
    pub fn sign(checkpoint: Checkpoint, signer: &NoteSigner) -> Result<Self, CheckpointError> {
        checkpoint.validate()?;
        let text = checkpoint.to_text();
        // Belt and braces: what we sign must parse back to exactly these fields.
        if Checkpoint::parse_text(&text)? != checkpoint {
            return Err(CheckpointError::Mismatch);
        }
        let note = signer.sign_note(&text)?;
        Ok(Self { checkpoint, note })
    }

    /// Parses a signed checkpoint (a signed note whose text is a checkpoint). Signatures are not
    /// verified; call [`SignedCheckpoint::verify`].
    ///
    /// # Errors
    /// [`CheckpointError::Note`] if the note is malformed, or the errors of
    /// [`Checkpoint::parse_text`] for its text.
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let note = SignedNote::parse(s)?;
        let checkpoint = Checkpoint::parse_text(&note.text)?;
        Ok(Self { checkpoint, note })
    }

    /// Checks that the note is validly signed by `verifier` and that [`Self::checkpoint`] is
    /// what the note text says.
    ///
    /// # Errors
    /// [`CheckpointError::Note`] wrapping [`NoteError::NoSignatureForKey`] or
    /// [`NoteError::BadSignature`]; the errors of [`Checkpoint::parse_text`]; or
    /// [`CheckpointError::Mismatch`] if the fields were changed after parsing or signing.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), CheckpointError> {
        self.note.verify(verifier)?;
        if Checkpoint::parse_text(&self.note.text)? != self.checkpoint {
            return Err(CheckpointError::Mismatch);
        }
        Ok(())
    }

    /// The full signed note text (checkpoint text, blank line, signature lines).
    #[must_use]
    pub fn note_text(&self) -> String {
        self.note.to_string()
    }
}

impl fmt::Display for SignedCheckpoint {
    /// Writes [`SignedCheckpoint::note_text`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.note, f)
    }
}

impl FromStr for SignedCheckpoint {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The tenant a checkpoint origin names: the part after the last `/`.
#[must_use]
pub fn origin_tenant(origin: &str) -> &str {
    origin.rsplit('/').next().unwrap_or(origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const C2SP_EXAMPLES: &str = include_str!("../tests/data/note/c2sp_examples.json");

    fn signer() -> NoteSigner {
        NoteSigner::new("blackbox.example/log", [9; 32]).unwrap()
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "blackbox.example/log".into(),
            size: 12_345,
            root: Hash::digest(b"root"),
            extensions: vec!["timestamp 2025-01-02T03:04:05.678Z".into()],
        }
    }

    #[test]
    fn c2sp_example_parses_and_round_trips() {
        let c: Value = serde_json::from_str(C2SP_EXAMPLES).unwrap();
        let ex = &c["checkpoint_example"];
        let msg = ex["note"].as_str().unwrap();
        let sc = SignedCheckpoint::parse(msg).unwrap();
        assert_eq!(sc.checkpoint.origin, ex["origin"].as_str().unwrap());
        assert_eq!(sc.checkpoint.size, ex["size"].as_u64().unwrap());
        assert_eq!(
            sc.checkpoint.root.to_base64(),
            ex["root_base64"].as_str().unwrap()
        );
        assert!(sc.checkpoint.extensions.is_empty());
        assert_eq!(sc.note.signatures[0].name, "example.com/behind-the-sofa");
        assert_eq!(sc.note_text(), msg);
        assert_eq!(sc.checkpoint.to_text(), sc.note.text);
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let signer = signer();
        let sc = SignedCheckpoint::sign(sample(), &signer).unwrap();
        let text = sc.note_text();
        assert!(text.starts_with("blackbox.example/log\n12345\n"));
        assert!(
            text.contains("\ntimestamp 2025-01-02T03:04:05.678Z\n\n\u{2014} blackbox.example/log ")
        );
        let parsed = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(parsed, sc);
        parsed.verify(&signer.verifier()).unwrap();
        assert_eq!(parsed.to_string(), text);
        assert_eq!(
            parsed.checkpoint.extension("timestamp"),
            Some("2025-01-02T03:04:05.678Z")
        );
        assert_eq!(parsed.checkpoint.extension("time"), None);
        assert_eq!(parsed.checkpoint.extension("nope"), None);

        let other = NoteSigner::new("blackbox.example/log", [10; 32]).unwrap();
        assert_eq!(
            parsed.verify(&other.verifier()),
            Err(CheckpointError::Note(NoteError::NoSignatureForKey {
                name: "blackbox.example/log".into()
            }))
        );
    }

    #[test]
    fn size_zero_and_max() {
        for size in [0, 1, u64::MAX] {
            let cp = Checkpoint {
                size,
                extensions: vec![],
                ..sample()
            };
            assert_eq!(Checkpoint::parse_text(&cp.to_text()).unwrap(), cp);
        }
    }

    #[test]
    fn text_rejections() {
        let root = Hash::digest(b"x").to_base64();
        let r31 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 31]);
        let r33 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 33]);
        let cases: Vec<(String, CheckpointError)> = vec![
            (
                format!("o\n5\n{root}"),
                CheckpointError::Malformed { reason: "" },
            ),
            ("o\n5\n".into(), CheckpointError::Malformed { reason: "" }),
            (format!("\n5\n{root}\n"), CheckpointError::EmptyOrigin),
            (format!("o\n05\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n00\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n+5\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n-1\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n 5\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n\n{root}\n"), CheckpointError::BadSize),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::BadSize,
            ),
            (format!("o\n5\n{r31}\n"), CheckpointError::BadRoot),
            (format!("o\n5\n{r33}\n"), CheckpointError::BadRoot),
            (
                format!("o\n5\n{}\n", root.trim_end_matches('=')),
                CheckpointError::BadRoot,
            ),
            (
                format!("o\n5\n{}\n", root.replace('+', "-").replace('/', "_")),
                CheckpointError::BadRoot,
            ),
            (format!("o\n5\n{root}\n\n"), CheckpointError::EmptyExtension),
            (
                format!("o\n5\n{root}\na\n\nb\n"),
                CheckpointError::EmptyExtension,
            ),
            (
                format!("o\n5\n{root}\na\tb\n"),
                CheckpointError::Malformed { reason: "" },
            ),
        ];
        for (text, want) in cases {
            let got = Checkpoint::parse_text(&text).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{text:?}: {got:?}"
            );
        }
        // Non-canonical trailing bits in the root.
        let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(Checkpoint::parse_text(&format!("o\n5\n{zero}\n")).is_ok());
        let noncanon = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=";
        assert_eq!(
            Checkpoint::parse_text(&format!("o\n5\n{noncanon}\n")),
            Err(CheckpointError::BadRoot)
        );
    }

    #[test]
    fn sign_rejects_invalid_fields() {
        let s = signer();
        let bad = [
            (
                Checkpoint {
                    origin: String::new(),
                    ..sample()
                },
                CheckpointError::EmptyOrigin,
            ),
            (
                Checkpoint {
                    origin: "a\nb".into(),
                    ..sample()
                },
                CheckpointError::Malformed { reason: "" },
            ),
            (
                Checkpoint {
                    extensions: vec![String::new()],
                    ..sample()
                },
                CheckpointError::EmptyExtension,
            ),
            (
                Checkpoint {
                    extensions: vec!["a\nb".into()],
                    ..sample()
                },
                CheckpointError::Malformed { reason: "" },
            ),
            (
                Checkpoint {
                    extensions: vec!["a\rb".into()],
                    ..sample()
                },
                CheckpointError::Malformed { reason: "" },
            ),
        ];
        for (cp, want) in bad {
            let got = SignedCheckpoint::sign(cp, &s).unwrap_err();
            assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want));
        }
    }

    #[test]
    fn mismatched_fields_detected() {
        let s = signer();
        let mut sc = SignedCheckpoint::sign(sample(), &s).unwrap();
        sc.checkpoint.size += 1;
        assert_eq!(sc.verify(&s.verifier()), Err(CheckpointError::Mismatch));
    }

    #[test]
    fn tampered_signed_checkpoint_fails() {
        let s = signer();
        let v = s.verifier();
        let text = SignedCheckpoint::sign(sample(), &s).unwrap().note_text();
        let tampered = text.replace("12345", "12346");
        assert!(matches!(
            SignedCheckpoint::parse(&tampered).unwrap().verify(&v),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
        // Dropping the final newline, or the signature entirely.
        assert!(SignedCheckpoint::parse(text.trim_end_matches('\n')).is_err());
        assert!(SignedCheckpoint::parse(&sample().to_text()).is_err());
    }

    /// Every single-byte change of a signed checkpoint makes parsing or verification fail.
    fn assert_all_byte_changes_fail(text: &str, v: &NoteVerifier) {
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for delta in 1..=255u8 {
                let mut m = bytes.to_vec();
                m[i] = m[i].wrapping_add(delta);
                let Ok(m) = String::from_utf8(m) else {
                    continue;
                };
                if let Ok(sc) = SignedCheckpoint::parse(&m) {
                    assert!(sc.verify(v).is_err(), "byte {i} +{delta}: {m:?}");
                }
            }
        }
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let s = signer();
        let text = SignedCheckpoint::sign(sample(), &s).unwrap().note_text();
        assert_all_byte_changes_fail(&text, &s.verifier());
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = SignedCheckpoint::parse(&input);
            let _ = Checkpoint::parse_text(&input);
        }

        #[test]
        fn parse_never_panics_on_checkpoint_like_input(
            lines in prop::collection::vec("[A-Za-z0-9+/=. \u{2014}]{0,48}", 0..7),
            sep in prop::sample::select(vec!["\n", "\n\n"]),
        ) {
            let text = lines.join(sep);
            let _ = SignedCheckpoint::parse(&text);
            if let Ok(cp) = Checkpoint::parse_text(&text) {
                prop_assert_eq!(cp.to_text(), text);
            }
        }

        #[test]
        fn single_byte_change_breaks_parse_or_verify(
            origin in "[a-z0-9./-]{1,24}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in prop::collection::vec("[ -~]{1,24}", 0..3),
            index in any::<prop::sample::Index>(),
            delta in 1..=255u8,
        ) {
            let s = signer();
            let cp = Checkpoint { origin, size, root: Hash(root), extensions };
            let sc = SignedCheckpoint::sign(cp.clone(), &s).unwrap();
            let text = sc.note_text();
            let parsed = SignedCheckpoint::parse(&text).unwrap();
            prop_assert_eq!(&parsed.checkpoint, &cp);
            prop_assert!(parsed.verify(&s.verifier()).is_ok());

            let mut m = text.clone().into_bytes();
            let i = index.index(m.len());
            m[i] = m[i].wrapping_add(delta);
            if let Ok(m) = String::from_utf8(m) {
                let ok = SignedCheckpoint::parse(&m).is_ok_and(|sc| sc.verify(&s.verifier()).is_ok());
                prop_assert!(!ok, "byte {} +{} accepted: {:?}", i, delta, m);
            }
        }
    }
}
