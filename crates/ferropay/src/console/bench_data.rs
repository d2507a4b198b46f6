//! Data for `ferropay bench console`: a marketplace's half year, seeded in bulk by the database
//! itself (each statement expands a range of numbers with a recursive CTE, which SQLite and
//! PostgreSQL both run), so that a million payments take a minute, not an hour. Payment `i` is
//! fully determined by `i`: its time (spread evenly over [`SPREAD_DAYS`] up to now), status
//! (66 % succeeded, 2 % partly and 2 % fully refunded, 15 % failed, 10 % expired, 5 % still
//! open), amount, buyer (one of 100,000) and seller (one of 10,000); one payment in a hundred
//! (a captured one) is disputed, its dispute in one of the four statuses by turn, with the
//! event that opened it.
//!
//! The journal is written directly (captures and daily bank settlements with the payments'
//! own times, and wallets summed from the postings), not through the money engine, which
//! stamps every transaction with the time it posts it: pages that read one day would otherwise
//! find the whole half year in today. Its hashes are therefore not a chain: a seeded database
//! is for measuring pages, never for `ledger verify`.

use sqlx::Row;

use crate::error::Result;
use crate::reconcile::breaks::BreakKind;
use crate::store::Store;

/// Days the seeded activity spans, up to now.
pub const SPREAD_DAYS: i64 = 180;
/// Payments per write transaction.
const CHUNK: i64 = 50_000;
pub const SELLERS: i64 = 10_000;
pub const BUYERS: i64 = 100_000;
/// Breaks, dead jobs and webhook deliveries seeded beside the payments.
pub const BREAKS: i64 = 10_000;
pub const DEAD_JOBS: i64 = 5_000;
pub const DELIVERIES: i64 = 50_000;

/// The ids of seeded rows (the benchmark picks pages to load from them).
pub fn key(i: i64) -> String {
    format!("cb{}", 1_000_000_000 + i)
}
pub fn payment_id(i: i64) -> String {
    format!("pay_{}", key(i))
}
pub fn seller_id(i: i64) -> String {
    format!("seller_{}", 10_000 + i % SELLERS)
}
pub fn buyer_id(i: i64) -> String {
    format!("buyer_{}", i * 7 % BUYERS)
}
/// Payments `i` with `i % 100 < 70` were captured; this is their capture's id.
pub fn capture_id(i: i64) -> Option<String> {
    (i % 100 < 70).then(|| format!("jt_{}", key(i)))
}
pub fn break_id(i: i64) -> String {
    format!("brk_{}", key(i))
}
pub fn dead_job_id(i: i64) -> String {
    format!("job_{}", key(i))
}
/// Payments `i` with `i % 100 == 0` are disputed; this is their dispute's id.
pub fn dispute_id(i: i64) -> Option<String> {
    (i % 100 == 0).then(|| format!("dp_{}", key(i)))
}
fn amount_minor(i: i64) -> i64 {
    1_000 + i * 7_919 % 9_000
}

/// Rows `$1 <= i < $2`, with `k` (the key), `at` (`$3 + i * $4`) and `r` (`i % 100`).
const SERIES: &str = "WITH RECURSIVE n(i) AS (SELECT CAST($1 AS BIGINT) UNION ALL \
     SELECT i + 1 FROM n WHERE i + 1 < CAST($2 AS BIGINT)), \
     s AS (SELECT i, 'cb' || CAST(1000000000 + i AS TEXT) AS k, \
       CAST($3 AS BIGINT) + i * CAST($4 AS BIGINT) AS at, i % 100 AS r FROM n) ";

const PAYMENTS: &str = "INSERT INTO payments (id, checkout_id, buyer_id, buyer_email, currency, \
     amount_minor, status, psp, psp_token, psp_url, psp_reference, return_url, failure_code, \
     created_at_ms, updated_at_ms) \
     SELECT 'pay_' || k, 'chk_' || k, 'buyer_' || CAST(i * 7 % 100000 AS TEXT), NULL, 'USD', \
       1000 + i * 7919 % 9000, \
       CASE WHEN r < 66 THEN 'succeeded' WHEN r < 68 THEN 'partially_refunded' \
         WHEN r < 70 THEN 'refunded' WHEN r < 85 THEN 'failed' WHEN r < 95 THEN 'expired' \
         WHEN r < 98 THEN 'processing' ELSE 'requires_payment' END, \
       'sandbox', 'tok_' || k, NULL, 'psp_' || k, NULL, \
       CASE WHEN r >= 70 AND r < 85 THEN 'card_declined' ELSE NULL END, at, at + 5000 FROM s";

