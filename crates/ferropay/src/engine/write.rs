//! Writing a batch: every table the batch changed with one set-based statement (rows from the
//! view's final state, or from the effects in order) — on PostgreSQL all of them as ONE
//! statement where no row is written twice ([`RowWrites`]) — then, holding the chain head as
//! briefly as possible, the journal (extended in memory for the batch), its postings, the
//! platform accounts' kept balances, the settlement days and the head.

use std::time::Instant;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{Executor, Row};

use super::effect::Effect;
use super::view::View;
use crate::error::Result;
use crate::ids::new_id;
use crate::ledger::accounts;
use crate::ledger::chain::{self, Chained};
use crate::ledger::summaries::Summaries;
use crate::store::bulk::{Col, json_rows, one_call, to_param};
use crate::store::{Backend, Store, Tx};

pub(crate) struct WriteSql {
    /// The row tables' statements run as one (`RowWrites`) where they can.
    postgres: bool,
    new_payments: String,
    new_orders: String,
    new_keys: String,
    sessions: String,
    complete_jobs: String,
    events: String,
    payments: String,
    orders: String,
    new_refunds: String,
    refunds: String,
    new_payouts: String,
    payouts: String,
    new_disputes: String,
    disputes: String,
    jobs: String,
    cancel_jobs: String,
    outbox: String,
    answers: String,
    wallets: String,
    journal: String,
    postings: String,
    /// `account_balances` and `settlement_days`, one upsert row per account and per day
    /// (`ledger::summaries`).
    account_balances: String,
    settlement_days: String,
    /// PostgreSQL: the journal, its postings, the platform's kept balances, the settlement days
    /// and the head in ONE statement (data-modifying CTEs), so that the chain head is held for
    /// two round trips: this and the commit. SQLite runs each statement in process, where a
    /// statement costs no trip. (The wallets and the sellers' kept balances are written with
    /// the row tables, before the head is taken: the wallets were locked when loaded.)
    ledger_pg: Option<String>,
    /// SQLite: the head, from one JSON row, so that it rides in the batch's one call.
    head: String,
}

