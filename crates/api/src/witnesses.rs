//! `GET /v1/witnesses`: the witnesses the service submits its checkpoints to (`[witnessing]`),
//! the policy it checks, and where each witness stands (docs/WITNESS.md).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/witnesses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WitnessesAnswer {
    /// Cosignatures required per checkpoint by the service's own checks (`/v1/verify`, the
    /// console, exports); 0 when no witness is configured.
    pub quorum: u64,
    /// The witnesses, in the order of the settings.
    pub witnesses: Vec<WitnessStatus>,
}

/// One witness and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WitnessStatus {
    /// The witness's name (its key name).
    pub name: String,
    /// Its submission URL (credentials in it are not shown).
    pub url: String,
    /// Its public key (C2SP vkey, type 0x04).
    pub key: String,
    /// Per chain (tenant id): the largest checkpoint size it cosigned. A tenant token sees its
    /// own chain only.
    pub cosigned: BTreeMap<String, u64>,
    /// When it last cosigned (RFC 3339), if since the service started.
    pub last_cosigned_at: Option<String>,
    /// The last failure or refusal, in words.
    pub last_error: Option<String>,
    /// When (RFC 3339).
    pub last_error_at: Option<String>,
    /// Chains it is no longer asked for, and why (its state went backwards).
    pub suspended: BTreeMap<String, String>,
}
