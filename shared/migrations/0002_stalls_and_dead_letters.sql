-- Stall detection on jobs, and the dead letters parked from the dead-letter queues.
ALTER TABLE jobs ADD COLUMN progress_at REAL;
ALTER TABLE jobs ADD COLUMN stalled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stall_reason TEXT;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);

CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    tenant TEXT,
    job_id TEXT,
    message_type TEXT,
    lead_ids BLOB NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    history BLOB NOT NULL,
    body BLOB NOT NULL,
    dead_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'parked',
    replayed_at TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_tenant ON dead_letters (tenant, id);
