//! # blackbox-ledger
//!
//! A Blackbox ledger on disk: the data directory and its keys, the appender every way in uses
//! (normalise, detect, then the writer: sequence, sign, store, checkpoint), the one clock,
//! verification of a store or an exported JSONL log using every core, proofs built from stored
//! Merkle nodes, queries and exports.
//!
//! It depends on `blackbox-core` for every byte format, on `blackbox-store` for persistence and
//! on `blackbox-detect` for what the appender evaluates; the HTTP service and the CLI sit on top
//! of it.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod anchor;
pub mod appender;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod erase;
pub mod error;
pub mod export;
pub mod journal;
pub mod jsonl;
pub mod open;
pub mod proof;
pub mod query;
pub mod relocate;
pub mod report;
pub mod rules_loaded;
pub mod tenant_map;
pub mod tiles;
pub mod verify;
pub mod writer;

pub use error::LedgerError;
