//! # blackbox-core
//!
//! The pure core of Blackbox, a tamper-evident audit log for AI agents: the entry format (v1), its
//! canonical encoding (RFC 8785), the HMAC-SHA256 hash chain, RFC 6962 / RFC 9162 Merkle trees,
//! C2SP signed-note checkpoints, inclusion and consistency proofs, and verification.
//!
//! What it deliberately leaves out: files, databases, threads, clocks and networks. Callers hand it
//! bytes and keys; it hands back entries, digests, signatures and verdicts. That is what lets an
//! offline verifier embed it. docs/FORMAT.md in the repository is the normative description of
//! every byte this crate produces.
#![forbid(unsafe_code)]

pub mod alert;
pub mod anchor;
pub mod checkpoint;
pub mod cosignature;
pub mod duration;
pub mod erasure;
mod format;
pub mod hash;
pub mod line_scan;
pub mod merkle;
mod node;
pub mod note;
pub mod origin;
pub mod proof;
pub mod tiles;
pub mod tlog_proof;
pub mod verify;
pub mod witness;

pub use hash::Hash;
pub mod entry;
pub mod error;
pub mod event;
pub mod ids;
pub mod json;
pub mod keys;

pub use error::{Error, FieldError, FssError};
