//! Time-window conditions of anomaly rules (`time_window:` in the rules file).
//!
//! A window is a weekly schedule of local wall-clock times, for example
//! `"00:00-06:00 weekdays, all weekends"`. It is parsed once into a [`TimeWindow`] and then read
//! in a configured IANA time zone (see [`parse_time_zone`]; the rules default to UTC).
//!
//! # Grammar
//!
//! Matching is case-insensitive; whitespace separates words and is otherwise ignored.
//!
//! ```text
//! window  = clause { "," clause }                 union of the clauses
//! clause  = [days] [range] [days]                 days on one side of the range only;
//!                                                 at least one of the two must be present
//! range   = time ("-" | "to") time                HH:MM or H:MM; 24:00 only as an end
//!         | "all" "day"                           the whole day
//!         | "all" days                            the whole day, on those days
//! days    = day-item { ["and" | "on" | "every"] day-item }   (a leading "on" or "every" is allowed)
//! day-item = day [("-" | "to") day]               "fri-mon" wraps around the week
//!         | "weekday" | "weekdays"                Mon-Fri
//!         | "weekend" | "weekends"                Sat-Sun
//!         | "daily" | "everyday" | "every" "day"  all seven days
//! day     = mon | monday | mondays | tue | tues | tuesday | tuesdays | wed | weds | wednesday
//!         | wednesdays | thu | thur | thurs | thursday | thursdays | fri | friday | fridays
//!         | sat | saturday | saturdays | sun | sunday | sundays
//! ```
//!
//! A clause without days applies to every day; a clause without a range covers the whole day
//! (`"weekends"` alone is the whole weekend). A range whose end is earlier than its start crosses
//! midnight and belongs to the day it starts on: `"fri 22:00-02:00"` covers Friday 22:00 to
//! Saturday 02:00. An end of `00:00` therefore means midnight (`"22:00-00:00"` is
//! `"22:00-24:00"`). A range may not end where it starts (`"00:00-00:00"` is an error; write
//! `all day` or `00:00-24:00`). Seconds are not supported.
//!
//! # Time zones and daylight saving time
//!
//! Times are local civil (wall-clock) times in the zone. An instant is inside the window iff its
//! local civil time, as the zone reports it at that instant, falls inside one of the ranges. So
//! `"00:00-06:00"` stays midnight to 6 a.m. local on both sides of a DST change; on a fall-back
//! day both instants whose local time is 02:30 are inside; and local times that do not exist
//! (the hour skipped when clocks spring forward) simply never occur, so nothing is inside for
//! them. A range such as `"02:30-05:00"` on a spring-forward day at 02:00 therefore begins at the
//! transition instant, when the local clock jumps to 03:00.
//!
//! The window is stored as per-weekday sets of half-open minute intervals, midnight-crossing
//! ranges already split onto the next day, so [`TimeWindow::contains`] is a civil-time lookup
//! and two windows that cover the same times compare equal however they were written.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Minutes in a civil day (DST days are still read as 00:00-24:00 of civil time).
const MINUTES_PER_DAY: u16 = 24 * 60;

/// Canonical day abbreviations, Monday first (the index used throughout this module).
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Bitmask of all seven days.
const ALL_DAYS: u8 = 0b111_1111;
/// Bitmask of Monday to Friday.
const WEEKDAYS: u8 = 0b001_1111;
/// Bitmask of Saturday and Sunday.
const WEEKENDS: u8 = 0b110_0000;

/// How far back [`TimeWindow::occurrence_start`] looks for the beginning of an occurrence.
/// Any window that does not cover the whole week has a gap within every 7 civil days; the
/// extra day absorbs DST shifts.
const SEARCH_LIMIT: SignedDuration = SignedDuration::from_hours(8 * 24);

/// Upper bound on zone transitions crossed by one [`TimeWindow::occurrence_start`] search.
/// Real zones change offset a few times a year, so more than a handful within
/// [`SEARCH_LIMIT`] never happens; the bound only guards against pathological zone data.
const MAX_TRANSITIONS: usize = 16;

/// A half-open interval `[start, end)` of minutes within one civil day; `end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct MinuteRange {
    /// First minute inside the interval.
    start: u16,
    /// First minute after the interval (1440 for midnight at the end of the day).
    end: u16,
}

impl MinuteRange {
    /// Whether `minute` (of the day) lies in the interval.
    fn contains(self, minute: u16) -> bool {
        self.start <= minute && minute < self.end
    }
}

/// A parsed `time_window:` condition: a weekly schedule of local wall-clock times.
///
/// Build one with [`TimeWindow::parse`] (or [`str::parse`]); see the [module docs](self) for the
/// grammar. Equality compares the covered times, not the spelling: `"22:00-00:00"` equals
/// `"22:00-24:00"`. [`Display`](fmt::Display) prints a canonical description that parses back
/// to an equal window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    /// Covered intervals per weekday, Monday first; each list sorted, non-empty intervals,
    /// neither overlapping nor touching (touching ones are merged).
    days: [Vec<MinuteRange>; 7],
}

/// Why a time window could not be parsed: what is wrong, where, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time window: {message} (at character {column} of {input:?})")]
pub struct WindowError {
    /// 1-based position, in characters (not bytes), of the problem in `input`; one past the
    /// last character when the input ended too early.
    pub column: usize,
    /// What is wrong and what would be accepted instead.
    pub message: String,
    /// The whole text that was being parsed.
    pub input: String,
}

/// A time zone name that is not a usable IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {name:?}: expected an IANA time zone name such as \"UTC\", \
     \"Europe/Berlin\" or \"America/New_York\" ({reason})"
)]
pub struct TimeZoneError {
    /// The name as given.
    pub name: String,
    /// Why the lookup failed, as reported by the time zone database.
    pub reason: String,
}

/// Parses an IANA time zone name (e.g. `"Europe/Berlin"`, `"UTC"`) using the system zone
/// database (`/usr/share/zoneinfo`) or, where that is missing, the bundled copy.
///
/// Names are matched case-insensitively, as the database does. `"Etc/Unknown"` is refused:
/// it is a placeholder, not a zone.
///
/// # Errors
///
/// [`TimeZoneError`] naming the zone when it is empty or not in the database.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, TimeZoneError> {
    let fail = |reason: &str| TimeZoneError {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(fail("the name is empty"));
    }
    if name.eq_ignore_ascii_case("Etc/Unknown") {
        return Err(fail("Etc/Unknown is a placeholder for an unknown zone"));
    }
    TimeZone::get(name).map_err(|e| fail(&e.to_string()))
}

