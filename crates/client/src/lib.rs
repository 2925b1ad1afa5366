//! # blackbox-client
//!
//! A typed async client of the Blackbox HTTP API (docs/API.md in the repository): ingest with
//! client-side hashing of raw content (docs/FORMAT.md §4, through
//! [`blackbox_core::event::hash_raw_content`]) so that prompts and query text never leave the
//! agent, retries with exponential backoff on 429/503 and failed connections, a [`Batcher`] that
//! groups events pushed from many tasks, and every read, proof and token endpoint.
//!
//! What it leaves out: TLS (plain HTTP to a service on the agent's host or network for now),
//! proxies, HTTP/2, and exactly-once delivery — ingest is at-least-once at best (see [`Client`]).
//! It never writes the token into an error, a `Debug` output or a log line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), blackbox_client::Error> {
//! use blackbox_client::{Client, EntryQuery};
//! use serde_json::json;
//!
//! let client = Client::new("http://127.0.0.1:7700", "bbx_…")?;
//! let resp = client
//!     .append(&[json!({"agent_id": "a1", "session_id": "s1", "event_type": "llm_request",
//!                      "model": "gpt-4o", "prompt": "never sent, only its hash"})])
//!     .await?;
//! let entry = client.entry(&resp.entries[0].entry_id, None).await?;
//! let page = client.entries(&EntryQuery::new().agent_id("a1").limit(10)).await?;
//! # let _ = (entry, page);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod batch;
mod client;
pub mod error;
mod query;
mod retry;
#[cfg(test)]
mod testserver;
mod types;

pub use batch::{BatchConfig, Batcher};
pub use blackbox_api::tokens::TokenInfo;
pub use blackbox_core::entry::RedactionPolicy;
pub use client::{Client, ClientBuilder, NEXT_CURSOR_HEADER, Pages};
pub use error::Error;
pub use query::{AlertQuery, EntryQuery, Format};
pub use retry::{RetryPolicy, parse_retry_after};
pub use types::{
    Checkpoint, CreatedToken, Decision, DecisionRule, EntryPage, EntryRecord, EntryRef,
    IngestResponse, NewToken, RawEntries, Scope, Token,
};
