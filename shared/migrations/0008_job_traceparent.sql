-- The W3C traceparent of the request that created the job (shared/tracing.py), so work
-- that starts from the store rather than from a message (webhook deliveries) continues
-- the job's trace. NULL when tracing is off.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
