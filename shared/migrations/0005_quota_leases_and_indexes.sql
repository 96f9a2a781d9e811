-- Daily quota charges, distinct scraped leads, upkeep leases, and indexes for hot reads.
CREATE TABLE IF NOT EXISTS quota_charges (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    job_id TEXT NOT NULL,
    leads INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, job_id)
);
CREATE TABLE IF NOT EXISTS scrape_leads (
    job_id TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    PRIMARY KEY (job_id, lead_id)
);
CREATE TABLE IF NOT EXISTS upkeep_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_job ON dead_letters (job_id);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_job ON idempotency_keys (job_id);
CREATE INDEX IF NOT EXISTS jobs_by_tenant_created ON jobs (tenant, created_at);
CREATE INDEX IF NOT EXISTS jobs_stalled ON jobs (stalled) WHERE stalled = 1;
CREATE INDEX IF NOT EXISTS usage_events_by_day ON usage_events (day);
CREATE INDEX IF NOT EXISTS destinations_by_csv_name ON destinations (name) WHERE type = 'csv';
CREATE INDEX IF NOT EXISTS destinations_given_up ON destinations (job_id) WHERE failed > 0;
