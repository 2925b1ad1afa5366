//! HMAC-SHA256 keys and the keyring (RFC 2104, RFC 4231 test vectors in the tests).
//!
//! Key material never leaves this module in printable form: `Debug` shows only the key id, and
//! no error message contains key bytes. Comparisons of MACs are constant-time
//! (`hmac::Mac::verify_slice`).

use std::collections::BTreeMap;
use std::fmt;

use hmac::{KeyInit as _, Mac as _};

use crate::error::Error;
use crate::ids::KeyId;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// First line of a keyring file.
pub const KEYRING_HEADER: &str = "# blackbox hmac keyring v1";

/// A 256-bit HMAC-SHA256 key. Zeroed when dropped.
///
/// The keyed HMAC state (the key XOR ipad and opad blocks already absorbed) is prepared once, so
/// each MAC costs only the compressions of its message: per-entry MACs are over a 32-byte digest.
#[derive(Clone)]
pub struct HmacKey {
    bytes: [u8; 32],
    keyed: HmacSha256,
}

impl HmacKey {
    /// Wraps 32 secret bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
        let keyed = match HmacSha256::new_from_slice(&bytes) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        };
        Self { bytes, keyed }
    }

    /// HMAC-SHA256 of `data` under this key.
    #[must_use]
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag` against HMAC-SHA256(key, data) in constant time.
    #[must_use]
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    fn hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the memory is released (the keyed HMAC state is
        // wiped by its own Drop: `hmac` is built with its `zeroize` feature).
        for b in &mut self.bytes {
            // volatile-free wipe is fine here: the struct is being dropped and not read again.
            *b = 0;
        }
        std::hint::black_box(&self.bytes);
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<secret>)")
    }
}

/// All HMAC key generations of a ledger; the last one added is the current signing key.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, HmacKey>,
    order: Vec<KeyId>,
}

impl Keyring {
    /// An empty keyring.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key generation; it becomes current.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the id is already present.
    pub fn push(&mut self, id: KeyId, key: HmacKey) -> Result<(), Error> {
        if self.keys.contains_key(&id) {
            return Err(Error::Keyring {
                line: self.order.len() + 1,
                problem: format!("key id `{id}` appears twice"),
            });
        }
        self.keys.insert(id.clone(), key);
        self.order.push(id);
        Ok(())
    }

    /// The current (newest) key and its id.
    #[must_use]
    pub fn current(&self) -> Option<(&KeyId, &HmacKey)> {
        let id = self.order.last()?;
        self.keys.get(id).map(|k| (id, k))
    }

    /// The key with this id.
    #[must_use]
    pub fn key(&self, id: &str) -> Option<&HmacKey> {
        // KeyId borrows as its string (same Eq and Ord): no allocation per lookup.
        self.keys.get(id)
    }

    /// Key ids, oldest first.
    #[must_use]
    pub fn ids(&self) -> &[KeyId] {
        &self.order
    }

    /// The id the next rotation will use: `k<N+1>` where N is the number of keys.
    #[must_use]
    pub fn next_id(&self) -> KeyId {
        let mut n = self.order.len() + 1;
        loop {
            if let Ok(id) = KeyId::parse(&format!("k{n}"))
                && !self.keys.contains_key(&id)
            {
                return id;
            }
            n += 1;
        }
    }

    /// Parses keyring text: the header line, then one `<key_id> <64 hex>` line per key, oldest
    /// first. Blank lines and lines starting with `#` are ignored.
    ///
    /// # Errors
    /// [`Error::Keyring`] with the line number; the message never quotes the key.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut ring = Self::new();
        let mut saw_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line == KEYRING_HEADER {
                saw_header = true;
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: &str| Error::Keyring {
                line: line_no,
                problem: problem.to_owned(),
            };
            let (id, hex_key) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `<key_id> <64 hex digits>`"))?;
            let id = KeyId::parse(id).map_err(|e| bad(&e.to_string()))?;
            let mut bytes = [0u8; 32];
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut bytes).is_err() {
                return Err(bad("the key must be 64 hex digits (256 bits)"));
            }
            ring.push(id, HmacKey::from_bytes(bytes))
                .map_err(|_| bad("duplicate key id"))?;
        }
        if !saw_header {
            return Err(Error::Keyring {
                line: 1,
                problem: format!("missing header `{KEYRING_HEADER}`; is this a Blackbox keyring?"),
            });
        }
        if ring.order.is_empty() {
            return Err(Error::Keyring {
                line: 1,
                problem: "the keyring holds no key".to_owned(),
            });
        }
        Ok(ring)
    }

    /// Serialises the keyring (secret: callers write it to a 0600 file and nowhere else).
    #[must_use]
    pub fn to_secret_text(&self) -> String {
        let mut out = String::from(KEYRING_HEADER);
        out.push('\n');
        for id in &self.order {
            if let Some(k) = self.keys.get(id) {
                out.push_str(id.as_str());
                out.push(' ');
                out.push_str(&k.hex());
                out.push('\n');
            }
        }
        out
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.order)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 §4.2-4.7 test cases for HMAC-SHA-256 (key, data, expected MAC), stored as hex.
    #[test]
    fn rfc4231_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/rfc4231.json")).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 6);
        for c in cases {
            let key = hex::decode(c["key"].as_str().unwrap()).unwrap();
            let data = hex::decode(c["data"].as_str().unwrap()).unwrap();
            let expected = hex::decode(c["hmac_sha256"].as_str().unwrap()).unwrap();
            let mut mac = HmacSha256::new_from_slice(&key).unwrap();
            mac.update(&data);
            let out = mac.finalize().into_bytes();
            let n = expected.len(); // case 5 is truncated to 128 bits
            assert_eq!(&out[..n], &expected[..], "RFC 4231 case {}", c["case"]);
            if key.len() == 32 {
                let k = HmacKey::from_bytes(key.clone().try_into().unwrap());
                assert!(k.verify(&data, &out));
            }
        }
    }

    #[test]
    fn keyring_round_trip_and_errors_hide_keys() {
        let mut ring = Keyring::new();
        ring.push(KeyId::parse("k1").unwrap(), HmacKey::from_bytes([7; 32]))
            .unwrap();
        ring.push(KeyId::parse("k2").unwrap(), HmacKey::from_bytes([9; 32]))
            .unwrap();
        let text = ring.to_secret_text();
        let back = Keyring::parse(&text).unwrap();
        assert_eq!(back.current().unwrap().0.as_str(), "k2");
        assert!(
            back.key("k1")
                .unwrap()
                .verify(b"x", &ring.key("k1").unwrap().sign(b"x"))
        );
        assert_eq!(back.next_id().as_str(), "k3");
        let secret_hex = hex::encode([9u8; 32]);
        assert!(!format!("{back:?}").contains(&secret_hex));
        assert!(!format!("{:?}", back.key("k2").unwrap()).contains(&secret_hex));
        // A malformed key line: the error names the line, not the key.
        let bad = format!("{KEYRING_HEADER}\nk1 {}\n", &secret_hex[..60]);
        let e = Keyring::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains(&secret_hex[..60]), "{e}");
        assert!(Keyring::parse("k1 00").is_err());
    }

    #[test]
    fn wrong_key_fails_verification() {
        let a = HmacKey::from_bytes([1; 32]);
        let b = HmacKey::from_bytes([2; 32]);
        assert!(!b.verify(b"entry", &a.sign(b"entry")));
    }
}
