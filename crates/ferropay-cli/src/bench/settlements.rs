//! Seeing payments settle without asking the server: a watcher, on a connection of its own,
//! polls the journal for the capture transactions past the last sequence number it saw, and
//! wakes the payment waiting for each with the moment it was seen.
//!
//! `seq` is commit order: a posting takes its `seq` under the chain head's lock and holds that
//! lock until it commits, so a transaction with a higher `seq` commits after every lower one
//! and "seq > last seen" misses none. A settlement is seen late by at most one poll interval
//! plus one query; the watcher counts its polls and their time so that the cost shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use ferropay::store::Store;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Most journal rows read by one poll; a full batch is followed by another poll at once.
const BATCH_ROWS: i64 = 1_000;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

pub struct SettlementWatch {
    waiting: Waiting,
    stop: watch::Sender<bool>,
    task: JoinHandle<WatchStats>,
}

/// What the watcher cost.
#[derive(Default)]
pub struct WatchStats {
    polls: u64,
    query_time: Duration,
    captures_seen: u64,
    errors: u64,
}

impl SettlementWatch {
    /// Starts watching the journal of `database_url` from its current head, polling every
    /// `poll_ms`, for at most `max_duration`.
    pub async fn start(
        database_url: &str,
        poll_ms: u64,
        max_duration: Duration,
    ) -> anyhow::Result<Self> {
        let store = Store::connect(database_url, 1)
            .await
            .context("connecting the settlement watcher")?;
        let head = sqlx::query("SELECT seq FROM ledger_head WHERE id = 1")
            .fetch_one(store.pool())
            .await?;
        let from_seq: i64 = head.try_get("seq")?;
        let waiting: Waiting = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(watch_journal(
            store,
            from_seq,
            waiting.clone(),
            Duration::from_millis(poll_ms.max(1)),
            Instant::now() + max_duration,
            stopped,
        ));
        Ok(Self {
            waiting,
            stop,
            task,
        })
    }

    /// Registers a payment before the buyer pays for it; the receiver gets the moment its
    /// capture was seen in the journal.
    pub fn expect(&self, payment_id: &str) -> oneshot::Receiver<Instant> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.waiting).insert(payment_id.to_owned(), sender);
        receiver
    }

    /// Stops waiting for a payment (it timed out).
    pub fn forget(&self, payment_id: &str) {
        lock(&self.waiting).remove(payment_id);
    }

    pub async fn finish(self) -> WatchStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

fn lock(waiting: &Waiting) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Instant>>> {
    // Nothing can be left half-done under this lock: a poisoned map is still a good map.
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn watch_journal(
    store: Store,
    mut last_seq: i64,
    waiting: Waiting,
    poll: Duration,
    deadline: Instant,
    mut stopped: watch::Receiver<bool>,
) -> WatchStats {
    let mut stats = WatchStats::default();
    // Bounded by the deadline (the bench's whole time budget) and by the stop signal.
    while Instant::now() < deadline && !*stopped.borrow() {
        let began = Instant::now();
        let rows = sqlx::query(
            "SELECT seq, kind, payment_id FROM journal_transactions \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(last_seq)
        .bind(BATCH_ROWS)
        .fetch_all(store.pool())
        .await;
        let seen_at = Instant::now();
        stats.polls += 1;
        stats.query_time += seen_at - began;
        let full_batch = match rows {
            Ok(rows) => {
                let full = rows.len() as i64 == BATCH_ROWS;
                let mut waiting = lock(&waiting);
                for row in rows {
                    let (Ok(seq), Ok(kind), Ok(payment_id)) = (
                        row.try_get::<i64, _>("seq"),
                        row.try_get::<String, _>("kind"),
                        row.try_get::<Option<String>, _>("payment_id"),
                    ) else {
                        stats.errors += 1;
                        continue;
                    };
                    last_seq = last_seq.max(seq);
                    if kind != "capture" {
                        continue;
                    }
                    if let Some(sender) = payment_id.and_then(|id| waiting.remove(&id)) {
                        stats.captures_seen += 1;
                        let _ = sender.send(seen_at);
                    }
                }
                full
            }
            Err(error) => {
                stats.errors += 1;
                tracing::warn!(%error, "settlement watcher: polling the journal failed");
                false
            }
        };
        if !full_batch {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }
    store.close().await;
    stats
}

impl WatchStats {
    pub fn json(&self, poll_ms: u64) -> Value {
        json!({
            "poll_ms": poll_ms,
            "polls": self.polls,
            "query_mean_us": self.mean_query_us(),
            "captures_seen": self.captures_seen,
            "errors": self.errors,
        })
    }

    pub fn describe(&self, poll_ms: u64) -> String {
        format!(
            "journal polled every {poll_ms} ms on its own connection: {} polls, {} µs per poll on average, {} errors",
            self.polls,
            self.mean_query_us(),
            self.errors
        )
    }

    fn mean_query_us(&self) -> u64 {
        (self.query_time.as_micros() / u128::from(self.polls.max(1))) as u64
    }
}