impl WriteSql {
    /// Every statement that reads its rows from one JSON parameter, named (the plan test,
    /// `engine::plans`); the ledger's one statement is its parts.
    #[cfg(test)]
    pub(crate) fn statements(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("write new_payments", &self.new_payments),
            ("write new_orders", &self.new_orders),
            ("write new_keys", &self.new_keys),
            ("write sessions", &self.sessions),
            ("write complete_jobs", &self.complete_jobs),
            ("write events", &self.events),
            ("write payments", &self.payments),
            ("write orders", &self.orders),
            ("write new_refunds", &self.new_refunds),
            ("write refunds", &self.refunds),
            ("write new_payouts", &self.new_payouts),
            ("write payouts", &self.payouts),
            ("write new_disputes", &self.new_disputes),
            ("write disputes", &self.disputes),
            ("write jobs", &self.jobs),
            ("write cancel_jobs", &self.cancel_jobs),
            ("write outbox", &self.outbox),
            ("write answers", &self.answers),
            ("write wallets", &self.wallets),
            ("write journal", &self.journal),
            ("write postings", &self.postings),
            ("write account_balances", &self.account_balances),
            ("write settlement_days", &self.settlement_days),
        ]
    }

    pub(crate) fn new(b: Backend) -> Self {
        use Col::{Int, Text};
        let rows = |cols: &[(&str, Col)]| json_rows(b, 1, "x", cols);
        let journal_cols = [
            ("id", Text),
            ("seq", Int),
            ("r", Text),
            ("k", Text),
            ("p", Text),
            ("at", Int),
            ("ph", Text),
            ("h", Text),
            ("pid", Text),
            ("kid", Text),
        ];
        let posting_cols = [
            ("t", Text),
            ("l", Int),
            ("a", Text),
            ("c", Text),
            ("m", Int),
        ];
        let account_balances = |param| {
            format!(
                "INSERT INTO account_balances (account, currency, balance_minor, postings) \
                 SELECT x.a, x.c, x.d, x.n FROM {} WHERE true \
                 ON CONFLICT (account, currency) DO UPDATE SET \
                 balance_minor = account_balances.balance_minor + excluded.balance_minor, \
                 postings = account_balances.postings + excluded.postings",
                json_rows(
                    b,
                    param,
                    "x",
                    &[("a", Text), ("c", Text), ("d", Int), ("n", Int)]
                )
            )
        };
        let settlement_days = |param| {
            format!(
                "INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, \
                 paid_out_minor, postings) SELECT x.d, x.p, x.c, x.e, x.o, x.n FROM {} WHERE true \
                 ON CONFLICT (day_start_ms, psp, currency) DO UPDATE SET \
                 expected_minor = settlement_days.expected_minor + excluded.expected_minor, \
                 paid_out_minor = settlement_days.paid_out_minor + excluded.paid_out_minor, \
                 postings = settlement_days.postings + excluded.postings",
                json_rows(
                    b,
                    param,
                    "x",
                    &[
                        ("d", Int),
                        ("p", Text),
                        ("c", Text),
                        ("e", Int),
                        ("o", Int),
                        ("n", Int)
                    ]
                )
            )
        };
        let ledger_pg = (b == Backend::Postgres).then(|| {
            format!(
                "WITH j AS (INSERT INTO journal_transactions (id, seq, source_ref, kind, \
                 payment_id, created_at_ms, prev_hash, hash, prev_transaction_id, hash_key_id) \
                 SELECT x.id, x.seq, x.r, x.k, x.p, x.at, x.ph, x.h, x.pid, x.kid FROM {}), \
                 p AS (INSERT INTO postings (transaction_id, line_no, account, currency, \
                 amount_minor) SELECT x.t, x.l, x.a, x.c, x.m FROM {}), \
                 b AS ({}), d AS ({}) \
                 UPDATE ledger_head SET seq = $5, hash = $6, transaction_id = $7 WHERE id = 1",
                json_rows(b, 1, "x", &journal_cols),
                json_rows(b, 2, "x", &posting_cols),
                account_balances(3),
                settlement_days(4),
            )
        });
        Self {
            ledger_pg,
            head: format!(
                "UPDATE ledger_head SET (seq, hash, transaction_id) = \
                 (SELECT x.s, x.h, x.t FROM {}) WHERE id = 1",
                json_rows(b, 1, "x", &[("s", Int), ("h", Text), ("t", Text)])
            ),
            account_balances: account_balances(1),
            settlement_days: settlement_days(1),
            postgres: b == Backend::Postgres,
            new_payments: format!(
                "INSERT INTO payments (id, checkout_id, buyer_id, buyer_email, currency, \
                 amount_minor, status, psp, return_url, created_at_ms, updated_at_ms, \
                 platform_fee_bps) \
                 SELECT x.id, x.ch, x.b, x.be, x.c, x.a, 'requires_payment', x.psp, x.ru, x.at, \
                 x.at, x.fee FROM {}",
                rows(&[
                    ("id", Text),
                    ("ch", Text),
                    ("b", Text),
                    ("be", Text),
                    ("c", Text),
                    ("a", Int),
                    ("psp", Text),
                    ("ru", Text),
                    ("at", Int),
                    ("fee", Int)
                ])
            ),
            new_orders: format!(
                "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
                 amount_minor, status, created_at_ms, updated_at_ms) \
                 SELECT x.id, x.p, x.n, x.o, x.s, x.a, 'not_started', x.at, x.at FROM {}",
                rows(&[
                    ("id", Text),
                    ("p", Text),
                    ("n", Int),
                    ("o", Text),
                    ("s", Text),
                    ("a", Int),
                    ("at", Int)
                ])
            ),
            new_keys: format!(
                "INSERT INTO idempotency_keys (api_key_id, idempotency_key, request_sha256, \
                 recovery_point, payment_id, locked_at_ms, created_at_ms) \
                 SELECT x.a, x.k, x.f, 'payment_created', x.p, x.at, x.at FROM {}",
                rows(&[
                    ("a", Text),
                    ("k", Text),
                    ("f", Text),
                    ("p", Text),
                    ("at", Int)
                ])
            ),
            sessions: format!(
                "UPDATE payments SET psp_token = x.t, psp_url = x.u, \
                 psp_reference = COALESCE(payments.psp_reference, x.pr), updated_at_ms = x.at \
                 FROM {} WHERE payments.id = x.id",
                rows(&[
                    ("id", Text),
                    ("t", Text),
                    ("u", Text),
                    ("pr", Text),
                    ("at", Int)
                ])
            ),
            complete_jobs: format!(
                "UPDATE jobs SET status = 'done', lease_token = NULL, due_at_ms = x.at, \
                 updated_at_ms = x.at, finished_at_ms = x.at \
                 FROM {} WHERE jobs.id = x.id AND jobs.lease_token = x.t",
                rows(&[("id", Text), ("t", Text), ("at", Int)])
            ),
            events: format!(
                "INSERT INTO webhook_events (psp, event_id, event_type, reference, received_at_ms) \
                 SELECT x.p, x.e, x.t, x.r, x.at FROM {} WHERE true \
                 ON CONFLICT (psp, event_id) DO NOTHING",
                rows(&[
                    ("p", Text),
                    ("e", Text),
                    ("t", Text),
                    ("r", Text),
                    ("at", Int)
                ])
            ),
            payments: format!(
                "UPDATE payments SET status = x.st, psp_reference = x.pr, failure_code = x.f, \
                 duplicate_of = x.dup, updated_at_ms = x.at FROM {} WHERE payments.id = x.id",
                rows(&[
                    ("id", Text),
                    ("st", Text),
                    ("pr", Text),
                    ("f", Text),
                    ("dup", Text),
                    ("at", Int)
                ])
            ),
            new_disputes: format!(
                "INSERT INTO disputes (id, psp, psp_dispute_id, payment_id, currency, amount_minor, \
                 reason, status, created_at_ms, updated_at_ms) \
                 SELECT x.id, x.psp, x.pd, x.p, x.c, x.a, x.r, x.st, x.at, x.at FROM {}",
                rows(&[
                    ("id", Text),
                    ("psp", Text),
                    ("pd", Text),
                    ("p", Text),
                    ("c", Text),
                    ("a", Int),
                    ("r", Text),
                    ("st", Text),
                    ("at", Int)
                ])
            ),
            disputes: format!(
                "UPDATE disputes SET status = x.st, updated_at_ms = x.at FROM {} \
                 WHERE disputes.psp_dispute_id = x.pd AND disputes.psp = x.psp",
                rows(&[("pd", Text), ("psp", Text), ("st", Text), ("at", Int)])
            ),
            orders: format!(
                "UPDATE payment_orders SET status = x.s, platform_fee_minor = x.fee, \
                 updated_at_ms = x.at FROM {} WHERE payment_orders.id = x.id",
                rows(&[("id", Text), ("s", Text), ("fee", Int), ("at", Int)])
            ),
            new_refunds: format!(
                "INSERT INTO refunds (id, payment_id, payment_order_id, seller_id, currency, \
                 amount_minor, platform_fee_minor, status, psp_refund_id, failure_code, \
                 created_at_ms, updated_at_ms) \
                 SELECT x.id, x.p, x.o, x.s, x.c, x.a, x.fee, x.st, x.pr, x.f, x.at, x.at FROM {}",
                rows(&[
                    ("id", Text),
                    ("p", Text),
                    ("o", Text),
                    ("s", Text),
                    ("c", Text),
                    ("a", Int),
                    ("fee", Int),
                    ("st", Text),
                    ("pr", Text),
                    ("f", Text),
                    ("at", Int)
                ])
            ),
            refunds: format!(
                "UPDATE refunds SET status = x.st, psp_refund_id = x.pr, failure_code = x.f, \
                 updated_at_ms = x.at FROM {} WHERE refunds.id = x.id",
                rows(&[
                    ("id", Text),
                    ("st", Text),
                    ("pr", Text),
                    ("f", Text),
                    ("at", Int)
                ])
            ),
            new_payouts: format!(
                "INSERT INTO payouts (id, seller_id, currency, amount_minor, status, psp_payout_id, \
                 failure_code, created_at_ms, updated_at_ms) \
                 SELECT x.id, x.s, x.c, x.a, x.st, x.pr, x.f, x.at, x.at FROM {}",
                rows(&[
                    ("id", Text),
                    ("s", Text),
                    ("c", Text),
                    ("a", Int),
                    ("st", Text),
                    ("pr", Text),
                    ("f", Text),
                    ("at", Int)
                ])
            ),
            payouts: format!(
                "UPDATE payouts SET status = x.st, psp_payout_id = x.pr, failure_code = x.f, \
                 updated_at_ms = x.at FROM {} WHERE payouts.id = x.id",
                rows(&[
                    ("id", Text),
                    ("st", Text),
                    ("pr", Text),
                    ("f", Text),
                    ("at", Int)
                ])
            ),
            jobs: format!(
                "INSERT INTO jobs (id, kind, idempotency_key, payload, status, attempts, \
                 lease_token, due_at_ms, created_at_ms, updated_at_ms) \
                 SELECT x.id, x.k, x.key, x.p, x.st, x.n, x.lt, x.due, x.at, x.at FROM {} \
                 WHERE true ON CONFLICT (kind, idempotency_key) DO NOTHING",
                rows(&[
                    ("id", Text),
                    ("k", Text),
                    ("key", Text),
                    ("p", Text),
                    ("st", Text),
                    ("n", Int),
                    ("lt", Text),
                    ("due", Int),
                    ("at", Int)
                ])
            ),
            cancel_jobs: format!(
                "UPDATE jobs SET status = 'done', updated_at_ms = x.at, finished_at_ms = x.at \
                 FROM {} WHERE jobs.kind = x.k AND jobs.idempotency_key = x.key \
                 AND jobs.status = 'queued'",
                rows(&[("k", Text), ("key", Text), ("at", Int)])
            ),
            outbox: format!(
                "INSERT INTO outbox (id, topic, aggregate_id, payload, created_at_ms) \
                 SELECT x.id, x.t, x.a, x.p, x.at FROM {}",
                rows(&[
                    ("id", Text),
                    ("t", Text),
                    ("a", Text),
                    ("p", Text),
                    ("at", Int)
                ])
            ),
            answers: format!(
                "UPDATE idempotency_keys SET recovery_point = 'finished', response_status = x.s, \
                 response_body = x.b, locked_at_ms = NULL FROM {} \
                 WHERE idempotency_keys.api_key_id = x.a AND idempotency_keys.idempotency_key = x.k \
                 AND idempotency_keys.response_status IS NULL",
                rows(&[("a", Text), ("k", Text), ("s", Int), ("b", Text)])
            ),
            wallets: format!(
                "UPDATE wallets SET balance_minor = wallets.balance_minor + x.d, updated_at_ms = x.at \
                 FROM {} WHERE wallets.seller_id = x.s AND wallets.currency = x.c",
                rows(&[("s", Text), ("c", Text), ("d", Int), ("at", Int)])
            ),
            journal: format!(
                "INSERT INTO journal_transactions (id, seq, source_ref, kind, payment_id, \
                 created_at_ms, prev_hash, hash, prev_transaction_id, hash_key_id) \
                 SELECT x.id, x.seq, x.r, x.k, x.p, x.at, x.ph, x.h, x.pid, x.kid FROM {}",
                rows(&[
                    ("id", Text),
                    ("seq", Int),
                    ("r", Text),
                    ("k", Text),
                    ("p", Text),
                    ("at", Int),
                    ("ph", Text),
                    ("h", Text),
                    ("pid", Text),
                    ("kid", Text)
                ])
            ),
            postings: format!(
                "INSERT INTO postings (transaction_id, line_no, account, currency, amount_minor) \
                 SELECT x.t, x.l, x.a, x.c, x.m FROM {}",
                rows(&[
                    ("t", Text),
                    ("l", Int),
                    ("a", Text),
                    ("c", Text),
                    ("m", Int)
                ])
            ),
        }
    }
}

