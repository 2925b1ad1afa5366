//! The one duration grammar of Blackbox (rules files, `--epoch`, …) and the one reader of an
//! HTTP `Retry-After` header (the client's retries, webhook deliveries).
//!
//! A duration is one or more `<digits><unit>` groups, units `s`, `m`, `h`, `d`, `w` (second,
//! minute, hour, day, week), surrounding spaces ignored: `90s`, `5m`, `1h30m`, `7d`, `2w`.

use std::time::Duration;

/// A duration that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not `<digits><unit>` groups.
    #[error(
        "`{given}` is not a duration: expected a number and a unit s, m, h, d or w, e.g. 30s, 5m, 1h, 7d or 2w (combinable: 1h30m)"
    )]
    Malformed {
        /// The text given.
        given: String,
    },
    /// Longer than about 292 million years (over `i64::MAX` milliseconds).
    #[error("`{given}` is too long a duration")]
    TooLong {
        /// The text given.
        given: String,
    },
}

/// Parses a duration in milliseconds (see the module docs for the grammar).
///
/// # Errors
/// [`DurationError::Malformed`], naming the accepted forms; [`DurationError::TooLong`].
pub fn parse_ms(s: &str) -> Result<i64, DurationError> {
    let t = s.trim();
    let malformed = || DurationError::Malformed {
        given: s.to_owned(),
    };
    let too_long = || DurationError::TooLong {
        given: s.to_owned(),
    };
    if t.is_empty() {
        return Err(malformed());
    }
    let mut total: i64 = 0;
    let mut num: Option<i64> = None;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(d)))
                    .ok_or_else(too_long)?,
            );
            continue;
        }
        let unit: i64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return Err(malformed()),
        };
        let n = num.take().ok_or_else(malformed)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
    }
    if num.is_some() {
        return Err(malformed());
    }
    Ok(total)
}

/// Parses a duration (see the module docs for the grammar).
///
/// # Errors
/// As [`parse_ms`].
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    // parse_ms never returns a negative value: digits and positive units only.
    parse_ms(s).map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Reads a `Retry-After` value (RFC 9110 §10.2.3: delay seconds or an HTTP-date) as a delay
/// from `now_ms` (Unix ms). A date in the past is a zero delay; anything else is `None`.
#[must_use]
pub fn retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?
        .as_millisecond();
    Some(Duration::from_millis(
        u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ms(" 90s "), Ok(90_000));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["7", "d", "", "1 h", "1H", "-1s", "1.5h"] {
            assert!(
                matches!(parse_ms(bad), Err(DurationError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_ms("99999999999999999999d"),
            Err(DurationError::TooLong { .. })
        ));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = crate::entry::parse_timestamp("2015-10-21T07:28:00Z").unwrap();
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-1", now), None);
        assert_eq!(retry_after("", now), None);
        assert_eq!(retry_after("soon", now), None);
    }
}
