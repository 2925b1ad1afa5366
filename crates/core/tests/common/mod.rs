//! Deterministic log builder shared by the integration tests.
//!
//! Everything here is a pure function of a [`LogSpec`]: fixed HMAC keys (`k1`, and `k2` for
//! rotation), a fixed Ed25519 checkpoint key named `blackbox/test`, fixed salts and fixed UUIDv7
//! randomness. A log is a `Vec<Record>` in log order: entry lines (with their personal sidecar,
//! if any) interleaved with the signed checkpoints the writer would have produced.
#![allow(dead_code)]

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::entry::{
    GENESIS_HASH, RedactionPolicy, SealParams, canonical_json, format_timestamp, make_sidecar,
    next_entry_id, normalize_event, seal,
};
use blackbox_core::ids::{KeyId, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::merkle::{CompactRange, leaf_hash};
use blackbox_core::note::{NoteSigner, NoteVerifier};
use blackbox_core::verify::{LogVerifier, Report, check_entry};
use serde_json::{Map, Value, json};

/// The HMAC key of generation `k1`.
pub const K1: [u8; 32] = [0x42; 32];
/// The HMAC key of generation `k2` (rotation).
pub const K2: [u8; 32] = [0x43; 32];
/// An attacker's HMAC key: never in any keyring.
pub const FORGER: [u8; 32] = [0x66; 32];
/// Seed of the checkpoint signing key.
pub const NOTE_SEED: [u8; 32] = [0x17; 32];
/// Seed of another checkpoint key with the same name (a forger's).
pub const OTHER_NOTE_SEED: [u8; 32] = [0x18; 32];
/// Name of the checkpoint key, and prefix of every origin.
pub const LOG_NAME: &str = "blackbox/test";
/// 2026-04-14T18:00:00.123Z.
pub const BASE_MS: i64 = 1_776_189_600_123;

/// `k1` and `k2` as key ids.
pub fn key_id(name: &str) -> KeyId {
    KeyId::parse(name).unwrap()
}

/// Keyring holding only `k1`.
pub fn keyring_k1() -> Keyring {
    let mut ring = Keyring::new();
    ring.push(key_id("k1"), HmacKey::from_bytes(K1)).unwrap();
    ring
}

/// Keyring holding `k1` and `k2` (current).
pub fn keyring_k1_k2() -> Keyring {
    let mut ring = keyring_k1();
    ring.push(key_id("k2"), HmacKey::from_bytes(K2)).unwrap();
    ring
}

/// A keyring whose `k1` (and `k2`) are the wrong bytes.
pub fn wrong_keyring() -> Keyring {
    let mut ring = Keyring::new();
    ring.push(key_id("k1"), HmacKey::from_bytes([0x99; 32]))
        .unwrap();
    ring.push(key_id("k2"), HmacKey::from_bytes([0x98; 32]))
        .unwrap();
    ring
}

/// The log's checkpoint signer.
pub fn note_signer() -> NoteSigner {
    NoteSigner::new(LOG_NAME, NOTE_SEED).unwrap()
}

/// The log's checkpoint public key.
pub fn note_verifier() -> NoteVerifier {
    note_signer().verifier()
}

/// Another key under the same name (signatures by it must not verify).
pub fn other_note_signer() -> NoteSigner {
    NoteSigner::new(LOG_NAME, OTHER_NOTE_SEED).unwrap()
}

/// SplitMix64: tiny, deterministic, good enough to vary test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

/// One record of a log file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An entry line and its personal-data sidecar.
    Entry {
        line: Vec<u8>,
        sidecar: Option<Vec<u8>>,
    },
    /// A signed checkpoint (the full note text).
    Checkpoint { note_text: String },
}

impl Record {
    pub fn is_entry(&self) -> bool {
        matches!(self, Self::Entry { .. })
    }

    pub fn line(&self) -> Option<&[u8]> {
        match self {
            Self::Entry { line, .. } => Some(line),
            Self::Checkpoint { .. } => None,
        }
    }

    /// The entry line parsed as JSON (panics on a checkpoint).
    pub fn json(&self) -> Value {
        serde_json::from_slice(self.line().unwrap()).unwrap()
    }

