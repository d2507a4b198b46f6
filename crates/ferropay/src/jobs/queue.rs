//! The queue's statements: enqueue inside a caller's transaction, claim with a lease, and write
//! a run's outcome (done, run again later, retry after a backoff, dead). Every outcome is
//! written only while the lease is still the writer's (`lease_token` fencing).

use serde_json::Value;
use sqlx::{Any, Executor, Row};

use super::status::{DONE, QUEUED, RUNNING};
use super::{ClaimedJob, JobError, JobsConfig};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::store::{Backend, Store, Tx};

/// Most jobs a dispatcher dead-letters in one claim call (those whose workers kept dying)
/// before it answers; bounds the loop in [`claim_due`].
const MAX_EXPIRED_PER_CLAIM: usize = 16;

/// The job an [`enqueue`] wrote, or found already there under the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// False when a job of this kind and key existed already (nothing was written).
    pub created: bool,
}

/// Adds a job inside the caller's transaction, so that it exists exactly when the change that
/// calls for it commits. `payload` is the handler's input; `idempotency_key` names the work
/// (enqueuing the same kind and key again writes nothing); the job is due at `run_at_ms`.
pub async fn enqueue(
    tx: &mut Tx,
    kind: &str,
    payload: &Value,
    idempotency_key: &str,
    run_at_ms: i64,
) -> Result<Enqueued> {
    assert!(!kind.is_empty() && !idempotency_key.is_empty());
    let id = new_id("job");
    let now = crate::clock::now_ms();
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, idempotency_key, payload, status, attempts, due_at_ms, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7) \
         ON CONFLICT (kind, idempotency_key) DO NOTHING",
    )
    .bind(&id)
    .bind(kind)
    .bind(idempotency_key)
    .bind(payload.to_string())
    .bind(QUEUED)
    .bind(run_at_ms)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Enqueued { id, created: true });
    }
    let row = sqlx::query("SELECT id FROM jobs WHERE kind = $1 AND idempotency_key = $2")
        .bind(kind)
        .bind(idempotency_key)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Enqueued {
        id: row.try_get("id")?,
        created: false,
    })
}

/// Claims the job due soonest among `kinds`, leasing it for `config.lease_ms`, or `None` when
/// none is due. A job whose lease ran out (its worker died) is due again; one that ran out of
/// attempts that way is dead-lettered here instead of run once more.
pub async fn claim_due(
    store: &Store,
    kinds: &[String],
    config: &JobsConfig,
) -> Result<Option<ClaimedJob>> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let sql = claim_due_sql(store.backend(), kinds.len());
    for _ in 0..MAX_EXPIRED_PER_CLAIM {
        let now = crate::clock::now_ms();
        let lease_token = new_id("lease");
        let mut tx = store.begin_write().await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&lease_token)
            .bind(now + config.lease_ms)
            .bind(now);
        for kind in kinds {
            query = query.bind(kind);
        }
        let row = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = claimed_from_row(&row, lease_token)?;
        // Back from a lease that ran out (the statement wrote exactly this), or from a failure
        // that `fail` chose to retry (within the retry window, past the attempts perhaps).
        let lease_ran_out = row.try_get::<Option<String>, _>("last_error")?.as_deref()
            == Some(lease_ran_out_text(job.attempts - 1).as_str());
        if !lease_ran_out || job.attempts <= config.retry.max_attempts.max(1) {
            return Ok(Some(job));
        }
        // Every allowed attempt was claimed and none came back: its workers died or hung.
        let error = JobError::Permanent(format!(
            "no outcome after {} attempts: each lease ran out",
            job.attempts - 1
        ));
        dead_letter(store, &job, &error).await?;
    }
    Ok(None)
}

