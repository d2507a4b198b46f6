//! What is waiting, counted from the database for monitoring: the gauges an on-call engineer
//! alerts on (dead letters above zero, an outbox relay that lags, open reconciliation breaks,
//! payments pending for long). Read at each `/metrics` scrape, through indexes, so every
//! instance reports the same shared state.

use serde::Serialize;
use sqlx::Row;

use crate::error::Result;
use crate::outbox::relay::Broker;
use crate::store::Store;

/// Payments still pending after this long count as stuck (a lost webhook the poller has not
/// settled yet, or a PSP review that takes hours).
pub const PENDING_LONG_MS: i64 = 3_600_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub jobs_queued: i64,
    pub jobs_running: i64,
    /// The dead-letter queue's size: each one needs an operator.
    pub jobs_dead: i64,
    /// How long the oldest event not yet published to some broker the outbox is relayed to has
    /// waited, in seconds (0 when none waits); read only when a relay runs (`outbox_relays`).
    pub outbox_lag_s: Option<i64>,
    pub reconciliation_breaks_open: i64,
    /// Payments in `requires_payment` or `processing` last changed more than
    /// [`PENDING_LONG_MS`] ago.
    pub payments_pending_long: i64,
}

/// Reads the backlog; the outbox's lag only when some relay runs (`outbox_relays`: the oldest
/// event one of those brokers has not published, found at the end of an index, so the cost does
/// not grow with the outbox).
pub async fn read(store: &Store, now_ms: i64, outbox_relays: &[Broker]) -> Result<Backlog> {
    let mut oldest_unpublished_ms: Option<i64> = None;
    for broker in outbox_relays {
        // The column is one of two constants, never input.
        let statement = format!(
            "SELECT created_at_ms FROM outbox WHERE {} IS NULL ORDER BY created_at_ms LIMIT 1",
            broker.published_column()
        );
        let oldest: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(statement))
            .fetch_optional(store.pool())
            .await?
            .map(|row| row.try_get("created_at_ms"))
            .transpose()?;
        oldest_unpublished_ms = match (oldest_unpublished_ms, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let outbox_relayed = !outbox_relays.is_empty();
    let row = sqlx::query(
        "SELECT \
           (SELECT COUNT(*) FROM jobs WHERE status = 'queued') AS jobs_queued, \
           (SELECT COUNT(*) FROM jobs WHERE status = 'running') AS jobs_running, \
           (SELECT COUNT(*) FROM jobs WHERE status = 'dead') AS jobs_dead, \
           (SELECT COUNT(*) FROM reconciliation_breaks WHERE status = 'open') AS breaks_open, \
           (SELECT COUNT(*) FROM payments WHERE status IN ('requires_payment', 'processing') \
              AND updated_at_ms < $1) AS pending_long",
    )
    .bind(now_ms - PENDING_LONG_MS)
    .fetch_one(store.pool())
    .await?;
    Ok(Backlog {
        jobs_queued: row.try_get("jobs_queued")?,
        jobs_running: row.try_get("jobs_running")?,
        jobs_dead: row.try_get("jobs_dead")?,
        outbox_lag_s: outbox_relayed.then(|| {
            oldest_unpublished_ms.map_or(0, |oldest_ms| (now_ms - oldest_ms).max(0) / 1_000)
        }),
        reconciliation_breaks_open: row.try_get("breaks_open")?,
        payments_pending_long: row.try_get("pending_long")?,
    })
}
