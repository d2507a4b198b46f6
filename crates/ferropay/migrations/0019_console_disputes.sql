-- The console's disputes and the analysts' views after them. Portable between SQLite and
-- PostgreSQL (each dialect's triggers keeping `settlement_days` and `disputed_days` follow, in
-- 0019 of its folder).

-- The disputes page filters by status, newest first (keyset on `(created_at_ms, id)`).
CREATE INDEX disputes_status ON disputes (status, created_at_ms, id);

-- Today's figures and the funnel read the payments of a few days through `payments_day_status`
-- (0015). With `created_at_ms` in it too, the index alone answers them: PostgreSQL cannot take a
-- column from an expression index's expression, so without it each row was read from the table
-- (an index-only scan now), and SQLite calls it covering.
DROP INDEX payments_day_status;
CREATE INDEX payments_day_status
    ON payments ((created_at_ms - created_at_ms % 86400000), status, currency, amount_minor,
                 created_at_ms);

-- settlement_days: per UTC day of the journal transaction, PSP and currency, the sums of the
-- postings on `psp_receivable:{psp}` — what the day's captures, refunds, fees and disputes added
-- to what the PSP owes (`expected_minor`), and what the PSP paid out to the bank that day
-- (`paid_out_minor`, from `bank_settlement` transactions, as a positive amount). Kept by a
-- trigger on `postings` (0019 of each dialect), in the same transaction as the postings, like
-- `account_balances`: so that `daily_settlement` reads a row per day instead of joining each
-- day's thousands of captures to their postings. `ledger verify` checks it against the postings.
CREATE TABLE settlement_days (
    day_start_ms   BIGINT NOT NULL,
    psp            TEXT NOT NULL,
    currency       TEXT NOT NULL,
    expected_minor BIGINT NOT NULL,
    paid_out_minor BIGINT NOT NULL,
    postings       BIGINT NOT NULL,
    PRIMARY KEY (day_start_ms, psp, currency)
);

-- daily_settlement: the same columns as version 15's view (which summed the postings of each
-- day when read), now read from `settlement_days`; what is left owed from the day's movements is
-- what was expected less what was paid out.
DROP VIEW daily_settlement;
CREATE VIEW daily_settlement AS
SELECT day_start_ms, psp, currency, expected_minor, paid_out_minor,
       CAST(expected_minor - paid_out_minor AS BIGINT) AS outstanding_minor
FROM settlement_days;

-- disputed_days: per UTC day of the payments' creation, how many of that day's payments have
-- had a dispute opened (once each, however many disputes). Kept by a trigger on `disputes`
-- (0019 of each dialect), in the disputes' transaction, so that the funnel of the last days
-- does not join every dispute ever opened to its payment.
CREATE TABLE disputed_days (
    day_start_ms BIGINT PRIMARY KEY,
    disputed     BIGINT NOT NULL
);

-- payment_funnel gains `disputed` (from `disputed_days`): each dialect recreates it (0019 of its
-- folder), with the columns of version 15 in the same order and `disputed` last, so that no
-- column moves.
DROP VIEW payment_funnel;
