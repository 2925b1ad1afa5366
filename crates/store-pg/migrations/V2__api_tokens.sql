-- API tokens shared by every service instance on the database (what a data directory keeps
-- in tokens.db on the embedded store): the SHA-256 of each token's secret, never the secret.
CREATE TABLE api_tokens (
    id            text PRIMARY KEY,
    tenant_id     text COLLATE "C",
    scopes        text NOT NULL,
    label         text NOT NULL,
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_ms    bigint NOT NULL,
    revoked_ms    bigint
);