/// A batch's row-table statements (every table but the journal's), each with its rows as one
/// JSON parameter. Run one after another, a round trip each; or, on PostgreSQL, as ONE statement
/// whose data-modifying CTEs all run against the statement's one snapshot — a round trip where
/// there were up to eighteen. That is sound only when no row is written twice (PostgreSQL applies
/// one of two updates of a row in one statement, and a CTE does not see a sibling's rows), which
/// [`disjoint`] checks; otherwise the batch writes them one by one. On SQLite they go to the
/// driver's worker thread as ONE call of several statements, run in order, each seeing the ones
/// before it (so two may write one row), each answering its count: one hop to the thread where
/// there was one per statement.
#[derive(Default)]
struct RowWrites<'s> {
    /// Statement, parameter, rows.
    items: Vec<(&'s str, String, usize)>,
}

impl<'s> RowWrites<'s> {
    /// Adds a statement; answers its place, by which [`RowWrites::run`] answers its count.
    fn add<T: Serialize>(&mut self, sql: &'s str, rows: &[T]) -> usize {
        let param = if rows.is_empty() {
            String::new()
        } else {
            to_param(rows)
        };
        self.items.push((sql, param, rows.len()));
        self.items.len() - 1
    }

    /// Runs the statements that have rows; answers each statement's rows changed, in order.
    async fn run(self, tx: &mut Tx, how: RunAs) -> Result<Vec<u64>> {
        let mut changed = vec![0; self.items.len()];
        let used: Vec<usize> = (0..self.items.len())
            .filter(|i| self.items[*i].2 > 0)
            .collect();
        if how == RunAs::OneCall && used.len() >= 2 {
            return self.run_in_one_call(tx, used, changed).await;
        }
        if how != RunAs::OneStatement || used.len() < 2 {
            metrics::counter!("ferropay_engine_row_writes_total", "as" => "statements")
                .increment(1);
            for i in used {
                let (sql, param, _) = &self.items[i];
                changed[i] = sqlx::query(sqlx::AssertSqlSafe(*sql))
                    .bind(param.as_str())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
            }
            return Ok(changed);
        }
        // `WITH w0 AS (… RETURNING 1), w1 AS (…) SELECT (SELECT COUNT(*) FROM w0) AS c0, …`:
        // each statement's JSON parameter renumbered to its place.
        let mut ctes = Vec::with_capacity(used.len());
        let mut counts = Vec::with_capacity(used.len());
        for (n, i) in used.iter().enumerate() {
            let (sql, _, _) = &self.items[*i];
            assert!(
                sql.contains("$1::json"),
                "a row statement reads its rows from $1"
            );
            let renumbered = sql.replace("$1::json", &format!("${}::json", n + 1));
            ctes.push(format!("w{n} AS ({renumbered} RETURNING 1)"));
            counts.push(format!("(SELECT COUNT(*) FROM w{n}) AS c{n}"));
        }
        let statement = format!("WITH {} SELECT {}", ctes.join(", "), counts.join(", "));
        metrics::counter!("ferropay_engine_row_writes_total", "as" => "one_statement").increment(1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for i in &used {
            query = query.bind(self.items[*i].1.as_str());
        }
        let row = query.fetch_one(&mut **tx).await?;
        for (n, i) in used.iter().enumerate() {
            changed[*i] = u64::try_from(row.try_get::<i64, _>(n)?).unwrap_or(0);
        }
        Ok(changed)
    }

    /// SQLite: the used statements as one call of several ([`one_call`]); the driver answers
    /// each statement's count in order.
    async fn run_in_one_call(
        self,
        tx: &mut Tx,
        used: Vec<usize>,
        mut changed: Vec<u64>,
    ) -> Result<Vec<u64>> {
        let calls = one_call(used.iter().map(|i| self.items[*i].0));
        metrics::counter!("ferropay_engine_row_writes_total", "as" => "one_call").increment(1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(calls));
        for i in &used {
            query = query.bind(self.items[*i].1.as_str());
        }
        let counts: Vec<u64> = (&mut **tx)
            .execute_many(query)
            .map_ok(|done| done.rows_affected())
            .try_collect()
            .await?;
        assert_eq!(
            counts.len(),
            used.len(),
            "the driver answers one count per statement"
        );
        for (i, count) in used.iter().zip(counts) {
            changed[*i] = count;
        }
        Ok(changed)
    }
}

/// How a batch's row statements run ([`RowWrites::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunAs {
    /// One after another, a round trip each.
    Statements,
    /// PostgreSQL: ONE statement of data-modifying CTEs (no row written twice).
    OneStatement,
    /// SQLite: one call to the driver's thread of several statements, run in order.
    OneCall,
}