/// `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …`. PostgreSQL skips rows that other
/// workers are claiming (`FOR UPDATE SKIP LOCKED`); SQLite runs one write transaction at a
/// time (`BEGIN IMMEDIATE`), so two claims never see the same job as free.
fn claim_due_sql(backend: Backend, kind_count: usize) -> String {
    let kinds: Vec<String> = (0..kind_count).map(|i| format!("${}", i + 4)).collect();
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    format!(
        "UPDATE jobs SET status = '{RUNNING}', attempts = attempts + 1, \
         last_error = CASE WHEN status = '{RUNNING}' \
             THEN 'attempt ' || attempts || '{LEASE_RAN_OUT}' ELSE last_error END, \
         lease_token = $1, due_at_ms = $2, updated_at_ms = $3 \
         WHERE id = (SELECT id FROM jobs WHERE status IN ('{QUEUED}', '{RUNNING}') \
             AND due_at_ms <= $3 AND kind IN ({}) ORDER BY due_at_ms LIMIT 1{lock}) \
         RETURNING id, kind, idempotency_key, payload, attempts, last_error",
        kinds.join(", ")
    )
}

/// What a claim writes into `last_error` of a job whose attempt's lease ran out.
const LEASE_RAN_OUT: &str = " ran out of its lease";

fn lease_ran_out_text(attempt: u32) -> String {
    format!("attempt {attempt}{LEASE_RAN_OUT}")
}

/// Claims one job by kind and key whatever its due time and status, for work that a caller
/// wants done now (a request that registers its payment inline, having seen that the work is
/// not done). A dead or done job starts again with a fresh count. `None` when the job is
/// missing or leased to another worker.
pub async fn claim_by_key(
    store: &Store,
    kind: &str,
    idempotency_key: &str,
    config: &JobsConfig,
) -> Result<Option<ClaimedJob>> {
    let now = crate::clock::now_ms();
    let lease_token = new_id("lease");
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(
        "UPDATE jobs SET status = 'running', \
         attempts = CASE WHEN status IN ('dead', 'done') THEN 1 ELSE attempts + 1 END, \
         lease_token = $1, due_at_ms = $2, updated_at_ms = $3, finished_at_ms = NULL \
         WHERE kind = $4 AND idempotency_key = $5 \
         AND (status <> 'running' OR due_at_ms <= $3) \
         RETURNING id, kind, idempotency_key, payload, attempts",
    )
    .bind(&lease_token)
    .bind(now + config.lease_ms)
    .bind(now)
    .bind(kind)
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|row| claimed_from_row(&row, lease_token))
        .transpose()
}

fn claimed_from_row(row: &sqlx::any::AnyRow, lease_token: String) -> Result<ClaimedJob> {
    let payload: String = row.try_get("payload")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(ClaimedJob {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        idempotency_key: row.try_get("idempotency_key")?,
        // Payloads are written from JSON values; one that no longer parses reaches the handler
        // as null, which refuses it for good (dead-lettered, visible to an operator).
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        lease_token,
    })
}

/// Marks the job done. `false` when the lease was lost (another worker took the job over after
/// it ran out); the work itself was idempotent, so nothing more is needed.
pub async fn complete<'c>(
    executor: impl Executor<'c, Database = Any>,
    job: &ClaimedJob,
) -> Result<bool> {
    let now = crate::clock::now_ms();
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'done', lease_token = NULL, due_at_ms = $1, \
         updated_at_ms = $1, finished_at_ms = $1 WHERE id = $2 AND lease_token = $3",
    )
    .bind(now)
    .bind(&job.id)
    .bind(&job.lease_token)
    .execute(executor)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Puts the job back to run at `due_at_ms` without counting the attempt (its work is not over,
/// but nothing failed). `false` when the lease was lost.
pub async fn run_again_at(store: &Store, job: &ClaimedJob, due_at_ms: i64) -> Result<bool> {
    let now = crate::clock::now_ms();
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, lease_token = NULL, due_at_ms = $1, \
         updated_at_ms = $2 WHERE id = $3 AND lease_token = $4",
    )
    .bind(due_at_ms)
    .bind(now)
    .bind(&job.id)
    .bind(&job.lease_token)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// What [`fail`] did with a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Back on the queue, due again at this time.
    Retrying { due_at_ms: i64 },
    /// Moved to the dead-letter queue.
    Dead,
    /// The lease was lost; another worker holds the job now.
    LeaseLost,
}

