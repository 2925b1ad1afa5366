//! A lean reader for entry lines in the exact layout the writer produces.
//!
//! Verification reads every entry of a log, so the cost of reading one line matters as much as
//! the cost of hashing it. A writer emits the envelope members in RFC 8785 order with no
//! whitespace (docs/FORMAT.md §2), so a verifier can read them positionally instead of through a
//! general JSON deserialiser: [`scan`] walks that one layout, checks every value exactly as
//! [`crate::entry::EntryView::parse`] does, validates the payload's JSON syntax without building
//! anything, and returns borrowed fields.
//!
//! [`scan_envelope`] goes further for verifiers that hold the HMAC key: it reads only the
//! envelope (front and back of the line) and skips the payload, and its result is trusted only
//! once the line's HMAC verifies (docs/FORMAT.md §9, "Reading authentic lines quickly").
//!
//! It is a fast path, not a second definition of the format: it returns `None` for anything off
//! the common layout (escapes in envelope strings, whitespace, upper-case hex, other member
//! orders, very deep payloads), and the caller then falls back to the full parser, which accepts
//! or rejects the line with a precise message. What `scan` accepts, the full parser accepts with
//! the same values (a property test and a fuzz target check this).

use crate::Hash;
use crate::format::{
    FORMAT_V1, FORMAT_VERSION, parse_timestamp, parse_writer_timestamp, skip_plain, written_ms,
};
use crate::hash::decode_hex32;

/// The envelope of an entry line, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedEntry<'a> {
    /// Chain sequence number.
    pub seq: u64,
    /// UUIDv7, as its 128-bit value.
    pub entry_id: u128,
    /// Chain.
    pub tenant_id: &'a str,
    /// Agent.
    pub agent_id: &'a str,
    /// Session.
    pub session_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// HMAC key generation.
    pub key_id: &'a str,
    /// Agent's per-session counter.
    pub client_seq: Option<u64>,
    /// Entry time, Unix ms.
    pub timestamp_ms: i64,
    /// Link to the previous entry.
    pub prev_entry_hash: Hash,
    /// Digest of the personal sidecar.
    pub personal_digest: Option<Hash>,
    /// The MAC.
    pub hmac: [u8; 32],
    /// Format version (1 or 2).
    pub version: u32,
    /// The `origin` object's JSON text (version 2), checked as docs/FORMAT.md §2 says; read it
    /// with [`crate::origin::Origin::from_json`].
    pub origin: Option<&'a str>,
    /// `clock_skew_ms` (version 2, when the writer marked the claimed time).
    pub clock_skew_ms: Option<i64>,
}

impl<'a> ScannedEntry<'a> {
    /// The writer's clock when it sequenced the entry, Unix ms (`written_at`, which is the
    /// entry id's millisecond).
    #[must_use]
    pub fn written_ms(&self) -> i64 {
        written_ms(self.entry_id)
    }

    /// The members a verifier needs.
    #[must_use]
    pub fn envelope(&self) -> EnvelopeFields<'a> {
        EnvelopeFields {
            seq: self.seq,
            entry_id: self.entry_id,
            tenant_id: self.tenant_id,
            event_type: self.event_type,
            key_id: self.key_id,
            prev_entry_hash: self.prev_entry_hash,
            personal_digest: self.personal_digest,
            hmac: self.hmac,
            origin: self.origin.and_then(|o| OriginKind::of_jcs(o.as_bytes())),
        }
    }
}

/// Deepest payload nesting the fast path follows (deeper lines go to the full parser).
const MAX_DEPTH: usize = 64;

struct Cursor<'a> {
    /// The line as text (slicing it at quote positions costs nothing: a quote is never inside a
    /// code point).
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

