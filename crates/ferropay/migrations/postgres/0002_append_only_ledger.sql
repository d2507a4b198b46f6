-- Invariant I2: nothing updates or deletes a journal row; a mistake is fixed by a reversing
-- transaction.
CREATE FUNCTION ferropay_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER journal_transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON journal_transactions FOR EACH STATEMENT EXECUTE FUNCTION ferropay_ledger_append_only();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON postings FOR EACH STATEMENT EXECUTE FUNCTION ferropay_ledger_append_only();