/// Whether no row is written twice by the batch's row statements, so that they may run as one
/// (see [`RowWrites`]): a payment created or given its session is not also updated, a job
/// inserted is not also cancelled or completed, a key inserted is not also answered.
#[allow(clippy::too_many_arguments)]
fn disjoint(
    view: &View,
    new_payments: &[NewPaymentSqlRow],
    sessions: &[SessionRow],
    jobs: &[JobRow],
    cancels: &[CancelRow],
    completed: &[CompleteJobRow],
    new_keys: &[NewKeyRow],
    answers: &[AnswerRow],
) -> bool {
    let updated = |id: &str| view.dirty.payments.contains(id);
    let sessions_apart = sessions.iter().all(|s| !updated(s.id));
    let created_apart = new_payments.iter().all(|p| {
        !updated(p.id)
            && !sessions.iter().any(|s| s.id == p.id)
            && !view
                .dirty
                .orders
                .iter()
                .any(|(payment_id, _)| payment_id == p.id)
    });
    let jobs_apart = jobs.iter().all(|j| {
        !cancels.iter().any(|c| c.k == j.k && c.key == j.key)
            && !completed.iter().any(|c| c.id == j.id)
    });
    let keys_apart = new_keys
        .iter()
        .all(|n| !answers.iter().any(|a| a.a == n.a && a.k == n.k));
    sessions_apart && created_apart && jobs_apart && keys_apart
}

