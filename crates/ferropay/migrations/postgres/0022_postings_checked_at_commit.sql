-- PostgreSQL's part of version 22: a posting's journal transaction is checked at commit, so that
-- the money engine can write a batch's postings before it takes the chain head and write only
-- the journal rows (which need their place on the chain) while it holds the head. Version 20's
-- check ran at the end of the inserting statement, which forced postings to be written after
-- their transactions, with the head held (measured: 2.5 of the 5.5 ms that one batch of 83
-- transfers held the head for, in its ledger statement).
--   * A constraint trigger deferred to commit, once per posting row: the transaction must exist
--     by then (SQLSTATE 23503, as the foreign key answered). It probes the journal's primary key
--     (plain `SELECT`, no row lock: the journal is append-only, version 2), and its one plan is
--     the key's index whatever the table's size.
--   * A statement that inserts postings outside a transaction block is checked at its own end.
-- SQLite keeps its foreign key (immediate): its engine writes the journal first, in process.
DROP TRIGGER postings_have_transactions ON postings;
DROP FUNCTION ferropay_postings_have_transactions();
CREATE FUNCTION ferropay_posting_has_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM journal_transactions WHERE id = NEW.transaction_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'a posting names journal transaction %, which does not exist',
            NEW.transaction_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER postings_have_transactions AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ferropay_posting_has_transaction();
