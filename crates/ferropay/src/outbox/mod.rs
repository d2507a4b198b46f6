//! The transactional outbox: an event is written in the same database transaction as the change
//! it reports, so no event leaves for a change that rolled back and none is lost for one that
//! committed. The [`relay`] publishes unpublished rows in order to a broker ([`nats`]: NATS
//! JetStream; [`kafka`]: Kafka; both at once if asked) and marks them published, each broker in a
//! column of its own; without a broker they stay here, readable with SQL.

pub mod kafka;
pub mod nats;
pub mod relay;

use serde_json::Value;

use crate::error::Result;
use crate::ids::new_id;
use crate::store::Tx;

/// Writes one event to the outbox inside the caller's transaction.
pub async fn enqueue(
    tx: &mut Tx,
    topic: &str,
    aggregate_id: &str,
    payload: &Value,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, topic, aggregate_id, payload, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id("obx"))
    .bind(topic)
    .bind(aggregate_id)
    .bind(payload.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
