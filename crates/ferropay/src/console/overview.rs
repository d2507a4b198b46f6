//! The overview page's figures: today's payments by status (count and volume), the payment
//! funnel of the last days (the `payment_funnel` view), settled volume per hour today (capture
//! transactions), and the backlog an operator acts on (dead jobs, open breaks, payments pending
//! for long, outbox lag: [`crate::backlog`], as `/metrics` reports it; disputes awaiting a
//! response). Each is read through an index over today's or the last days' rows only, or a kept
//! summary (`disputed_days`).

use sqlx::Row;

use crate::backlog::{self, Backlog};
use crate::error::Result;
use crate::outbox::relay::Broker;
use crate::store::Store;

use super::day_start_ms;

/// Days of the funnel shown, today included.
pub const FUNNEL_DAYS: i64 = 7;

/// Payments created today with one status, in one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusToday {
    pub status: String,
    pub currency: String,
    pub count: i64,
    pub volume_minor: i64,
}

/// One day of the `payment_funnel` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunnelDay {
    pub day_start_ms: i64,
    pub created: i64,
    pub paid: i64,
    pub failed: i64,
    pub expired: i64,
    pub refunded: i64,
    /// Payments of the day with a dispute opened.
    pub disputed: i64,
    pub open: i64,
    pub conversion_bps: i64,
}

/// Captured volume in one hour of today (UTC), in one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourVolume {
    /// 0 to 23.
    pub hour: i64,
    pub currency: String,
    pub amount_minor: i64,
}

#[derive(Clone, Debug)]
pub struct Overview {
    pub day_start_ms: i64,
    pub today: Vec<StatusToday>,
    pub funnel: Vec<FunnelDay>,
    pub settled_per_hour: Vec<HourVolume>,
    pub backlog: Backlog,
    /// Disputes in `needs_response`: evidence is due.
    pub disputes_needing_response: i64,
}

pub async fn read(store: &Store, now_ms: i64, outbox_relays: &[Broker]) -> Result<Overview> {
    let today = day_start_ms(now_ms);
    Ok(Overview {
        day_start_ms: today,
        today: today_by_status(store, today).await?,
        funnel: funnel(store, today - (FUNNEL_DAYS - 1) * 86_400_000).await?,
        settled_per_hour: settled_per_hour(store, today).await?,
        backlog: backlog::read(store, now_ms, outbox_relays).await?,
        disputes_needing_response: sqlx::query(
            "SELECT COUNT(*) AS n FROM disputes WHERE status = 'needs_response'",
        )
        .fetch_one(store.pool())
        .await?
        .try_get("n")?,
    })
}

async fn today_by_status(store: &Store, today_ms: i64) -> Result<Vec<StatusToday>> {
    let rows = sqlx::query(
        "SELECT status, currency, COUNT(*) AS n, CAST(SUM(amount_minor) AS BIGINT) AS volume \
         FROM payments WHERE (created_at_ms - created_at_ms % 86400000) = $1 \
         GROUP BY status, currency ORDER BY status, currency",
    )
    .bind(today_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StatusToday {
                status: row.try_get("status")?,
                currency: row.try_get("currency")?,
                count: row.try_get("n")?,
                volume_minor: row.try_get("volume")?,
            })
        })
        .collect()
}

/// The `payment_funnel` view from `from_day_ms` on, newest day first.
pub async fn funnel(store: &Store, from_day_ms: i64) -> Result<Vec<FunnelDay>> {
    let rows = sqlx::query(
        "SELECT day_start_ms, created, paid, failed, expired, refunded, disputed, open, \
         conversion_bps \
         FROM payment_funnel WHERE day_start_ms >= $1 ORDER BY day_start_ms DESC",
    )
    .bind(from_day_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(FunnelDay {
                day_start_ms: row.try_get("day_start_ms")?,
                created: row.try_get("created")?,
                paid: row.try_get("paid")?,
                failed: row.try_get("failed")?,
                expired: row.try_get("expired")?,
                refunded: row.try_get("refunded")?,
                disputed: row.try_get("disputed")?,
                open: row.try_get("open")?,
                conversion_bps: row.try_get("conversion_bps")?,
            })
        })
        .collect()
}

/// What the captures of today added to what the PSPs owe, per hour and currency.
async fn settled_per_hour(store: &Store, today_ms: i64) -> Result<Vec<HourVolume>> {
    let rows = sqlx::query(
        "SELECT hour, currency, CAST(SUM(amount_minor) AS BIGINT) AS amount FROM \
           (SELECT (j.created_at_ms - $1) / 3600000 AS hour, p.currency, p.amount_minor \
            FROM journal_transactions j JOIN postings p ON p.transaction_id = j.id \
            WHERE (j.created_at_ms - j.created_at_ms % 86400000) = $2 AND j.kind = 'capture' \
              AND p.account LIKE 'psp_receivable:%') AS captured \
         GROUP BY hour, currency ORDER BY hour, currency",
    )
    .bind(today_ms)
    .bind(today_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HourVolume {
                hour: row.try_get("hour")?,
                currency: row.try_get("currency")?,
                amount_minor: row.try_get("amount")?,
            })
        })
        .collect()
}
