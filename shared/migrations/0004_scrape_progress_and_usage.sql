-- Scrape progress and cooldowns on jobs, dependencies, deferred leads, usage metering.
ALTER TABLE jobs ADD COLUMN scraped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cooling_down_until REAL;
ALTER TABLE jobs ADD COLUMN charged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS jobs_by_dependency ON jobs (depends_on);
CREATE TABLE IF NOT EXISTS scrape_pages (
    job_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    leads INTEGER NOT NULL,
    PRIMARY KEY (job_id, page)
);
CREATE TABLE IF NOT EXISTS deferred_leads (
    job_id TEXT PRIMARY KEY,
    leads BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    metric TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, metric)
);
CREATE TABLE IF NOT EXISTS usage_events (
    event_id TEXT PRIMARY KEY,
    day TEXT NOT NULL
);
