-- PostgreSQL's part of version 19.
--
-- `settlement_days` follows every statement that inserts
-- postings, once per statement (as `account_balances` does, 0015), in the inserting
-- transaction: the statement's postings on `psp_receivable:*` joined to their journal
-- transactions (written by the same statement or before it) for the day and the kind. A batch
-- without such postings costs one pass over its transition table. Then the table is filled with
-- the postings written before it existed, postings locked against writers meanwhile.
LOCK TABLE postings, disputes IN SHARE ROW EXCLUSIVE MODE;
CREATE FUNCTION ferropay_settlement_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, paid_out_minor,
                                 postings)
    SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), p.currency,
           SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END),
           SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END),
           COUNT(*)
    FROM new_postings p JOIN journal_transactions j ON j.id = p.transaction_id
    WHERE p.account LIKE 'psp_receivable:%'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day_start_ms, psp, currency) DO UPDATE SET
        expected_minor = settlement_days.expected_minor + excluded.expected_minor,
        paid_out_minor = settlement_days.paid_out_minor + excluded.paid_out_minor,
        postings = settlement_days.postings + excluded.postings;
    RETURN NULL;
END;
$$;
CREATE TRIGGER postings_settlement_days AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ferropay_settlement_days();
INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, paid_out_minor, postings)
SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), p.currency,
       SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END),
       SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END),
       COUNT(*)
FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id
WHERE p.account LIKE 'psp_receivable:%'
GROUP BY 1, 2, 3;

-- `disputed_days` follows every statement that inserts disputes (the engine writes a batch's
-- new disputes in one), once per statement: each payment of the statement's disputes that had
-- no dispute before counts once on the day it was created. Then it is filled with the disputes
-- opened before it existed.
CREATE FUNCTION ferropay_disputed_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO disputed_days (day_start_ms, disputed)
    SELECT p.created_at_ms - p.created_at_ms % 86400000, COUNT(*)
    FROM payments p
    WHERE p.id IN (SELECT payment_id FROM new_disputes)
      AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.payment_id = p.id
                      AND d.id NOT IN (SELECT id FROM new_disputes))
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (day_start_ms) DO UPDATE SET
        disputed = disputed_days.disputed + excluded.disputed;
    RETURN NULL;
END;
$$;
CREATE TRIGGER disputes_disputed_days AFTER INSERT ON disputes
    REFERENCING NEW TABLE AS new_disputes
    FOR EACH STATEMENT EXECUTE FUNCTION ferropay_disputed_days();
INSERT INTO disputed_days (day_start_ms, disputed)
SELECT p.created_at_ms - p.created_at_ms % 86400000, COUNT(*)
FROM payments p WHERE p.id IN (SELECT payment_id FROM disputes)
GROUP BY 1;

-- payment_funnel: the payments of the days asked for are counted by day and status first (one
-- COUNT per row, from `payments_day_status` alone), then the day's figures are summed from
-- those few groups: PostgreSQL's CASE-and-SUM per row over a week's payments cost twice as
-- much. A bound on `day_start_ms` is pushed into both groupings. The disputed payments are a
-- row of `disputed_days` per day.
CREATE VIEW payment_funnel AS
SELECT s.day_start_ms,
       CAST(SUM(s.n) AS BIGINT) AS created,
       CAST(SUM(CASE WHEN s.status IN ('succeeded', 'partially_refunded', 'refunded')
           THEN s.n ELSE 0 END) AS BIGINT) AS paid,
       CAST(SUM(CASE WHEN s.status = 'failed' THEN s.n ELSE 0 END) AS BIGINT) AS failed,
       CAST(SUM(CASE WHEN s.status = 'expired' THEN s.n ELSE 0 END) AS BIGINT) AS expired,
       CAST(SUM(CASE WHEN s.status IN ('partially_refunded', 'refunded')
           THEN s.n ELSE 0 END) AS BIGINT) AS refunded,
       CAST(SUM(CASE WHEN s.status IN ('requires_payment', 'processing')
           THEN s.n ELSE 0 END) AS BIGINT) AS open,
       10000 * CAST(SUM(CASE WHEN s.status IN ('succeeded', 'partially_refunded', 'refunded')
           THEN s.n ELSE 0 END) AS BIGINT) / CAST(SUM(s.n) AS BIGINT) AS conversion_bps,
       CAST(COALESCE(MAX(d.disputed), 0) AS BIGINT) AS disputed
FROM (SELECT created_at_ms - created_at_ms % 86400000 AS day_start_ms, status, COUNT(*) AS n
      FROM payments
      GROUP BY created_at_ms - created_at_ms % 86400000, status) s
LEFT JOIN disputed_days d ON d.day_start_ms = s.day_start_ms
GROUP BY s.day_start_ms;