    /// Tenant and seq of an entry.
    pub fn tenant_seq(&self) -> Option<(String, u64)> {
        let v: Value = serde_json::from_slice(self.line()?).ok()?;
        Some((v["tenant_id"].as_str()?.to_owned(), v["seq"].as_u64()?))
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Entries in all, over all tenants.
    pub entries: usize,
    /// 1 to 3 tenants.
    pub tenants: usize,
    /// A checkpoint per tenant every this many entries of that tenant (0: none).
    pub checkpoint_every: u64,
    /// A checkpoint per tenant after its last entry (unless one was just written).
    pub final_checkpoint: bool,
    /// Global entry index from which `k2` signs instead of `k1`.
    pub rotate_at: Option<usize>,
    /// Varies events, salts and ids.
    pub seed: u64,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            entries: 50,
            tenants: 1,
            checkpoint_every: 10,
            final_checkpoint: true,
            rotate_at: None,
            seed: 1,
        }
    }
}

/// A built log.
#[derive(Debug, Clone)]
pub struct Log {
    pub records: Vec<Record>,
    /// Tenants, in the order `tenant_name(i)`.
    pub tenants: Vec<String>,
    /// The last checkpoint of each tenant (same order as `tenants`), if any was written.
    pub final_checkpoints: Vec<Option<String>>,
}

impl Log {
    /// Index in `records` of entry `seq` of `tenant`.
    pub fn index_of(&self, tenant: &str, seq: u64) -> usize {
        self.records
            .iter()
            .position(|r| r.tenant_seq().is_some_and(|(t, s)| t == tenant && s == seq))
            .unwrap_or_else(|| panic!("no entry {tenant}/{seq}"))
    }

    /// Index in `records` of the checkpoint of `tenant` at `size`.
    pub fn checkpoint_index(&self, tenant: &str, size: u64) -> usize {
        self.records
            .iter()
            .position(|r| match r {
                Record::Checkpoint { note_text } => {
                    let cp = SignedCheckpoint::parse(note_text).unwrap().checkpoint;
                    cp.size == size && cp.origin == origin(tenant)
                }
                Record::Entry { .. } => false,
            })
            .unwrap_or_else(|| panic!("no checkpoint {tenant}@{size}"))
    }

    /// The trusted final checkpoints of every tenant.
    pub fn trusted(&self) -> Vec<String> {
        self.final_checkpoints.iter().flatten().cloned().collect()
    }
}

/// Tenant `i`'s name.
pub fn tenant_name(i: usize) -> String {
    ["tenant_xyz", "tenant_abc", "acme.eu-1"][i].to_owned()
}

/// Checkpoint origin of `tenant`.
pub fn origin(tenant: &str) -> String {
    format!("{LOG_NAME}/{tenant}")
}

/// A realistic agent event number `i` (mixed `llm_request`, flat `tool_call`, other types; some
/// with data subjects). Deterministic in `rng`.
pub fn make_event(rng: &mut Rng, tenant: &str, i: usize) -> Value {
    const TOOLS: [&str; 3] = ["query_database", "search_kb", "send_email"];
    let agent = format!("moltbot-agent-prod-{:02}", rng.below(4));
    let session = format!("sess_{:06x}", rng.below(6));
    let ts = format_timestamp(BASE_MS + i as i64 * 1_000).unwrap();
    let mut ev = match rng.below(3) {
        0 => json!({
            "event_type": "llm_request",
            "payload": {
                "model": if rng.below(2) == 0 { "gpt-4o" } else { "claude-sonnet" },
                "prompt": format!("Summarise yesterday's orders for customer #{} (\"VIP\")\n", rng.below(1000)),
                "completion": format!("Customer placed {} orders totalling EUR {}.{:02} \u{20ac}", rng.below(9), rng.below(900), rng.below(100)),
                "token_count_in": rng.below(5000),
                "token_count_out": rng.below(900),
                "latency_ms": (rng.below(100_000) as f64) / 10.0,
                "tool_calls": [{
                    "name": "search_kb",
                    "args_raw": {"q": format!("orders {}", rng.below(50)), "top_k": 5},
                    "result_hash": Hash::digest(&rng.bytes::<8>()).to_prefixed(),
                }],
            },
        }),
        1 => json!({
            // The seed's flat tool_call shape: fields at the top level.
            "event_type": "tool_call",
            "tool_name": TOOLS[rng.below(3) as usize],
            "agent_role": "analyst",
            "invocation_id": format!("inv_{:08x}", rng.next_u64() as u32),
            "args": {"query": format!("SELECT * FROM customer_orders WHERE customer_id = {} LIMIT 100", rng.below(10_000)), "limit": 100},
            "authorization": {"rbac_role": "analyst", "allowed": rng.below(4) != 0, "policy_matched": "analyst-read-orders"},
            "result": {"rows_returned": rng.below(200), "result_data": ["row-1", "row-2"], "data_classification": "internal"},
            "duration_ms": rng.below(500),
        }),
        _ => json!({
            "event_type": "decision",
            "payload": {
                "decision": "escalate_to_human",
                "reason_code": "policy_denied",
                "score": (rng.below(1000) as f64) / 1000.0,
                "notes": "tab\tquote\" backslash\\ \u{1F600}",
            },
        }),
    };
    let obj = ev.as_object_mut().unwrap();
    obj.insert("tenant_id".into(), json!(tenant));
    obj.insert("agent_id".into(), json!(agent));
    obj.insert("session_id".into(), json!(session));
    obj.insert("client_seq".into(), json!(i + 1));
    obj.insert("timestamp".into(), json!(ts));
    if i % 4 == 1 {
        let subjects = if rng.below(2) == 0 {
            json!([{"id": format!("ds_{:04x}", rng.below(0xffff)), "category": "customer"}])
        } else {
            json!([format!("ds_{:04x}", rng.below(0xffff)), "ds_shared"])
        };
        obj.insert("data_subjects".into(), subjects);
    }
    ev
}

