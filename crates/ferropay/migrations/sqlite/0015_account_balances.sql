-- SQLite's part of version 15: `account_balances` follows every posting inserted, in the
-- inserting transaction (a row trigger: SQLite has no statement triggers), then is filled with
-- the postings written before it existed.
CREATE TRIGGER postings_account_balances AFTER INSERT ON postings
BEGIN
    INSERT INTO account_balances (account, currency, balance_minor, postings)
    VALUES (NEW.account, NEW.currency, NEW.amount_minor, 1)
    ON CONFLICT (account, currency) DO UPDATE SET
        balance_minor = balance_minor + excluded.balance_minor,
        postings = postings + 1;
END;
INSERT INTO account_balances (account, currency, balance_minor, postings)
SELECT account, currency, SUM(amount_minor), COUNT(*) FROM postings WHERE true
GROUP BY account, currency;
