-- Credit ledger (issue 13): one row per paid provider call, reserved before it and settled
-- after; credit kinds per call; vendor repeats that are free; per-tenant daily commitments;
-- job budgets and the tasks of paused jobs.
CREATE TABLE IF NOT EXISTS credit_calls (
    call_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    leads INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    credits INTEGER,
    found INTEGER,
    emails INTEGER,
    reserved_at REAL NOT NULL,
    settled_at REAL
);
CREATE INDEX IF NOT EXISTS credit_calls_by_job ON credit_calls (job_id);
CREATE INDEX IF NOT EXISTS credit_calls_by_tenant_day ON credit_calls (tenant, day);
CREATE TABLE IF NOT EXISTS credit_kinds (
    call_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    credits INTEGER NOT NULL,
    PRIMARY KEY (call_id, kind)
);
CREATE TABLE IF NOT EXISTS credit_repeats (
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    charged_at REAL NOT NULL,
    PRIMARY KEY (provider, key_id, kind, request)
);
CREATE TABLE IF NOT EXISTS tenant_credits (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE IF NOT EXISTS paused_tasks (
    task_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    task BLOB NOT NULL,
    parked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS paused_tasks_by_job ON paused_tasks (job_id);
ALTER TABLE jobs ADD COLUMN max_credits INTEGER;
ALTER TABLE jobs ADD COLUMN credits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN credits_committed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN paused_reason TEXT;
ALTER TABLE jobs ADD COLUMN paused_at REAL
