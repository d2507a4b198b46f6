//! The console's dead letters: dead jobs newest death first, filtered by kind (keyset on
//! `(finished_at_ms, id)` over the partial index `jobs_dead`), and one dead job to inspect.
//! Replaying is `jobs::dlq::replay`, as `ferropay dlq replay` does.

use sqlx::Row;

use crate::error::{Error, Result};
use crate::lists::Select;
use crate::store::Store;

use super::{Cursor, Keyset, Paged};

/// Dead jobs, the latest death first (the partial index `jobs_dead`).
const LATEST_DEATH: Keyset = Keyset {
    at: "finished_at_ms",
    id: "id",
};

/// A job of the dead-letter queue (or, once replayed, what became of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadJobRow {
    pub id: String,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub dead_at_ms: Option<i64>,
}

const SELECT_JOB: &str = "SELECT id, kind, idempotency_key, payload, status, attempts, \
     last_error, created_at_ms, finished_at_ms FROM jobs";

fn row_of(row: &sqlx::any::AnyRow) -> Result<DeadJobRow> {
    Ok(DeadJobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        dead_at_ms: row.try_get("finished_at_ms")?,
    })
}

/// Dead jobs, the latest death first, of one `kind` or all.
pub async fn list(
    store: &Store,
    kind: Option<&str>,
    after: Option<&Cursor>,
) -> Result<Paged<DeadJobRow>> {
    let mut select = Select::new(store.backend());
    select.condition("status = 'dead'", vec![]);
    select.text_eq("kind", &kind.map(str::to_owned));
    LATEST_DEATH
        .page(store, select, SELECT_JOB, after)
        .await?
        .read(row_of)
}

/// One job, dead or not (a replayed job's page shows what became of it).
pub async fn job(store: &Store, job_id: &str) -> Result<DeadJobRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_JOB} WHERE id = $1")))
        .bind(job_id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("job `{job_id}`")))?;
    row_of(&row)
}
