-- PostgreSQL's part of version 20: a posting's journal transaction is checked once per
-- statement, not once per row. The foreign key from `postings` to `journal_transactions` ran
-- one referential-integrity trigger per posting row, each an index probe and a row lock on its
-- transaction (measured: 2.5 of the 13 ms that one engine batch of 72 transfers spent in its
-- ledger statement, with the chain head held). What the key guarded is kept:
--   * a posting names a transaction that exists: this trigger, once per statement, over the
--     statement's postings (the engine writes a batch's journal and postings in one statement,
--     whose rows this trigger sees), refusing the statement as the key did (SQLSTATE 23503);
--   * that transaction is never deleted: the ledger is append-only (version 2 refuses every
--     UPDATE, DELETE and TRUNCATE of `journal_transactions`).
-- SQLite keeps its foreign key: there a check is an index probe in process, with no lock.
-- The check looks each transaction up by its primary key, whatever the table's size: a plan
-- made while the journal was small (and then cached by the session) merged the statement's
-- postings with a scan of the whole primary key, which grew with every batch (measured: 68 ms
-- a batch at 120,000 transactions). Hence the planner settings on the function.
ALTER TABLE postings DROP CONSTRAINT postings_transaction_id_fkey;
CREATE FUNCTION ferropay_postings_have_transactions() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_mergejoin = off SET enable_hashjoin = off AS $$
DECLARE
    missing TEXT;
BEGIN
    SELECT p.transaction_id INTO missing FROM new_postings p
    WHERE NOT EXISTS (SELECT 1 FROM journal_transactions j WHERE j.id = p.transaction_id)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'a posting names journal transaction %, which does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER postings_have_transactions AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ferropay_postings_have_transactions();
