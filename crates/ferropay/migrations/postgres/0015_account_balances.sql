-- PostgreSQL's part of version 15: `account_balances` follows every statement that inserts
-- postings, once per statement (the money engine writes a batch's postings in one), in the
-- inserting transaction; then it is filled with the postings written before it existed, with
-- postings locked against writers meanwhile so that none is missed or counted twice.
LOCK TABLE postings IN SHARE ROW EXCLUSIVE MODE;
CREATE FUNCTION ferropay_account_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_balances (account, currency, balance_minor, postings)
    SELECT account, currency, SUM(amount_minor), COUNT(*) FROM new_postings
    GROUP BY account, currency ORDER BY account, currency
    ON CONFLICT (account, currency) DO UPDATE SET
        balance_minor = account_balances.balance_minor + excluded.balance_minor,
        postings = account_balances.postings + excluded.postings;
    RETURN NULL;
END;
$$;
CREATE TRIGGER postings_account_balances AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ferropay_account_balances();
INSERT INTO account_balances (account, currency, balance_minor, postings)
SELECT account, currency, SUM(amount_minor), COUNT(*) FROM postings GROUP BY account, currency;
