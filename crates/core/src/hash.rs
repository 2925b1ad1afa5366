//! SHA-256 digests and their text encodings.
//!
//! Everything Blackbox hashes is SHA-256 (FIPS 180-4). On the wire a digest is written either as
//! `sha256:<64 lowercase hex>` (entry hashes, content hashes) or as standard padded base64
//! (Merkle roots in checkpoints and proofs, following C2SP tlog-checkpoint).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

/// The `sha256:` prefix used on every hex-encoded digest in the entry format.
pub const SHA256_PREFIX: &str = "sha256:";

/// A 32-byte SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// Why a digest string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// The string does not start with `sha256:`.
    #[error("expected a digest of the form sha256:<64 lowercase hex digits>, got {found:?}")]
    MissingPrefix {
        /// The first characters of what was found (never more than 80).
        found: String,
    },
    /// The hex part is not 64 lowercase hex digits.
    #[error("the digest after sha256: must be 64 lowercase hex digits")]
    BadHex,
    /// The base64 text does not decode to exactly 32 bytes.
    #[error("expected standard base64 of 32 bytes")]
    BadBase64,
}

impl Hash {
    /// SHA-256 of `data`.
    #[must_use]
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut out = Vec::with_capacity(64);
        push_hex(&mut out, &self.0);
        String::from_utf8(out).unwrap_or_default()
    }

    /// `sha256:` followed by 64 lowercase hex digits.
    #[must_use]
    pub fn to_prefixed(&self) -> String {
        let mut out = Vec::with_capacity(71);
        self.push_prefixed(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends `sha256:` and 64 lowercase hex digits to `out`.
    pub fn push_prefixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(SHA256_PREFIX.as_bytes());
        push_hex(out, &self.0);
    }

    /// Standard (padded) base64, as used in checkpoints and proofs.
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses `sha256:<64 lowercase hex>`.
    ///
    /// # Errors
    /// [`HashParseError`] when the prefix is missing or the hex is not exactly 64 lowercase digits.
    pub fn from_prefixed(s: &str) -> Result<Self, HashParseError> {
        let Some(hex_part) = s.strip_prefix(SHA256_PREFIX) else {
            return Err(HashParseError::MissingPrefix {
                found: s.chars().take(80).collect(),
            });
        };
        Self::from_hex(hex_part)
    }

    /// Parses 64 lowercase hex digits (no prefix).
    ///
    /// # Errors
    /// [`HashParseError::BadHex`] unless the input is exactly 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self, HashParseError> {
        decode_hex32(s.as_bytes())
            .map(Self)
            .ok_or(HashParseError::BadHex)
    }

    /// Parses standard padded base64 of exactly 32 bytes.
    ///
    /// # Errors
    /// [`HashParseError::BadBase64`] otherwise.
    pub fn from_base64(s: &str) -> Result<Self, HashParseError> {
        let v = B64.decode(s).map_err(|_| HashParseError::BadBase64)?;
        let arr: [u8; 32] = v.try_into().map_err(|_| HashParseError::BadBase64)?;
        Ok(Self(arr))
    }
}

/// Appends the lowercase hex digits of `bytes` to `out` (hex digits are ASCII, so `out` stays
/// UTF-8 if it was).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    // Two digits per byte from a table: every entry writes several digests in hex, and the
    // `hex` crate's digit-at-a-time loop showed in the append profile (2% of the writer).
    static PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
            i += 1;
        }
        t
    };
    out.reserve(2 * bytes.len());
    for &b in bytes {
        out.extend_from_slice(&PAIRS[usize::from(b)]);
    }
}

/// Decodes exactly 64 lowercase hex digits into 32 bytes (`None` for anything else).
///
/// Eight digits at a time in a 64-bit word (SWAR): verification decodes two digests per entry,
/// and a table or branchy decoder showed up in its profiles.
#[must_use]
pub fn decode_hex32(s: &[u8]) -> Option<[u8; 32]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const LANES: u64 = 0x00ff_00ff_00ff_00ff;
    let s: &[u8; 64] = s.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u64;
    for (o, w) in out.chunks_exact_mut(4).zip(s.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        // Per byte, for ASCII bytes (a byte >= 0x80 is flagged, and then nothing else matters):
        // adding 0x80 - lo sets the high bit iff c >= lo, adding 0x7f - hi iff c > hi, with no
        // carry between bytes.
        let at_least = |lo: u8| x.wrapping_add(ONES * u64::from(0x80 - lo)) & HIGH;
        let above = |hi: u8| x.wrapping_add(ONES * u64::from(0x7f - hi)) & HIGH;
        let digit = at_least(b'0') & !above(b'9');
        let letter = at_least(b'a') & !above(b'f');
        bad |= (x & HIGH) | (!(digit | letter) & HIGH);
        // Value of each digit: its low nibble, plus 9 for a letter.
        let v = (x & (ONES * 0x0f)) + (letter >> 7) * 9;
        // Byte 2k is the high nibble of output byte k, byte 2k+1 its low nibble.
        let pairs = ((v & LANES) << 4) | ((v >> 8) & LANES);
        for (k, b) in o.iter_mut().enumerate() {
            *b = (pairs >> (16 * k)) as u8;
        }
    }
    (bad == 0).then_some(out)
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHA256_PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_round_trip_and_fips_vector() {
        // FIPS 180-4 example: SHA-256("abc").
        let h = Hash::digest(b"abc");
        assert_eq!(
            h.to_prefixed(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::from_prefixed(&h.to_prefixed()), Ok(h));
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
    }

    #[test]
    fn hex_decoding_matches_the_hex_crate_for_every_byte_in_every_position() {
        let good = hex::encode((0u8..32).map(|i| i.wrapping_mul(37)).collect::<Vec<_>>());
        assert_eq!(
            decode_hex32(good.as_bytes()).map(|d| d.to_vec()),
            hex::decode(&good).ok()
        );
        for pos in 0..64 {
            for c in 0..=255u8 {
                let mut s = good.clone().into_bytes();
                s[pos] = c;
                let want = (c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                    .then(|| hex::decode(&s).ok())
                    .flatten();
                assert_eq!(
                    decode_hex32(&s).map(|d| d.to_vec()),
                    want,
                    "{c:#x} at {pos}"
                );
            }
        }
        assert_eq!(decode_hex32(&good.as_bytes()[..62]), None);
    }

    #[test]
    fn hex_encoding_matches_the_hex_crate_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut out = b"x".to_vec();
        push_hex(&mut out, &all);
        assert_eq!(&out[..1], b"x");
        assert_eq!(&out[1..], hex::encode(&all).as_bytes());
    }

    #[test]
    fn rejects_uppercase_short_and_unprefixed() {
        let up = "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(Hash::from_prefixed(up), Err(HashParseError::BadHex));
        assert_eq!(
            Hash::from_prefixed("sha256:abcd"),
            Err(HashParseError::BadHex)
        );
        assert!(matches!(
            Hash::from_prefixed("md5:00"),
            Err(HashParseError::MissingPrefix { .. })
        ));
    }
}