const ORDERS: &str = "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
     amount_minor, status, created_at_ms, updated_at_ms) \
     SELECT 'po_' || k, 'pay_' || k, 0, 'ord_1', 'seller_' || CAST(10000 + i % 10000 AS TEXT), \
       1000 + i * 7919 % 9000, \
       CASE WHEN r < 66 THEN 'succeeded' WHEN r < 70 THEN 'refunded' WHEN r < 85 THEN 'failed' \
         WHEN r < 95 THEN 'expired' ELSE 'pending' END, at, at + 5000 FROM s";

const CAPTURES: &str = "INSERT INTO journal_transactions (id, seq, source_ref, kind, payment_id, \
     created_at_ms, prev_hash, hash) \
     SELECT 'jt_' || k, i + 1, 'capture:pay_' || k, 'capture', 'pay_' || k, at + 5000, \
       'seeded', 'seeded' FROM s WHERE r < 70";

/// `account_balances` and `settlement_days` summed from the seeded postings.
const SEEDED_ACCOUNT_BALANCES: &str = "INSERT INTO account_balances (account, currency, \
     balance_minor, postings) SELECT account, currency, SUM(amount_minor), COUNT(*) FROM postings \
     GROUP BY account, currency";
const SEEDED_SETTLEMENT_DAYS: &str = "INSERT INTO settlement_days (day_start_ms, psp, currency, \
     expected_minor, paid_out_minor, postings) \
     SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), p.currency, \
     SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END), \
     SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END), COUNT(*) \
     FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id \
     WHERE p.account LIKE 'psp_receivable:%' GROUP BY 1, 2, 3";

const CAPTURE_POSTINGS: &str = "INSERT INTO postings (transaction_id, line_no, account, currency, \
     amount_minor) \
     SELECT 'jt_' || k, 1, 'psp_receivable:sandbox', 'USD', 1000 + i * 7919 % 9000 \
       FROM s WHERE r < 70 \
     UNION ALL \
     SELECT 'jt_' || k, 2, 'seller:seller_' || CAST(10000 + i % 10000 AS TEXT), 'USD', \
       -(1000 + i * 7919 % 9000) FROM s WHERE r < 70";

const WEBHOOK_EVENTS: &str = "INSERT INTO webhook_events (psp, event_id, event_type, reference, \
     received_at_ms) \
     SELECT 'sandbox', 'evt_' || k, \
       CASE WHEN r < 70 THEN 'payment.succeeded' ELSE 'payment.failed' END, 'pay_' || k, \
       at + 4000 FROM s WHERE r < 85";

const OUTBOX: &str = "INSERT INTO outbox (id, topic, aggregate_id, payload, created_at_ms, \
     published_at_ms, webhooks_dispatched_at_ms) \
     SELECT 'ob_' || k, CASE WHEN r < 70 THEN 'payment.succeeded' ELSE 'payment.failed' END, \
       'pay_' || k, '{}', at + 5000, at + 5100, at + 5100 FROM s WHERE r < 85";

const DISPUTE_ROWS: &str = "INSERT INTO disputes (id, psp, psp_dispute_id, payment_id, currency, \
     amount_minor, reason, status, evidence, created_at_ms, updated_at_ms) \
     SELECT 'dp_' || k, 'sandbox', 'psp_dp_' || k, 'pay_' || k, 'USD', 1000 + i * 7919 % 9000, \
       'fraudulent', CASE i / 100 % 4 WHEN 0 THEN 'needs_response' WHEN 1 THEN 'under_review' \
         WHEN 2 THEN 'won' ELSE 'lost' END, \
       CASE WHEN i / 100 % 4 = 0 THEN NULL ELSE 'seeded evidence' END, at + 10000, at + 20000 \
     FROM s WHERE r = 0";

