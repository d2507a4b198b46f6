-- The operator console (crates/ferropay/src/console, crates/ferropay-http/src/console) and the
-- analysts' views. Portable between SQLite and PostgreSQL: the views use only SUM, COUNT, CASE,
-- CAST, `%` and SUBSTR, and every sum is cast to BIGINT (PostgreSQL's SUM of a BIGINT is a
-- NUMERIC). Days are UTC days, given as the day's first millisecond (`day_start_ms`).

-- Console sessions: an operator signs in with an API key once and holds a random session token
-- in a cookie; only the token's SHA-256 is stored (as for API keys), with the key it was opened
-- with, so revoking the key ends its sessions at the next request.
CREATE TABLE console_sessions (
    token_sha256  TEXT PRIMARY KEY,
    api_key_id    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at_ms);

-- The console's filters and pages, each walking an index:
-- payments of a seller, newest first (keyset on the order's creation, which is the payment's);
CREATE INDEX payment_orders_seller_created
    ON payment_orders (seller_id, created_at_ms, payment_id);
-- the day's counts and volume by status, and the funnel, from the index alone;
CREATE INDEX payments_day_status
    ON payments ((created_at_ms - created_at_ms % 86400000), status, currency, amount_minor);
-- a payment's timeline: the PSP webhooks about it and the deliveries of its events;
CREATE INDEX webhook_events_reference ON webhook_events (reference, received_at_ms);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
-- all deliveries, newest first; breaks by kind and status; the journal by day;
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at_ms, id);
CREATE INDEX reconciliation_breaks_kind
    ON reconciliation_breaks (kind, status, created_at_ms, id);
CREATE INDEX reconciliation_breaks_created ON reconciliation_breaks (created_at_ms, id);
CREATE INDEX journal_transactions_day
    ON journal_transactions ((created_at_ms - created_at_ms % 86400000), kind);
-- trial_balance: every ledger account's balance per currency (debits positive, credits
-- negative). The balances of a currency sum to zero: each journal transaction does. Kept in
-- `account_balances` by a trigger on `postings` (0015 of each dialect), in the same transaction
-- as the postings, so that reading a busy account's balance does not sum its million postings;
-- postings are append-only (0002), so inserts are all the trigger follows. The console's tests
-- check it against the postings' own sums on both databases.
CREATE TABLE account_balances (
    account       TEXT NOT NULL,
    currency      TEXT NOT NULL,
    balance_minor BIGINT NOT NULL,
    postings      BIGINT NOT NULL,
    PRIMARY KEY (account, currency)
);
CREATE VIEW trial_balance AS
SELECT account, currency, balance_minor, postings FROM account_balances;

-- seller_balances: each seller's wallet per currency, as `GET /v1/sellers/{id}/wallet` shows it
-- (crates/ferropay/src/wallet reads this view): the balance the ledger keeps (minus the seller
-- account's postings), what the platform owes (the balance plus payouts in flight), what may be
-- paid out now (the balance less the seller's part of refunds pending at the PSP).
CREATE VIEW seller_balances AS
SELECT w.seller_id,
       w.currency,
       w.balance_minor,
       CAST(w.balance_minor + COALESCE((SELECT SUM(p.amount_minor) FROM payouts p
           WHERE p.seller_id = w.seller_id AND p.currency = w.currency
           AND p.status IN ('pending', 'in_transit')), 0) AS BIGINT) AS amount_minor,
       CAST(w.balance_minor - COALESCE((SELECT SUM(r.amount_minor - r.platform_fee_minor)
           FROM refunds r WHERE r.seller_id = w.seller_id AND r.currency = w.currency
           AND r.status = 'pending'), 0) AS BIGINT) AS available_minor,
       CAST(COALESCE((SELECT SUM(p.amount_minor) FROM payouts p
           WHERE p.seller_id = w.seller_id AND p.currency = w.currency
           AND p.status IN ('pending', 'in_transit')), 0) AS BIGINT) AS payouts_in_flight_minor,
       w.updated_at_ms
FROM wallets w;

-- payment_funnel: per UTC day of creation, how many payments were created, paid (captured:
-- succeeded, or refunded since), failed, expired, refunded (in part or in full) and are still
-- open, and the conversion in basis points (paid × 10,000 / created).
CREATE VIEW payment_funnel AS
SELECT created_at_ms - created_at_ms % 86400000 AS day_start_ms,
       COUNT(*) AS created,
       CAST(SUM(CASE WHEN status IN ('succeeded', 'partially_refunded', 'refunded')
           THEN 1 ELSE 0 END) AS BIGINT) AS paid,
       CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed,
       CAST(SUM(CASE WHEN status = 'expired' THEN 1 ELSE 0 END) AS BIGINT) AS expired,
       CAST(SUM(CASE WHEN status IN ('partially_refunded', 'refunded')
           THEN 1 ELSE 0 END) AS BIGINT) AS refunded,
       CAST(SUM(CASE WHEN status IN ('requires_payment', 'processing')
           THEN 1 ELSE 0 END) AS BIGINT) AS open,
       CAST(10000 * SUM(CASE WHEN status IN ('succeeded', 'partially_refunded', 'refunded')
           THEN 1 ELSE 0 END) / COUNT(*) AS BIGINT) AS conversion_bps
FROM payments
GROUP BY created_at_ms - created_at_ms % 86400000;

-- daily_settlement: per UTC day, PSP and currency, what the ledger expects the PSP to owe for
-- the day's activity (captures less refunds and the PSP's fees, on `psp_receivable:{psp}`)
-- against what the PSP paid out to the bank that day (`bank_settlement` transactions, posted by
-- reconciliation from the settlement file), and what is left owed from that day's movements.
CREATE VIEW daily_settlement AS
SELECT j.created_at_ms - j.created_at_ms % 86400000 AS day_start_ms,
       SUBSTR(p.account, 16) AS psp,
       p.currency,
       CAST(SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END)
           AS BIGINT) AS expected_minor,
       CAST(SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END)
           AS BIGINT) AS paid_out_minor,
       CAST(SUM(p.amount_minor) AS BIGINT) AS outstanding_minor
FROM journal_transactions j
JOIN postings p ON p.transaction_id = j.id
WHERE p.account LIKE 'psp_receivable:%'
GROUP BY j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), p.currency;
