//! # blackbox-api
//!
//! The request and response bodies of the Blackbox HTTP API (docs/API.md), written once: the
//! service (`blackbox-server`) serialises them, the Rust client (`blackbox-client`) deserialises
//! them, and [`openapi::document`] builds the OpenAPI 3.1 document (docs/openapi.json, served at
//! `GET /openapi.json`) from their JSON Schemas, so that the three cannot drift.
//!
//! Members are declared in the order the service writes them. Optional members are `null` when
//! the service has always written `null`, and left out where it has always left them out
//! (`skip_serializing_if`): the wire format is the reference, not the Rust shape.
//!
//! What it leaves out: HTTP itself (no axum, no reqwest), and the documents other crates own and
//! the API only carries (verification reports, alerts, erasure outcomes, retention reports,
//! proofs: see docs/FORMAT.md), which are [`serde_json::Value`] here.
#![forbid(unsafe_code)]
// The OpenAPI document is one `json!` literal per route table: deeper than the default 128.
#![recursion_limit = "256"]

pub mod agents;
pub mod alerts;
pub mod decide;
pub mod entries;
pub mod erasures;
pub mod error;
pub mod events;
pub mod exports;
pub mod openapi;
pub mod overview;
pub mod proofs;
pub mod rules;
pub mod schema_check;
pub mod tokens;
pub mod witnesses;
