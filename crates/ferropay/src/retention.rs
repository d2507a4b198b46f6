//! Retention: rows that guard against retries only for a while are deleted once that while has
//! passed, so that the tables they live in stop growing with the business.
//!
//! - **Idempotency keys of payments** after [`RetentionPolicy::idempotency_key_ttl_ms`]
//!   (default 24 h, as the IETF draft and the large PSPs do): the same key after that is a new
//!   request. That cannot charge a checkout twice: a checkout in flight or paid refuses a second
//!   payment (409) with or without its key. A key still held by a request in flight is kept.
//!   The keys of refunds and payouts are kept: nothing else stops a retried refund or payout
//!   from being a second one.
//! - **Done jobs** after [`RetentionPolicy::done_job_ttl_ms`] (default 7 days): the payment,
//!   refund or payout they worked for is final by then and its own row says so. Dead jobs stay
//!   for an operator (`ferropay dlq`).
//! - **Webhook events seen** after [`RetentionPolicy::webhook_event_ttl_ms`] (default 30 days):
//!   a PSP stops retrying long before, and an event applied again changes nothing anyway (the
//!   state machine and the ledger's unique source references).
//!
//! Never deleted: payments, orders, the journal, wallets, refunds, payouts, reconciliation runs
//! and breaks, the outbox. They are the record, and what analysts query.
//!
//! Rows go in batches of [`BATCH_ROWS`], one short transaction each, so that a first purge of a
//! large table does not hold locks for long.

use std::time::Duration;

use crate::background::Background;
use crate::clock::now_ms;
use crate::error::Result;
use crate::store::Store;
use serde::Serialize;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Rows deleted per statement and transaction.
pub const BATCH_ROWS: i64 = 1_000;

#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    pub idempotency_key_ttl_ms: i64,
    pub done_job_ttl_ms: i64,
    pub webhook_event_ttl_ms: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            idempotency_key_ttl_ms: 24 * HOUR_MS,
            done_job_ttl_ms: 7 * DAY_MS,
            webhook_event_ttl_ms: 30 * DAY_MS,
        }
    }
}

/// What one purge deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub idempotency_keys: u64,
    pub done_jobs: u64,
    pub webhook_events: u64,
}

/// Deletes what `policy` lets go of, as of `now_ms`.
pub async fn purge(store: &Store, policy: &RetentionPolicy, now_ms: i64) -> Result<Purged> {
    let keys_before = now_ms - policy.idempotency_key_ttl_ms;
    let jobs_before = now_ms - policy.done_job_ttl_ms;
    let events_before = now_ms - policy.webhook_event_ttl_ms;
    let purged = Purged {
        idempotency_keys: in_batches(
            store,
            // A payment's key names its payment; a refund's or payout's names none.
            "DELETE FROM idempotency_keys WHERE (api_key_id, idempotency_key) IN \
             (SELECT api_key_id, idempotency_key FROM idempotency_keys \
              WHERE payment_id IS NOT NULL AND created_at_ms < $1 \
                AND (locked_at_ms IS NULL OR locked_at_ms < $1) \
              LIMIT $2)",
            keys_before,
        )
        .await?,
        done_jobs: in_batches(
            store,
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
             WHERE status = 'done' AND finished_at_ms < $1 LIMIT $2)",
            jobs_before,
        )
        .await?,
        webhook_events: in_batches(
            store,
            "DELETE FROM webhook_events WHERE (psp, event_id) IN \
             (SELECT psp, event_id FROM webhook_events WHERE received_at_ms < $1 LIMIT $2)",
            events_before,
        )
        .await?,
    };
    if purged != Purged::default() {
        tracing::info!(?purged, "retention: old rows deleted");
    }
    Ok(purged)
}

/// Runs `statement` (parameters: the cut-off, the batch size) until a batch deletes less than
/// a full one; answers the rows deleted.
async fn in_batches(store: &Store, statement: &'static str, before_ms: i64) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let mut tx = store.begin_write().await?;
        let batch = sqlx::query(statement)
            .bind(before_ms)
            .bind(BATCH_ROWS)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        deleted += batch;
        if batch < BATCH_ROWS as u64 {
            return Ok(deleted);
        }
    }
}

/// Purges now and then every `every`, until stopped.
pub struct RetentionTask(Background);

impl RetentionTask {
    pub fn spawn(store: Store, policy: RetentionPolicy, every: Duration) -> Self {
        Self(Background::spawn(move |mut stopped| async move {
            while !*stopped.borrow() {
                if let Err(error) = purge(&store, &policy, now_ms()).await {
                    tracing::warn!(%error, "retention: purge failed; trying again later");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => {}
                }
            }
        }))
    }

    /// Stops; a purge still running after `grace` is abandoned (its batch rolls back, the
    /// batches before it stay deleted, and the next start goes on from there).
    pub async fn shutdown(self, grace: Duration) {
        self.0.stop(grace).await;
    }
}
