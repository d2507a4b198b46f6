//! The money engine (group commit): every effect that moves money is a [`Command`] submitted to
//! the process's one engine and awaited, never a transaction of its own. The engine drains its
//! bounded queue into a batch (up to `max_batch` commands, waiting at most `linger_us` for more)
//! and runs the whole batch in ONE database transaction ([`batch`]): lock the decided rows in one
//! global order, decide each command in memory, write with set-based statements, take the chain
//! head last, commit once, answer every caller. The cost of a commit and of the chain's one lock
//! is paid once per batch, not once per payment, and a hot wallet is one row update per batch.
//!
//! Nothing is answered before its commit: a crash loses only unanswered commands, which their
//! senders (the PSP's webhook retry, the job queue, an API client with its `Idempotency-Key`)
//! send again. A full queue is back-pressure: [`Engine::try_submit`] answers
//! [`Error::Unavailable`] at once (503 with `Retry-After` over HTTP), and no caller holds a
//! database connection while it waits for the engine.
//!
//! Modules: [`command`] (the trait the use cases implement, and the keys they lock), [`view`]
//! (the rows of a batch), [`effect`] (what a decision stages), `load` and `write` (the batch's
//! set-based statements), `batch` (one batch, with split-and-retry).

mod batch;
pub mod command;
pub mod effect;
mod load;
#[cfg(test)]
mod plans;
mod post;
pub mod view;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use batch::Phases;
pub use command::{Command, Keys};
pub use effect::{Effect, Staged};
pub use post::Post;
pub use view::View;

use crate::error::{Error, Result};
use crate::store::Store;
use command::{Pending, Submitted};

/// How the engine batches.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most commands in one batch (one database transaction).
    pub max_batch: usize,
    /// How long a batch that is not full waits for more commands, in microseconds (`None`: the
    /// database's default, [`EngineConfig::linger_us_on`]).
    pub linger_us: Option<u64>,
    /// Most commands waiting for the engine; past it, `try_submit` is refused (back-pressure).
    pub queue_capacity: usize,
    /// Batches in flight at once (0: the database's default — three on PostgreSQL, where the
    /// next batches lock and decide while the last one commits (measured: 14.8k transfers/s
    /// with one or two, 17.3k with three, 17.8k with four); one on SQLite, whose one writer
    /// would only make the second wait). On PostgreSQL each lane has a connection of its own,
    /// beside the pool's; at most `store::ENGINE_MAX_CONNECTIONS`.
    pub lanes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            linger_us: None,
            queue_capacity: 8_192,
            lanes: 0,
        }
    }
}

impl EngineConfig {
    /// The linger on `backend`: as configured, or by default 500 µs on PostgreSQL, whose
    /// lanes would otherwise start small batches while others are free, and none on SQLite:
    /// with one writer, whose next batch gathers while the last one runs and syncs, a linger
    /// only delays the first command (measured at 500 payments/s: `POST /v1/payments` p50 10.6–11.9
    /// → 7.9–8.1 ms; in the closed loop 1,420 → 1,636 payments/s; BENCHMARKS.md).
    pub fn linger_us_on(&self, backend: crate::store::Backend) -> u64 {
        self.linger_us.unwrap_or(match backend {
            crate::store::Backend::Postgres => 500,
            crate::store::Backend::Sqlite => 0,
        })
    }

    fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.max_batch) {
            return Err(Error::invalid("engine_max_batch", "must be 1 to 10000"));
        }
        if self
            .linger_us
            .is_some_and(|linger_us| linger_us > 1_000_000)
        {
            return Err(Error::invalid(
                "engine_linger_us",
                "must be at most 1000000",
            ));
        }
        if self.lanes > crate::store::ENGINE_MAX_CONNECTIONS as usize {
            return Err(Error::invalid("engine_lanes", "must be 0 to 16"));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(Error::invalid(
                "engine_queue_capacity",
                "must be 1 to 1000000",
            ));
        }
        Ok(())
    }
}

/// Batch sizes seen, in buckets of powers of two: `[1], [2,3], [4,7], …` up to 8,192 and more.
const SIZE_BUCKETS: usize = 14;

/// What the engine has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub batches: u64,
    pub commands: u64,
    pub accepted: u64,
    pub journal_transactions: u64,
    pub max_batch: u64,
    /// `size_buckets[i]`: batches of `2^i` to `2^(i+1) - 1` commands (the last is open).
    pub size_buckets: Vec<u64>,
    /// The committed batches' time by phase, summed.
    pub phases: Phases,
}

