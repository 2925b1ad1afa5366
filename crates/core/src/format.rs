//! The entry format's shared vocabulary (docs/FORMAT.md): versions, field lists, timestamps and
//! JSON string writing. The lowest module of the format: [`crate::entry`], [`crate::event`],
//! [`crate::line_scan`] and [`crate::origin`] build on it, and it uses none of them.

/// The entry format version this crate writes (it reads this one and every earlier one).
pub const FORMAT_VERSION: u32 = 2;

/// The first format version, without `origin` and `written_at` (still read and verified).
pub const FORMAT_V1: u32 = 1;

/// Deepest nesting accepted in a payload (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// Event fields the log assigns itself; an input event carrying one is refused.
pub(crate) const ASSIGNED_FIELDS: [&str; 6] = [
    "seq",
    "entry_id",
    "prev_entry_hash",
    "hmac_sha256",
    "key_id",
    "v",
];
/// Envelope fields of an input event; every other top-level field moves into `payload`.
pub(crate) const ENVELOPE_FIELDS: [&str; 8] = [
    "tenant_id",
    "agent_id",
    "session_id",
    "event_type",
    "timestamp",
    "client_seq",
    "payload",
    "personal_digest",
];

/// Orders two keys by their UTF-16 code units (RFC 8785 §3.2.3).
pub(crate) fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Parses an RFC 3339 timestamp (any offset) to Unix milliseconds (sub-millisecond digits are
/// truncated).
///
/// # Errors
/// A plain-English reason.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    if let Some(ms) = parse_writer_timestamp(s.as_bytes()) {
        return Ok(ms);
    }
    let ts: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("must be an RFC 3339 time such as 2026-04-14T18:00:00.123Z ({e})"))?;
    Ok(ts.as_millisecond())
}

/// The writer's own form `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 1970–9998, seconds 00–59), read
/// without the general RFC 3339 parser: every entry carries one. Anything else (other offsets,
/// precisions, leap seconds, earlier years, invalid dates) is `None` and goes to the parser, which
/// gives the same value for everything this accepts (tested against it).
pub(crate) fn parse_writer_timestamp(b: &[u8]) -> Option<i64> {
    if b.len() != 24
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(mo.checked_sub(1)?).ok()?)?;
    // Year 9999 is left to the parser: its range ends inside that year.
    if !(1970..=9998).contains(&y) || d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "days_from_civil").
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let (era, yoe) = (yy / 400, yy % 400);
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi) * 60 + sec) * 1000 + ms)
}

/// A time bound given by a person: RFC 3339, or a bare date `YYYY-MM-DD` meaning its first
/// millisecond (`end == false`) or its last (`end == true`), UTC.
///
/// # Errors
/// A plain-English reason.
pub fn parse_time_bound(s: &str, end: bool) -> Result<i64, String> {
    if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        let day = parse_timestamp(&format!("{s}T00:00:00Z"))?;
        return Ok(if end { day + 86_400_000 - 1 } else { day });
    }
    parse_timestamp(s)
}

/// Formats Unix milliseconds as RFC 3339 UTC with exactly three fractional digits:
/// `2026-04-14T18:00:00.123Z`.
///
/// # Errors
/// When `ms` is outside the range jiff represents (years -9999..=9999).
pub fn format_timestamp(ms: i64) -> Result<String, String> {
    let ts =
        jiff::Timestamp::from_millisecond(ms).map_err(|e| format!("time out of range: {e}"))?;
    Ok(format!("{ts:.3}"))
}

/// The writer's clock when it sequenced an entry, Unix ms: the millisecond field of its UUIDv7
/// `entry_id` (RFC 9562 §5.7), which `written_at` repeats in version 2.
#[must_use]
pub fn written_ms(entry_id: u128) -> i64 {
    // 48 bits: always within i64.
    i64::try_from(entry_id >> 80).unwrap_or(i64::MAX)
}

/// Writes `s` as a JSON string, escaped as RFC 8785 §3.2.2.2 requires.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Most strings need no escape: copy them between quotes.
    if skip_plain(s.as_bytes()) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json escapes exactly as RFC 8785 §3.2.2.2 requires (", \, and controls as \b \t \n
    // \f \r or \u00xx lowercase); writing a &str to a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        unreachable!("serialising a str into a Vec<u8> cannot fail");
    }
}

/// How many leading bytes of `s` are plain string content: not `"`, `\\` or a control character.
/// Eight bytes at a time (SWAR): most of a line is the inside of strings.
pub(crate) fn skip_plain(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let special = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        // Some byte is zero after the XOR (a quote or backslash), or below 0x20: exact "any"
        // tests (they may flag a later byte falsely after a borrow, never miss one).
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if hit & HIGH != 0
            && let Some(k) = w.iter().position(|&c| special(c))
        {
            return i + k;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if special(c) {
            return i;
        }
        i += 1;
    }
    i
}
