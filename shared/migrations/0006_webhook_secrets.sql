-- Webhook secrets sealed per destination (and the one being rotated out), a destination
-- disabled by its receiver (410 Gone), deliveries cancelled by the user.
ALTER TABLE destinations ADD COLUMN secret TEXT;
ALTER TABLE destinations ADD COLUMN previous_secret TEXT;
ALTER TABLE destinations ADD COLUMN previous_secret_until REAL;
ALTER TABLE destinations ADD COLUMN disabled_reason TEXT;
ALTER TABLE destinations ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS webhook_batches_leased ON webhook_batches (lease_until)
    WHERE state = 'pending';
