//! C2SP tlog-proof (<https://c2sp.org/tlog-proof>): an inclusion proof as a text file any
//! C2SP implementation reads, checked offline with the log's public key.
//!
//! A Blackbox log's leaf is `SHA-256(0x00 || entry_hash)`: the record a tlog-proof proves is
//! the entry's 32-byte hash. Its `extra` line carries the entry line itself (base64), so that
//! `blackbox verify-proof` also checks the entry's bytes, seq and tenant; a generic verifier
//! proves the record `SHA-256(entry line)` and ignores the extra data, as the specification
//! says it must (it is not authenticated by the log).

use base64::Engine as _;

use crate::checkpoint::SignedCheckpoint;
use crate::hash::Hash;
use crate::proof::InclusionProof;

/// The first line of a tlog-proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The `extra` data (a Blackbox proof: the entry line).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry (a Blackbox entry's `seq - 1`).
    pub index: u64,
    /// The inclusion proof, leaf's sibling first.
    pub hashes: Vec<Hash>,
    /// The checkpoint, verbatim (signed note).
    pub checkpoint: String,
}

/// Why a text is not a tlog-proof; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a C2SP tlog-proof: line {line}: {message}")]
pub struct TlogProofError {
    /// Where.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> TlogProofError {
    TlogProofError {
        line,
        message: message.into(),
    }
}

impl TlogProof {
    /// The tlog-proof of a Blackbox inclusion proof (the entry line, when it has one, as extra
    /// data).
    ///
    /// # Errors
    /// `seq` 0, or a hash of the proof that is not base64 of 32 bytes.
    pub fn from_inclusion(p: &InclusionProof) -> Result<Self, TlogProofError> {
        let index = p
            .seq
            .checked_sub(1)
            .ok_or_else(|| err(0, "seq starts at 1"))?;
        let hashes = p
            .hashes
            .iter()
            .map(|h| Hash::from_base64(h).map_err(|e| err(0, format!("proof hash {h:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            extra: p.entry.as_ref().map(|e| e.as_bytes().to_vec()),
            index,
            hashes,
            checkpoint: p.checkpoint.clone(),
        })
    }

    /// The file's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = String::from(HEADER);
        out.push('\n');
        if let Some(x) = &self.extra {
            out.push_str("extra ");
            out.push_str(&b64.encode(x));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Reads a tlog-proof, strictly as the specification writes it.
    ///
    /// # Errors
    /// The first line that breaks the format, and how.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        let mut next = |want: &str| -> Result<(usize, &str), TlogProofError> {
            let (i, l) = lines
                .next()
                .ok_or_else(|| err(0, format!("ends before {want}")))?;
            let l = l
                .strip_suffix('\n')
                .ok_or_else(|| err(i + 1, "a line must end with a newline"))?;
            Ok((i + 1, l))
        };
        let (n, first) = next("the header")?;
        if first != HEADER {
            return Err(err(n, format!("the first line must be {HEADER:?}")));
        }
        let (mut n, mut line) = next("the index")?;
        let mut extra = None;
        if let Some(x) = line.strip_prefix("extra ") {
            extra = Some(
                b64.decode(x)
                    .map_err(|e| err(n, format!("extra: not standard base64: {e}")))?,
            );
            (n, line) = next("the index")?;
        }
        let index = line
            .strip_prefix("index ")
            .ok_or_else(|| err(n, "expected \"index N\""))?;
        if index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
            || (index.len() > 1 && index.starts_with('0'))
        {
            return Err(err(
                n,
                "the index must be a decimal number without leading zeroes",
            ));
        }
        let index: u64 = index
            .parse()
            .map_err(|_| err(n, "the index is too large"))?;
        let mut hashes = Vec::new();
        loop {
            let (n, l) = next("the empty line before the checkpoint")?;
            if l.is_empty() {
                break;
            }
            hashes.push(Hash::from_base64(l).map_err(|e| err(n, format!("proof hash: {e}")))?);
        }
        let checkpoint: String = lines.map(|(_, l)| l).collect();
        if checkpoint.is_empty() {
            return Err(err(0, "no checkpoint after the proof"));
        }
        SignedCheckpoint::parse(&checkpoint).map_err(|e| err(0, format!("the checkpoint: {e}")))?;
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn checkpoint() -> String {
        let signer = crate::note::NoteSigner::new("example.com/log", [1; 32]).unwrap();
        let cp = crate::checkpoint::Checkpoint {
            origin: "example.com/log".to_owned(),
            size: 2,
            root: Hash::digest(b"root"),
            extensions: Vec::new(),
        };
        SignedCheckpoint::sign(cp, &signer).unwrap().note_text()
    }

    #[test]
    fn round_trip_and_strict_reading() {
        let cp = checkpoint();
        let p = TlogProof {
            extra: Some(b"{\"seq\":1}".to_vec()),
            index: 0,
            hashes: vec![Hash::digest(b"x")],
            checkpoint: cp.clone(),
        };
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra eyJzZXEiOjF9\nindex 0\n"));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        for (bad, line) in [
            (text.replace("tlog-proof@v1", "tlog-proof@v2"), 1),
            (text.replace("index 0", "index 00"), 3),
            (text.replace("index 0", "index -1"), 3),
            (text.replace("index 0", "idx 0"), 3),
            (text.replace("extra eyJzZXEiOjF9", "extra !!"), 2),
        ] {
            assert_eq!(TlogProof::parse(&bad).unwrap_err().line, line, "{bad}");
        }
        // Without extra data, and a proof of no hashes (a tree of one).
        let bare = TlogProof {
            extra: None,
            index: 0,
            hashes: Vec::new(),
            checkpoint: cp.clone(),
        };
        assert_eq!(TlogProof::parse(&bare.to_text()).unwrap(), bare);
        assert!(TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 0\n").is_err());
    }
}
