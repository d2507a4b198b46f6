-- PostgreSQL's part of version 21: `account_balances` (version 15) and `settlement_days`
-- (version 19) are kept by the money engine, no longer by statement triggers on `postings`.
-- The engine sums a batch's postings in memory (`ledger::summaries`) and writes one upsert row
-- per account and per day in the batch's transaction: a seller's account with the row tables,
-- under the seller's wallet lock, and the platform's accounts and the days with the journal,
-- under the chain head. The triggers did the same sums with the chain head held for all of
-- them (a transition table, a GROUP BY, an upsert per account and a join of each receivable
-- posting to its journal transaction): 2.4 and 1.6 ms of a 13 ms ledger statement for a batch
-- of 72 transfers. Postings are written by the engine only (and by `bench console`'s seeding,
-- which sums its own); `ledger verify` checks every kept row against the postings' own sums.
DROP TRIGGER postings_account_balances ON postings;
DROP TRIGGER postings_settlement_days ON postings;
DROP FUNCTION ferropay_account_balances();
DROP FUNCTION ferropay_settlement_days();