const DISPUTE_EVENTS: &str = "INSERT INTO outbox (id, topic, aggregate_id, payload, created_at_ms, \
     published_at_ms, webhooks_dispatched_at_ms) \
     SELECT 'obd_' || k, 'dispute.created', 'pay_' || k, \
       '{\"dispute_id\":\"dp_' || k || '\",\"status\":\"needs_response\"}', \
       at + 10000, at + 10100, at + 10100 FROM s WHERE r = 0";

const BREAK_ROWS: &str = "INSERT INTO reconciliation_breaks (id, run_id, dedupe_key, kind, \
     psp_reference, merchant_reference, line_no, currency, expected_minor, actual_minor, detail, \
     auto_healed, status, resolution, resolved_at_ms, created_at_ms) \
     SELECT 'brk_' || k, 'run_seeded_' || CAST(i % 180 AS TEXT), k, \
       CASE i % 7 WHEN 0 THEN '{0}' WHEN 1 THEN '{1}' WHEN 2 THEN '{2}' WHEN 3 THEN '{3}' \
         WHEN 4 THEN '{4}' WHEN 5 THEN '{5}' ELSE '{6}' END, \
       'psp_' || k, 'pay_' || k, i, 'USD', 1000 + i % 9000, 990 + i % 9000, \
       'seeded break', 0, CASE WHEN r < 10 THEN 'open' ELSE 'resolved' END, \
       CASE WHEN r < 10 THEN NULL ELSE 'seeded resolution' END, \
       CASE WHEN r < 10 THEN NULL ELSE at + 60000 END, at FROM s";

const DEAD_JOBS_ROWS: &str = "INSERT INTO jobs (id, kind, idempotency_key, payload, status, \
     attempts, due_at_ms, lease_token, last_error, created_at_ms, updated_at_ms, finished_at_ms) \
     SELECT 'job_' || k, 'payin.poll_session', 'dead_' || k, '{\"payment_id\":\"pay_' || k || '\"}', \
       'dead', 10, at, NULL, 'the PSP timed out', at, at, at FROM s";

const DELIVERY_ROWS: &str = "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, \
     event_type, status, attempts, redeliveries, created_at_ms, updated_at_ms) \
     SELECT 'whd_' || k, 'we_seeded', 'ob_' || k, 'payment.succeeded', \
       CASE WHEN r < 95 THEN 'succeeded' ELSE 'failed' END, 1, 0, at, at + 200 FROM s";

const ATTEMPT_ROWS: &str = "INSERT INTO webhook_attempts (id, delivery_id, attempted_at_ms, \
     status_code, latency_ms, error) \
     SELECT 'wha_' || k, 'whd_' || k, at + 100, CASE WHEN r < 95 THEN 200 ELSE 500 END, \
       40 + r, NULL FROM s";

