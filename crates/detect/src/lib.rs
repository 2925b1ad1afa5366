//! Anomaly detection for Blackbox: the rules file (the seed's `anomaly_detection:` YAML), content
//! normalisation and pattern matching, time windows and bucketed baselines.
//!
//! Pure: no I/O runtime, no database, no HTTP. The service owns a [`detector::Detector`] in its
//! writer thread and feeds it every event; the detector answers with what fired.
//!
//! - [`rules`]: the rules file, parsed and checked (errors carry line and column);
//! - [`normalize`] and [`patterns`]: content normalisation and the combined pattern index;
//! - [`timewindow`]: recurring time windows in a time zone;
//! - [`features`]: what the detector reads from an event's payload;
//! - [`detector`]: counters, baselines, suppression, pause and throttle state;
//! - [`backtest`]: a rules file run over a log's entries, counting what would have fired;
//! - [`evaluate`]: a rules file measured on labelled text (`rules test --corpus`);
//! - [`record`]: the payloads of the entries detection writes (alerts, pauses, throttles);
//! - [`verdict`]: what `/v1/decide` answers from what fired (shared with `rules test`).

pub mod backtest;
pub mod describe;
pub mod detector;
pub mod evaluate;
pub mod features;
pub mod normalize;
pub mod patterns;
pub mod record;
pub mod rules;
pub mod timewindow;
pub mod verdict;

pub use detector::{Detector, Firing, Gate, Observation};
pub use features::Features;
pub use rules::{Action, RuleSet, RulesError};

/// Event types the detector and operators write (never fed back into the detector).
pub const DETECTION_EVENTS: [&str; 5] = rules::WEBHOOK_EVENTS;