/// The value of `d`, all ASCII digits, as serde_json reads a u64: at least one digit, no leading
/// zero, no overflow.
fn uint_digits(d: &[u8]) -> Option<u64> {
    if d.is_empty() || (d.len() > 1 && d[0] == b'0') {
        return None;
    }
    d.iter().try_fold(0u64, |v, &c| {
        v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

impl<'a> Cursor<'a> {
    /// A cursor at `i` of `b` for the members read without text ([`scan_envelope`]): not for
    /// [`Self::plain_str`], which slices the line's text.
    fn at(b: &'a [u8], i: usize) -> Self {
        Self { text: "", b, i }
    }

    fn lit<const N: usize>(&mut self, s: &[u8; N]) -> Option<()> {
        // A fixed-size comparison compiles to a few loads, not a call to `memcmp`.
        let end = self.i.checked_add(N)?;
        let w: &[u8; N] = self.b.get(self.i..end)?.try_into().ok()?;
        (w == s).then(|| self.i = end)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string without escapes or control characters, after its opening quote; returns the
    /// text and leaves the cursor after the closing quote.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        let end = start + self.skip(&self.b[start..]);
        if self.b.get(end) != Some(&b'"') {
            return None; // an escape or a control character: the full parser decides
        }
        self.i = end + 1;
        self.text.get(start..end)
    }

    /// A non-empty string of `A-Z a-z 0-9 _ - . :` (tenant ids, key ids, event types), quotes
    /// included.
    fn ident(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = self.b.get(self.i..)?;
        let n = rest.iter().position(|&c| {
            !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
        })?;
        if n == 0 || rest[n] != b'"' {
            return None;
        }
        let s = std::str::from_utf8(&rest[..n]).ok()?;
        self.i += n + 1;
        Some(s)
    }

    /// An unsigned integer as serde_json reads a u64: no sign, no leading zero, no fraction.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        // A fraction or exponent makes it a float, which a u64 field refuses.
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        uint_digits(&self.b[start..self.i])
    }

    /// A signed integer as serde_json reads an i64 within ±(2^53-1) (`-0` goes to the parser).
    fn int(&mut self) -> Option<i64> {
        let neg = self.lit(b"-").is_some();
        let u = self.uint()?;
        if u > crate::ids::MAX_SAFE_INTEGER || (neg && u == 0) {
            return None;
        }
        let v = i64::try_from(u).ok()?;
        Some(if neg { -v } else { v })
    }

    /// An origin value (`token_id`, `scope`, `via`, `command`): `"` + 1–128 of
    /// `A-Z a-z 0-9 _ - . , :` + `"`.
    fn origin_ident(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        let rest = self.b.get(self.i..)?;
        let n = rest.iter().position(|&c| {
            !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b',' | b':'))
        })?;
        if n == 0 || n > 128 || rest[n] != b'"' {
            return None;
        }
        self.i += n + 1;
        Some(())
    }

    /// The origin object in one of its three JCS forms (docs/FORMAT.md §2); its text.
    fn origin(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.lit(b"{\"kind\":\"service\"}").is_none() {
            if self.lit(b"{\"kind\":\"token\",\"scope\":").is_some() {
                self.origin_ident()?;
                self.lit(b",\"token_id\":")?;
                self.origin_ident()?;
                self.lit(b",\"via\":")?;
                self.origin_ident()?;
            } else {
                self.lit(b"{\"command\":")?;
                self.origin_ident()?;
                self.lit(b",\"kind\":\"local\",\"user\":")?;
                let user = self.plain_str()?;
                if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
                    return None;
                }
            }
            self.lit(b"}")?;
        }
        self.text.get(start..self.i)
    }

    /// `"sha256:<64 lowercase hex>"`.
    fn digest(&mut self) -> Option<Hash> {
        self.lit(b"\"sha256:")?;
        let h = decode_hex32(self.b.get(self.i..self.i + 64)?)?;
        self.i += 64;
        self.lit(b"\"")?;
        Some(Hash(h))
    }

    /// A lowercase, hyphenated UUID whose version is 7.
    fn uuid_v7(&mut self) -> Option<u128> {
        self.lit(b"\"")?;
        let s = self.b.get(self.i..self.i + 36)?;
        let mut v: u128 = 0;
        for (k, &c) in s.iter().enumerate() {
            if matches!(k, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = (v << 4) | u128::from(d);
        }
        self.i += 36;
        self.lit(b"\"")?;
        // Version nibble: bits 76..80 of the 128-bit value.
        ((v >> 76) & 0xf == 7).then_some(v)
    }

    /// How many leading bytes of `s` are plain string content.
    fn skip(&self, s: &[u8]) -> usize {
        // Inline, eight bytes at a time: most strings are short, and a call to `memchr2` per
        // string cost more than the search.
        skip_plain(s)
    }

    /// Any JSON value without whitespace; the cursor ends after it.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.any_str()?;
                    self.lit(b":")?;
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.any_str(),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A JSON string with valid escapes and no raw control characters.
    fn any_str(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        loop {
            self.i += self.skip(self.b.get(self.i..)?);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    /// A JSON number (RFC 8259 §6 grammar).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// Reads `line` if it has the writer's exact layout; `None` sends the caller to the full parser.
#[must_use]
pub fn scan(line: &[u8]) -> Option<ScannedEntry<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut c = Cursor {
        text,
        b: line,
        i: 0,
    };
    c.lit(b"{\"agent_id\":")?;
    let agent_id = c.plain_str()?;
    let client_seq = if c.lit(b",\"client_seq\":").is_some() {
        Some(c.uint()?)
    } else {
        None
    };
    let clock_skew_ms = if c.lit(b",\"clock_skew_ms\":").is_some() {
        Some(c.int()?)
    } else {
        None
    };
    c.lit(b",\"entry_id\":")?;
    let entry_id = c.uuid_v7()?;
    c.lit(b",\"event_type\":")?;
    let event_type = c.plain_str()?;
    c.lit(b",\"key_id\":")?;
    let key_id = c.plain_str()?;
    let origin = if c.lit(b",\"origin\":").is_some() {
        Some(c.origin()?)
    } else {
        None
    };
    c.lit(b",\"payload\":")?;
    c.value(0)?;
    let personal_digest = if c.lit(b",\"personal_digest\":").is_some() {
        Some(c.digest()?)
    } else {
        None
    };
    c.lit(b",\"prev_entry_hash\":")?;
    let prev_entry_hash = c.digest()?;
    c.lit(b",\"seq\":")?;
    let seq = c.uint()?;
    c.lit(b",\"session_id\":")?;
    let session_id = c.plain_str()?;
    c.lit(b",\"tenant_id\":")?;
    let tenant_id = c.plain_str()?;
    c.lit(b",\"timestamp\":")?;
    let timestamp = c.plain_str()?;
    let timestamp_ms = parse_timestamp(timestamp).ok()?;
    c.lit(b",\"v\":")?;
    let version = u32::try_from(c.uint()?).ok()?;
    if version == FORMAT_VERSION && origin.is_some() {
        c.lit(b",\"written_at\":\"")?;
        let w = parse_writer_timestamp(c.b.get(c.i..c.i + 24)?)?;
        if w != written_ms(entry_id) {
            return None;
        }
        c.i += 24;
        c.lit(b"\"")?;
    } else if version != FORMAT_V1 || origin.is_some() || clock_skew_ms.is_some() {
        return None;
    }
    c.lit(b",\"hmac_sha256\":\"")?;
    let hmac = decode_hex32(line.get(c.i..c.i + 64)?)?;
    c.i += 64;
    c.lit(b"\"}")?;
    if c.i != line.len() {
        return None;
    }
    Some(ScannedEntry {
        seq,
        entry_id,
        tenant_id,
        agent_id,
        session_id,
        event_type,
        key_id,
        client_seq,
        timestamp_ms,
        prev_entry_hash,
        personal_digest,
        hmac,
        version,
        origin,
        clock_skew_ms,
    })
}

/// Which of the three origin forms an entry has (docs/FORMAT.md §2): what a verifier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OriginKind {
    /// `{"kind":"service"}`.
    Service,
    /// `{"kind":"token",…}`.
    Token,
    /// `{"command":…,"kind":"local",…}`.
    Local,
}

impl OriginKind {
    /// `service`, `token` or `local`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Token => "token",
            Self::Local => "local",
        }
    }

    /// The kind of an origin object's JCS text (from its first member).
    #[must_use]
    pub fn of_jcs(text: &[u8]) -> Option<Self> {
        if text.starts_with(b"{\"kind\":\"service\"") {
            Some(Self::Service)
        } else if text.starts_with(b"{\"kind\":\"token\"") {
            Some(Self::Token)
        } else if text.starts_with(b"{\"command\":") {
            Some(Self::Local)
        } else {
            None
        }
    }
}