impl TimeWindow {
    /// Parses a window such as `"00:00-06:00 weekdays, all weekends"`; see the
    /// [module docs](self) for the grammar.
    ///
    /// # Errors
    ///
    /// [`WindowError`] with the 1-based character column of the first problem: an unknown
    /// word, a malformed or out-of-range time, a range that ends where it starts, a missing or
    /// empty clause, and so on.
    pub fn parse(s: &str) -> Result<Self, WindowError> {
        let tokens = lex(s)?;
        let mut window = TimeWindow {
            days: Default::default(),
        };
        if tokens.is_empty() {
            return Err(error(
                s,
                1,
                "empty time window; expected something like \"00:00-06:00 weekdays, all weekends\"",
            ));
        }
        let end_column = s.chars().count() + 1;
        let mut clause_start = 0;
        for (i, token) in tokens.iter().enumerate() {
            if token.kind == Kind::Comma {
                if i == clause_start {
                    let message = if i == 0 {
                        "nothing before ','; expected a clause such as \"mon-fri 09:00-17:00\""
                    } else {
                        "nothing between two commas; expected a clause such as \
                         \"mon-fri 09:00-17:00\" or remove one comma"
                    };
                    return Err(error(s, token.column, message));
                }
                let clause = parse_clause(s, &tokens[clause_start..i], token.column)?;
                window.add(clause);
                clause_start = i + 1;
            }
        }
        if clause_start == tokens.len() {
            return Err(error(
                s,
                end_column,
                "nothing after the last ','; expected another clause such as \"all weekends\" \
                 or remove the comma",
            ));
        }
        let clause = parse_clause(s, &tokens[clause_start..], end_column)?;
        window.add(clause);
        window.normalize();
        Ok(window)
    }

    /// Whether the instant is inside the window, read in `tz`: iff its local civil time there
    /// falls in one of the window's ranges (see the [module docs](self) on DST).
    #[must_use]
    pub fn contains(&self, t: Timestamp, tz: &TimeZone) -> bool {
        self.contains_civil(tz.to_datetime(t))
    }

    /// The start of the window occurrence containing `t` (the instant that occurrence began,
    /// in `tz`), or `None` when `t` is outside the window.
    ///
    /// An occurrence is a maximal stretch of time that is inside the window without a break,
    /// so overlapping or adjacent clauses merge: with `"00:00-06:00 weekdays, all weekends"`,
    /// Saturday 00:00 through Monday 06:00 is one occurrence beginning Saturday 00:00 local.
    /// Across DST changes the stretch is followed instant by instant, so on a fall-back day an
    /// occurrence of `"00:00-06:00"` began at local midnight (in the offset then in force), and
    /// one of `"02:30-05:00"` that started in a skipped hour began at the transition.
    ///
    /// The search looks back at most 8 days. A window covering the whole week (`"daily"`,
    /// `"all day"`) has no beginning; its occurrences are then taken to be local days, starting
    /// at local midnight (or the first instant of the day where midnight does not exist).
    #[must_use]
    pub fn occurrence_start(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        if !self.contains(t, tz) {
            return None;
        }
        if self.is_always() {
            let day_start = t.to_zoned_datetime(tz.clone()).start_of_day();
            return Some(day_start.map_or(t, |z| z.timestamp()));
        }
        let floor = t.checked_sub(SEARCH_LIMIT).unwrap_or(Timestamp::MIN);
        // Between two zone transitions the offset is fixed, so civil time moves in step with
        // the instant and the civil span found by `civil_span_start` maps back directly. When
        // the span reaches back past a transition, continue from the instant before it.
        let mut cur = t;
        for _ in 0..MAX_TRANSITIONS {
            let offset = tz.to_offset(cur);
            let Some(span_start) = self.civil_span_start(offset.to_datetime(cur)) else {
                // Unreachable: `cur` is always inside the window here.
                return Some(cur);
            };
            let candidate = offset.to_timestamp(span_start).ok();
            let transition = cur
                .checked_add(SignedDuration::from_nanos(1))
                .map_or_else(
                    |_| tz.preceding(cur).next(),
                    |next| tz.preceding(next).next(),
                )
                .map(|tr| tr.timestamp());
            // A span that starts exactly at the transition may go on before it (a civil hour
            // that a fall-back repeats): that case continues below, like one reaching past it.
            let region_start = match (candidate, transition) {
                (Some(c), None) => return Some(c),
                (Some(c), Some(p)) if c > p => return Some(c),
                (_, Some(p)) => p,
                (None, None) => return Some(cur),
            };
            // Everything from `region_start` to `cur` is inside; see whether the instant just
            // before the transition is too.
            let Ok(before) = region_start.checked_sub(SignedDuration::from_nanos(1)) else {
                return Some(region_start);
            };
            if region_start <= floor || !self.contains(before, tz) {
                return Some(region_start);
            }
            cur = before;
        }
        Some(cur)
    }

    /// Whether the window covers every minute of the week.
    fn is_always(&self) -> bool {
        self.days.iter().all(|day| {
            day.as_slice()
                == [MinuteRange {
                    start: 0,
                    end: MINUTES_PER_DAY,
                }]
        })
    }

    /// Whether the civil datetime falls inside the window.
    fn contains_civil(&self, dt: DateTime) -> bool {
        let minute = minute_of_day(dt);
        self.days[weekday_index(dt.date())]
            .iter()
            .any(|r| r.contains(minute))
    }

    /// The civil start of the maximal covered civil stretch containing `dt`, or `None` when
    /// `dt` is outside. For a window covering the whole week this stops after 7 days.
    fn civil_span_start(&self, dt: DateTime) -> Option<DateTime> {
        let minute = minute_of_day(dt);
        let mut date = dt.date();
        let mut day = weekday_index(date);
        let mut range = *self.days[day].iter().find(|r| r.contains(minute))?;
        for _ in 0..7 {
            if range.start > 0 {
                break;
            }
            let prev = (day + 6) % 7;
            match (self.days[prev].last(), date.yesterday()) {
                (Some(r), Ok(yesterday)) if r.end == MINUTES_PER_DAY => {
                    date = yesterday;
                    day = prev;
                    range = *r;
                }
                _ => break,
            }
        }
        civil_at(date, range.start)
    }