/// Per-chain writer state.
#[derive(Debug, Clone)]
pub struct ChainWriter {
    pub tenant: TenantId,
    pub seq: u64,
    pub prev: Hash,
    pub last_id: Option<uuid::Uuid>,
    pub tree: CompactRange,
    /// Seal format version 1 (no origin, no `written_at`), as logs written before v2.
    pub v1: bool,
}

impl ChainWriter {
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: TenantId::parse(tenant).unwrap(),
            seq: 0,
            prev: GENESIS_HASH,
            last_id: None,
            tree: CompactRange::new(),
            v1: false,
        }
    }

    /// Normalises, seals and chains one event; returns the entry record.
    pub fn append(
        &mut self,
        event: Value,
        now_ms: i64,
        key_id: &KeyId,
        key: &HmacKey,
        rng: &mut Rng,
    ) -> Record {
        let mut ev = normalize_event(
            event,
            &RedactionPolicy::default(),
            &blackbox_core::origin::Origin::Service,
        )
        .unwrap();
        if self.v1 {
            ev.origin = None;
        }
        let sidecar = ev
            .personal
            .as_ref()
            .map(|fields| make_sidecar(fields, rng.bytes::<32>()).unwrap());
        let ts = ev.timestamp_ms.unwrap_or(now_ms);
        let entry_id = next_entry_id(self.last_id, u64::try_from(ts).unwrap(), rng.bytes::<10>());
        self.seq += 1;
        let sealed = seal(
            &ev,
            &SealParams {
                tenant_id: &self.tenant,
                seq: self.seq,
                entry_id,
                timestamp_ms: ts,
                key_id,
                key,
                prev_entry_hash: self.prev,
                personal_digest: sidecar.as_ref().map(|s| s.digest),
                clock_skew_ms: None,
            },
        )
        .unwrap();
        self.prev = sealed.entry_hash;
        self.last_id = Some(entry_id);
        self.tree.append(leaf_hash(sealed.entry_hash.as_bytes()));
        Record::Entry {
            line: sealed.line,
            sidecar: sidecar.map(|s| s.bytes),
        }
    }

    /// The writer state after the entries of `tenant` in `records`, to append more.
    pub fn resume(tenant: &str, records: &[Record]) -> Self {
        let mut w = Self::new(tenant);
        for r in records {
            let Some(line) = r.line() else { continue };
            let v: Value = serde_json::from_slice(line).unwrap();
            if v["tenant_id"] != tenant {
                continue;
            }
            let h = line_hash(line);
            w.seq = v["seq"].as_u64().unwrap();
            w.prev = h;
            w.last_id = Some(uuid::Uuid::parse_str(v["entry_id"].as_str().unwrap()).unwrap());
            w.tree.append(leaf_hash(h.as_bytes()));
        }
        w
    }

    /// Seals an erasure marker (FORMAT.md §5) with `payload`, as the writer does: clients cannot
    /// send the `erasure` event type, so it is built without normalisation.
    pub fn append_marker(
        &mut self,
        payload: &Value,
        now_ms: i64,
        key_id: &KeyId,
        key: &HmacKey,
        rng: &mut Rng,
    ) -> Record {
        use blackbox_core::ids::{AgentId, EventType, SessionId};
        let ev = blackbox_core::entry::NormalizedEvent {
            tenant_id: Some(self.tenant.clone()),
            agent_id: AgentId::parse("blackbox").unwrap(),
            session_id: SessionId::parse("erasure").unwrap(),
            event_type: EventType::parse("erasure").unwrap(),
            timestamp_ms: None,
            client_seq: None,
            payload_jcs: canonical_json(payload).unwrap(),
            tool: None,
            personal: None,
            subject_ids: Vec::new(),
            origin: (!self.v1).then_some(blackbox_core::origin::Origin::Service),
        };
        let entry_id = next_entry_id(
            self.last_id,
            u64::try_from(now_ms).unwrap(),
            rng.bytes::<10>(),
        );
        self.seq += 1;
        let sealed = seal(
            &ev,
            &SealParams {
                tenant_id: &self.tenant,
                seq: self.seq,
                entry_id,
                timestamp_ms: now_ms,
                key_id,
                key,
                prev_entry_hash: self.prev,
                personal_digest: None,
                clock_skew_ms: None,
            },
        )
        .unwrap();
        self.prev = sealed.entry_hash;
        self.last_id = Some(entry_id);
        self.tree.append(leaf_hash(sealed.entry_hash.as_bytes()));
        Record::Entry {
            line: sealed.line,
            sidecar: None,
        }
    }

    /// A checkpoint of the chain as it stands, signed by `signer`.
    pub fn checkpoint(&self, signer: &NoteSigner, now_ms: i64) -> String {
        checkpoint_text(
            self.tenant.as_str(),
            self.tree.size(),
            self.tree.root(),
            now_ms,
            signer,
        )
    }
}

