-- The webhook outbox shared by every service instance on the database (what a data directory
-- keeps in webhooks.db on the embedded store; crates/webhooks, `Outbox`).
CREATE TABLE webhook_deliveries (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id         TEXT NOT NULL UNIQUE,
    url                TEXT NOT NULL,
    secret_ref         TEXT NOT NULL,
    format             TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    tenant             TEXT COLLATE "C" NOT NULL,
    seq                BIGINT NOT NULL,
    entry_id           TEXT NOT NULL,
    body               BYTEA NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    timeout_ms         BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    last_attempt_at_ms BIGINT,
    created_at_ms      BIGINT NOT NULL,
    delivered_at_ms    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at_ms);
CREATE TABLE webhook_high_water (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    seq    BIGINT NOT NULL
);
