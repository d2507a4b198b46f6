-- PSP connectors (Stripe, Adyen beside the sandbox). Each payment already keeps the PSP it was
-- registered with (`payments.psp`); its refunds, polls and webhooks follow it.
-- A seller's account at a PSP (Stripe's connected account `acct_…`), where payouts are sent.
CREATE TABLE seller_psp_accounts (
    seller_id     TEXT NOT NULL,
    psp           TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (seller_id, psp)
);
-- The provider a payout was sent through (NULL: sent before connectors, by the default one).
ALTER TABLE payouts ADD COLUMN psp TEXT;
