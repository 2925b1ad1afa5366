//! `GET /v1/overview` (what the console's first page shows) and `GET /v1/checkpoints/key`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/overview`: one member per tenant the token may read (its own; an admin
/// token: every tenant with a chain, or the one named by `tenant_id`), in tenant order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Overview {
    /// The tenants.
    pub tenants: Vec<TenantOverview>,
    /// The scopes of the token that asked (`admin`, `ingest`, `read`), so that a client shows
    /// only the actions it may take.
    pub scopes: Vec<String>,
    /// The token's own tenant (`null` for an admin token without one).
    pub token_tenant: Option<String>,
    /// Fingerprint of the checkpoint signing key (`sha256:` + hex of the Ed25519 public key),
    /// as `blackbox keys show` prints it.
    pub key_fingerprint: String,
}

/// One tenant's figures, all read without scanning its entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantOverview {
    /// The tenant.
    pub tenant_id: String,
    /// Entries in its chain (the seq of the last one).
    pub entries: u64,
    /// Agents the detector knows.
    pub agents: u64,
    /// Of which paused.
    pub agents_paused: u64,
    /// Of which throttled.
    pub agents_throttled: u64,
    /// Open alerts (not acknowledged nor resolved), counted up to 1,000.
    pub alerts_open: u64,
    /// More than 1,000 alerts are open.
    pub alerts_open_more: bool,
    /// The latest signed checkpoint: `null` before the first.
    pub checkpoint: Option<CheckpointSummary>,
}

/// Size and time of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointSummary {
    /// Entries it covers.
    pub size: u64,
    /// When it was signed (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
}

/// Answer of `GET /v1/checkpoints/key`: the key that signs every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointKey {
    /// The signed-note verifier key (`<name>+<8 hex>+<base64>`, docs/FORMAT.md §7), the content
    /// of `checkpoint.pub`.
    pub verifier_key: String,
    /// `sha256:` + hex of the 32-byte Ed25519 public key.
    pub fingerprint: String,
}
