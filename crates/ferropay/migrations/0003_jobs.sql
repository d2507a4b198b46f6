-- The durable job queue: every call to the outside world (PSP session registration, status
-- polls; later refunds, payouts, notifications) is a row here, claimed by workers with a lease,
-- retried with backoff, and dead-lettered when it fails too often or for good.
--
-- status: queued (waiting for due_at_ms) | running (leased until due_at_ms) | done | dead.
-- due_at_ms is when a worker may take the job next: its run time while queued, the end of its
-- lease while running, so that one index finds both due jobs and jobs of crashed workers.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    due_at_ms       BIGINT NOT NULL,
    lease_token     TEXT,
    last_error      TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT,
    UNIQUE (kind, idempotency_key)
);
CREATE INDEX jobs_due ON jobs (due_at_ms) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_dead ON jobs (finished_at_ms) WHERE status = 'dead';
