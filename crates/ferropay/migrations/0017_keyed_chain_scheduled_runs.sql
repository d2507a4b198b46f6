-- Keyed tamper evidence and scheduled work run once across instances. Portable between SQLite
-- and PostgreSQL.
--
-- Each journal transaction records the id of the chain key its hash is an HMAC under (the key
-- itself lives outside the database: a file or the environment). NULL: an unkeyed SHA-256 hash,
-- as every transaction written before this version has.
ALTER TABLE journal_transactions ADD COLUMN hash_key_id TEXT;

-- One row per scheduled run (`reconcile` or `payouts`, for one UTC day): the instance that
-- holds it renews `lease_until_ms` while it works; a run whose lease ran out (its instance
-- crashed) or that was marked `interrupted` (its instance stopped) is taken over by another.
-- `completed` and `failed` runs are not run again.
CREATE TABLE scheduled_runs (
    schedule        TEXT NOT NULL,
    slot            TEXT NOT NULL,
    status          TEXT NOT NULL,
    holder          TEXT NOT NULL,
    lease_until_ms  BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT,
    error           TEXT,
    PRIMARY KEY (schedule, slot)
);
CREATE INDEX scheduled_runs_open ON scheduled_runs (status, lease_until_ms);