/// A signed checkpoint note for `tenant` at `size` with `root`.
pub fn checkpoint_text(
    tenant: &str,
    size: u64,
    root: Hash,
    now_ms: i64,
    signer: &NoteSigner,
) -> String {
    let cp = Checkpoint {
        origin: origin(tenant),
        size,
        root,
        extensions: vec![format!("timestamp {}", format_timestamp(now_ms).unwrap())],
    };
    SignedCheckpoint::sign(cp, signer).unwrap().note_text()
}

/// Builds a log.
pub fn build(spec: &LogSpec) -> Log {
    assert!((1..=3).contains(&spec.tenants));
    let mut rng = Rng::new(spec.seed);
    let signer = note_signer();
    let k1 = HmacKey::from_bytes(K1);
    let k2 = HmacKey::from_bytes(K2);
    let (id1, id2) = (key_id("k1"), key_id("k2"));
    let tenants: Vec<String> = (0..spec.tenants).map(tenant_name).collect();
    let mut chains: Vec<ChainWriter> = tenants.iter().map(|t| ChainWriter::new(t)).collect();
    let mut last_cp: Vec<Option<(u64, String)>> = vec![None; spec.tenants];
    let mut records = Vec::new();
    for i in 0..spec.entries {
        // Tenant 0 gets most entries; every chain gets its first entry early.
        let t = if i < spec.tenants {
            i
        } else {
            rng.below(spec.tenants as u64) as usize
        };
        let event = make_event(&mut rng, &tenants[t], i);
        let now = BASE_MS + i as i64 * 1_000;
        let (kid, key) = match spec.rotate_at {
            Some(r) if i >= r => (&id2, &k2),
            _ => (&id1, &k1),
        };
        records.push(chains[t].append(event, now, kid, key, &mut rng));
        let size = chains[t].tree.size();
        if spec.checkpoint_every > 0 && size.is_multiple_of(spec.checkpoint_every) {
            let text = chains[t].checkpoint(&signer, now + 500);
            records.push(Record::Checkpoint {
                note_text: text.clone(),
            });
            last_cp[t] = Some((size, text));
        }
    }
    if spec.final_checkpoint {
        let now = BASE_MS + spec.entries as i64 * 1_000;
        for (t, chain) in chains.iter().enumerate() {
            let size = chain.tree.size();
            if size == 0 || last_cp[t].as_ref().is_some_and(|(s, _)| *s == size) {
                continue;
            }
            let text = chain.checkpoint(&signer, now);
            records.push(Record::Checkpoint {
                note_text: text.clone(),
            });
            last_cp[t] = Some((size, text));
        }
    }
    Log {
        records,
        tenants,
        final_checkpoints: last_cp.into_iter().map(|c| c.map(|(_, t)| t)).collect(),
    }
}