#[derive(Serialize)]
struct EventRow<'a> {
    p: &'a str,
    e: &'a str,
    t: &'a str,
    r: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct OutboxRow<'a> {
    id: String,
    t: &'a str,
    a: &'a str,
    p: String,
    at: i64,
}

#[derive(Serialize)]
struct JobRow<'a> {
    id: String,
    k: &'a str,
    key: &'a str,
    p: String,
    /// `queued`, or `running` when leased to the command's caller.
    st: &'static str,
    /// Attempts counted: 1 for a leased job.
    n: i64,
    /// The lease's token, for a leased job.
    lt: Option<&'a str>,
    due: i64,
    at: i64,
}

#[derive(Serialize)]
struct NewPaymentSqlRow<'a> {
    id: &'a str,
    ch: &'a str,
    b: &'a str,
    be: Option<&'a str>,
    c: &'static str,
    a: i64,
    psp: &'a str,
    ru: &'a str,
    at: i64,
    fee: i64,
}

#[derive(Serialize)]
struct NewOrderSqlRow<'a> {
    id: &'a str,
    p: &'a str,
    n: i64,
    o: &'a str,
    s: &'a str,
    a: i64,
    at: i64,
}

#[derive(Serialize)]
struct NewKeyRow<'a> {
    a: &'a str,
    k: &'a str,
    f: &'a str,
    p: &'a str,
    at: i64,
}

#[derive(Serialize)]
struct SessionRow<'a> {
    id: &'a str,
    t: &'a str,
    u: &'a str,
    pr: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct CompleteJobRow<'a> {
    id: &'a str,
    t: &'a str,
    at: i64,
}

#[derive(Serialize)]
struct CancelRow<'a> {
    k: &'a str,
    key: &'a str,
    at: i64,
}

#[derive(Serialize)]
struct AnswerRow<'a> {
    a: &'a str,
    k: &'a str,
    s: i64,
    b: &'a str,
}

#[derive(Serialize)]
/// A payment's, refund's or payout's state as the batch leaves it.
struct StatusRow<'a> {
    id: &'a str,
    #[serde(rename = "st")]
    status: &'a str,
    /// The PSP's reference or id.
    pr: Option<&'a str>,
    f: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct OrderStatusRow<'a> {
    id: &'a str,
    s: &'a str,
    fee: i64,
    at: i64,
}

#[derive(Serialize)]
struct NewRefundRow<'a> {
    id: &'a str,
    p: &'a str,
    o: &'a str,
    s: &'a str,
    c: &'static str,
    a: i64,
    fee: i64,
    st: &'a str,
    pr: Option<&'a str>,
    f: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct PaymentStatusRow<'a> {
    id: &'a str,
    #[serde(rename = "st")]
    status: &'a str,
    pr: Option<&'a str>,
    f: Option<&'a str>,
    dup: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct NewDisputeRow<'a> {
    id: &'a str,
    psp: &'a str,
    pd: &'a str,
    p: &'a str,
    c: &'static str,
    a: i64,
    r: &'a str,
    st: &'a str,
    at: i64,
}

#[derive(Serialize)]
struct DisputeStatusRow<'a> {
    pd: &'a str,
    psp: &'a str,
    st: &'a str,
    at: i64,
}

#[derive(Serialize)]
struct NewPayoutRow<'a> {
    id: &'a str,
    s: &'a str,
    c: &'static str,
    a: i64,
    st: &'a str,
    pr: Option<&'a str>,
    f: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct WalletDeltaRow<'a> {
    s: &'a str,
    c: &'static str,
    d: i64,
    at: i64,
}

/// A change to one row of `account_balances`.
#[derive(Serialize)]
struct BalanceRow<'a> {
    a: &'a str,
    c: &'static str,
    /// The net change, minor units.
    d: i64,
    /// Postings added.
    n: i64,
}

/// A change to one row of `settlement_days`.
#[derive(Serialize)]
struct DayRow<'a> {
    d: i64,
    p: &'a str,
    c: &'static str,
    e: i64,
    o: i64,
    n: i64,
}

#[derive(Serialize)]
struct JournalRow<'a> {
    id: &'a str,
    seq: i64,
    r: &'a str,
    k: &'a str,
    p: Option<&'a str>,
    at: i64,
    ph: &'a str,
    h: &'a str,
    pid: Option<&'a str>,
    kid: Option<&'a str>,
}

/// The journal's rows of chained transactions.
fn journal_rows<'a>(chained: &'a [Chained<'a>]) -> Vec<JournalRow<'a>> {
    chained
        .iter()
        .map(|c| JournalRow {
            id: c.id,
            seq: c.seq,
            r: &c.new.source_ref,
            k: c.new.kind,
            p: c.new.payment_id.as_deref(),
            at: c.created_at_ms,
            ph: &c.prev_hash,
            h: &c.hash,
            pid: c.prev_id.as_deref(),
            kid: c.key_id.as_deref(),
        })
        .collect()
}

/// The chain head's row (SQLite, [`WriteSql::head`]).
#[derive(Serialize)]
struct HeadRow<'a> {
    s: i64,
    h: &'a str,
    t: Option<&'a str>,
}