    /// Adds a parsed clause, splitting a midnight-crossing range onto the following day.
    fn add(&mut self, clause: Clause) {
        let Clause { days, start, end } = clause;
        for day in (0..7).filter(|d| days & (1 << d) != 0) {
            if start < end {
                self.days[day].push(MinuteRange { start, end });
            } else {
                self.days[day].push(MinuteRange {
                    start,
                    end: MINUTES_PER_DAY,
                });
                if end > 0 {
                    self.days[(day + 1) % 7].push(MinuteRange { start: 0, end });
                }
            }
        }
    }

    /// Sorts each day's intervals and merges overlapping or touching ones.
    fn normalize(&mut self) {
        for day in &mut self.days {
            day.sort_unstable();
            let mut merged: Vec<MinuteRange> = Vec::with_capacity(day.len());
            for r in day.drain(..) {
                match merged.last_mut() {
                    Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                    _ => merged.push(r),
                }
            }
            *day = merged;
        }
    }
}

impl FromStr for TimeWindow {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TimeWindow {
    /// A canonical description such as `"Mon-Fri 00:00-06:00, Sat-Sun all day"`: one clause
    /// per range and run of consecutive days, ordered by first day then start time, with
    /// midnight-crossing ranges written on the day they start (`"Fri 22:00-02:00"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A day's tail [s, 24:00) joins the next day's head [00:00, e) into one crossing range
        // "s-e" when that is expressible (e < s); the head is then not printed on its own.
        let mut head_taken = [false; 7];
        let mut shown: Vec<((u16, u16), u8)> = Vec::new();
        let mut show =
            |range: (u16, u16), day: usize| match shown.iter_mut().find(|(r, _)| *r == range) {
                Some((_, days)) => *days |= 1 << day,
                None => shown.push((range, 1 << day)),
            };
        for day in 0..7 {
            let next = (day + 1) % 7;
            for r in &self.days[day] {
                let head = self.days[next].first().copied();
                match head {
                    Some(h) if r.end == MINUTES_PER_DAY && r.start > 0 && h.start == 0 => {
                        if h.end < r.start {
                            head_taken[next] = true;
                            show((r.start, h.end), day);
                        } else {
                            show((r.start, r.end), day);
                        }
                    }
                    _ => show((r.start, r.end), day),
                }
            }
        }
        // Remove the heads that were folded into the previous day's crossing range.
        for (day, taken) in head_taken.iter().enumerate() {
            if let (true, Some(h)) = (*taken, self.days[day].first()) {
                let plain = (h.start, h.end);
                if let Some((_, days)) = shown.iter_mut().find(|(r, _)| *r == plain) {
                    *days &= !(1 << day);
                }
            }
        }
        let mut clauses: Vec<(usize, (u16, u16), usize)> = Vec::new();
        for (range, days) in shown {
            for (first, len) in day_runs(days) {
                clauses.push((first, range, len));
            }
        }
        clauses.sort_unstable();
        for (i, (first, (start, end), len)) in clauses.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if len == 7 {
                f.write_str("daily")?;
            } else if len == 1 {
                f.write_str(DAY_NAMES[first])?;
            } else {
                let last = (first + len - 1) % 7;
                write!(f, "{}-{}", DAY_NAMES[first], DAY_NAMES[last])?;
            }
            if (start, end) == (0, MINUTES_PER_DAY) {
                f.write_str(" all day")?;
            } else {
                write!(f, " {}-{}", Hhmm(start), Hhmm(end))?;
            }
        }
        Ok(())
    }
}

/// Formats a minute of the day as `HH:MM` (1440 as `24:00`).
struct Hhmm(u16);

impl fmt::Display for Hhmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Splits a day mask into runs of consecutive days, wrapping from Sunday to Monday:
/// `(first day, length)`, a single run of 7 for the whole week.
fn day_runs(days: u8) -> Vec<(usize, usize)> {
    let has = |d: usize| days & (1 << (d % 7)) != 0;
    if days & ALL_DAYS == ALL_DAYS {
        return vec![(0, 7)];
    }
    (0..7)
        .filter(|&d| has(d) && !has(d + 6))
        .map(|d| (d, (d..d + 7).take_while(|&x| has(x)).count()))
        .collect()
}

/// Monday-first index (0..=6) of the date's weekday.
fn weekday_index(date: Date) -> usize {
    // `to_monday_zero_offset` is within 0..=6.
    usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0)
}

/// Minute of the day (0..1440) of a civil datetime.
fn minute_of_day(dt: DateTime) -> u16 {
    // Hours are 0..=23 and minutes 0..=59, so both conversions succeed.
    let hour = u16::try_from(dt.hour()).unwrap_or(0);
    let minute = u16::try_from(dt.minute()).unwrap_or(0);
    hour * 60 + minute
}

/// The civil datetime at `minute` (0..1440) of `date`.
fn civil_at(date: Date, minute: u16) -> Option<DateTime> {
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    Time::new(hour, min, 0, 0)
        .ok()
        .map(|time| date.to_datetime(time))
}

/// One clause of a window after parsing: days (bitmask, Monday = bit 0) and a range in
/// minutes; `end < start` crosses midnight, `end` may be 1440.
#[derive(Debug, Clone, Copy)]
struct Clause {
    days: u8,
    start: u16,
    end: u16,
}

/// Kinds of tokens of the window language.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A run of letters, lowercased.
    Word(String),
    /// A valid `HH:MM` time; `minutes` may be 1440 (24:00).
    Time { minutes: u16 },
    /// `-` or an en/em dash.
    Dash,
    /// `,`.
    Comma,
}

/// A token with its 1-based character column and original text.
#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    column: usize,
    text: String,
}

/// Builds a [`WindowError`].
fn error(input: &str, column: usize, message: impl Into<String>) -> WindowError {
    WindowError {
        column,
        message: message.into(),
        input: input.to_owned(),
    }
}

/// Splits the input into tokens, checking times as it goes.
fn lex(input: &str) -> Result<Vec<Token>, WindowError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' || matches!(c, '-' | '\u{2013}' | '\u{2014}') {
            let kind = if c == ',' { Kind::Comma } else { Kind::Dash };
            tokens.push(Token {
                kind,
                column,
                text: c.to_string(),
            });
            i += 1;
        } else if c.is_alphabetic() {
            let len = chars[i..].iter().take_while(|c| c.is_alphabetic()).count();
            let text: String = chars[i..i + len].iter().collect();
            tokens.push(Token {
                kind: Kind::Word(text.to_lowercase()),
                column,
                text,
            });
            i += len;
        } else if c.is_ascii_digit() {
            let len = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == ':')
                .count();
            let text: String = chars[i..i + len].iter().collect();
            let minutes = lex_time(input, &text, column)?;
            tokens.push(Token {
                kind: Kind::Time { minutes },
                column,
                text,
            });
            i += len;
        } else {
            return Err(error(
                input,
                column,
                format!(
                    "unexpected character {c:?}; a window is made of day names, times such as \
                     22:00-06:00, '-' and ','"
                ),
            ));
        }
    }
    Ok(tokens)
}

