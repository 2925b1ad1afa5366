-- Blackbox ledger store on PostgreSQL, schema version 1 (crates/store-pg; docs/STORAGE.md).
-- Entry lines are kept byte for byte in `entries.line`; nothing here interprets them.

CREATE TABLE meta(
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per tenant chain. A chain row exists from the first write that names the tenant.
-- COLLATE "C": tenants order by their bytes, as in every other store (query order).
CREATE TABLE chains(
    chain_id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            TEXT COLLATE "C" NOT NULL UNIQUE,
    size                 BIGINT NOT NULL CHECK (size >= 0),
    head_hash            BYTEA NOT NULL,
    last_entry_id        BYTEA NOT NULL,
    merkle_state         BYTEA NOT NULL,
    last_checkpoint_size BIGINT NOT NULL,
    last_checkpoint_ms   BIGINT NOT NULL
);

CREATE TABLE entries(
    chain_id   BIGINT NOT NULL REFERENCES chains(chain_id),
    seq        BIGINT NOT NULL CHECK (seq >= 1),
    ts_ms      BIGINT NOT NULL,
    entry_id   BYTEA NOT NULL CHECK (length(entry_id) = 16),
    entry_hash BYTEA NOT NULL CHECK (length(entry_hash) = 32),
    agent_id   TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    tool       TEXT,
    line       BYTEA NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
CREATE UNIQUE INDEX entries_entry_id ON entries(entry_id);
-- Query order is (ts_ms, tenant, seq); every filter has an index that starts with it.
CREATE INDEX entries_ts      ON entries(chain_id, ts_ms, seq);
CREATE INDEX entries_ts_all  ON entries(ts_ms);
CREATE INDEX entries_agent   ON entries(agent_id, ts_ms);
CREATE INDEX entries_session ON entries(session_id, ts_ms);
CREATE INDEX entries_event   ON entries(event_type, ts_ms);
CREATE INDEX entries_tool    ON entries(tool, ts_ms) WHERE tool IS NOT NULL;

CREATE TABLE personal(
    chain_id BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    sidecar  BYTEA NOT NULL,
    PRIMARY KEY (chain_id, seq),
    FOREIGN KEY (chain_id, seq) REFERENCES entries(chain_id, seq)
);

-- subject_key: HMAC-SHA256 of a data-subject id (never the id itself).
CREATE TABLE subject_index(
    subject_key BYTEA NOT NULL,
    chain_id    BIGINT NOT NULL REFERENCES chains(chain_id),
    seq         BIGINT NOT NULL,
    entry_id    BYTEA NOT NULL,
    PRIMARY KEY (subject_key, chain_id, seq)
);
CREATE INDEX subject_index_entry ON subject_index(chain_id, seq);

CREATE TABLE checkpoints(
    checkpoint_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id      BIGINT NOT NULL REFERENCES chains(chain_id),
    size          BIGINT NOT NULL,
    ts_ms         BIGINT NOT NULL,
    note          TEXT NOT NULL
);
CREATE INDEX checkpoints_size ON checkpoints(chain_id, size, ts_ms);
CREATE INDEX checkpoints_ts   ON checkpoints(chain_id, ts_ms, size);

CREATE TABLE merkle_nodes(
    chain_id BIGINT NOT NULL REFERENCES chains(chain_id),
    level    SMALLINT NOT NULL,
    idx      BIGINT NOT NULL,
    hash     BYTEA NOT NULL,
    PRIMARY KEY (chain_id, level, idx)
);

-- Where a chain's stored entries begin after its first `size` entries were archived
-- (FORMAT.md §8); tail_hashes: the 32-byte entry hashes after the last multiple of 256.
CREATE TABLE anchors(
    chain_id    BIGINT PRIMARY KEY REFERENCES chains(chain_id),
    size        BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    tail_hashes BYTEA NOT NULL
);

-- state: 0 live, 1 deleting, 2 deleted.
CREATE TABLE archive_segments(
    chain_id  BIGINT NOT NULL REFERENCES chains(chain_id),
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    object    TEXT NOT NULL,
    sha256    BYTEA NOT NULL,
    bytes     BIGINT NOT NULL,
    first_ts  BIGINT NOT NULL,
    last_ts   BIGINT NOT NULL,
    sealed_ms BIGINT NOT NULL,
    state     SMALLINT NOT NULL,
    state_ms  BIGINT NOT NULL,
    PRIMARY KEY (chain_id, first_seq)
);
