//! The outbox relay: publishes the outbox's unpublished events, oldest first, to a broker
//! ([`Publish`]: NATS JetStream in [`super::nats`]), then marks them published.
//!
//! Exactly once into the broker: an event is marked only after the broker acknowledged it, so a
//! relay that dies in between publishes it again; every event goes out under its outbox id as the
//! broker's message id, so the broker drops that second copy (JetStream's `Nats-Msg-Id`
//! deduplication). Several instances may relay at once: each publishes in the same order and
//! waits for each acknowledgement before the next, so the stream keeps that order and the
//! broker drops what two relays both sent. A broker that is down delays events; it loses none:
//! they wait in the outbox, and the relay backs off and tries again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use tokio::sync::watch;

use crate::background::Background;
use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::Result;
use crate::store::{Store, sql};

/// One outbox row, as it leaves.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxEvent {
    /// The outbox id (`obx_…`): the broker's message id, and what receivers dedupe by.
    pub id: String,
    /// `payment.succeeded`, `refund.failed`, …
    pub topic: String,
    /// The payment, refund or payout the event is about.
    pub aggregate_id: String,
    /// RFC 3339, when the change committed.
    pub created_at: String,
    /// The event's own fields.
    pub data: serde_json::Value,
}

/// A broker the relay publishes to.
pub trait Publish: Send + Sync {
    /// Publishes one event and resolves once the broker has stored it (a duplicate of an event
    /// stored before counts as stored).
    fn publish<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send + 'a>>;

    /// Where events go, for logs (`nats://…/FERROPAY`).
    fn describe(&self) -> String;
}

/// How the relay paces itself.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Events read and published per round.
    pub batch: u32,
    /// How long to wait when the outbox is empty, in ms.
    pub idle_poll_ms: u64,
    /// The first and the longest wait after a failure, in ms (doubling in between).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 200,
            idle_poll_ms: 200,
            retry_base_ms: 100,
            retry_max_ms: 5_000,
        }
    }
}

/// The running relay; [`Relay::shutdown`] lets the round in progress finish.
pub struct Relay(Background);

impl Relay {
    pub fn spawn(store: Store, broker: Arc<dyn Publish>, config: RelayConfig) -> Self {
        Self(Background::spawn(|stopped| {
            run(store, broker, config, stopped)
        }))
    }

    pub async fn shutdown(self, grace: Duration) {
        self.0.stop(grace).await;
    }
}

async fn run(
    store: Store,
    broker: Arc<dyn Publish>,
    config: RelayConfig,
    mut stopped: watch::Receiver<bool>,
) {
    tracing::info!(to = %broker.describe(), "outbox relay started");
    let mut failures = 0_u32;
    while !*stopped.borrow() {
        let wait_ms = match relay_once(&store, broker.as_ref(), config.batch).await {
            Ok(relayed) => {
                if failures > 0 {
                    tracing::info!(to = %broker.describe(), "outbox relay publishing again");
                }
                failures = 0;
                if relayed == config.batch as usize {
                    continue; // more are waiting
                }
                config.idle_poll_ms
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                metrics::counter!("ferropay_outbox_relay_failures_total").increment(1);
                let wait_ms = config
                    .retry_base_ms
                    .saturating_mul(1 << failures.min(16))
                    .min(config.retry_max_ms);
                tracing::warn!(%error, failures, wait_ms, to = %broker.describe(), "outbox relay failed; events wait in the outbox");
                wait_ms
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = stopped.changed() => {}
        }
    }
    tracing::info!("outbox relay stopped");
}

/// One round: the oldest `batch` unpublished events, published in order; those the broker
/// acknowledged are marked published (also when a later one failed). Answers how many went out.
pub async fn relay_once(store: &Store, broker: &dyn Publish, batch: u32) -> Result<usize> {
    let events = unpublished(store, batch).await?;
    let mut acknowledged: Vec<&str> = Vec::with_capacity(events.len());
    let mut failure = None;
    for event in &events {
        match broker.publish(event).await {
            Ok(()) => acknowledged.push(&event.id),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    mark_published(store, &acknowledged).await?;
    metrics::counter!("ferropay_outbox_published_total").increment(acknowledged.len() as u64);
    match failure {
        None => Ok(acknowledged.len()),
        Some(error) => Err(crate::Error::Internal(format!(
            "publishing outbox event {}: {error}",
            events[acknowledged.len()].id
        ))),
    }
}

async fn unpublished(store: &Store, batch: u32) -> Result<Vec<OutboxEvent>> {
    let rows = sqlx::query(
        "SELECT id, topic, aggregate_id, payload, created_at_ms FROM outbox \
         WHERE published_at_ms IS NULL ORDER BY created_at_ms, id LIMIT $1",
    )
    .bind(i64::from(batch))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get("payload")?;
            Ok(OutboxEvent {
                id: row.try_get("id")?,
                topic: row.try_get("topic")?,
                aggregate_id: row.try_get("aggregate_id")?,
                created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
                // Written by `enqueue` from a JSON value; anything else is kept as text.
                data: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
            })
        })
        .collect()
}

async fn mark_published(store: &Store, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut prefix = String::from("UPDATE outbox SET published_at_ms = ");
    sql::push_param(&mut prefix, store.backend(), 1);
    prefix.push_str(" WHERE published_at_ms IS NULL AND id IN ");
    let statement = sql::in_list(store.backend(), &prefix, 2, ids.len(), "");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(now_ms());
    for id in ids {
        query = query.bind(*id);
    }
    let mut tx = store.begin_write().await?;
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
