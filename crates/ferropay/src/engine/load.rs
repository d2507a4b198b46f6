//! Loading a batch's view: the decided rows locked in one global order — payments, refunds,
//! payouts, disputes, idempotency keys, wallets, each sorted by key — so that the engines of several
//! instances never deadlock, then the facts the decisions need (orders, refund totals, holds,
//! events seen, references posted). Each is one set-based statement.

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Either, Executor, Row};

use super::command::Keys;
use super::view::{
    DisputeRow, OrderRow, PaymentRow, PayoutRow, RefundRow, RefundTotals, View, WalletRow,
};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::store::bulk::{Col, for_update, in_json_list, json_rows, one_call, to_param};
use crate::store::{Backend, Tx};

/// The statements, written once per backend.
pub(crate) struct LoadSql {
    backend: Backend,
    refund_payments: String,
    payments: String,
    refunds: String,
    payouts: String,
    disputes: String,
    live_siblings: String,
    keys: String,
    orders: String,
    refund_totals: String,
    ensure_wallets: String,
    wallets: String,
    holds: String,
    events: String,
    posted: String,
}

impl LoadSql {
    /// Every statement, named (the plan test, `engine::plans`).
    #[cfg(test)]
    pub(crate) fn statements(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("load refund_payments", &self.refund_payments),
            ("load payments", &self.payments),
            ("load refunds", &self.refunds),
            ("load payouts", &self.payouts),
            ("load disputes", &self.disputes),
            ("load live_siblings", &self.live_siblings),
            ("load keys", &self.keys),
            ("load orders", &self.orders),
            ("load refund_totals", &self.refund_totals),
            ("load ensure_wallets", &self.ensure_wallets),
            ("load wallets", &self.wallets),
            ("load holds", &self.holds),
            ("load events", &self.events),
            ("load posted", &self.posted),
        ]
    }

    pub(crate) fn new(b: Backend) -> Self {
        let wallet_rows = json_rows(b, 1, "x", &[("s", Col::Text), ("c", Col::Text)]);
        Self {
            backend: b,
            refund_payments: format!(
                "SELECT id, payment_id FROM refunds WHERE {}",
                in_json_list(b, "id", 1)
            ),
            payments: format!(
                "SELECT id, checkout_id, status, amount_minor, currency, psp, psp_token, \
                 psp_reference, failure_code, platform_fee_bps, duplicate_of, created_at_ms \
                 FROM payments \
                 WHERE {} ORDER BY id{}",
                in_json_list(b, "id", 1),
                for_update(b, None)
            ),
            refunds: format!(
                "SELECT id, payment_id, payment_order_id, seller_id, currency, amount_minor, \
                 platform_fee_minor, status, psp_refund_id, failure_code, created_at_ms \
                 FROM refunds WHERE {} ORDER BY id{}",
                in_json_list(b, "id", 1),
                for_update(b, None)
            ),
            payouts: format!(
                "SELECT id, seller_id, currency, amount_minor, status, psp_payout_id, \
                 failure_code, created_at_ms, updated_at_ms FROM payouts WHERE {} ORDER BY id{}",
                in_json_list(b, "id", 1),
                for_update(b, None)
            ),
            disputes: format!(
                "SELECT id, psp, psp_dispute_id, payment_id, currency, amount_minor, reason, \
                 status, created_at_ms, updated_at_ms FROM disputes WHERE {} \
                 ORDER BY psp_dispute_id{}",
                in_json_list(b, "psp_dispute_id", 1),
                for_update(b, None)
            ),
            // Not locked: the unique index on a checkout's live payment settles a race.
            live_siblings: format!(
                "SELECT checkout_id, id FROM payments WHERE {} \
                 AND status NOT IN ('failed', 'expired') AND duplicate_of IS NULL",
                in_json_list(b, "checkout_id", 1)
            ),
            keys: format!(
                "SELECT k.api_key_id, k.idempotency_key, k.response_status \
                 FROM idempotency_keys k, {} \
                 WHERE k.api_key_id = x.a AND k.idempotency_key = x.k \
                 ORDER BY k.api_key_id, k.idempotency_key{}",
                json_rows(b, 1, "x", &[("a", Col::Text), ("k", Col::Text)]),
                for_update(b, Some("k"))
            ),
            orders: format!(
                "SELECT id, payment_id, position, order_id, seller_id, amount_minor, \
                 platform_fee_minor, status FROM payment_orders WHERE {} \
                 ORDER BY payment_id, position",
                in_json_list(b, "payment_id", 1)
            ),
            refund_totals: format!(
                "SELECT payment_order_id, status, \
                 CAST(SUM(amount_minor) AS BIGINT) AS amount_minor, \
                 CAST(SUM(platform_fee_minor) AS BIGINT) AS fee_minor \
                 FROM refunds WHERE {} AND status IN ('pending', 'succeeded') \
                 GROUP BY payment_order_id, status",
                in_json_list(b, "payment_id", 1)
            ),
            // Sorted, so that two engines creating the same wallets wait in one order.
            ensure_wallets: format!(
                "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at_ms) \
                 SELECT x.s, x.c, 0, $2 FROM {wallet_rows} WHERE true ORDER BY x.s, x.c \
                 ON CONFLICT (seller_id, currency) DO NOTHING"
            ),
            wallets: format!(
                "SELECT w.seller_id, w.currency, w.balance_minor FROM wallets w, {wallet_rows} \
                 WHERE w.seller_id = x.s AND w.currency = x.c \
                 ORDER BY w.seller_id, w.currency{}",
                for_update(b, Some("w"))
            ),
            holds: format!(
                "SELECT r.seller_id, r.currency, \
                 CAST(SUM(r.amount_minor - r.platform_fee_minor) AS BIGINT) AS held_minor \
                 FROM refunds r, {wallet_rows} \
                 WHERE r.seller_id = x.s AND r.currency = x.c AND r.status = 'pending' \
                 GROUP BY r.seller_id, r.currency"
            ),
            events: format!(
                "SELECT e.psp, e.event_id FROM webhook_events e, {} \
                 WHERE e.psp = x.p AND e.event_id = x.e",
                json_rows(b, 1, "x", &[("p", Col::Text), ("e", Col::Text)])
            ),
            posted: format!(
                "SELECT source_ref, id FROM journal_transactions WHERE {}",
                in_json_list(b, "source_ref", 1)
            ),
        }
    }
}

