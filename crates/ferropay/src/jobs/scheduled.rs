//! Scheduled work that runs once across instances: each run of a daily schedule (the nightly
//! reconciliation, the payout schedule) for one slot (a UTC day) is a row in `scheduled_runs`,
//! claimed by one instance under a lease it renews while it works.
//!
//! - Every instance's timer fires at the same moment; the first to insert the row runs it, the
//!   others find it held and go back to sleep.
//! - A holder that is stopped (SIGTERM) marks its run `interrupted` before it exits; one that
//!   crashes stops renewing its lease. Either way another instance, which looks for such runs
//!   every `check_ms`, claims the run again (`attempts` + 1) and re-runs it: the work must be
//!   safe to run again (both schedules post and pay under idempotent keys).
//! - `completed` and `failed` runs are never run again by the schedule.
//!
//! Leases are wall-clock times, as for the job queue (`super`).

use std::future::Future;
use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::error::Result;
use crate::ids::new_id;
use crate::store::Store;

/// One instance's hand on the scheduled runs.
#[derive(Clone, Debug)]
pub struct ScheduledRuns {
    store: Store,
    holder: String,
    lease_ms: i64,
}

/// What a claim found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds the run now; `attempt` 1 is the first.
    Won { attempt: i64 },
    /// Completed or failed already.
    Finished,
    /// Another instance holds it under a live lease.
    HeldElsewhere,
}

/// How a run went for this instance.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome<T> {
    /// This instance ran it; the work's own result.
    Ran {
        attempt: i64,
        result: std::result::Result<T, String>,
    },
    Finished,
    HeldElsewhere,
    /// Stopped while running: marked `interrupted` for another instance (or the next start).
    Interrupted,
    /// Another instance took the run over (this one stalled past its lease); the work was
    /// dropped here.
    LostLease,
}

impl ScheduledRuns {
    pub fn new(store: Store, lease_ms: i64) -> Self {
        Self {
            store,
            holder: new_id("inst"),
            lease_ms: lease_ms.max(1),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Claims (`schedule`, `slot`): new, interrupted, or held under a lease that ran out.
    pub async fn claim(&self, schedule: &str, slot: &str) -> Result<Claim> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO scheduled_runs (schedule, slot, status, holder, lease_until_ms, \
             attempts, started_at_ms) VALUES ($1, $2, 'running', $3, $4, 1, $5) \
             ON CONFLICT (schedule, slot) DO NOTHING",
        )
        .bind(schedule)
        .bind(slot)
        .bind(&self.holder)
        .bind(now + self.lease_ms)
        .bind(now)
        .execute(self.store.pool())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Won { attempt: 1 });
        }
        let taken = sqlx::query(
            "UPDATE scheduled_runs SET status = 'running', holder = $3, lease_until_ms = $4, \
             attempts = attempts + 1, started_at_ms = $5, error = NULL \
             WHERE schedule = $1 AND slot = $2 \
             AND (status = 'interrupted' OR (status = 'running' AND lease_until_ms < $5))",
        )
        .bind(schedule)
        .bind(slot)
        .bind(&self.holder)
        .bind(now + self.lease_ms)
        .bind(now)
        .execute(self.store.pool())
        .await?;
        let row = sqlx::query(
            "SELECT status, holder, attempts FROM scheduled_runs WHERE schedule = $1 AND slot = $2",
        )
        .bind(schedule)
        .bind(slot)
        .fetch_one(self.store.pool())
        .await?;
        let status: String = row.try_get("status")?;
        let holder: String = row.try_get("holder")?;
        Ok(match status.as_str() {
            "running" if taken.rows_affected() == 1 && holder == self.holder => Claim::Won {
                attempt: row.try_get("attempts")?,
            },
            "completed" | "failed" => Claim::Finished,
            _ => Claim::HeldElsewhere,
        })
    }

    /// Extends this instance's lease; `false`: it is not the holder any more.
    pub async fn renew(&self, schedule: &str, slot: &str) -> Result<bool> {
        let renewed = sqlx::query(
            "UPDATE scheduled_runs SET lease_until_ms = $4 WHERE schedule = $1 AND slot = $2 \
             AND holder = $3 AND status = 'running'",
        )
        .bind(schedule)
        .bind(slot)
        .bind(&self.holder)
        .bind(now_ms() + self.lease_ms)
        .execute(self.store.pool())
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Records the end of a run this instance holds: `completed`, or `failed` with the error.
    pub async fn finish(&self, schedule: &str, slot: &str, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE scheduled_runs SET status = $4, finished_at_ms = $5, error = $6 \
             WHERE schedule = $1 AND slot = $2 AND holder = $3 AND status = 'running'",
        )
        .bind(schedule)
        .bind(slot)
        .bind(&self.holder)
        .bind(if error.is_some() {
            "failed"
        } else {
            "completed"
        })
        .bind(now_ms())
        .bind(error)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Gives a run this instance holds back, for another instance to run at once.
    pub async fn interrupt(&self, schedule: &str, slot: &str) -> Result<()> {
        sqlx::query(
            "UPDATE scheduled_runs SET status = 'interrupted', lease_until_ms = $4, \
             error = 'interrupted: its instance stopped' \
             WHERE schedule = $1 AND slot = $2 AND holder = $3 AND status = 'running'",
        )
        .bind(schedule)
        .bind(slot)
        .bind(&self.holder)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Slots of `schedule` left interrupted, or held under a lease that ran out, oldest first.
    pub async fn abandoned(&self, schedule: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT slot FROM scheduled_runs WHERE schedule = $1 \
             AND (status = 'interrupted' OR (status = 'running' AND lease_until_ms < $2)) \
             ORDER BY slot LIMIT 10",
        )
        .bind(schedule)
        .bind(now_ms())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|row| row.try_get("slot").map_err(Into::into))
            .collect()
    }

    /// Runs `work` for (`schedule`, `slot`) if this instance can claim it, renewing the lease
    /// every third of it meanwhile; marks the run interrupted and drops the work when `stop`
    /// turns true (or its sender goes).
    pub async fn run<T, Fut>(
        &self,
        schedule: &str,
        slot: &str,
        mut stop: watch::Receiver<bool>,
        work: impl FnOnce(i64) -> Fut,
    ) -> Result<RunOutcome<T>>
    where
        Fut: Future<Output = std::result::Result<T, String>>,
    {
        let attempt = match self.claim(schedule, slot).await? {
            Claim::Won { attempt } => attempt,
            Claim::Finished => return Ok(RunOutcome::Finished),
            Claim::HeldElsewhere => return Ok(RunOutcome::HeldElsewhere),
        };
        tracing::info!(schedule, slot, attempt, holder = %self.holder, "scheduled run claimed");
        let work = work(attempt);
        tokio::pin!(work);
        let mut renew = tokio::time::interval(Duration::from_millis(
            u64::try_from(self.lease_ms / 3).unwrap_or(1).max(1),
        ));
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => {
                    self.finish(schedule, slot, result.as_ref().err().map(String::as_str)).await?;
                    return Ok(RunOutcome::Ran { attempt, result });
                }
                _ = renew.tick() => match self.renew(schedule, slot).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(schedule, slot, "scheduled run taken over elsewhere");
                        return Ok(RunOutcome::LostLease);
                    }
                    // The database is away for a moment: the lease may still hold.
                    Err(error) => tracing::warn!(schedule, slot, %error, "lease not renewed"),
                },
                () = stopped(&mut stop) => {
                    self.interrupt(schedule, slot).await?;
                    tracing::info!(schedule, slot, "scheduled run interrupted by shutdown");
                    return Ok(RunOutcome::Interrupted);
                }
            }
        }
    }
}

fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Resolves once `stop` turns true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let now = *stop.borrow_and_update();
        if now || stop.changed().await.is_err() {
            return;
        }
    }
}

/// A daily schedule's timer, until `stop` turns true: at each moment `next_due` names, the slot
/// `slot_of` that moment is run (by whichever instance claims it); every `check_ms` in between,
/// runs that were interrupted or whose holder died are taken over. `run_slot` runs one slot
/// (through [`ScheduledRuns::run`]).
pub async fn daily_loop<Fut>(
    runs: &ScheduledRuns,
    schedule: &str,
    next_due: impl Fn(OffsetDateTime) -> OffsetDateTime,
    slot_of: impl Fn(OffsetDateTime) -> String,
    check_ms: u64,
    mut stop: watch::Receiver<bool>,
    run_slot: impl Fn(String) -> Fut,
) where
    Fut: Future<Output = ()>,
{
    let mut due = next_due(OffsetDateTime::now_utc());
    tracing::info!(schedule, next_run = %due, "schedule armed");
    loop {
        if is_stopped(&stop) {
            return;
        }
        let now = OffsetDateTime::now_utc();
        if now >= due {
            run_slot(slot_of(due)).await;
            due = next_due(OffsetDateTime::now_utc().max(due));
            tracing::info!(schedule, next_run = %due, "schedule armed");
            continue;
        }
        match runs.abandoned(schedule).await {
            Ok(slots) => {
                for slot in slots {
                    if is_stopped(&stop) {
                        return;
                    }
                    tracing::warn!(schedule, %slot, "taking over an interrupted scheduled run");
                    run_slot(slot).await;
                }
            }
            Err(error) => tracing::warn!(schedule, %error, "abandoned runs not read"),
        }
        let until_due = (due - OffsetDateTime::now_utc()).unsigned_abs();
        let wait = until_due.min(Duration::from_millis(check_ms.max(1)));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
    }
}
