-- Provider keys' and source accounts' allowances, shared by every process (shared/limits.py).
-- A window of `limit` requests per span is `limit` slots, each holding the time (epoch s) of
-- one of the latest requests; the oldest slot says when the next request may go.
CREATE TABLE IF NOT EXISTS limit_slots (
    target TEXT NOT NULL,
    win TEXT NOT NULL,
    slot INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (target, win, slot)
);
CREATE INDEX IF NOT EXISTS limit_slots_oldest ON limit_slots (target, win, at);
-- Requests in flight to a provider (its `_CONCURRENCY`): one row per slot; a slot is free
-- when its lease has expired (a holder that died frees it after the provider's timeout).
CREATE TABLE IF NOT EXISTS limit_leases (
    target TEXT NOT NULL,
    slot INTEGER NOT NULL,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (target, slot)
);
-- A submitted asynchronous batch (Dropcontact) by what it asked: a redelivered task polls
-- the stored request id instead of submitting (and paying for) the batch again.
CREATE TABLE IF NOT EXISTS provider_batches (
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    submitted_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE INDEX IF NOT EXISTS provider_batches_by_age ON provider_batches (submitted_at);