#[derive(Serialize)]
struct WalletKey<'a> {
    s: &'a str,
    c: &'a str,
}

/// Runs one load statement, or takes its rows from those fetched up front.
async fn fetch<'s>(
    tx: &mut Tx,
    prefetched: &mut Prefetched<'s>,
    sql: &'s str,
    param: String,
) -> Result<Vec<AnyRow>> {
    if let Some(rows) = prefetched.take(sql, &param) {
        return Ok(rows);
    }
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(param)
        .fetch_all(&mut **tx)
        .await?)
}

/// SQLite: the rows of the load statements whose parameter the batch's keys alone decide,
/// fetched before the load in ONE call to the driver's worker thread (several statements, each
/// answering its rows in order), where each statement was a hop to that thread and back. The
/// load then takes them as it reaches each statement, with the same parameter; what it does
/// not reach was fetched for nothing, and what was not fetched it runs itself. Only reads are
/// fetched ahead, before the load's one write (new wallets, which none of them reads), and on
/// SQLite the batch holds the whole database's write lock from its `BEGIN`: the rows are those
/// the statement would read in its turn. PostgreSQL binds one statement per query, and locks
/// in the load's order: it runs each statement in turn.
#[derive(Default)]
struct Prefetched<'s> {
    fetched: Vec<(&'s str, String, Vec<AnyRow>)>,
}

impl<'s> Prefetched<'s> {
    async fn fetch(tx: &mut Tx, upfront: Vec<(&'s str, String)>) -> Result<Self> {
        if upfront.len() < 2 {
            return Ok(Self::default());
        }
        let calls = one_call(upfront.iter().map(|(sql, _)| *sql));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(calls));
        for (_, param) in &upfront {
            query = query.bind(param.as_str());
        }
        let mut answers: Vec<Vec<AnyRow>> = vec![Vec::new()];
        let mut stream = (&mut **tx).fetch_many(query);
        while let Some(item) = stream.try_next().await? {
            match item {
                Either::Right(row) => answers
                    .last_mut()
                    .expect("a statement's rows go to its own list")
                    .push(row),
                // A statement is done: the next rows are the next statement's.
                Either::Left(_) => answers.push(Vec::new()),
            }
        }
        drop(stream);
        answers.pop();
        assert_eq!(
            answers.len(),
            upfront.len(),
            "the driver ends every statement's rows with its count"
        );
        metrics::counter!("ferropay_engine_load_prefetched_total").increment(upfront.len() as u64);
        Ok(Self {
            fetched: upfront
                .into_iter()
                .zip(answers)
                .map(|((sql, param), rows)| (sql, param, rows))
                .collect(),
        })
    }