/// Records a failed attempt: a retryable failure with attempts left goes back on the queue
/// after a jittered backoff; a permanent one, or the last allowed attempt, goes to the
/// dead-letter queue. The error is kept as the job's `last_error`.
pub async fn fail(
    store: &Store,
    job: &ClaimedJob,
    error: &JobError,
    config: &JobsConfig,
) -> Result<Failed> {
    let retry = matches!(error, JobError::Retryable(_))
        && config
            .retry
            .may_retry(job.attempts, age_ms(store, job).await?);
    if !retry {
        return Ok(if dead_letter(store, job, error).await? {
            Failed::Dead
        } else {
            Failed::LeaseLost
        });
    }
    let now = crate::clock::now_ms();
    let backoff_ms = i64::try_from(config.retry.backoff_ms(job.attempts)).unwrap_or(i64::MAX);
    let due_at_ms = now.saturating_add(backoff_ms);
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'queued', lease_token = NULL, due_at_ms = $1, last_error = $2, \
         updated_at_ms = $3 WHERE id = $4 AND lease_token = $5",
    )
    .bind(due_at_ms)
    .bind(error_text(error))
    .bind(now)
    .bind(&job.id)
    .bind(&job.lease_token)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(if updated == 1 {
        Failed::Retrying { due_at_ms }
    } else {
        Failed::LeaseLost
    })
}

/// How long ago `job` was enqueued (0 if it is gone: its outcome is then not ours to write).
async fn age_ms(store: &Store, job: &ClaimedJob) -> Result<u64> {
    let created_at_ms: Option<i64> =
        sqlx::query_scalar("SELECT created_at_ms FROM jobs WHERE id = $1")
            .bind(&job.id)
            .fetch_optional(store.pool())
            .await?;
    let now = crate::clock::now_ms();
    Ok(created_at_ms.map_or(0, |at| u64::try_from(now - at).unwrap_or(0)))
}

/// Moves a job we hold to the dead-letter queue with `error`. `false` when the lease was lost.
async fn dead_letter(store: &Store, job: &ClaimedJob, error: &JobError) -> Result<bool> {
    let now = crate::clock::now_ms();
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'dead', lease_token = NULL, last_error = $1, due_at_ms = $2, \
         updated_at_ms = $2, finished_at_ms = $2 WHERE id = $3 AND lease_token = $4",
    )
    .bind(error_text(error))
    .bind(now)
    .bind(&job.id)
    .bind(&job.lease_token)
    .execute(store.pool())
    .await?
    .rows_affected();
    if updated == 1 {
        tracing::error!(job_id = %job.id, kind = %job.kind, attempts = job.attempts, %error,
            "job moved to the dead-letter queue");
    }
    Ok(updated == 1)
}

/// How a failure reads in `last_error` (and `ferropay dlq list`).
fn error_text(error: &JobError) -> String {
    match error {
        JobError::Retryable(message) => format!("retryable: {message}"),
        JobError::Permanent(message) => format!("permanent: {message}"),
    }
}

/// Marks a queued job done inside the caller's transaction because its work is no longer
/// needed (a pending-payment poll once the payment is final). A job a worker holds right now
/// is left alone: its handler sees the same state and finishes by itself.
pub async fn cancel_queued(tx: &mut Tx, kind: &str, idempotency_key: &str) -> Result<bool> {
    let now = crate::clock::now_ms();
    let updated = sqlx::query(
        "UPDATE jobs SET status = $1, updated_at_ms = $2, finished_at_ms = $2 \
         WHERE kind = $3 AND idempotency_key = $4 AND status = $5",
    )
    .bind(DONE)
    .bind(now)
    .bind(kind)
    .bind(idempotency_key)
    .bind(QUEUED)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// A job's status, for callers that wait on one (`None`: no such job).
pub(crate) async fn status_of(store: &Store, kind: &str, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT status FROM jobs WHERE kind = $1 AND idempotency_key = $2")
        .bind(kind)
        .bind(key)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| r.try_get::<String, _>("status").map_err(Error::from))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_sql_names_every_kind_and_locks_only_on_postgres() {
        let pg = claim_due_sql(Backend::Postgres, 2);
        assert!(pg.contains("kind IN ($4, $5)"), "{pg}");
        assert!(pg.contains("FOR UPDATE SKIP LOCKED"));
        let lite = claim_due_sql(Backend::Sqlite, 1);
        assert!(lite.contains("kind IN ($4)"), "{lite}");
        assert!(!lite.contains("SKIP LOCKED"));
    }
}
