//! The MCP audit gateway (docs/MCP.md): `blackbox mcp wrap` stands in for an MCP server started
//! over stdio, `blackbox mcp proxy` in front of one served over Streamable HTTP. Both pass every
//! message through unchanged and in order, except a `tools/call` that the service refuses:
//! that one never reaches the server, and the client gets an answer naming the rule and the
//! entry that recorded the refusal.
//!
//! - [`message`]: one JSON-RPC message, read strictly;
//! - [`session`]: what is decided and recorded for each message, whatever the transport;
//! - [`pins`]: tool definitions pinned across listings and restarts;
//! - [`audit`]: the link to the service (decisions, records, the spool);
//! - [`stdio`] and [`http`]: the two transports;
//! - [`sse`]: server-sent events, read as they pass.

pub mod audit;
pub mod http;
pub mod message;
pub mod pins;
pub mod session;
pub mod sse;
pub mod stdio;

pub use audit::Audit;
pub use pins::Pins;
pub use session::{Config, Refusal, Session};