/// Verifies `records`: every checkpoint is registered first (those in `trusted` as trusted),
/// then every entry is checked and fed in order. Positions are 1-based record indexes; trusted
/// checkpoints get position 0.
pub fn verify(
    records: &[Record],
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    trusted: &[String],
) -> Report {
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    for text in trusted {
        v.add_checkpoint(0, text, true);
    }
    for (i, r) in records.iter().enumerate() {
        if let Record::Checkpoint { note_text } = r {
            v.add_checkpoint(i as u64 + 1, note_text, false);
        }
    }
    for (i, r) in records.iter().enumerate() {
        if let Record::Entry { line, sidecar } = r {
            v.feed(check_entry(i as u64 + 1, line, sidecar.as_deref(), keys));
        }
    }
    v.finish()
}

/// Verifies with every check on: keyring `k1`+`k2`, the public key, the trusted final
/// checkpoints of `log`.
pub fn verify_full(log: &Log, records: &[Record]) -> Report {
    verify(
        records,
        Some(&keyring_k1_k2()),
        Some(note_verifier()),
        &log.trusted(),
    )
}

/// Re-signs an entry given as a JSON object (with or without `hmac_sha256`) under `key`,
/// producing a well-formed v1 line: `body` = RFC 8785 of the object without the MAC.
/// A version-2 entry's `written_at` follows its `entry_id` (as a forger holding the key would
/// keep it, so that what a test checks is the forgery it means, not a stale member).
pub fn sign_value(v: &Value, key: &HmacKey) -> Vec<u8> {
    let mut obj: Map<String, Value> = v.as_object().unwrap().clone();
    obj.remove("hmac_sha256");
    if obj.contains_key("written_at")
        && let Some(id) = obj
            .get("entry_id")
            .and_then(Value::as_str)
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
    {
        let ms = blackbox_core::entry::written_ms(id.as_u128());
        obj.insert(
            "written_at".into(),
            Value::String(blackbox_core::entry::format_timestamp(ms).unwrap()),
        );
    }
    let mut body = canonical_json(&Value::Object(obj)).unwrap();
    let mac = key.sign(&Hash::digest(&body).0);
    body.pop();
    body.extend_from_slice(b",\"hmac_sha256\":\"");
    body.extend_from_slice(hex::encode(mac).as_bytes());
    body.extend_from_slice(b"\"}");
    body
}

/// `sha256:` hash of a line, as the next entry's `prev_entry_hash` records it.
pub fn line_hash(line: &[u8]) -> Hash {
    Hash::digest(line)
}

/// Compact description of a report's findings, for assertion messages.
pub fn describe(r: &Report) -> String {
    let mut s = format!("ok={} total={}\n", r.ok(), r.findings_total);
    for f in r.findings.iter().take(20) {
        s.push_str(&format!(
            "  [{}] {}#{} pos {}: {}\n",
            f.kind, f.tenant_id, f.seq, f.position, f.message
        ));
    }
    s
}

/// Forward-secure generation `k1` (state `K1` at epoch 0) with epochs of `epoch_secs` from
/// `BASE_MS`: the auditor's initial keyring.
pub fn fss_initial_ring(epoch_secs: u64) -> Keyring {
    let params = blackbox_core::keys::FssParams::starting_at(epoch_secs, BASE_MS).unwrap();
    let mut ring = Keyring::new();
    ring.push_forward_secure(
        key_id("k1"),
        params,
        blackbox_core::keys::FssState::initial(K1),
    )
    .unwrap();
    ring
}

/// The service's keyring of [`fss_initial_ring`] as it is on disk during epoch `e`.
pub fn fss_ring_at(epoch_secs: u64, e: u64) -> Keyring {
    let params = blackbox_core::keys::FssParams::starting_at(epoch_secs, BASE_MS).unwrap();
    fss_initial_ring(epoch_secs)
        .advanced_for(params.epoch_start_ms(e) + 1)
        .unwrap_or_else(|| fss_initial_ring(epoch_secs))
}