/// Runs `statement` (after [`SERIES`]) over `lo..hi`, with row `i` at `start_ms + i * step_ms`.
async fn series(
    store: &Store,
    statement: &str,
    lo: i64,
    hi: i64,
    start_ms: i64,
    step_ms: i64,
) -> Result<()> {
    let mut tx = store.begin_write().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("{SERIES}{statement}")))
        .bind(lo)
        .bind(hi)
        .bind(start_ms)
        .bind(step_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Seeds `count` payments and the rest (see the module's header), the last one just before
/// `now_ms`. `progress` gets the payments done.
pub async fn seed(
    store: &Store,
    count: i64,
    now_ms: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<()> {
    let span_ms = SPREAD_DAYS * 86_400_000;
    let start_ms = now_ms - span_ms;
    let step_ms = (span_ms / count.max(1)).max(1);
    let mut lo = 0;
    while lo < count {
        let hi = (lo + CHUNK).min(count);
        for statement in [
            PAYMENTS,
            ORDERS,
            CAPTURES,
            CAPTURE_POSTINGS,
            WEBHOOK_EVENTS,
            OUTBOX,
            DISPUTE_ROWS,
            DISPUTE_EVENTS,
        ] {
            series(store, statement, lo, hi, start_ms, step_ms).await?;
        }
        lo = hi;
        progress(lo);
    }
    bank_settlements(store, count, start_ms, step_ms).await?;
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at_ms) \
         SELECT SUBSTR(account, 8), currency, CAST(-SUM(amount_minor) AS BIGINT), $1 \
         FROM postings WHERE account LIKE 'seller:%' GROUP BY account, currency",
    )
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    // The kept summaries, which the money engine writes with each batch (migration 21).
    for statement in [SEEDED_ACCOUNT_BALANCES, SEEDED_SETTLEMENT_DAYS] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    for day in 0..SPREAD_DAYS {
        let at = start_ms + day * 86_400_000;
        sqlx::query(
            "INSERT INTO reconciliation_runs (id, psp, source, status, started_at_ms, \
             finished_at_ms, lines, matched, breaks, healed) \
             VALUES ($1, 'sandbox', $2, 'completed', $3, $4, 5000, 4950, 50, 0)",
        )
        .bind(format!("run_seeded_{day}"))
        .bind(format!("psp:day-{day}"))
        .bind(at)
        .bind(at + 30_000)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, event_types, description, enabled, secret, \
         created_at_ms, updated_at_ms) VALUES ('we_seeded', 'https://merchant.example/hooks', \
         '*', 'seeded', 1, 'whsec_seeded', $1, $2)",
    )
    .bind(start_ms)
    .bind(start_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let kinds: Vec<&str> = BreakKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut breaks = BREAK_ROWS.to_owned();
    for (index, kind) in kinds.iter().enumerate() {
        breaks = breaks.replace(&format!("{{{index}}}"), kind);
    }
    series(store, &breaks, 0, BREAKS, start_ms, span_ms / BREAKS).await?;
    series(
        store,
        DEAD_JOBS_ROWS,
        0,
        DEAD_JOBS,
        start_ms,
        span_ms / DEAD_JOBS,
    )
    .await?;
    for statement in [DELIVERY_ROWS, ATTEMPT_ROWS] {
        series(
            store,
            statement,
            0,
            DELIVERIES,
            start_ms,
            span_ms / DELIVERIES,
        )
        .await?;
    }
    // The planner's statistics, and on PostgreSQL the visibility map that lets index-only scans
    // skip the table: what autovacuum gives a table that grew by so many rows, soon after.
    let maintenance = match store.backend() {
        crate::store::Backend::Sqlite => "ANALYZE",
        crate::store::Backend::Postgres => "VACUUM ANALYZE",
    };
    sqlx::query(maintenance).execute(store.pool()).await?;
    Ok(())
}

/// One bank settlement a day: the PSP pays out the day's captures (so `daily_settlement` has
/// both sides).
async fn bank_settlements(store: &Store, count: i64, start_ms: i64, step_ms: i64) -> Result<()> {
    let mut per_day = vec![0_i64; SPREAD_DAYS as usize + 1];
    for i in (0..count).filter(|i| i % 100 < 70) {
        let day = ((i * step_ms + 5_000) / 86_400_000) as usize;
        if let Some(total) = per_day.get_mut(day) {
            *total += amount_minor(i);
        }
    }
    let mut tx = store.begin_write().await?;
    let first_seq: i64 =
        sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM journal_transactions")
            .fetch_one(&mut *tx)
            .await?
            .try_get("s")?;
    for (day, total) in per_day.iter().enumerate().filter(|(_, t)| **t > 0) {
        let day = day as i64;
        let id = format!("jt_seeded_bank_{day}");
        sqlx::query(
            "INSERT INTO journal_transactions (id, seq, source_ref, kind, payment_id, \
             created_at_ms, prev_hash, hash) VALUES ($1, $2, $3, 'bank_settlement', NULL, $4, \
             'seeded', 'seeded')",
        )
        .bind(&id)
        .bind(first_seq + day)
        .bind(format!("settlement_payout:sandbox:seeded_{day}"))
        .bind(start_ms + (day + 1) * 86_400_000 - 60_000)
        .execute(&mut *tx)
        .await?;
        for (line_no, account, amount) in [
            (1_i64, "bank", *total),
            (2, "psp_receivable:sandbox", -*total),
        ] {
            sqlx::query(
                "INSERT INTO postings (transaction_id, line_no, account, currency, amount_minor) \
                 VALUES ($1, $2, $3, 'USD', $4)",
            )
            .bind(&id)
            .bind(line_no)
            .bind(account)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
