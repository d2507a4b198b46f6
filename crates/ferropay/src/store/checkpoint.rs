//! SQLite's WAL checkpoints, run beside the writer instead of inside its commits.
//!
//! By default SQLite checkpoints from within the commit that grows the WAL past 1,000 pages: that
//! commit copies the WAL's pages into the database file and syncs it (`synchronous = FULL`)
//! before it returns, so every few engine batches one batch — and every caller waiting on it —
//! pays for the copy. Here every connection has `wal_autocheckpoint = 0`, and this task runs a
//! `PASSIVE` checkpoint on a reading connection every [`CHECKPOINT_INTERVAL_MS`]: it copies what
//! no reader still needs, beside the writer (which goes on appending to the WAL), and never
//! waits for a lock. It is the checkpoint SQLite would have run, minus the caller waiting for
//! it; the WAL starts again from its beginning once a checkpoint has copied all of it.
//!
//! The task ends when every handle on its store is gone or the pool is closed.

use std::sync::Weak;
use std::time::Duration;

use sqlx::{AnyPool, Row};

/// How often the WAL is checkpointed.
pub const CHECKPOINT_INTERVAL_MS: u64 = 200;

/// A WAL larger than this after a checkpoint is logged (readers holding old snapshots keep a
/// checkpoint from copying all of it).
const WAL_WARN_PAGES: i64 = 65_536;

/// The pragma every SQLite connection runs: no checkpoint inside a commit.
pub const NO_AUTO_CHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 0";

/// Starts the checkpointer of `pool`'s database; it runs while `alive` can be upgraded.
pub(super) fn start(pool: AnyPool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() || pool.is_closed() {
                return;
            }
            match checkpoint(&pool).await {
                Ok(wal_pages) if wal_pages > WAL_WARN_PAGES => tracing::warn!(
                    wal_pages,
                    "the SQLite WAL stays large after a checkpoint (long-running readers?)"
                ),
                Ok(_) => {}
                Err(error) if pool.is_closed() => {
                    tracing::debug!(%error, "checkpointer stops: the store is closed");
                    return;
                }
                Err(error) => tracing::warn!(%error, "a WAL checkpoint failed"),
            }
        }
    });
}

/// One passive checkpoint; answers the pages left in the WAL.
async fn checkpoint(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    let (log, copied): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
    metrics::counter!("ferropay_sqlite_checkpoints_total").increment(1);
    Ok(log - copied)
}
