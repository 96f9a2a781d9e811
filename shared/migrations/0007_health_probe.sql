-- Readiness upserts a row here, so a store that cannot take writes shows.
CREATE TABLE IF NOT EXISTS health_probe (
    name TEXT PRIMARY KEY,
    at REAL NOT NULL
);
