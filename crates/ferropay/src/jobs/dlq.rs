//! The dead-letter queue: jobs that failed for good or too often, kept with their last error
//! for an operator to inspect (`ferropay dlq list`) and put back on the queue once the cause is
//! fixed (`ferropay dlq replay ID`). A replayed job starts again with a fresh attempt count.

use serde::Serialize;
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::store::Store;

/// Most dead jobs one `list` returns (the oldest first).
pub const LIST_MAX: i64 = 10_000;

/// A dead job as `ferropay dlq list` prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeadJob {
    pub id: String,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub dead_at: String,
}

/// The dead jobs, oldest death first, at most [`LIST_MAX`].
pub async fn list(store: &Store) -> Result<Vec<DeadJob>> {
    let rows = sqlx::query(
        "SELECT id, kind, idempotency_key, payload, attempts, last_error, created_at_ms, \
         finished_at_ms FROM jobs WHERE status = 'dead' ORDER BY finished_at_ms, id LIMIT $1",
    )
    .bind(LIST_MAX)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get("payload")?;
            let dead_at_ms: Option<i64> = row.try_get("finished_at_ms")?;
            Ok(DeadJob {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                idempotency_key: row.try_get("idempotency_key")?,
                payload: serde_json::from_str(&payload)
                    .unwrap_or(serde_json::Value::String(payload)),
                attempts: row.try_get("attempts")?,
                last_error: row.try_get("last_error")?,
                created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
                dead_at: rfc3339_from_ms(dead_at_ms.unwrap_or_default()),
            })
        })
        .collect()
}

/// What `replay` did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Replayed {
    pub id: String,
    pub kind: String,
    /// Always `queued`: due now, with no attempts counted.
    pub status: &'static str,
}

/// Puts the dead job `job_id` back on the queue, due now, with its attempts reset (its last
/// error is kept until it runs). `NotFound` for no such job; a `Conflict` for a job that is not
/// dead (replaying a queued or done job would run finished work twice).
pub async fn replay(store: &Store, job_id: &str) -> Result<Replayed> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(store.pick(
        "SELECT kind, status FROM jobs WHERE id = $1",
        "SELECT kind, status FROM jobs WHERE id = $1 FOR UPDATE",
    ))
    .bind(job_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("job `{job_id}`")))?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    if status != super::status::DEAD {
        return Err(Error::conflict(
            "job_not_dead",
            format!("job `{job_id}` is {status}, not in the dead-letter queue"),
        ));
    }
    sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, lease_token = NULL, due_at_ms = $1, \
         updated_at_ms = $1, finished_at_ms = NULL WHERE id = $2",
    )
    .bind(now)
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%job_id, %kind, "dead job replayed");
    Ok(Replayed {
        id: job_id.to_owned(),
        kind,
        status: super::status::QUEUED,
    })
}