/// Checks a run of digits and colons as `H:MM`/`HH:MM` and returns its minute of the day
/// (1440 for `24:00`).
fn lex_time(input: &str, text: &str, column: usize) -> Result<u16, WindowError> {
    let parts: Vec<&str> = text.split(':').collect();
    let shape_ok = parts.len() == 2
        && (1..=2).contains(&parts[0].len())
        && parts[1].len() == 2
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if !shape_ok {
        let message = if parts.len() == 3 {
            format!("seconds are not supported in {text:?}; write times as HH:MM, e.g. 06:00")
        } else {
            format!("{text:?} is not a time; write times as HH:MM, e.g. 06:00 or 22:30")
        };
        return Err(error(input, column, message));
    }
    // Shape checked above: one or two ASCII digits, then exactly two.
    let hour: u16 = parts[0].parse().unwrap_or(u16::MAX);
    let minute: u16 = parts[1].parse().unwrap_or(u16::MAX);
    if hour > 24 || (hour == 24 && minute != 0) {
        return Err(error(
            input,
            column,
            format!(
                "hour {hour} in {text:?} is out of range; hours run 00-23, and 24:00 is allowed \
                 as the end of a range"
            ),
        ));
    }
    if minute > 59 {
        let minute_column = column + parts[0].len() + 1;
        return Err(error(
            input,
            minute_column,
            format!("minute {minute} in {text:?} is out of range; minutes run 00-59"),
        ));
    }
    Ok(hour * 60 + minute)
}

/// A day word: one day, or a named group of days.
#[derive(Debug, Clone, Copy)]
enum DayWord {
    /// A single day, Monday = 0.
    Single(usize),
    /// A group such as weekdays (bitmask).
    Group(u8),
}

/// Recognises a (lowercased) day word.
fn day_word(word: &str) -> Option<DayWord> {
    let single = match word {
        "mon" | "monday" | "mondays" => 0,
        "tue" | "tues" | "tuesday" | "tuesdays" => 1,
        "wed" | "weds" | "wednesday" | "wednesdays" => 2,
        "thu" | "thur" | "thurs" | "thursday" | "thursdays" => 3,
        "fri" | "friday" | "fridays" => 4,
        "sat" | "saturday" | "saturdays" => 5,
        "sun" | "sunday" | "sundays" => 6,
        "weekday" | "weekdays" => return Some(DayWord::Group(WEEKDAYS)),
        "weekend" | "weekends" => return Some(DayWord::Group(WEEKENDS)),
        "daily" | "everyday" => return Some(DayWord::Group(ALL_DAYS)),
        _ => return None,
    };
    Some(DayWord::Single(single))
}

/// What the parser accepts where it found something else.
const EXPECTED: &str = "expected a day (mon..sun or monday..sunday), a day range such as \
                        mon-fri, weekdays, weekends, daily, every day, all <days>, all day, \
                        on <days>, or a time range such as 22:00-06:00";