    fn take(&mut self, sql: &str, param: &str) -> Option<Vec<AnyRow>> {
        let at = self
            .fetched
            .iter()
            .position(|(fetched, with, _)| std::ptr::eq(*fetched, sql) && with == param)?;
        Some(self.fetched.swap_remove(at).2)
    }
}

/// The load statements whose parameter `keys` alone decide, for [`Prefetched`] (SQLite). Each
/// parameter is made as the load makes it, or the load does not find it and runs the statement.
fn upfront<'s>(sql: &'s LoadSql, keys: &Keys) -> Vec<(&'s str, String)> {
    let mut upfront = Vec::new();
    if !keys.refunds.is_empty() {
        // The payments and their orders then wait for the refunds' payments.
        upfront.push((sql.refund_payments.as_str(), ids(&keys.refunds)));
        upfront.push((sql.refunds.as_str(), ids(&keys.refunds)));
    } else {
        let payment_ids: BTreeSet<&String> = keys
            .payments
            .iter()
            .chain(&keys.payments_without_money)
            .collect();
        if !payment_ids.is_empty() {
            upfront.push((sql.payments.as_str(), ids(payment_ids.iter().copied())));
            upfront.push((sql.orders.as_str(), ids(payment_ids.iter().copied())));
            if keys.refund_totals {
                upfront.push((sql.refund_totals.as_str(), ids(payment_ids.iter().copied())));
            }
        }
    }
    if !keys.payouts.is_empty() {
        upfront.push((sql.payouts.as_str(), ids(&keys.payouts)));
    }
    if !keys.disputes.is_empty() {
        upfront.push((sql.disputes.as_str(), ids(&keys.disputes)));
    }
    if !keys.live_siblings && !keys.checkouts.is_empty() {
        upfront.push((sql.live_siblings.as_str(), ids(&keys.checkouts)));
    }
    if !keys.idempotency.is_empty() {
        upfront.push((sql.keys.as_str(), keys_param(keys)));
    }
    if !keys.events.is_empty() {
        upfront.push((sql.events.as_str(), events_param(keys)));
    }
    if !keys.source_refs.is_empty() {
        upfront.push((sql.posted.as_str(), ids(&keys.source_refs)));
    }
    upfront
}

/// The idempotency keys' parameter.
fn keys_param(keys: &Keys) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        a: &'a str,
        k: &'a str,
    }
    to_param(
        &keys
            .idempotency
            .iter()
            .map(|(a, k)| Key { a, k })
            .collect::<Vec<_>>(),
    )
}

/// The webhook events' parameter.
fn events_param(keys: &Keys) -> String {
    #[derive(Serialize)]
    struct Event<'a> {
        p: &'a str,
        e: &'a str,
    }
    to_param(
        &keys
            .events
            .iter()
            .map(|(p, e)| Event { p, e })
            .collect::<Vec<_>>(),
    )
}

fn ids<'a>(set: impl IntoIterator<Item = &'a String>) -> String {
    to_param(&set.into_iter().collect::<Vec<_>>())
}

fn money(row: &AnyRow, minor: &str) -> Result<Money> {
    let currency: String = row.try_get("currency")?;
    Money::from_stored(row.try_get(minor)?, &currency)
        .map_err(|e| Error::Internal(format!("stored money: {e}")))
}

/// Wallets known to exist, so that a batch does not ask to create them again.
pub(crate) type KnownWallets = std::sync::Mutex<std::collections::HashSet<(String, Currency)>>;

/// At most this many wallets are remembered; past it the memory starts again.
const MAX_KNOWN_WALLETS: usize = 1_000_000;

