-- Which jobs used an entry. Answers stored before this could not be traced back to
-- their jobs, so a job deletion could not remove them: they go.
CREATE TABLE IF NOT EXISTS cache_jobs (
    job_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    used_at REAL NOT NULL,
    PRIMARY KEY (job_id, tenant, fingerprint)
);
CREATE INDEX IF NOT EXISTS cache_jobs_by_entry ON cache_jobs (tenant, fingerprint);
CREATE INDEX IF NOT EXISTS cache_jobs_by_age ON cache_jobs (used_at);
CREATE INDEX IF NOT EXISTS provider_answers_by_entry ON provider_answers (tenant, fingerprint);
CREATE INDEX IF NOT EXISTS provider_answers_by_age ON provider_answers (stored_at);
DELETE FROM provider_answers;
