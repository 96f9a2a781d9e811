-- Job deadlines (moved by store outages), and alerts remembered once per job and kind.
ALTER TABLE jobs ADD COLUMN deadline_at REAL;
CREATE TABLE IF NOT EXISTS alerts (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (job_id, kind)
);
