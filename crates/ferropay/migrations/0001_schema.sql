-- ferropay's schema, portable between SQLite and PostgreSQL.
-- Integers are BIGINT (i64), money is *_minor (minor units), time is *_ms since the Unix epoch.

-- API keys: only a SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

-- A payment event: one checkout, paid once through one PSP session.
CREATE TABLE payments (
    id              TEXT PRIMARY KEY,
    checkout_id     TEXT NOT NULL,
    buyer_id        TEXT NOT NULL,
    buyer_email     TEXT,
    currency        TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    status          TEXT NOT NULL,
    psp             TEXT NOT NULL,
    psp_token       TEXT UNIQUE,
    psp_url         TEXT,
    psp_reference   TEXT,
    return_url      TEXT,
    failure_code    TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
-- A checkout has at most one payment that is in flight or has taken money.
CREATE UNIQUE INDEX payments_one_live_per_checkout ON payments (checkout_id)
    WHERE status NOT IN ('failed', 'expired');
CREATE INDEX payments_status_updated ON payments (status, updated_at_ms);
CREATE INDEX payments_psp_reference ON payments (psp_reference);

-- A payment order: one seller's share of a payment event.
CREATE TABLE payment_orders (
    id            TEXT PRIMARY KEY,
    payment_id    TEXT NOT NULL REFERENCES payments (id),
    position      BIGINT NOT NULL,
    order_id      TEXT NOT NULL,
    seller_id     TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    status        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (payment_id, order_id)
);
CREATE INDEX payment_orders_seller ON payment_orders (seller_id);

-- Idempotency keys of our API, with the recovery point a retried request resumes from.
CREATE TABLE idempotency_keys (
    api_key_id      TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    recovery_point  TEXT NOT NULL,
    locked_at_ms    BIGINT,
    payment_id      TEXT,
    response_status BIGINT,
    response_body   TEXT,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);

-- Webhook events seen, by the PSP's event id: a duplicate changes nothing.
CREATE TABLE webhook_events (
    psp            TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    reference      TEXT,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (psp, event_id)
);

-- The journal: append-only (see 0002), each transaction chained to its predecessor's hash.
CREATE TABLE journal_transactions (
    id            TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL UNIQUE,
    source_ref    TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    payment_id    TEXT,
    created_at_ms BIGINT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX journal_transactions_payment ON journal_transactions (payment_id);

-- Postings: debits positive, credits negative; each transaction's postings sum to zero.
CREATE TABLE postings (
    transaction_id TEXT NOT NULL REFERENCES journal_transactions (id),
    line_no        BIGINT NOT NULL,
    account        TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (transaction_id, line_no)
);
CREATE INDEX postings_account ON postings (account, currency);

-- The head of the hash chain: one row, locked by each posting transaction.
CREATE TABLE ledger_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Sellers' wallets: what the platform owes each seller, per currency. Always equal to minus the
-- sum of the postings on account `seller:{seller_id}` (invariant I4).
CREATE TABLE wallets (
    seller_id     TEXT NOT NULL,
    currency      TEXT NOT NULL,
    balance_minor BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (seller_id, currency)
);

-- The transactional outbox: events written with the change that caused them.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    published_at_ms BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (published_at_ms, created_at_ms);
