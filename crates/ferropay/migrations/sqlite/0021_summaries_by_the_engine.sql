-- SQLite's part of version 21: `account_balances` (version 15) and `settlement_days` (version
-- 19) are kept by the money engine, no longer by row triggers on `postings`, which upserted
-- once per posting (two upserts and a journal lookup a transfer, each a B-tree search). The
-- engine sums a batch's postings in memory (`ledger::summaries`) and writes one upsert row per
-- account and per day in the batch's transaction (postgres/0021 says more).
DROP TRIGGER postings_account_balances;
DROP TRIGGER postings_settlement_days;