#[derive(Serialize)]
struct PostingRow<'a> {
    t: &'a str,
    l: i64,
    a: &'a str,
    c: &'static str,
    m: i64,
}

/// Writes everything the accepted commands of a batch staged (`effects`, in decision order;
/// rows from `view`'s final state). Row tables first; the chain head last, so that it is held
/// only for the journal, its postings, the platform's summaries, its own update and the commit.
/// Answers how many journal transactions were chained, and the time spent on each part.
pub(crate) async fn write(
    sql: &WriteSql,
    store: &Store,
    tx: &mut Tx,
    view: &View,
    effects: &[Effect],
) -> Result<Written> {
    let started = Instant::now();
    let at = view.now_ms;
    let mut events = Vec::new();
    let mut outbox = Vec::new();
    let mut jobs = Vec::new();
    let mut cancels = Vec::new();
    let mut answers = Vec::new();
    let mut posts = Vec::new();
    let mut new_keys = Vec::new();
    let mut completed = Vec::new();
    for effect in effects {
        match effect {
            Effect::Event {
                psp,
                event_id,
                event_type,
                reference,
            } => events.push(EventRow {
                p: psp,
                e: event_id,
                t: event_type,
                r: reference.as_deref(),
                at,
            }),
            Effect::Outbox {
                topic,
                aggregate_id,
                payload,
            } => outbox.push(OutboxRow {
                id: new_id("obx"),
                t: topic,
                a: aggregate_id,
                p: payload.to_string(),
                at,
            }),
            Effect::Job {
                kind,
                key,
                payload,
                due_at_ms,
            } => jobs.push(JobRow {
                id: new_id("job"),
                k: kind,
                key,
                p: payload.to_string(),
                st: "queued",
                n: 0,
                lt: None,
                due: *due_at_ms,
                at,
            }),
            Effect::LeasedJob {
                id,
                kind,
                key,
                payload,
                lease_token,
                lease_until_ms,
            } => jobs.push(JobRow {
                id: id.clone(),
                k: kind,
                key,
                p: payload.to_string(),
                st: "running",
                n: 1,
                lt: Some(lease_token),
                due: *lease_until_ms,
                at,
            }),
            Effect::CompleteJob { id, lease_token } => completed.push(CompleteJobRow {
                id,
                t: lease_token,
                at,
            }),
            Effect::NewKey {
                api_key_id,
                key,
                request_sha256,
                payment_id,
            } => new_keys.push(NewKeyRow {
                a: api_key_id,
                k: key,
                f: request_sha256,
                p: payment_id,
                at,
            }),
            Effect::CancelJob { kind, key } => cancels.push(CancelRow { k: kind, key, at }),
            Effect::Answer {
                api_key_id,
                key,
                status,
                body,
            } => answers.push(AnswerRow {
                a: api_key_id,
                k: key,
                s: i64::from(*status),
                b: body,
            }),
            Effect::Post { id, transaction } => posts.push((id.as_str(), transaction)),
            Effect::Payment { .. }
            | Effect::Order { .. }
            | Effect::NewRefund(_)
            | Effect::Refund { .. }
            | Effect::NewPayout(_)
            | Effect::Payout { .. }
            | Effect::DuplicateOf { .. }
            | Effect::NewDispute(_)
            | Effect::Dispute { .. }
            | Effect::NewPayment(_)
            | Effect::Session { .. } => {}
        }
    }

    let mut rows = RowWrites::default();
    // New payments first: their orders, keys and jobs name them.
    let new_payments: Vec<NewPaymentSqlRow> = view
        .dirty
        .new_payments
        .iter()
        .map(|p| NewPaymentSqlRow {
            id: &p.id,
            ch: &p.checkout_id,
            b: &p.buyer_id,
            be: p.buyer_email.as_deref(),
            c: p.amount.currency().code(),
            a: p.amount.minor(),
            psp: &p.psp,
            ru: &p.return_url,
            at: p.created_at_ms,
            fee: p.platform_fee_bps,
        })
        .collect();
    rows.add(&sql.new_payments, &new_payments);
    let new_orders: Vec<NewOrderSqlRow> = view
        .dirty
        .new_payments
        .iter()
        .flat_map(|p| {
            p.orders
                .iter()
                .enumerate()
                .map(|(position, o)| NewOrderSqlRow {
                    id: &o.id,
                    p: &p.id,
                    n: position as i64,
                    o: &o.order_id,
                    s: &o.seller_id,
                    a: o.amount_minor,
                    at: p.created_at_ms,
                })
        })
        .collect();
    let new_orders_at = rows.add(&sql.new_orders, &new_orders);
    rows.add(&sql.new_keys, &new_keys);
    let sessions: Vec<SessionRow> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Session {
                payment_id,
                token,
                url,
                psp_reference,
            } => Some(SessionRow {
                id: payment_id,
                t: token,
                u: url,
                pr: psp_reference.as_deref(),
                at,
            }),
            _ => None,
        })
        .collect();
    let sessions_at = rows.add(&sql.sessions, &sessions);
    rows.add(&sql.events, &events);
    let payments: Vec<PaymentStatusRow> = view
        .dirty
        .payments
        .iter()
        .filter_map(|id| view.payments.get(id))
        .map(|p| PaymentStatusRow {
            id: &p.id,
            status: &p.status,
            pr: p.psp_reference.as_deref(),
            f: p.failure_code.as_deref(),
            dup: p.duplicate_of.as_deref(),
            at,
        })
        .collect();
    rows.add(&sql.payments, &payments);
    let orders: Vec<OrderStatusRow> = view
        .dirty
        .orders
        .iter()
        .filter_map(|(payment_id, position)| view.orders.get(payment_id)?.get(*position))
        .map(|o| OrderStatusRow {
            id: &o.id,
            s: &o.status,
            fee: o.platform_fee_minor,
            at,
        })
        .collect();
    rows.add(&sql.orders, &orders);
    let new_refunds: Vec<NewRefundRow> = view
        .dirty
        .new_refunds
        .iter()
        .filter_map(|id| view.refunds.get(id))
        .map(|r| NewRefundRow {
            id: &r.id,
            p: &r.payment_id,
            o: &r.payment_order_id,
            s: &r.seller_id,
            c: r.amount.currency().code(),
            a: r.amount.minor(),
            fee: r.platform_fee_minor,
            st: &r.status,
            pr: r.psp_refund_id.as_deref(),
            f: r.failure_code.as_deref(),
            at: r.created_at_ms,
        })
        .collect();
    rows.add(&sql.new_refunds, &new_refunds);
    let refunds: Vec<StatusRow> = view
        .dirty
        .refunds
        .iter()
        .filter_map(|id| view.refunds.get(id))
        .map(|r| StatusRow {
            id: &r.id,
            status: &r.status,
            pr: r.psp_refund_id.as_deref(),
            f: r.failure_code.as_deref(),
            at,
        })
        .collect();
    rows.add(&sql.refunds, &refunds);
    let new_payouts: Vec<NewPayoutRow> = view
        .dirty
        .new_payouts
        .iter()
        .filter_map(|id| view.payouts.get(id))
        .map(|p| NewPayoutRow {
            id: &p.id,
            s: &p.seller_id,
            c: p.amount.currency().code(),
            a: p.amount.minor(),
            st: &p.status,
            pr: p.psp_payout_id.as_deref(),
            f: p.failure_code.as_deref(),
            at: p.created_at_ms,
        })
        .collect();
    rows.add(&sql.new_payouts, &new_payouts);
    let payouts: Vec<StatusRow> = view
        .dirty
        .payouts
        .iter()
        .filter_map(|id| view.payouts.get(id))
        .map(|p| StatusRow {
            id: &p.id,
            status: &p.status,
            pr: p.psp_payout_id.as_deref(),
            f: p.failure_code.as_deref(),
            at,
        })
        .collect();
    rows.add(&sql.payouts, &payouts);
    let new_disputes: Vec<NewDisputeRow> = view
        .dirty
        .new_disputes
        .iter()
        .filter_map(|id| view.disputes.get(id))
        .map(|d| NewDisputeRow {
            id: &d.id,
            psp: &d.psp,
            pd: &d.psp_dispute_id,
            p: &d.payment_id,
            c: d.amount.currency().code(),
            a: d.amount.minor(),
            r: &d.reason,
            st: &d.status,
            at: d.created_at_ms,
        })
        .collect();
    rows.add(&sql.new_disputes, &new_disputes);
    let disputes: Vec<DisputeStatusRow> = view
        .dirty
        .disputes
        .iter()
        .filter_map(|id| view.disputes.get(id))
        .map(|d| DisputeStatusRow {
            pd: &d.psp_dispute_id,
            psp: &d.psp,
            st: &d.status,
            at,
        })
        .collect();
    rows.add(&sql.disputes, &disputes);
    rows.add(&sql.jobs, &jobs);
    rows.add(&sql.cancel_jobs, &cancels);
    rows.add(&sql.complete_jobs, &completed);
    rows.add(&sql.outbox, &outbox);
    let answers_at = rows.add(&sql.answers, &answers);
    // One row update per wallet the batch moved, by its net change (I4: with the postings).
    let wallets: Vec<WalletDeltaRow> = view
        .wallets
        .iter()
        .filter(|(_, w)| w.balance != w.loaded)
        .map(|((seller_id, currency), w)| WalletDeltaRow {
            s: seller_id,
            c: currency.code(),
            d: w.balance.minor() - w.loaded.minor(),
            at,
        })
        .collect();
    // Before the chain head is taken, so that the head is not held for them (each was locked
    // when the batch loaded it).
    let wallets_at = rows.add(&sql.wallets, &wallets);
    // The kept balances and settlement days, one row per account and per day. A seller's
    // account is written here, before the head: the batch holds that seller's wallet, which
    // every batch that posts to the account locks first. The others (the platform's accounts,
    // in nearly every batch) and the days are written under the head, with the journal.
    let summaries = Summaries::of(posts.iter().map(|(_, t)| (at, *t)))?;
    let mut seller_balances = Vec::new();
    let mut head_balances = Vec::new();
    for ((account, currency), sum) in &summaries.accounts {
        let row = BalanceRow {
            a: account,
            c: currency.code(),
            d: sum.net.minor(),
            n: sum.postings,
        };
        match accounts::seller_id(account) {
            Some(seller_id) => {
                let wallet = view.wallets.get(&(seller_id.to_owned(), *currency));
                // I4: a wallet moves by exactly minus its account's postings.
                let moved = wallet.map_or(0, |w| w.balance.minor() - w.loaded.minor());
                assert_eq!(
                    moved, -row.d,
                    "a wallet moved unlike its account's postings"
                );
                if wallet.is_some() {
                    seller_balances.push(row);
                } else {
                    head_balances.push(row);
                }
            }
            None => head_balances.push(row),
        }
    }
    let moved_wallets = seller_balances.iter().filter(|row| row.d != 0).count();
    assert_eq!(
        moved_wallets,
        wallets.len(),
        "a wallet moved without a posting"
    );
    rows.add(&sql.account_balances, &seller_balances);
    // Written with their transactions, under the head: PostgreSQL checks a posting's
    // transaction at the end of its statement (migration 20), SQLite by its foreign key. Each
    // transaction's sum to zero (I3) was checked when it was decided.
    let postings: Vec<PostingRow> = posts
        .iter()
        .flat_map(|(id, t)| {
            t.postings
                .iter()
                .enumerate()
                .map(move |(line_no, posting)| PostingRow {
                    t: id,
                    l: line_no as i64,
                    a: &posting.account,
                    c: posting.amount.currency().code(),
                    m: posting.amount.minor(),
                })
        })
        .collect();
    let days: Vec<DayRow> = summaries
        .days
        .iter()
        .map(|((day_start_ms, psp, currency), sum)| DayRow {
            d: *day_start_ms,
            p: psp,
            c: currency.code(),
            e: sum.expected.minor(),
            o: sum.paid_out.minor(),
            n: sum.postings,
        })
        .collect();
    // SQLite: the batch holds the whole file's write lock from its `BEGIN`, so the head is
    // read now, and the journal, its postings, the platform's kept sums, the days and the head
    // ride in the rows' one call: two hops to the driver's thread where there were four.
    let ledger_started = Instant::now();
    let mut sqlite_head = None;
    let mut sqlite_chained = Vec::new();
    if !sql.postgres && !posts.is_empty() {
        let mut head = chain::lock_head(store, tx).await?;
        sqlite_chained = chain::extend(&mut head, posts.iter().map(|(id, t)| (*id, *t)), at);
        sqlite_head = Some(head);
    }
    let sqlite_journal = journal_rows(&sqlite_chained);
    let sqlite_ledger = sqlite_head.as_ref().map(|head| {
        let journal_at = rows.add(&sql.journal, &sqlite_journal);
        rows.add(&sql.postings, &postings);
        rows.add(&sql.account_balances, &head_balances);
        rows.add(&sql.settlement_days, &days);
        let head_at = rows.add(
            &sql.head,
            &[HeadRow {
                s: head.seq,
                h: &head.hash,
                t: head.transaction_id.as_deref(),
            }],
        );
        (journal_at, head_at)
    });
    let sqlite_ledger_us = micros_since(ledger_started);
    // One call on SQLite; one statement on PostgreSQL when no row is written twice (see
    // `RowWrites`).
    let how = if !sql.postgres {
        RunAs::OneCall
    } else if disjoint(
        view,
        &new_payments,
        &sessions,
        &jobs,
        &cancels,
        &completed,
        &new_keys,
        &answers,
    ) {
        RunAs::OneStatement
    } else {
        RunAs::Statements
    };
    let written = rows.run(tx, how).await?;
    assert_eq!(
        written[new_orders_at] as usize,
        new_orders.len(),
        "every new order is written"
    );
    // Each payment was locked (and so exists) when the batch loaded it.
    assert_eq!(
        written[sessions_at] as usize,
        sessions.len(),
        "a session's payment was missing"
    );
    // Each key was locked and seen without an answer when the batch loaded it.
    assert_eq!(
        written[answers_at] as usize,
        answers.len(),
        "an idempotency answer was not saved"
    );
    // Every wallet was locked (and so exists) when the batch loaded it.
    assert_eq!(
        written[wallets_at] as usize,
        wallets.len(),
        "a wallet row was missing"
    );

    if let Some((journal_at, head_at)) = sqlite_ledger {
        assert_eq!(
            written[journal_at] as usize,
            sqlite_journal.len(),
            "every chained transaction is written"
        );
        assert_eq!(written[head_at], 1, "the chain head row exists");
        return Ok(Written {
            transactions: sqlite_chained.len(),
            rows_us: micros_since(started).saturating_sub(sqlite_ledger_us),
            ledger_us: sqlite_ledger_us,
        });
    }
    if posts.is_empty() {
        // Wallets move only with postings.
        assert!(wallets.is_empty(), "a wallet moved without a posting");
        return Ok(Written {
            transactions: 0,
            rows_us: micros_since(started),
            ledger_us: 0,
        });
    }
    let rows_us = micros_since(started);
    let ledger_started = Instant::now();
    let mut head = chain::lock_head(store, tx).await?;
    let chained: Vec<Chained> = chain::extend(&mut head, posts.iter().map(|(id, t)| (*id, *t)), at);
    let journal = journal_rows(&chained);
    let ledger_pg = sql
        .ledger_pg
        .as_deref()
        .expect("SQLite wrote its ledger with the rows");
    let done = sqlx::query(sqlx::AssertSqlSafe(ledger_pg))
        .bind(to_param(&journal))
        .bind(to_param(&postings))
        .bind(to_param(&head_balances))
        .bind(to_param(&days))
        .bind(head.seq)
        .bind(&head.hash)
        .bind(head.transaction_id.as_deref())
        .execute(&mut **tx)
        .await?;
    assert_eq!(done.rows_affected(), 1, "the chain head row exists");
    Ok(Written {
        transactions: chained.len(),
        rows_us,
        ledger_us: micros_since(ledger_started),
    })
}

/// What [`write`] did: the journal transactions it chained, and its two parts' time — the row
/// tables, and the ledger (the chain head's lock, the journal, its postings, the wallets).
pub(crate) struct Written {
    pub transactions: usize,
    pub rows_us: u64,
    pub ledger_us: u64,
}

pub(crate) fn micros_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
