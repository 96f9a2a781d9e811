-- A job's credit counters in a row of their own. The enricher moves them on every paid
-- call (a reservation before, a settlement after); on the job's row those updates queued
-- behind the router, which holds that row locked for a whole batch of outcomes on
-- PostgreSQL. jobs.credits and jobs.credits_committed (0011) are no longer read or
-- written (a column cannot be dropped in place on SQLite); their values move here.
CREATE TABLE IF NOT EXISTS job_credits (
    job_id TEXT PRIMARY KEY,
    credits INTEGER NOT NULL,
    committed INTEGER NOT NULL
);
INSERT INTO job_credits (job_id, credits, committed)
    SELECT job_id, credits, credits_committed FROM jobs
    WHERE credits <> 0 OR credits_committed <> 0
