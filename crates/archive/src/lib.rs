//! # blackbox-archive
//!
//! Retention for Blackbox ledgers: per-tenant policies (`[retention]` in `blackbox.toml`),
//! sealing whole chain segments older than the hot window into zstd-compressed JSONL objects in
//! object storage (a local directory by default, S3-compatible storage by URL, through the
//! `object_store` crate), reading each object back and verifying it before the store's copies
//! are removed, leaving a signed anchor in the store; expiring segments past the archive
//! retention; and reading the archive back for `verify --include-archive` and
//! `query --include-archive`.
//!
//! Every step is recorded in the chain itself (`retention_archived`, `retention_deleted`
//! entries; docs/FORMAT.md §17), and every step is safe to interrupt: an object is written and
//! verified before the store transaction that removes the hot copies, and that transaction is
//! all-or-nothing, so a run killed at any point leaves either the old state or the new one, and
//! the next run carries on.
#![forbid(unsafe_code)]

pub mod erase;
pub mod error;
pub mod objects;
pub mod query;
pub mod run;
pub mod segment;
pub mod settings;
pub mod status;

pub use error::ArchiveError;
pub use objects::Archive;