impl EngineStats {
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.commands as f64 / self.batches as f64
        }
    }

    /// `begin 0.1, load 2.3, … ms`: a committed batch's mean time in each phase since `before`.
    pub fn describe_phases(&self, before: &EngineStats) -> String {
        let batches = self.batches.saturating_sub(before.batches).max(1) as f64;
        let (now, then) = (&self.phases, &before.phases);
        let ms = |now: u64, then: u64| now.saturating_sub(then) as f64 / batches / 1000.0;
        format!(
            "begin {:.2}, load {:.2}, decide {:.2}, rows {:.2}, ledger {:.2}, commit {:.2} ms; \
             then sync {:.2} ms",
            ms(now.begin_us, then.begin_us),
            ms(now.load_us, then.load_us),
            ms(now.decide_us, then.decide_us),
            ms(now.rows_us, then.rows_us),
            ms(now.ledger_us, then.ledger_us),
            ms(now.commit_us, then.commit_us),
            ms(now.sync_us, then.sync_us),
        )
    }

    /// `1: 12, 2-3: 40, …`, the buckets that were used.
    pub fn describe_sizes(&self) -> String {
        self.size_buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let low = 1_u64 << i;
                if i + 1 == SIZE_BUCKETS {
                    format!("{low}+: {n}")
                } else if low == 1 {
                    format!("1: {n}")
                } else {
                    format!("{low}-{}: {n}", (low << 1) - 1)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
    accepted: AtomicU64,
    journal_transactions: AtomicU64,
    max_batch: AtomicU64,
    size_buckets: [AtomicU64; SIZE_BUCKETS],
    phases: Mutex<Phases>,
}

/// A handle on the process's engine. Cheap to clone; the engine stops once every handle is gone
/// and its queue is drained.
#[derive(Clone)]
pub struct Engine {
    sender: mpsc::Sender<Box<dyn Pending>>,
    counters: Arc<Counters>,
    capacity: usize,
}

impl Engine {
    /// Starts the engine's task on the current tokio runtime.
    pub fn start(store: Store, config: EngineConfig) -> Result<Self> {
        config.validate()?;
        let backend = store.backend();
        let shared = Arc::new(batch::Shared {
            store,
            load_sql: load::LoadSql::new(backend),
            write_sql: write::WriteSql::new(backend),
            known_wallets: Mutex::default(),
        });
        let lanes = match (config.lanes, backend) {
            (0, crate::store::Backend::Postgres) => 3,
            (0, crate::store::Backend::Sqlite) => 1,
            (lanes, _) => lanes,
        };
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run_loop(
            shared,
            config.clone(),
            lanes,
            receiver,
            counters.clone(),
        ));
        Ok(Self {
            sender,
            counters,
            capacity: config.queue_capacity,
        })
    }

    /// Submits `command` and waits for its answer, waiting for room in the queue when it is
    /// full (for workers and batch jobs, which have nobody to answer 503 to).
    pub async fn submit<C: Command>(&self, command: C) -> Result<C::Answer> {
        let (pending, answer) = Self::wrap(command);
        self.sender.send(pending).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| lost())?
    }

    /// Submits `command` and waits for its answer; refused at once with
    /// [`Error::Unavailable`] when the queue is full (back-pressure for requests).
    pub async fn try_submit<C: Command>(&self, command: C) -> Result<C::Answer> {
        let (pending, answer) = Self::wrap(command);
        match self.sender.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("ferropay_engine_refused_total").increment(1);
                return Err(Error::Unavailable {
                    message: "the money engine's queue is full".into(),
                    retry_after_s: 1,
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
        }
        answer.await.map_err(|_| lost())?
    }

    fn wrap<C: Command>(command: C) -> (Box<dyn Pending>, oneshot::Receiver<Result<C::Answer>>) {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Submitted {
            command,
            answer: None,
            reply,
        });
        (pending, answer)
    }

    /// Commands waiting for a batch now.
    pub fn queued(&self) -> usize {
        self.capacity - self.sender.capacity()
    }

    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            batches: c.batches.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            journal_transactions: c.journal_transactions.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            size_buckets: c
                .size_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            phases: *c.phases.lock().expect("the phases lock is never poisoned"),
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable {
        message: "the money engine has stopped".into(),
        retry_after_s: 1,
    }
}

/// The batch's task ended without an answer (it panicked): the command may or may not have
/// committed, so its sender must retry with the same key, as after a crash.
fn lost() -> Error {
    Error::Internal("the money engine lost a command's answer".into())
}

async fn run_loop(
    shared: Arc<batch::Shared>,
    config: EngineConfig,
    lanes: usize,
    mut receiver: mpsc::Receiver<Box<dyn Pending>>,
    counters: Arc<Counters>,
) {
    let linger = Duration::from_micros(config.linger_us_on(shared.store.backend()));
    let lanes = Arc::new(tokio::sync::Semaphore::new(lanes.max(1)));
    loop {
        // A free lane first, so that commands wait in the queue (and fill the next batch)
        // rather than in a batch that cannot start.
        let Ok(lane) = lanes.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < config.max_batch {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        if batch.len() < config.max_batch && !linger.is_zero() {
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < config.max_batch {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(pending)) => batch.push(pending),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let size = batch.len() as u64;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.commands.fetch_add(size, Ordering::Relaxed);
        counters.max_batch.fetch_max(size, Ordering::Relaxed);
        let bucket = (63 - size.leading_zeros() as usize).min(SIZE_BUCKETS - 1);
        counters.size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("ferropay_engine_batch_size").record(size as f64);
        // Its own task, so that a panic in one batch (its commands then answer `lost`) does
        // not stop the engine.
        let (shared, counters) = (shared.clone(), counters.clone());
        tokio::spawn(async move {
            // The batch gives its lane back once it has committed; if it panics, the lane
            // goes back as its task unwinds.
            match tokio::spawn(batch::run(shared, batch, lane)).await {
                Ok(outcome) => {
                    counters
                        .accepted
                        .fetch_add(outcome.accepted as u64, Ordering::Relaxed);
                    counters
                        .journal_transactions
                        .fetch_add(outcome.transactions as u64, Ordering::Relaxed);
                    counters
                        .phases
                        .lock()
                        .expect("the phases lock is never poisoned")
                        .add(&outcome.phases);
                }
                Err(panic) => tracing::error!(%panic, "a money engine batch panicked"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_told_by_bucket() {
        let mut stats = EngineStats {
            size_buckets: vec![0; SIZE_BUCKETS],
            ..EngineStats::default()
        };
        stats.size_buckets[0] = 3;
        stats.size_buckets[2] = 5;
        stats.size_buckets[SIZE_BUCKETS - 1] = 1;
        assert_eq!(stats.describe_sizes(), "1: 3, 4-7: 5, 8192+: 1");
    }
}