impl From<&crate::origin::Origin> for OriginKind {
    fn from(o: &crate::origin::Origin) -> Self {
        match o {
            crate::origin::Origin::Service => Self::Service,
            crate::origin::Origin::Token { .. } => Self::Token,
            crate::origin::Origin::Local { .. } => Self::Local,
        }
    }
}

/// The members of an entry line a verifier needs, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeFields<'a> {
    /// Chain sequence number.
    pub seq: u64,
    /// UUIDv7, as its 128-bit value.
    pub entry_id: u128,
    /// Chain.
    pub tenant_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// HMAC key generation.
    pub key_id: &'a str,
    /// Link to the previous entry.
    pub prev_entry_hash: Hash,
    /// Digest of the personal sidecar.
    pub personal_digest: Option<Hash>,
    /// The MAC.
    pub hmac: [u8; 32],
    /// Who supplied the entry (version 2; `None` in version 1).
    pub origin: Option<OriginKind>,
}

/// The member that follows the payload (or the personal digest) in every entry line.
const PREV_MEMBER: &[u8; 27] = b",\"prev_entry_hash\":\"sha256:";
/// `,"personal_digest":"sha256:<64 hex>"`: its length.
const PERSONAL_MEMBER_LEN: usize = b",\"personal_digest\":\"sha256:".len() + 64 + 1;

