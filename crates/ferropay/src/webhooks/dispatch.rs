//! The dispatcher: hands each outbox event to the webhook endpoints that want it. In one write
//! transaction it takes the oldest events not yet handed over, writes one delivery and one
//! delivery job (on the durable queue) per subscribed endpoint, and marks the events handed
//! over; a crash before the commit leaves them all to the next round, after it all are queued.
//! An event committed late (behind events already handed over) is still unmarked, so it is
//! found: nothing depends on a cursor. Every instance may run one; on PostgreSQL they skip
//! each other's rows, on SQLite they take turns.
//!
//! An endpoint receives the events handed over after it was registered (normally a fraction of
//! a second after they happened). While no endpoint is enabled, events are marked handed over
//! in one statement, so that an installation without webhooks pays next to nothing for them.

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::endpoints::subscribed;
use super::{DELIVER_KIND, WebhookConfig};
use crate::background::Background;
use crate::clock::now_ms;
use crate::error::Result;
use crate::ids::new_id;
use crate::jobs;
use crate::store::{Store, sql};

/// Events handed over per transaction.
const BATCH: i64 = 100;

/// The running dispatcher; [`Dispatcher::shutdown`] lets its round finish.
pub struct Dispatcher(Background);

impl Dispatcher {
    pub fn spawn(store: Store, config: WebhookConfig) -> Self {
        Self(Background::spawn(move |stopped| {
            run(store, config, stopped)
        }))
    }

    pub async fn shutdown(self, grace: Duration) {
        self.0.stop(grace).await;
    }
}

async fn run(store: Store, config: WebhookConfig, mut stopped: watch::Receiver<bool>) {
    let idle = Duration::from_millis(config.dispatch_idle_ms.max(1));
    while !*stopped.borrow() {
        let wait = match dispatch_once(&store).await {
            Ok(handed) if handed as i64 == BATCH => Duration::ZERO,
            Ok(_) => idle,
            Err(error) => {
                tracing::warn!(%error, "webhook dispatch failed; trying again");
                idle * 8
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// One round; answers how many events were handed over.
pub async fn dispatch_once(store: &Store) -> Result<usize> {
    // A cheap look first, so an idle dispatcher does not take SQLite's write lock.
    let waiting =
        sqlx::query("SELECT id FROM outbox WHERE webhooks_dispatched_at_ms IS NULL LIMIT 1")
            .fetch_optional(store.pool())
            .await?;
    if waiting.is_none() {
        return Ok(0);
    }
    let mut tx = store.begin_write().await?;
    let endpoints = sqlx::query(
        "SELECT id, event_types FROM webhook_endpoints WHERE enabled = 1 AND deleted_at_ms IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    if endpoints.is_empty() {
        sqlx::query(
            "UPDATE outbox SET webhooks_dispatched_at_ms = $1 WHERE webhooks_dispatched_at_ms IS NULL",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(0);
    }
    let events = sqlx::query(store.pick(
        "SELECT id, topic FROM outbox WHERE webhooks_dispatched_at_ms IS NULL \
         ORDER BY created_at_ms, id LIMIT $1",
        "SELECT id, topic FROM outbox WHERE webhooks_dispatched_at_ms IS NULL \
         ORDER BY created_at_ms, id LIMIT $1 FOR UPDATE SKIP LOCKED",
    ))
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if events.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let now = now_ms();
    let mut ids = Vec::with_capacity(events.len());
    for event in &events {
        let event_id: String = event.try_get("id")?;
        let topic: String = event.try_get("topic")?;
        for endpoint in &endpoints {
            let types: String = endpoint.try_get("event_types")?;
            if !subscribed(&types, &topic) {
                continue;
            }
            let endpoint_id: String = endpoint.try_get("id")?;
            let delivery_id = new_id("whd");
            let inserted = sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, status, \
                 attempts, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) \
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            )
            .bind(&delivery_id)
            .bind(&endpoint_id)
            .bind(&event_id)
            .bind(&topic)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                jobs::enqueue(
                    &mut tx,
                    DELIVER_KIND,
                    &serde_json::json!({ "delivery_id": delivery_id }),
                    &delivery_id,
                    now,
                )
                .await?;
            }
        }
        ids.push(event_id);
    }
    let mut prefix = String::from("UPDATE outbox SET webhooks_dispatched_at_ms = ");
    sql::push_param(&mut prefix, store.backend(), 1);
    prefix.push_str(" WHERE id IN ");
    let statement = sql::in_list(store.backend(), &prefix, 2, ids.len(), "");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(now);
    for id in &ids {
        query = query.bind(id.as_str());
    }
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(ids.len())
}