/// Parses the tokens of one non-empty clause; `end_column` is where the clause ends (the
/// following comma or the end of input), for "ended too early" errors.
fn parse_clause(input: &str, tokens: &[Token], end_column: usize) -> Result<Clause, WindowError> {
    let word_at = |i: usize| match tokens.get(i).map(|t| &t.kind) {
        Some(Kind::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let is_day_at = |i: usize| word_at(i).and_then(day_word).is_some();
    let column_at = |i: usize| tokens.get(i).map_or(end_column, |t| t.column);

    let mut days: u8 = 0;
    let mut days_before_range = false;
    let mut range: Option<(u16, u16)> = None;
    let mut add_days = |mask: u8, column: usize, range_set: bool| {
        if range_set && days_before_range {
            return Err(error(
                input,
                column,
                "days appear both before and after the time range; put them on one side, \
                 e.g. \"mon-fri 09:00-17:00\"",
            ));
        }
        if !range_set {
            days_before_range = true;
        }
        days |= mask;
        Ok(())
    };
    let second_range = |column: usize| {
        error(
            input,
            column,
            "this clause already has a time range (\"all ...\" means the whole day); put each \
             range in its own clause, separated by ','",
        )
    };

    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        match &token.kind {
            Kind::Time { minutes: start } => {
                if range.is_some() {
                    return Err(second_range(token.column));
                }
                if *start == MINUTES_PER_DAY {
                    return Err(error(
                        input,
                        token.column,
                        "24:00 is allowed only as the end of a range; a range starting at \
                         midnight starts at 00:00",
                    ));
                }
                let joined = matches!(tokens.get(i + 1).map(|t| &t.kind), Some(Kind::Dash))
                    || word_at(i + 1) == Some("to");
                let end = match tokens.get(i + 2).map(|t| &t.kind) {
                    Some(Kind::Time { minutes }) if joined => *minutes,
                    _ => {
                        let at = if joined { i + 2 } else { i + 1 };
                        let what = if joined {
                            "an end time"
                        } else {
                            "'-' and an end time"
                        };
                        return Err(error(
                            input,
                            column_at(at),
                            format!(
                                "expected {what} after {}, as in {}-06:00",
                                token.text, token.text
                            ),
                        ));
                    }
                };
                if end == *start {
                    return Err(error(
                        input,
                        column_at(i + 2),
                        format!(
                            "the range {}-{} ends where it starts; for the whole day write \
                             \"all day\" or 00:00-24:00",
                            Hhmm(*start),
                            Hhmm(end)
                        ),
                    ));
                }
                range = Some((*start, end));
                i += 3;
            }
            Kind::Dash => {
                return Err(error(
                    input,
                    token.column,
                    "unexpected '-'; '-' joins two times (22:00-06:00) or two days (mon-fri)",
                ));
            }
            Kind::Comma => {
                // Unreachable: the caller splits clauses at commas.
                return Err(error(input, token.column, "unexpected ','"));
            }
            Kind::Word(word) => match word.as_str() {
                "all" => {
                    if range.is_some() {
                        return Err(second_range(token.column));
                    }
                    if word_at(i + 1) == Some("day") {
                        range = Some((0, MINUTES_PER_DAY));
                        i += 2;
                    } else if is_day_at(i + 1) {
                        range = Some((0, MINUTES_PER_DAY));
                        i += 1;
                    } else {
                        return Err(error(
                            input,
                            column_at(i + 1),
                            "expected \"day\" or days after \"all\", as in \"all day\" or \
                             \"all weekends\"",
                        ));
                    }
                }
                "every" if word_at(i + 1) == Some("day") => {
                    add_days(ALL_DAYS, token.column, range.is_some())?;
                    i += 2;
                }
                "on" | "every" | "and" => {
                    let then_every = *word != "every" && word_at(i + 1) == Some("every");
                    if !(is_day_at(i + 1) || then_every) {
                        return Err(error(
                            input,
                            column_at(i + 1),
                            format!(
                                "expected days after {:?}, such as mon-fri, weekends or \
                                 saturday",
                                token.text
                            ),
                        ));
                    }
                    i += 1;
                }
                "to" => {
                    return Err(error(
                        input,
                        token.column,
                        "\"to\" joins two days (mon to fri) or two times (09:00 to 17:00)",
                    ));
                }
                "day" | "days" => {
                    return Err(error(
                        input,
                        token.column,
                        format!(
                            "{:?} must follow \"all\" (all day) or \"every\" (every day)",
                            token.text
                        ),
                    ));
                }
                _ => {
                    let Some(first) = day_word(word) else {
                        return Err(error(
                            input,
                            token.column,
                            format!("unknown word {:?}; {EXPECTED}", token.text),
                        ));
                    };
                    let joined = matches!(tokens.get(i + 1).map(|t| &t.kind), Some(Kind::Dash))
                        || word_at(i + 1) == Some("to");
                    if !joined {
                        let mask = match first {
                            DayWord::Single(d) => 1 << d,
                            DayWord::Group(g) => g,
                        };
                        add_days(mask, token.column, range.is_some())?;
                        i += 1;
                        continue;
                    }
                    let last = word_at(i + 2).and_then(day_word);
                    let (DayWord::Single(from), Some(DayWord::Single(to))) = (first, last) else {
                        let at = if matches!(first, DayWord::Group(_)) {
                            i
                        } else {
                            i + 2
                        };
                        return Err(error(
                            input,
                            column_at(at),
                            "a day range joins two single days, as in mon-fri or fri-mon",
                        ));
                    };
                    if from == to {
                        return Err(error(
                            input,
                            column_at(i + 2),
                            format!(
                                "the day range {}-{} names the same day twice; write just {:?}",
                                token.text,
                                tokens.get(i + 2).map_or("", |t| t.text.as_str()),
                                token.text
                            ),
                        ));
                    }
                    let mut mask = 0u8;
                    let mut d = from;
                    loop {
                        mask |= 1 << d;
                        if d == to {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                    add_days(mask, token.column, range.is_some())?;
                    i += 3;
                }
            },
        }
    }
    let (start, end) = range.unwrap_or((0, MINUTES_PER_DAY));
    Ok(Clause {
        days: if days == 0 { ALL_DAYS } else { days },
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(s: &str) -> TimeWindow {
        TimeWindow::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The instant of a local civil time in `tz`; panics if it is ambiguous or does not exist.
    fn local(tz: &TimeZone, civil: &str) -> Timestamp {
        let dt: DateTime = civil.parse().unwrap();
        tz.to_ambiguous_timestamp(dt).unambiguous().unwrap()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn berlin() -> TimeZone {
        parse_time_zone("Europe/Berlin").unwrap()
    }

    fn new_york() -> TimeZone {
        parse_time_zone("America/New_York").unwrap()
    }

    const SEED: &str = "00:00-06:00 weekdays, all weekends";

    #[test]
    fn seed_phrase_in_utc() {
        let w = window(SEED);
        let tz = utc();
        // 2026-03-03 is a Tuesday, 2026-03-07 a Saturday.
        assert!(w.contains(ts("2026-03-03T03:00:00Z"), &tz), "Tue 03:00");
        assert!(!w.contains(ts("2026-03-03T07:00:00Z"), &tz), "Tue 07:00");
        assert!(w.contains(ts("2026-03-07T14:00:00Z"), &tz), "Sat 14:00");
        assert!(w.contains(ts("2026-03-09T05:59:00Z"), &tz), "Mon 05:59");
        assert!(!w.contains(ts("2026-03-09T06:00:00Z"), &tz), "Mon 06:00");
        assert!(!w.contains(ts("2026-03-06T23:00:00Z"), &tz), "Fri 23:00");
        assert!(
            w.contains(ts("2026-03-06T05:59:59.999Z"), &tz),
            "Fri 05:59:59.999"
        );
    }

    #[test]
    fn seed_phrase_occurrences_merge_the_weekend_with_monday_morning() {
        let w = window(SEED);
        let tz = utc();
        let weekend = Some(ts("2026-03-07T00:00:00Z"));
        assert_eq!(w.occurrence_start(ts("2026-03-09T05:00:00Z"), &tz), weekend);
        assert_eq!(w.occurrence_start(ts("2026-03-08T12:00:00Z"), &tz), weekend);
        assert_eq!(w.occurrence_start(ts("2026-03-07T00:00:00Z"), &tz), weekend);
        assert_eq!(
            w.occurrence_start(ts("2026-03-06T03:00:00Z"), &tz),
            Some(ts("2026-03-06T00:00:00Z"))
        );
        assert_eq!(
            w.occurrence_start(ts("2026-03-03T03:00:00Z"), &tz),
            Some(ts("2026-03-03T00:00:00Z"))
        );
        assert_eq!(w.occurrence_start(ts("2026-03-06T23:00:00Z"), &tz), None);
        assert_eq!(w.occurrence_start(ts("2026-03-09T06:00:00Z"), &tz), None);
    }

    #[test]
    fn weekend_occurrence_spans_the_spring_forward_sunday_in_berlin() {
        let w = window(SEED);
        let tz = berlin();
        // Sat 2026-03-28 00:00 CET (+01) to Mon 2026-03-30 06:00 CEST (+02).
        let start = Some(ts("2026-03-27T23:00:00Z"));
        assert_eq!(
            w.occurrence_start(local(&tz, "2026-03-30T05:00"), &tz),
            start
        );
        assert_eq!(
            w.occurrence_start(local(&tz, "2026-03-29T12:00"), &tz),
            start
        );
        assert!(!w.contains(local(&tz, "2026-03-30T06:00"), &tz));
    }

    #[test]
    fn plain_range_crosses_midnight_every_day() {
        let w = window("22:00-06:00");
        let tz = utc();
        assert!(w.contains(ts("2026-03-04T23:30:00Z"), &tz));
        assert!(w.contains(ts("2026-03-05T05:59:00Z"), &tz));
        assert!(!w.contains(ts("2026-03-05T06:00:00Z"), &tz));
        assert!(!w.contains(ts("2026-03-05T21:59:00Z"), &tz));
        assert!(w.contains(ts("2026-03-05T22:00:00Z"), &tz));
        assert_eq!(
            w.occurrence_start(ts("2026-03-05T05:59:00Z"), &tz),
            Some(ts("2026-03-04T22:00:00Z"))
        );
        // Sunday night into Monday wraps around the week.
        assert_eq!(
            w.occurrence_start(ts("2026-03-09T01:00:00Z"), &tz),
            Some(ts("2026-03-08T22:00:00Z"))
        );
    }

    #[test]
    fn crossing_range_belongs_to_its_start_day() {
        let w = window("fri 22:00-02:00");
        let tz = utc();
        assert!(w.contains(ts("2026-03-07T01:00:00Z"), &tz), "Sat 01:00");
        assert!(!w.contains(ts("2026-03-08T01:00:00Z"), &tz), "Sun 01:00");
        assert!(!w.contains(ts("2026-03-06T01:00:00Z"), &tz), "Fri 01:00");
        assert!(!w.contains(ts("2026-03-06T21:59:00Z"), &tz), "Fri 21:59");
        assert!(w.contains(ts("2026-03-06T22:00:00Z"), &tz), "Fri 22:00");
        assert!(!w.contains(ts("2026-03-07T02:00:00Z"), &tz), "Sat 02:00");
        assert_eq!(
            w.occurrence_start(ts("2026-03-07T01:00:00Z"), &tz),
            Some(ts("2026-03-06T22:00:00Z"))
        );
    }

    #[test]
    fn weekend_boundaries() {
        let tz = utc();
        for text in [
            "weekends",
            "all weekends",
            "sat-sun",
            "all weekend",
            "saturdays sundays",
        ] {
            let w = window(text);
            assert!(
                !w.contains(ts("2026-03-06T23:59:59Z"), &tz),
                "{text}: Fri 23:59:59"
            );
            assert!(
                w.contains(ts("2026-03-07T00:00:00Z"), &tz),
                "{text}: Sat 00:00"
            );
            assert!(
                w.contains(ts("2026-03-08T23:59:59Z"), &tz),
                "{text}: Sun 23:59:59"
            );
            assert!(
                !w.contains(ts("2026-03-09T00:00:00Z"), &tz),
                "{text}: Mon 00:00"
            );
        }
    }

    #[test]
    fn berlin_spring_forward() {
        let w = window("00:00-06:00");
        let tz = berlin();
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z.
        let early = ts("2026-03-29T00:30:00Z"); // 01:30 CET
        assert!(w.contains(early, &tz));
        assert_eq!(
            w.occurrence_start(early, &tz),
            Some(ts("2026-03-28T23:00:00Z"))
        );
        let after_jump = ts("2026-03-29T01:30:00Z"); // 03:30 CEST
        assert!(w.contains(after_jump, &tz));
        assert_eq!(
            w.occurrence_start(after_jump, &tz),
            Some(ts("2026-03-28T23:00:00Z"))
        );
        assert!(w.contains(ts("2026-03-29T03:59:00Z"), &tz)); // 05:59 CEST
        assert!(!w.contains(ts("2026-03-29T04:00:00Z"), &tz)); // 06:00 CEST
        assert!(!w.contains(ts("2026-03-29T04:30:00Z"), &tz)); // 06:30 CEST
    }

    #[test]
    fn berlin_fall_back() {
        let w = window("00:00-06:00");
        let tz = berlin();
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:30 happens twice.
        let midnight = Some(ts("2026-10-24T22:00:00Z"));
        for t in [
            ts("2026-10-24T23:30:00Z"), // 01:30 CEST
            ts("2026-10-25T00:30:00Z"), // 02:30 CEST
            ts("2026-10-25T01:30:00Z"), // 02:30 CET
            ts("2026-10-25T04:59:00Z"), // 05:59 CET
        ] {
            assert!(w.contains(t, &tz), "{t}");
            assert_eq!(w.occurrence_start(t, &tz), midnight, "{t}");
        }
        assert!(!w.contains(ts("2026-10-25T05:00:00Z"), &tz)); // 06:00 CET
        assert!(!w.contains(ts("2026-10-25T05:30:00Z"), &tz)); // 06:30 CET
        // The next day is back to a plain +01 midnight.
        assert_eq!(
            w.occurrence_start(ts("2026-10-26T01:30:00Z"), &tz),
            Some(ts("2026-10-25T23:00:00Z"))
        );
    }

    #[test]
    fn range_starting_in_the_skipped_hour_begins_at_the_transition() {
        let w = window("02:30-05:00");
        let tz = berlin();
        // Local 02:00-03:00 does not exist on 2026-03-29; the clock jumps at 01:00Z.
        assert!(!w.contains(ts("2026-03-29T00:59:00Z"), &tz)); // 01:59 CET
        assert!(w.contains(ts("2026-03-29T01:00:00Z"), &tz)); // 03:00 CEST
        assert_eq!(
            w.occurrence_start(ts("2026-03-29T01:10:00Z"), &tz),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert!(!w.contains(ts("2026-03-29T03:00:00Z"), &tz)); // 05:00 CEST
    }

    #[test]
    fn range_inside_the_repeated_hour_occurs_twice() {
        let w = window("02:30-05:00");
        let tz = berlin();
        let first = ts("2026-10-25T00:45:00Z"); // 02:45 CEST
        assert!(w.contains(first, &tz));
        assert_eq!(
            w.occurrence_start(first, &tz),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert!(!w.contains(ts("2026-10-25T01:15:00Z"), &tz)); // 02:15 CET
        let second = ts("2026-10-25T01:45:00Z"); // 02:45 CET
        assert!(w.contains(second, &tz));
        assert_eq!(
            w.occurrence_start(second, &tz),
            Some(ts("2026-10-25T01:30:00Z"))
        );
        assert_eq!(
            w.occurrence_start(ts("2026-10-25T03:59:00Z"), &tz), // 04:59 CET
            Some(ts("2026-10-25T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_dst() {
        let w = window("00:00-06:00");
        let tz = new_york();
        // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z.
        let t = ts("2026-03-08T06:30:00Z"); // 01:30 EST
        assert!(w.contains(t, &tz));
        assert_eq!(w.occurrence_start(t, &tz), Some(ts("2026-03-08T05:00:00Z")));
        assert!(w.contains(ts("2026-03-08T09:59:00Z"), &tz)); // 05:59 EDT
        assert!(!w.contains(ts("2026-03-08T10:30:00Z"), &tz)); // 06:30 EDT
        // 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00Z; 01:30 happens twice.
        for t in [ts("2026-11-01T05:30:00Z"), ts("2026-11-01T06:30:00Z")] {
            assert!(w.contains(t, &tz), "{t}");
            assert_eq!(
                w.occurrence_start(t, &tz),
                Some(ts("2026-11-01T04:00:00Z")),
                "{t}"
            );
        }
        assert!(!w.contains(ts("2026-11-01T11:30:00Z"), &tz)); // 06:30 EST
        assert!(w.contains(ts("2026-11-01T10:59:00Z"), &tz)); // 05:59 EST
    }

    #[test]
    fn always_window_occurrences_are_local_days() {
        let tz = berlin();
        for text in [
            "daily",
            "all day",
            "every day",
            "00:00-24:00",
            "every day all day",
        ] {
            let w = window(text);
            let t = ts("2026-10-25T12:00:00Z");
            assert!(w.contains(t, &tz), "{text}");
            assert_eq!(
                w.occurrence_start(t, &tz),
                Some(ts("2026-10-24T22:00:00Z")),
                "{text}"
            );
        }
    }

    #[test]
    fn spellings_of_the_same_window_are_equal() {
        let groups: &[&[&str]] = &[
            &[
                SEED,
                "weekdays 00:00-06:00, all weekends",
                "mon-fri 00:00-06:00, sat-sun all day",
                "00:00-06:00 on weekdays, weekends",
                "Mon to Fri 0:00 to 6:00, all Saturdays and Sundays",
                "00:00 - 06:00 Mondays Tuesdays Wednesdays Thursdays Fridays, sat, sun",
                "all weekends, 00:00-06:00 mon-wed, 00:00-03:00 thu-fri, 03:00-06:00 thu-fri",
                "MON\u{2013}FRI 00:00\u{2013}06:00, WEEKEND",
            ],
            &[
                "22:00-06:00",
                "daily 22:00-06:00",
                "22:00-24:00, 00:00-06:00",
                "every day 22:00 to 06:00",
            ],
            &["22:00-00:00", "22:00-24:00", "every day 22:00-24:00"],
            &[
                "fri-mon 09:00-10:00",
                "09:00-10:00 fri, 09:00-10:00 sat, sun 09:00-10:00, mon 9:00-10:00",
            ],
            &[
                "fri-mon",
                "all fri, all sat, all sun, all mon",
                "fri sat sun mon all day",
            ],
            &[
                "all day",
                "daily",
                "every day",
                "everyday",
                "00:00-24:00",
                "mon-sun",
                "weekdays, weekends",
            ],
            &["fri 22:00-02:00", "fri 22:00-24:00, sat 00:00-02:00"],
        ];
        for group in groups {
            let first = window(group[0]);
            for text in &group[1..] {
                assert_eq!(window(text), first, "{text:?} vs {:?}", group[0]);
            }
        }
        assert_ne!(window("mon-fri"), window("fri-mon"));
        assert_ne!(window("22:00-06:00"), window("06:00-22:00"));
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            (SEED, "Mon-Fri 00:00-06:00, Sat-Sun all day"),
            ("22:00-06:00", "daily 22:00-06:00"),
            ("fri 22:00-02:00", "Fri 22:00-02:00"),
            ("all day", "daily all day"),
            ("fri-mon 09:00-10:00", "Fri-Mon 09:00-10:00"),
            ("sun 22:00-06:00", "Sun 22:00-06:00"),
            ("fri 22:00-24:00, sat", "Fri 22:00-24:00, Sat all day"),
            (
                "mon 09:00-12:00, mon 11:00-13:00, wed 09:00-13:00",
                "Mon 09:00-13:00, Wed 09:00-13:00",
            ),
            ("22:00-00:00 sat", "Sat 22:00-24:00"),
            // Not foldable into one crossing range: it would read "Fri 22:00-22:00".
            (
                "fri 22:00-24:00, sat 00:00-22:00",
                "Fri 22:00-24:00, Sat 00:00-22:00",
            ),
        ];
        for (input, expected) in cases {
            let w = window(input);
            assert_eq!(w.to_string(), expected, "{input:?}");
            assert_eq!(window(&w.to_string()), w, "{input:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            SEED,
            "22:00-06:00",
            "fri 22:00-02:00",
            "fri-mon",
            "wed 23:00-01:00, thu 00:00-00:30, thu 00:30-02:00",
            "sun 23:59-00:01, mon 00:01-00:02",
            "12:00-13:00 weekdays, 22:00-06:00 fri-sun, all wed",
            "sat 00:00-23:59, sun 23:59-24:00",
        ] {
            let w = window(text);
            assert_eq!(window(&w.to_string()), w, "{text:?} -> {w}");
        }
    }

    /// The problem's column, and a message that names it.
    fn parse_error(s: &str) -> WindowError {
        match TimeWindow::parse(s) {
            Ok(w) => panic!("{s:?} should not parse, got {w}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("25:00-06:00", 1, "hour 25"),
            ("00:00-00:00", 7, "ends where it starts"),
            ("funday", 1, "unknown word \"funday\""),
            ("", 1, "empty time window"),
            ("   ", 1, "empty time window"),
            ("00:00-06:00 weekdays,,", 22, "nothing between two commas"),
            ("00:00-06:00 weekdays,", 22, "nothing after the last ','"),
            (", weekends", 1, "nothing before ','"),
            ("24:00-06:00", 1, "only as the end"),
            ("24:30", 1, "hour 24"),
            ("06:60-07:00", 4, "minute 60"),
            ("00:00:00-06:00", 1, "seconds are not supported"),
            ("0600-0700", 1, "not a time"),
            ("09:00", 6, "end time"),
            ("09:00-", 7, "end time"),
            (
                "09:00-17:00 mon 10:00-11:00",
                17,
                "already has a time range",
            ),
            ("all weekends 09:00-10:00", 14, "already has a time range"),
            ("mon 09:00-17:00 tue", 17, "both before and after"),
            ("mon-mon", 5, "same day twice"),
            ("weekdays-sun", 1, "two single days"),
            ("mon-weekends", 5, "two single days"),
            ("mon-09:00", 5, "two single days"),
            ("all", 4, "after \"all\""),
            ("all 09:00-10:00", 5, "after \"all\""),
            ("09:00-10:00 on", 15, "expected days after \"on\""),
            ("day", 1, "must follow"),
            ("mon; tue", 4, "unexpected character ';'"),
            ("- mon", 1, "unexpected '-'"),
            ("mon to", 7, "two single days"),
            ("to fri", 1, "\"to\" joins"),
            ("über 09:00-10:00", 1, "unknown word \"über\""),
            ("weekdays, fünday", 11, "unknown word \"fünday\""),
        ];
        for &(input, column, needle) in cases {
            let e = parse_error(input);
            assert_eq!(e.column, column, "{input:?}: {e}");
            assert!(e.message.contains(needle), "{input:?}: {e}");
            assert_eq!(e.input, input);
        }
        let e = parse_error("funday");
        assert!(e.message.contains("weekdays"), "says what is accepted: {e}");
        assert_eq!(
            e.to_string(),
            format!(
                "invalid time window: {} (at character 1 of \"funday\")",
                e.message
            )
        );
    }

    #[test]
    fn time_zones() {
        assert_eq!(parse_time_zone("UTC").unwrap(), TimeZone::UTC);
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        let e = parse_time_zone("Europe/Atlantis").unwrap_err();
        assert_eq!(e.name, "Europe/Atlantis");
        assert!(e.to_string().contains("\"Europe/Atlantis\""), "{e}");
        assert!(parse_time_zone("").is_err());
        assert!(parse_time_zone("Etc/Unknown").is_err());
    }

    #[test]
    fn from_str_matches_parse() {
        let w: TimeWindow = SEED.parse().unwrap();
        assert_eq!(w, window(SEED));
    }

    /// Words and symbols of the language, to build inputs that get past the lexer.
    fn vocabulary() -> impl Strategy<Value = String> {
        let words = prop::sample::select(vec![
            "mon", "tue", "wed", "thu", "fri", "sat", "sun", "mondays", "weekdays", "weekends",
            "weekend", "daily", "every", "day", "all", "on", "and", "to", "-", ",", "00:00",
            "06:00", "22:00", "24:00", "9:30", "23:59", "12:00", "25:00", "xyz", ":",
        ]);
        prop::collection::vec(words, 0..10).prop_map(|w| w.join(" "))
    }

    /// A window assembled from random clauses that are valid by construction.
    fn valid_window() -> impl Strategy<Value = String> {
        let clause = (
            1u8..=ALL_DAYS,
            0u16..MINUTES_PER_DAY,
            0u16..=MINUTES_PER_DAY,
            any::<bool>(),
        )
            .prop_filter("end must differ from start", |(_, s, e, _)| s != e)
            .prop_map(|(days, start, end, days_first)| {
                let names: Vec<&str> = (0..7)
                    .filter(|d| days & (1 << d) != 0)
                    .map(|d| DAY_NAMES[d])
                    .collect();
                let range = format!("{}-{}", Hhmm(start), Hhmm(end));
                if days_first {
                    format!("{} {range}", names.join(" "))
                } else {
                    format!("{range} on {}", names.join(" and "))
                }
            });
        prop::collection::vec(clause, 1..5).prop_map(|c| c.join(", "))
    }

    fn zones() -> impl Strategy<Value = TimeZone> {
        prop::sample::select(vec![
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
        ])
        .prop_map(|name| parse_time_zone(name).unwrap())
    }

    /// The hour a fall-back repeats is one occurrence, from its first start: on
    /// 2022-11-06 in New York, 01:00–02:00 runs from 05:00Z (EDT) to 07:00Z (EST), and at
    /// 06:00Z (01:00 EST, the transition itself) it began at 05:00Z. (Found by the property
    /// test below; its seed is kept in proptest-regressions.)
    #[test]
    fn a_repeated_civil_hour_is_one_occurrence_from_its_first_start() {
        let w = TimeWindow::parse("01:00-02:00 on Sun").unwrap();
        let tz = parse_time_zone("America/New_York").unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        for t in [
            "2022-11-06T05:00:00Z",
            "2022-11-06T06:00:00Z",
            "2022-11-06T06:59:59Z",
        ] {
            assert_eq!(
                w.occurrence_start(at(t), &tz),
                Some(at("2022-11-06T05:00:00Z")),
                "{t}"
            );
        }
        assert_eq!(w.occurrence_start(at("2022-11-06T07:00:00Z"), &tz), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = TimeWindow::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in vocabulary()) {
            if let Ok(w) = TimeWindow::parse(&s) {
                prop_assert_eq!(TimeWindow::parse(&w.to_string()), Ok(w));
            }
        }

        #[test]
        fn display_round_trips_for_any_window(s in valid_window()) {
            let w = TimeWindow::parse(&s).unwrap();
            prop_assert_eq!(TimeWindow::parse(&w.to_string()), Ok(w), "{}", s);
        }

        #[test]
        fn occurrence_start_is_where_the_window_begins(
            s in valid_window(),
            tz in zones(),
            secs in 1_577_836_800i64..1_893_456_000, // 2020..2030
            near_transition in any::<bool>(),
            jitter in -129_600i64..129_600, // +-36 hours
        ) {
            let w = TimeWindow::parse(&s).unwrap();
            let mut t = Timestamp::from_second(secs).unwrap();
            // Half the cases land within a day and a half of a DST change, where the
            // occurrence search has to cross the transition.
            if let (true, Some(tr)) = (near_transition, tz.following(t).next()) {
                t = tr.timestamp().checked_add(SignedDuration::from_secs(jitter)).unwrap();
            }
            let start = w.occurrence_start(t, &tz);
            prop_assert_eq!(start.is_some(), w.contains(t, &tz));
            if let (Some(start), false) = (start, w.is_always()) {
                prop_assert!(start <= t);
                prop_assert!(w.contains(start, &tz));
                let before = start.checked_sub(SignedDuration::from_nanos(1)).unwrap();
                prop_assert!(!w.contains(before, &tz), "{} {} {}", s, t, start);
                // Sample the stretch between: all of it must be inside.
                let gap = t.duration_since(start);
                for k in 1..16 {
                    let probe = start.checked_add(gap / 16 * k).unwrap();
                    prop_assert!(w.contains(probe, &tz), "{} {} {}", s, t, probe);
                }
            }
        }
    }
}
