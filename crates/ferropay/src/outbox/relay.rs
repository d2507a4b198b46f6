//! The outbox relay: publishes the outbox's unpublished events, oldest first, to a broker
//! ([`Publish`]: NATS JetStream in [`super::nats`], Kafka in [`super::kafka`]), then marks them
//! published.
//!
//! Each broker keeps its own record of what it published ([`Broker::published_column`]), so a
//! relay to NATS and one to Kafka run side by side and neither's mark hides an event from the
//! other.
//!
//! At least once into the broker, and once after deduplication: an event is marked only after the
//! broker acknowledged it, so a relay that dies in between publishes it again, under the same
//! outbox id. JetStream drops that second copy itself (`Nats-Msg-Id`); Kafka keeps it, and
//! receivers drop it by the outbox id in its `ferropay-outbox-id` header. Several instances may
//! relay at once: each publishes in the same order, so one payment's events keep their order. A
//! broker that is down delays events; it loses none: they wait in the outbox, and the relay backs
//! off and tries again.

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

/// The brokers the outbox is relayed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Broker {
    Nats,
    Kafka,
}

impl Broker {
    /// `nats`, `kafka`: the `broker` label of the relay's metrics.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Nats => "nats",
            Broker::Kafka => "kafka",
        }
    }

    /// The outbox column that holds when this broker acknowledged an event (NULL: not yet).
    pub fn published_column(self) -> &'static str {
        match self {
            Broker::Nats => "published_at_ms",
            Broker::Kafka => "kafka_published_at_ms",
        }
    }
}

/// What publishing one event came to.
pub type Published = std::result::Result<(), String>;

/// A broker the relay publishes to.
pub trait Publish: Send + Sync {
    /// Which broker this is: where the relay records what it published.
    fn broker(&self) -> Broker;

    /// Publishes one event and resolves once the broker has stored it (a duplicate of an event
    /// stored before counts as stored).
    fn publish<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> Pin<Box<dyn Future<Output = Published> + Send + 'a>>;

    /// Publishes `events` in their order and answers what each came to, in the same order; an
    /// event without an answer (the list may stop short) was not published. By default one at a
    /// time, each after the previous one's acknowledgement, stopping at the first failure; a
    /// broker that keeps the order of events sent at once sends them all before waiting.
    fn publish_all<'a>(
        &'a self,
        events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Vec<Published>> + Send + 'a>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let outcome = self.publish(event).await;
                let failed = outcome.is_err();
                outcomes.push(outcome);
                if failed {
                    break;
                }
            }
            outcomes
        })
    }

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
    let label = broker.broker().name();
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
                metrics::counter!("ferropay_outbox_relay_failures_total", "broker" => label)
                    .increment(1);
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

/// One round: the oldest `batch` events this broker has not published, published in order; those
/// the broker acknowledged are marked published (also when another one failed). Answers how many
/// went out.
pub async fn relay_once(store: &Store, broker: &dyn Publish, batch: u32) -> Result<usize> {
    let kind = broker.broker();
    let events = unpublished(store, kind, batch).await?;
    if !events.is_empty() {
        // On SQLite a batch is visible a moment before it is on disk: nothing leaves for the
        // broker that a power loss could still take back (store::durable).
        store
            .make_durable()
            .await
            .map_err(|e| crate::Error::Internal(format!("syncing the database: {e}")))?;
    }
    let outcomes = broker.publish_all(&events).await;
    let acknowledged: Vec<&str> = events
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(event, _)| event.id.as_str())
        .collect();
    let failure = events
        .iter()
        .zip(&outcomes)
        .find_map(|(event, outcome)| Some((event, outcome.as_ref().err()?)));
    mark_published(store, kind, &acknowledged).await?;
    metrics::counter!("ferropay_outbox_published_total", "broker" => kind.name())
        .increment(acknowledged.len() as u64);
    if let Some((event, error)) = failure {
        return Err(crate::Error::Internal(format!(
            "publishing outbox event {} to {}: {error}",
            event.id,
            kind.name()
        )));
    }
    if outcomes.len() < events.len() {
        return Err(crate::Error::Internal(format!(
            "{} of {} outbox events were not published to {}",
            events.len() - outcomes.len(),
            events.len(),
            kind.name()
        )));
    }
    Ok(acknowledged.len())
}

async fn unpublished(store: &Store, broker: Broker, batch: u32) -> Result<Vec<OutboxEvent>> {
    // The column is one of two constants, never input.
    let statement = format!(
        "SELECT id, topic, aggregate_id, payload, created_at_ms FROM outbox \
         WHERE {} IS NULL ORDER BY created_at_ms, id LIMIT $1",
        broker.published_column()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
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

async fn mark_published(store: &Store, broker: Broker, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let column = broker.published_column();
    let mut prefix = format!("UPDATE outbox SET {column} = ");
    sql::push_param(&mut prefix, store.backend(), 1);
    prefix.push_str(&format!(" WHERE {column} IS NULL AND id IN "));
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
