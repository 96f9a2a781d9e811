-- Provider answers by tenant, provider and lead fingerprint.
CREATE TABLE IF NOT EXISTS provider_answers (
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    found BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (tenant, provider, fingerprint)
);
