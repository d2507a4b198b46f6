-- Reconciliation against the PSP's settlement files (DESIGN.md, "Reconciliation"), portable
-- between SQLite and PostgreSQL. Also: the ledger head and each journal transaction remember
-- the id of the transaction before them, so that `ledger verify` can name a transaction that was
-- deleted behind our back (the hash chain shows that one is gone, not which).

-- One run over one settlement file.
CREATE TABLE reconciliation_runs (
    id              TEXT PRIMARY KEY,
    psp             TEXT NOT NULL,
    -- Where the file came from: `file:PATH` or `psp:YYYY-MM-DD`.
    source          TEXT NOT NULL,
    status          TEXT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT,
    lines           BIGINT NOT NULL DEFAULT 0,
    matched         BIGINT NOT NULL DEFAULT 0,
    breaks          BIGINT NOT NULL DEFAULT 0,
    healed          BIGINT NOT NULL DEFAULT 0,
    error           TEXT
);
CREATE INDEX reconciliation_runs_started ON reconciliation_runs (started_at_ms);

-- A line (or a missing line) that did not match the books. The id is derived from `dedupe_key`
-- (kind and what it is about), so a break found again by a later run of the same file is the
-- same break, not a new one.
CREATE TABLE reconciliation_breaks (
    id                 TEXT PRIMARY KEY,
    run_id             TEXT NOT NULL REFERENCES reconciliation_runs (id),
    dedupe_key         TEXT NOT NULL,
    kind               TEXT NOT NULL,
    psp_reference      TEXT,
    merchant_reference TEXT,
    line_no            BIGINT,
    currency           TEXT,
    expected_minor     BIGINT,
    actual_minor       BIGINT,
    detail             TEXT NOT NULL,
    auto_healed        BIGINT NOT NULL DEFAULT 0,
    status             TEXT NOT NULL,
    resolution         TEXT,
    resolved_at_ms     BIGINT,
    created_at_ms      BIGINT NOT NULL
);
CREATE INDEX reconciliation_breaks_status ON reconciliation_breaks (status, created_at_ms);

-- What settlement lines have been matched to: a ledger source reference (`capture:pay_…`,
-- `refund:…`, `settlement_payout:…`). `last_run_id` tells a duplicate line in the same run from
-- the same line read again by a later run.
CREATE TABLE reconciliation_matches (
    match_ref     TEXT PRIMARY KEY,
    psp_reference TEXT NOT NULL,
    first_run_id  TEXT NOT NULL,
    last_run_id   TEXT NOT NULL,
    matched_at_ms BIGINT NOT NULL
);

-- "Captured that day and absent from the file" reads captures by kind and time, and needs
-- nothing but their source reference to look for a match.
CREATE INDEX journal_transactions_kind_created
    ON journal_transactions (kind, created_at_ms, source_ref);

ALTER TABLE ledger_head ADD COLUMN transaction_id TEXT;
ALTER TABLE journal_transactions ADD COLUMN prev_transaction_id TEXT;
