-- Retention (crates/ferropay/src/retention.rs): the rows that guard against retries for a while
-- are found by age. Portable between SQLite and PostgreSQL.
CREATE INDEX jobs_done ON jobs (finished_at_ms) WHERE status = 'done';
CREATE INDEX webhook_events_received ON webhook_events (received_at_ms);
