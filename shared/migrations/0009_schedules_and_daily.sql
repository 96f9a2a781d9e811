-- Saved searches (schedules), their runs, the lead ids they delivered (only_new), and the
-- time of each lead outcome (daily summaries, throughput) with the daily exports written.
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    every_s INTEGER,
    cron TEXT,
    only_new INTEGER NOT NULL DEFAULT 0,
    job BLOB NOT NULL,
    sealed_secrets BLOB NOT NULL,
    created_at REAL NOT NULL,
    next_run_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_run_at);
CREATE INDEX IF NOT EXISTS schedules_by_tenant ON schedules (tenant, created_at);
CREATE TABLE IF NOT EXISTS schedule_runs (
    run_id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    slot_at REAL NOT NULL,
    started_at REAL NOT NULL,
    job_id TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS schedule_runs_by_schedule ON schedule_runs (schedule_id, started_at);
CREATE INDEX IF NOT EXISTS schedule_runs_by_job ON schedule_runs (job_id);
CREATE TABLE IF NOT EXISTS schedule_leads (
    schedule_id TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (schedule_id, lead_id)
);
ALTER TABLE leads ADD COLUMN outcome_at REAL;
CREATE INDEX IF NOT EXISTS leads_by_outcome_at ON leads (outcome_at);
CREATE INDEX IF NOT EXISTS leads_by_lead_id ON leads (lead_id, seq);
CREATE TABLE IF NOT EXISTS daily_exports (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (tenant, day)
);
