//! The time-window grammar of anomaly rules (detect/timewindow.rs, hand-written; docs/RULES.md).
//!
//! Must hold for any text: `TimeWindow::parse` never panics, and an error's column lies within
//! the text (or one past its end). For a window that parses: its `Display` parses back to an
//! equal window and prints the same again (canonical form); and read in zones with and without
//! DST (including Lord Howe's 30-minute shift), at instants around DST changes and others drawn
//! from the text: `occurrence_start(t)` is `Some` exactly when `contains(t)`, is not after `t`,
//! lies inside the window, and so does the instant halfway between.
#![no_main]

use blackbox_detect::timewindow::{TimeWindow, parse_time_zone};
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

const ZONES: [&str; 4] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
];

/// Instants (Unix seconds) near the 2026 DST changes of the zones above, and a leap day.
const INSTANTS: [i64; 8] = [
    1_774_746_000, // 2026-03-29 01:00 UTC: Berlin springs forward
    1_792_890_000, // 2026-10-25 01:00 UTC: Berlin falls back
    1_773_039_600, // 2026-03-08 07:00 UTC: New York springs forward
    1_793_599_200, // 2026-11-01 06:00 UTC: New York falls back
    1_775_314_800, // 2026-04-04 15:00 UTC: Lord Howe ends DST (02:00 local, 30 min back)
    1_791_043_200, // 2026-10-03 15:00 UTC: Lord Howe starts DST
    1_709_208_000, // 2024-02-29 12:00 UTC
    0,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let window = match TimeWindow::parse(text) {
        Ok(w) => w,
        Err(e) => {
            assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}");
            return;
        }
    };
    let printed = window.to_string();
    let again = TimeWindow::parse(&printed).expect("a window's own text parses");
    assert_eq!(again, window, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);

    // Instants: the fixed ones, each shifted by offsets drawn from the text.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        seed = (seed ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    for zone in ZONES {
        let Ok(tz) = parse_time_zone(zone) else {
            continue;
        };
        for (i, base) in INSTANTS.iter().enumerate() {
            for k in 0..4u32 {
                let shift = seed.rotate_left(i as u32 * 8 + k * 16) % (8 * 86_400);
                let secs = base + i64::try_from(shift).unwrap_or(0) - 4 * 86_400;
                let Ok(t) = Timestamp::from_second(secs) else {
                    continue;
                };
                let inside = window.contains(t, &tz);
                let start = window.occurrence_start(t, &tz);
                assert_eq!(start.is_some(), inside, "{printed} at {t} in {zone}");
                let Some(s) = start else {
                    continue;
                };
                assert!(
                    s <= t,
                    "{printed}: occurrence of {t} starts later, at {s} ({zone})"
                );
                assert!(
                    window.contains(s, &tz),
                    "{printed}: start {s} of {t} is outside ({zone})"
                );
                let half = SignedDuration::from_nanos(
                    i64::try_from(t.duration_since(s).as_nanos() / 2).unwrap_or(i64::MAX),
                );
                if let Ok(mid) = s.checked_add(half) {
                    assert!(
                        window.contains(mid, &tz),
                        "{printed}: {mid} between {s} and {t} is outside ({zone})"
                    );
                }
            }
        }
    }
});