/// A cursor that reads a line backwards from `end`.
struct Back<'a> {
    b: &'a [u8],
    end: usize,
}

impl<'a> Back<'a> {
    /// The `s` just before the cursor; the cursor moves before it.
    fn lit<const N: usize>(&mut self, s: &[u8; N]) -> Option<()> {
        let start = self.end.checked_sub(N)?;
        let w: &[u8; N] = self.b[start..self.end].try_into().ok()?;
        (w == s).then(|| self.end = start)
    }

    /// The `n` bytes before the cursor.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let start = self.end.checked_sub(n)?;
        let s = &self.b[start..self.end];
        self.end = start;
        Some(s)
    }

    /// The longest run of bytes before the cursor that satisfy `f`.
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.b[..self.end]
            .iter()
            .rev()
            .take_while(|&&c| f(c))
            .count();
        let start = self.end - n;
        let s = &self.b[start..self.end];
        self.end = start;
        s
    }
}

/// Reads the envelope members a verifier needs **without reading the payload**, for a line
/// whose authenticity is then established by its HMAC.
///
/// The members before the payload are read from the front, the ones after it from the last
/// `,"prev_entry_hash":"sha256:` of the line: in a line the writer produced (JCS, docs/FORMAT.md
/// §2) that byte sequence can occur only as the envelope member after the payload (inside a JCS
/// string every `"` is escaped, and the members after it are fixed). The payload between them is
/// not read at all, so a line that was not written by the writer can give values here that the
/// full parser would not: **the result may only be trusted once the line's HMAC, checked with
/// `key_id` and `hmac` from this result, verifies**. Otherwise the caller reads the line with
/// [`scan`] or the full parser, which check every byte. On lines the writer produced the values
/// equal those of [`scan`] (tested on generated logs).
#[must_use]
pub fn scan_envelope(line: &[u8]) -> Option<EnvelopeFields<'_>> {
    // Front: `{"agent_id":"…"[,"client_seq":N],"entry_id":"…","event_type":"…","key_id":"…","payload":{`
    let mut c = Cursor::at(line, 0);
    c.lit(b"{\"agent_id\":\"")?;
    // The agent id's closing quote: the first quote, unless an escape comes first.
    let close = c.i + memchr::memchr(b'"', line.get(c.i..)?)?;
    if line[c.i..close].contains(&b'\\') {
        return None;
    }
    c.i = close + 1;
    if c.lit(b",\"client_seq\":").is_some() {
        c.uint()?;
    }
    let skewed = c.lit(b",\"clock_skew_ms\":").is_some();
    if skewed {
        c.int()?;
    }
    c.lit(b",\"entry_id\":")?;
    let entry_id = c.uuid_v7()?;
    c.lit(b",\"event_type\":")?;
    let event_type = c.ident()?;
    c.lit(b",\"key_id\":")?;
    let key_id = c.ident()?;
    let has_origin = c.lit(b",\"origin\":{").is_some();
    let origin = if has_origin {
        Some(OriginKind::of_jcs(line.get(c.i - 1..)?)?)
    } else {
        None
    };
    if has_origin {
        // The object ends at the first `},"payload":{`: inside a JCS string every `"` is
        // escaped, and the origin's members are fixed (trusted only once the HMAC verifies).
        c.i += memchr::memmem::find(line.get(c.i..)?, b"},\"payload\":{")? + 1;
    }
    c.lit(b",\"payload\":{")?;
    let payload_start = c.i - 1;
    // Back, from the end: `,"prev_entry_hash":"sha256:<hex>","seq":N,"session_id":"…",
    // "tenant_id":"…","timestamp":"<24>","v":1,"hmac_sha256":"<hex>"}`.
    let mut r = Back {
        b: line,
        end: line.len(),
    };
    r.lit(b"\"}")?;
    let hmac = decode_hex32(r.take(64)?)?;
    if has_origin {
        r.lit(b"\",\"hmac_sha256\":\"")?;
        if parse_writer_timestamp(r.take(24)?)? != written_ms(entry_id) {
            return None;
        }
        r.lit(b"\",\"v\":2,\"written_at\":\"")?;
    } else if skewed {
        return None;
    } else {
        r.lit(b"\",\"v\":1,\"hmac_sha256\":\"")?;
    }
    r.take(24)?; // the timestamp
    r.lit(b"\",\"timestamp\":\"")?;
    let tenant =
        r.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'));
    let tenant_id = std::str::from_utf8(tenant).ok().filter(|t| !t.is_empty())?;
    r.lit(b",\"tenant_id\":\"")?;
    r.lit(b"\"")?;
    // The session id's opening quote: the last quote before it preceded by `,"session_id":`
    // (inside a JCS string every quote is escaped, so that sequence cannot occur there).
    loop {
        let q = memchr::memrchr(b'"', line.get(payload_start..r.end)?)? + payload_start;
        r.end = q;
        if r.lit(b",\"session_id\":").is_some() {
            break;
        }
    }
    let digits = r.take_while(|c| c.is_ascii_digit());
    let seq = uint_digits(digits)?;
    r.lit(b",\"seq\":")?;
    r.lit(b"\"")?;
    let prev = decode_hex32(r.take(64)?)?;
    r.lit(PREV_MEMBER)?;
    let tail = r.end;
    let prev_entry_hash = Hash(prev);
    // Between the payload and the link: the personal digest, or nothing (the payload's `}`).
    let (payload_end, personal_digest) = match tail.checked_sub(PERSONAL_MEMBER_LEN) {
        Some(p) if line[tail - 1] == b'"' => {
            let mut c = Cursor::at(line, p);
            c.lit(b",\"personal_digest\":")?;
            (p, Some(c.digest()?))
        }
        _ => (tail, None),
    };
    (payload_end > payload_start && line[payload_end - 1] == b'}').then_some(EnvelopeFields {
        seq,
        entry_id,
        tenant_id,
        event_type,
        key_id,
        prev_entry_hash,
        personal_digest,
        hmac,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_plain_stops_at_quotes_escapes_and_controls() {
        for (s, want) in [
            (&b"abcdefghijklmnop\"x"[..], 16),
            (b"abc\\def", 3),
            (b"abcdefgh\x1fzz", 8),
            (b"h\xc3\xa9llo w\xc3\xb6rld and more\"", 22),
            (b"", 0),
            (b"\"", 0),
            (b"0123456", 7),
        ] {
            assert_eq!(skip_plain(s), want, "{s:?}");
        }
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for ok in ["0", "-0", "12", "-1.5", "1e9", "1E+2", "2.5e-3"] {
            let mut c = Cursor {
                text: ok,
                b: ok.as_bytes(),
                i: 0,
            };
            assert!(c.value(0).is_some() && c.i == ok.len(), "{ok}");
        }
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "--1"] {
            let mut c = Cursor {
                text: bad,
                b: bad.as_bytes(),
                i: 0,
            };
            assert!(c.value(0).is_none() || c.i != bad.len(), "{bad}");
        }
    }
}
