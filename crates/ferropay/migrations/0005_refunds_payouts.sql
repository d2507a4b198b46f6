-- Refunds (money back to a buyer, per payment order) and payouts (money on to a seller).

-- The platform's fee taken on each order at capture, so refunds can return it exactly.
ALTER TABLE payment_orders ADD COLUMN platform_fee_minor BIGINT NOT NULL DEFAULT 0;

CREATE TABLE refunds (
    id                 TEXT PRIMARY KEY,
    payment_id         TEXT NOT NULL REFERENCES payments (id),
    payment_order_id   TEXT NOT NULL REFERENCES payment_orders (id),
    seller_id          TEXT NOT NULL,
    currency           TEXT NOT NULL,
    amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
    -- The part of the refund that the platform's fee returns; the seller returns the rest.
    platform_fee_minor BIGINT NOT NULL CHECK (platform_fee_minor >= 0),
    status             TEXT NOT NULL,
    psp_refund_id      TEXT,
    failure_code       TEXT,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_order ON refunds (payment_order_id);
CREATE INDEX refunds_seller_status ON refunds (seller_id, currency, status);

CREATE TABLE payouts (
    id             TEXT PRIMARY KEY,
    seller_id      TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    status         TEXT NOT NULL,
    psp_payout_id  TEXT,
    failure_code   TEXT,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE INDEX payouts_seller ON payouts (seller_id, currency, status);
