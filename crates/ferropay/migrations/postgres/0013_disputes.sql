-- Disputes (chargebacks) and late captures.
--
-- A dispute is the buyer's bank taking (part of) a captured payment back through the PSP: it is
-- created when the PSP withdraws the funds (`chargeback:{psp_dispute_id}` in the journal) and
-- ends won (the funds come back: `chargeback_reversal:{psp_dispute_id}`) or lost. Its status
-- only moves forward: needs_response -> under_review -> won | lost.
CREATE TABLE disputes (
    id              TEXT PRIMARY KEY,
    psp             TEXT NOT NULL,
    psp_dispute_id  TEXT NOT NULL,
    payment_id      TEXT NOT NULL REFERENCES payments (id),
    currency        TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,
    evidence        TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
CREATE UNIQUE INDEX disputes_psp_dispute_id ON disputes (psp_dispute_id, psp);
CREATE INDEX disputes_payment ON disputes (payment_id, created_at_ms);
CREATE INDEX disputes_created ON disputes (created_at_ms, id);

-- A late capture of a payment whose checkout another payment has already paid (or holds in
-- flight) is captured and refunded at once: it names that payment, and is no longer the
-- checkout's one live payment.
ALTER TABLE payments ADD COLUMN duplicate_of TEXT;
DROP INDEX payments_one_live_per_checkout;
CREATE UNIQUE INDEX payments_one_live_per_checkout ON payments (checkout_id)
    WHERE status NOT IN ('failed', 'expired') AND duplicate_of IS NULL;
