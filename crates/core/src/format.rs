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
    // From 1970 to the end of jiff's range (9999-12-30T22:00Z), the times entries carry, are
    // written directly (every entry writes two; formatting through jiff showed in the append
    // profile); others through jiff, which refuses what it cannot represent.
    if (0..=JIFF_MAX_MS).contains(&ms) {
        return Ok(format_timestamp_fast(ms));
    }
    let ts =
        jiff::Timestamp::from_millisecond(ms).map_err(|e| format!("time out of range: {e}"))?;
    Ok(format!("{ts:.3}"))
}

/// The latest Unix millisecond jiff represents (`jiff::Timestamp::MAX` in ms).
const JIFF_MAX_MS: i64 = 253_402_207_200_000;

/// `format_timestamp` for 0 ≤ `ms` ≤ [`JIFF_MAX_MS`] (years 1970–9999): the civil date from the
/// day number by H. Hinnant's `civil_from_days`.
fn format_timestamp_fast(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (sec, milli) = (rest / 1000, rest % 1000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            // A digit: 0..=9 always fits.
            b[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, h);
    put(14, 2, m);
    put(17, 2, sec);
    put(20, 3, milli);
    // ASCII digits and separators only.
    String::from_utf8(b.to_vec()).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn by_jiff(ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms).map_or_else(|e| e.to_string(), |t| format!("{t:.3}"))
    }

    #[test]
    fn timestamps_are_written_as_jiff_writes_them_at_the_edges() {
        for ms in [
            0,
            1,
            999,
            86_399_999,
            86_400_000,
            951_782_400_000, // 2000-02-29
            951_868_799_999,
            4_107_542_400_000, // 2100-02-28 (no leap day)
            1_776_189_600_123,
            JIFF_MAX_MS, // 9999-12-30T22:00:00.000Z
        ] {
            assert_eq!(
                format_timestamp(ms).as_deref(),
                Ok(by_jiff(ms).as_str()),
                "{ms}"
            );
        }
        // Outside the fast range: through jiff.
        assert_eq!(
            format_timestamp(-1).as_deref(),
            Ok("1969-12-31T23:59:59.999Z")
        );
        assert!(format_timestamp(JIFF_MAX_MS + 1).is_err());
        assert!(format_timestamp(i64::MAX).is_err());
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_jiff_writes_them(ms in 0i64..=JIFF_MAX_MS) {
            proptest::prop_assert_eq!(format_timestamp(ms), Ok(by_jiff(ms)));
        }
    }
}
