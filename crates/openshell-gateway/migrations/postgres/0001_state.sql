-- The gateway's state (the same tables as the embedded SQLite store). Times are
-- seconds since the epoch, except leases' expiry: milliseconds, on the
-- database's clock (replicas' clocks may differ).
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    pid INTEGER,
    auto_remove BOOLEAN NOT NULL,
    created BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT,
    owner TEXT NOT NULL
);
CREATE TABLE policies (
    sandbox TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (sandbox, revision)
);
CREATE TABLE providers (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    credential_name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE inference (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    provider TEXT NOT NULL REFERENCES providers(name),
    model TEXT NOT NULL,
    timeout_secs BIGINT NOT NULL,
    generation BIGINT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- Which replica reconciles a sandbox (or one being made, or a standby one).
CREATE TABLE leases (
    sandbox TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);
