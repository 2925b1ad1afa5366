-- Schema version 4: personal sidecars sealed at rest (crates/store-pg/src/seal.rs;
-- docs/STORAGE.md, "Erasure on PostgreSQL").
-- generation NULL: a sidecar stored in clear by schema 3 (sealed when a writer next opens the
-- store); otherwise `sidecar` is sealed under data key `generation` of its chain.
ALTER TABLE personal ADD COLUMN generation INTEGER;

-- Each chain's data keys, wrapped under the epoch key of the instances' key files
-- (keys/personal-seal.key; never stored here). epoch: the epoch key it is wrapped under.
CREATE TABLE personal_keys(
    chain_id   BIGINT NOT NULL REFERENCES chains(chain_id),
    generation INTEGER NOT NULL CHECK (generation >= 1),
    epoch      BIGINT NOT NULL CHECK (epoch >= 0),
    wrapped    BYTEA NOT NULL,
    PRIMARY KEY (chain_id, generation)
);

-- Finds what is still in clear when a writer opens the store (empty once sealed).
CREATE INDEX personal_clear ON personal(chain_id) WHERE generation IS NULL;
