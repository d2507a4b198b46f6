-- Webhooks to merchants (crates/ferropay/src/webhooks): the endpoints they register, one
-- delivery per event and endpoint, and each attempt of it (the endpoint's delivery log).

CREATE TABLE webhook_endpoints (
    id                            TEXT PRIMARY KEY,
    url                           TEXT NOT NULL,
    -- The event types it wants, separated by spaces; `*` for all.
    event_types                   TEXT NOT NULL,
    description                   TEXT,
    -- 1 while deliveries go to it; 0 once disabled (by an operator, or after failing for the
    -- whole retry window).
    enabled                       BIGINT NOT NULL,
    -- The signing secrets: kept as they are, since each delivery is signed with them.
    secret                        TEXT NOT NULL,
    previous_secret               TEXT,
    previous_secret_expires_at_ms BIGINT,
    -- The first failed attempt since the last success; NULL while it answers.
    failing_since_ms              BIGINT,
    disabled_reason               TEXT,
    deleted_at_ms                 BIGINT,
    created_at_ms                 BIGINT NOT NULL,
    updated_at_ms                 BIGINT NOT NULL
);

-- One event for one endpoint: pending → succeeded | failed. Unique, so an event reaches an
-- endpoint once however often it is dispatched.
CREATE TABLE webhook_deliveries (
    id            TEXT PRIMARY KEY,
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    -- Redeliveries asked for by hand: each runs as a job of its own.
    redeliveries  BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at_ms, id);

CREATE TABLE webhook_attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at_ms BIGINT NOT NULL,
    -- The endpoint's HTTP status; NULL when no answer came (timeout, refused, forbidden).
    status_code     BIGINT,
    latency_ms      BIGINT NOT NULL,
    error           TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at_ms);

-- Which outbox events have been handed to the endpoints (a delivery and its job written for
-- each subscribed endpoint, in the same transaction as this mark). Events from before webhooks
-- existed count as handed over.
ALTER TABLE outbox ADD COLUMN webhooks_dispatched_at_ms BIGINT;
UPDATE outbox SET webhooks_dispatched_at_ms = created_at_ms;
CREATE INDEX outbox_webhooks_undispatched ON outbox (created_at_ms, id)
    WHERE webhooks_dispatched_at_ms IS NULL;