/// Locks and loads what `keys` names inside `tx`.
pub(crate) async fn load(
    sql: &LoadSql,
    tx: &mut Tx,
    keys: Keys,
    known_wallets: &KnownWallets,
    now_ms: i64,
) -> Result<View> {
    let mut view = View {
        now_ms,
        ..View::default()
    };
    let mut prefetched = match sql.backend {
        Backend::Sqlite => Prefetched::fetch(tx, upfront(sql, &keys)).await?,
        Backend::Postgres => Prefetched::default(),
    };
    let keys_param = (!keys.idempotency.is_empty()).then(|| keys_param(&keys));
    let events_param = (!keys.events.is_empty()).then(|| events_param(&keys));
    let mut payment_ids = keys.payments;
    if !keys.refunds.is_empty() {
        for row in fetch(
            tx,
            &mut prefetched,
            &sql.refund_payments,
            ids(&keys.refunds),
        )
        .await?
        {
            payment_ids.insert(row.try_get("payment_id")?);
        }
    }
    // The payments whose sellers' wallets a command may move (a refund's payment among them).
    let money_payments = payment_ids.clone();
    payment_ids.extend(keys.payments_without_money);
    let mut wallet_keys = keys.wallets;
    if !payment_ids.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.payments, ids(&payment_ids)).await? {
            let payment = PaymentRow {
                id: row.try_get("id")?,
                checkout_id: row.try_get("checkout_id")?,
                status: row.try_get("status")?,
                amount: money(&row, "amount_minor")?,
                psp: row.try_get("psp")?,
                psp_token: row.try_get("psp_token")?,
                psp_reference: row.try_get("psp_reference")?,
                failure_code: row.try_get("failure_code")?,
                platform_fee_bps: row.try_get("platform_fee_bps")?,
                duplicate_of: row.try_get("duplicate_of")?,
                created_at_ms: row.try_get("created_at_ms")?,
            };
            view.payments.insert(payment.id.clone(), payment);
        }
    }
    if !keys.refunds.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.refunds, ids(&keys.refunds)).await? {
            let refund = RefundRow {
                id: row.try_get("id")?,
                payment_id: row.try_get("payment_id")?,
                payment_order_id: row.try_get("payment_order_id")?,
                seller_id: row.try_get("seller_id")?,
                amount: money(&row, "amount_minor")?,
                platform_fee_minor: row.try_get("platform_fee_minor")?,
                status: row.try_get("status")?,
                psp_refund_id: row.try_get("psp_refund_id")?,
                failure_code: row.try_get("failure_code")?,
                created_at_ms: row.try_get("created_at_ms")?,
            };
            wallet_keys.insert((refund.seller_id.clone(), refund.amount.currency()));
            view.refunds.insert(refund.id.clone(), refund);
        }
    }
    if !keys.payouts.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.payouts, ids(&keys.payouts)).await? {
            let payout = PayoutRow {
                id: row.try_get("id")?,
                seller_id: row.try_get("seller_id")?,
                amount: money(&row, "amount_minor")?,
                status: row.try_get("status")?,
                psp_payout_id: row.try_get("psp_payout_id")?,
                failure_code: row.try_get("failure_code")?,
                created_at_ms: row.try_get("created_at_ms")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            };
            wallet_keys.insert((payout.seller_id.clone(), payout.amount.currency()));
            view.payouts.insert(payout.id.clone(), payout);
        }
    }
    if !keys.disputes.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.disputes, ids(&keys.disputes)).await? {
            let dispute = DisputeRow {
                id: row.try_get("id")?,
                psp: row.try_get("psp")?,
                psp_dispute_id: row.try_get("psp_dispute_id")?,
                payment_id: row.try_get("payment_id")?,
                amount: money(&row, "amount_minor")?,
                reason: row.try_get("reason")?,
                status: row.try_get("status")?,
                created_at_ms: row.try_get("created_at_ms")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            };
            view.disputes
                .insert(dispute.psp_dispute_id.clone(), dispute);
        }
    }
    let mut checkouts: BTreeSet<String> = keys.checkouts;
    if keys.live_siblings {
        checkouts.extend(
            view.payments
                .values()
                .filter(|p| matches!(p.status.as_str(), "failed" | "expired"))
                .map(|p| p.checkout_id.clone()),
        );
    }
    if !checkouts.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.live_siblings, ids(&checkouts)).await? {
            view.live_siblings
                .entry(row.try_get("checkout_id")?)
                .or_default()
                .push(row.try_get("id")?);
        }
    }
    if let Some(param) = keys_param {
        for row in fetch(tx, &mut prefetched, &sql.keys, param).await? {
            let answered = row.try_get::<Option<i64>, _>("response_status")?.is_some();
            view.answered_keys.insert(
                (row.try_get("api_key_id")?, row.try_get("idempotency_key")?),
                answered,
            );
        }
    }
    if !payment_ids.is_empty() {
        // By the payments asked for (the same rows as by those found): the parameter is then
        // known before the payments are read ([`upfront`]).
        for row in fetch(tx, &mut prefetched, &sql.orders, ids(&payment_ids)).await? {
            let order = OrderRow {
                id: row.try_get("id")?,
                payment_id: row.try_get("payment_id")?,
                position: row.try_get("position")?,
                order_id: row.try_get("order_id")?,
                seller_id: row.try_get("seller_id")?,
                amount_minor: row.try_get("amount_minor")?,
                platform_fee_minor: row.try_get("platform_fee_minor")?,
                status: row.try_get("status")?,
            };
            if let Some(payment) = view.payments.get(&order.payment_id)
                && money_payments.contains(&order.payment_id)
            {
                wallet_keys.insert((order.seller_id.clone(), payment.amount.currency()));
            }
            view.orders
                .entry(order.payment_id.clone())
                .or_default()
                .push(order);
        }
        if keys.refund_totals {
            for row in fetch(tx, &mut prefetched, &sql.refund_totals, ids(&payment_ids)).await? {
                let totals: &mut RefundTotals = view
                    .refund_totals
                    .entry(row.try_get("payment_order_id")?)
                    .or_default();
                let status: String = row.try_get("status")?;
                let (amount, fee): (i64, i64) =
                    (row.try_get("amount_minor")?, row.try_get("fee_minor")?);
                if status == "pending" {
                    (totals.pending_minor, totals.pending_fee_minor) = (amount, fee);
                } else {
                    (totals.succeeded_minor, totals.succeeded_fee_minor) = (amount, fee);
                }
            }
        }
    }
    if !wallet_keys.is_empty() {
        load_wallets(
            sql,
            tx,
            &mut prefetched,
            &wallet_keys,
            keys.refund_totals,
            known_wallets,
            &mut view,
        )
        .await?;
    }
    if let Some(param) = events_param {
        for row in fetch(tx, &mut prefetched, &sql.events, param).await? {
            view.seen_events
                .insert((row.try_get("psp")?, row.try_get("event_id")?));
        }
    }
    if !keys.source_refs.is_empty() {
        for row in fetch(tx, &mut prefetched, &sql.posted, ids(&keys.source_refs)).await? {
            view.posted_refs
                .insert(row.try_get("source_ref")?, row.try_get("id")?);
        }
    }
    debug_assert!(
        prefetched.fetched.is_empty(),
        "every statement fetched ahead is one the load runs: {:?}",
        prefetched
            .fetched
            .iter()
            .map(|(sql, _, _)| *sql)
            .collect::<Vec<_>>()
    );
    Ok(view)
}

