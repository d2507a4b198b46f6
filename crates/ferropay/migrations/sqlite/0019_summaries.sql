-- SQLite's part of version 19.
--
-- `settlement_days` follows every posting on `psp_receivable:*`
-- inserted, in the inserting transaction (a row trigger: SQLite has no statement triggers; its
-- WHEN clause leaves every other posting alone), reading the day and the kind from the
-- posting's journal transaction, which the engine writes before its postings. Then the table is
-- filled with the postings written before it existed.
CREATE TRIGGER postings_settlement_days AFTER INSERT ON postings
WHEN NEW.account LIKE 'psp_receivable:%'
BEGIN
    INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, paid_out_minor,
                                 postings)
    SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(NEW.account, 16), NEW.currency,
           CASE WHEN j.kind <> 'bank_settlement' THEN NEW.amount_minor ELSE 0 END,
           CASE WHEN j.kind = 'bank_settlement' THEN -NEW.amount_minor ELSE 0 END,
           1
    FROM journal_transactions j WHERE j.id = NEW.transaction_id
    ON CONFLICT (day_start_ms, psp, currency) DO UPDATE SET
        expected_minor = expected_minor + excluded.expected_minor,
        paid_out_minor = paid_out_minor + excluded.paid_out_minor,
        postings = postings + 1;
END;
INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, paid_out_minor, postings)
SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), p.currency,
       SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END),
       SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END),
       COUNT(*)
FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id
WHERE p.account LIKE 'psp_receivable:%'
GROUP BY 1, 2, 3;

-- `disputed_days` follows every dispute inserted: the first dispute of a payment counts it once
-- on the day the payment was created. Then it is filled with the disputes opened before it
-- existed.
CREATE TRIGGER disputes_disputed_days AFTER INSERT ON disputes
WHEN NOT EXISTS (SELECT 1 FROM disputes d WHERE d.payment_id = NEW.payment_id AND d.id <> NEW.id)
BEGIN
    INSERT INTO disputed_days (day_start_ms, disputed)
    SELECT created_at_ms - created_at_ms % 86400000, 1 FROM payments WHERE id = NEW.payment_id
    ON CONFLICT (day_start_ms) DO UPDATE SET disputed = disputed + 1;
END;
INSERT INTO disputed_days (day_start_ms, disputed)
SELECT created_at_ms - created_at_ms % 86400000, COUNT(*)
FROM payments WHERE id IN (SELECT payment_id FROM disputes)
GROUP BY 1;

-- payment_funnel, in one pass over the payments of the days asked for (SQLite pushes a bound on
-- `day_start_ms` into this grouping and walks `payments_day_status`; the disputed payments are
-- a row of `disputed_days` per day).
CREATE VIEW payment_funnel AS
SELECT f.day_start_ms, f.created, f.paid, f.failed, f.expired, f.refunded, f.open,
       f.conversion_bps, CAST(COALESCE(d.disputed, 0) AS BIGINT) AS disputed
FROM (SELECT created_at_ms - created_at_ms % 86400000 AS day_start_ms,
             COUNT(*) AS created,
             CAST(SUM(CASE WHEN status IN ('succeeded', 'partially_refunded', 'refunded')
                 THEN 1 ELSE 0 END) AS BIGINT) AS paid,
             CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed,
             CAST(SUM(CASE WHEN status = 'expired' THEN 1 ELSE 0 END) AS BIGINT) AS expired,
             CAST(SUM(CASE WHEN status IN ('partially_refunded', 'refunded')
                 THEN 1 ELSE 0 END) AS BIGINT) AS refunded,
             CAST(SUM(CASE WHEN status IN ('requires_payment', 'processing')
                 THEN 1 ELSE 0 END) AS BIGINT) AS open,
             CAST(10000 * SUM(CASE WHEN status IN ('succeeded', 'partially_refunded', 'refunded')
                 THEN 1 ELSE 0 END) / COUNT(*) AS BIGINT) AS conversion_bps
      FROM payments
      GROUP BY created_at_ms - created_at_ms % 86400000) f
LEFT JOIN disputed_days d ON d.day_start_ms = f.day_start_ms;