async fn load_wallets<'s>(
    sql: &'s LoadSql,
    tx: &mut Tx,
    prefetched: &mut Prefetched<'s>,
    wallet_keys: &BTreeSet<(String, Currency)>,
    holds: bool,
    known_wallets: &KnownWallets,
    view: &mut View,
) -> Result<()> {
    let unknown: Vec<WalletKey<'_>> = {
        let known = known_wallets
            .lock()
            .expect("the known-wallets lock is never poisoned");
        wallet_keys
            .iter()
            .filter(|key| !known.contains(*key))
            .map(|(s, c)| WalletKey { s, c: c.code() })
            .collect()
    };
    if !unknown.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(sql.ensure_wallets.as_str()))
            .bind(to_param(&unknown))
            .bind(view.now_ms)
            .execute(&mut **tx)
            .await?;
    }
    let param = to_param(
        &wallet_keys
            .iter()
            .map(|(s, c)| WalletKey { s, c: c.code() })
            .collect::<Vec<_>>(),
    );
    for row in fetch(tx, prefetched, &sql.wallets, param.clone()).await? {
        let seller_id: String = row.try_get("seller_id")?;
        let balance = money(&row, "balance_minor")?;
        view.wallets.insert(
            (seller_id, balance.currency()),
            WalletRow {
                balance,
                held: Money::zero(balance.currency()),
                loaded: balance,
            },
        );
    }
    if view.wallets.len() != wallet_keys.len() {
        return Err(Error::Internal(format!(
            "{} of {} wallets could be locked",
            view.wallets.len(),
            wallet_keys.len()
        )));
    }
    if holds {
        for row in fetch(tx, prefetched, &sql.holds, param).await? {
            let seller_id: String = row.try_get("seller_id")?;
            let held = money(&row, "held_minor")?;
            if let Some(wallet) = view.wallets.get_mut(&(seller_id, held.currency())) {
                wallet.held = held;
            }
        }
    }
    Ok(())
}

/// Remembers wallets a committed batch has seen, so later batches skip creating them.
pub(crate) fn remember_wallets(known_wallets: &KnownWallets, view: &View) {
    let mut known = known_wallets
        .lock()
        .expect("the known-wallets lock is never poisoned");
    if known.len() + view.wallets.len() > MAX_KNOWN_WALLETS {
        known.clear();
    }
    known.extend(view.wallets.keys().cloned());
}
