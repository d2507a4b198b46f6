//! One batch, start to end: lock and load the rows its commands name, decide each command in
//! order against the view (a refused command gets its own answer and touches nothing), write
//! every accepted effect with set-based statements, chain the journal, commit once, and only
//! then answer. A batch the database refuses (a constraint, a deadlock, a serialization
//! failure) is split in halves and each half tried again, so that the innocent commands still
//! commit and the guilty one ends alone with its own error.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::command::{Keys, Pending};
use super::effect::{Effect, Staged};
use super::load::{KnownWallets, LoadSql, load, remember_wallets};
use super::write::{WriteSql, micros_since, write};
use crate::clock::now_ms;
use crate::error::{Error, Result, database_unreachable};
use crate::store::Store;

/// What every batch of one engine shares.
pub(crate) struct Shared {
    pub store: Store,
    pub load_sql: LoadSql,
    pub write_sql: WriteSql,
    pub known_wallets: KnownWallets,
}

/// What a committed batch did, for the engine's figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub accepted: usize,
    pub transactions: usize,
    /// Where the batch's time went, summed over its attempts that committed.
    pub phases: Phases,
}

/// A batch's time by phase, in microseconds: its `BEGIN`, the load (locks and facts), deciding
/// in memory, the row tables' writes, the ledger's (chain head, journal, postings, wallets),
/// the commit, and the sync after it (SQLite; the lane is free by then). On SQLite the
/// ledger's statements ride in the row tables' one call: `ledger` is then reading the head and
/// chaining, and `rows` the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    pub begin_us: u64,
    pub load_us: u64,
    pub decide_us: u64,
    pub rows_us: u64,
    pub ledger_us: u64,
    pub commit_us: u64,
    pub sync_us: u64,
}

impl Phases {
    pub(crate) fn add(&mut self, other: &Phases) {
        self.begin_us += other.begin_us;
        self.load_us += other.load_us;
        self.decide_us += other.decide_us;
        self.rows_us += other.rows_us;
        self.ledger_us += other.ledger_us;
        self.commit_us += other.commit_us;
        self.sync_us += other.sync_us;
    }
}

/// Runs `batch` to its answers: every command is answered exactly once, after its commit is
/// durable. The lane is given back as soon as the batch's commits are done: on SQLite the sync
/// that makes them durable then runs beside the next batch ([`crate::store::Store::make_durable`];
/// on PostgreSQL the commit was durable already and the sync does nothing).
pub(crate) async fn run(
    shared: Arc<Shared>,
    batch: Vec<Box<dyn Pending>>,
    lane: OwnedSemaphorePermit,
) -> Outcome {
    let mut settled = Vec::with_capacity(batch.len());
    let mut outcome = settle(&shared, batch, &mut settled).await;
    drop(lane);
    let (early, settled): (Vec<_>, Vec<_>) = settled
        .into_iter()
        .partition(|(pending, error)| error.is_none() && pending.answer_before_sync());
    for (pending, error) in early {
        pending.answer(error);
    }
    let started = Instant::now();
    // Always, refusals included: a refusal ("a duplicate event") may rest on an earlier batch
    // that this sync makes durable.
    let synced = shared.store.make_durable().await;
    outcome.phases.sync_us = micros_since(started);
    if let Err(error) = &synced {
        tracing::error!(%error, "syncing a committed batch failed; its commands are answered 503");
    }
    for (pending, error) in settled {
        let error = match (error, &synced) {
            (Some(error), _) => Some(error),
            (None, Ok(())) => None,
            // Committed, perhaps not durable: the sender retries with its key, as after a crash.
            (None, Err(io)) => Some(Error::Unavailable {
                message: format!("the database could not sync the batch: {io}"),
                retry_after_s: 1,
            }),
        };
        pending.answer(error);
    }
    outcome
}

/// A command decided (and committed, when its error is `None`), not yet answered.
type Settled = (Box<dyn Pending>, Option<Error>);

/// Commits what of `batch` the database takes, splitting it on a refusal; each command ends in
/// `settled` with its error (`None`: its decision, kept in it, is the answer).
async fn settle(
    shared: &Arc<Shared>,
    mut batch: Vec<Box<dyn Pending>>,
    settled: &mut Vec<Settled>,
) -> Outcome {
    match attempt(shared, &mut batch).await {
        Ok(outcome) => {
            settled.extend(batch.into_iter().map(|pending| (pending, None)));
            outcome
        }
        Err(error) if batch.len() > 1 && worth_splitting(&error) => {
            tracing::warn!(%error, size = batch.len(), "the database refused a batch; splitting it");
            metrics::counter!("ferropay_engine_batch_splits_total").increment(1);
            let second = batch.split_off(batch.len() / 2);
            let first = Box::pin(settle(shared, batch, settled)).await;
            let second = Box::pin(settle(shared, second, settled)).await;
            let mut phases = first.phases;
            phases.add(&second.phases);
            Outcome {
                accepted: first.accepted + second.accepted,
                transactions: first.transactions + second.transactions,
                phases,
            }
        }
        Err(error) => {
            if batch.len() == 1 && worth_splitting(&error) {
                tracing::warn!(%error, "a command failed in the database");
                if let Some(pending) = batch.pop() {
                    settled.push((pending, Some(error)));
                }
            } else {
                tracing::error!(%error, size = batch.len(), "a batch failed");
                settled.extend(
                    batch
                        .into_iter()
                        .map(|pending| (pending, Some(shared_error(&error)))),
                );
            }
            Outcome::default()
        }
    }
}

async fn attempt(shared: &Shared, batch: &mut [Box<dyn Pending>]) -> Result<Outcome> {
    let mut keys = Keys::default();
    for pending in batch.iter() {
        pending.keys(&mut keys);
    }
    let started = Instant::now();
    let mut tx = shared.store.begin_batch().await?;
    let begin_us = micros_since(started);
    let started = Instant::now();
    let mut view = load(
        &shared.load_sql,
        &mut tx,
        keys,
        &shared.known_wallets,
        now_ms(),
    )
    .await?;
    let load_us = micros_since(started);
    let started = Instant::now();
    let mut effects = Vec::new();
    let mut accepted = 0;
    for pending in batch.iter_mut() {
        let mut staged = Staged::default();
        if pending.decide(&view, &mut staged) {
            for effect in &staged.effects {
                view.apply(effect)?;
            }
            effects.append(&mut staged.effects);
            accepted += 1;
        }
    }
    let decide_us = micros_since(started);
    let written = write(&shared.write_sql, &shared.store, &mut tx, &view, &effects).await?;
    let started = Instant::now();
    tx.commit().await?;
    let commit_us = micros_since(started);
    remember_wallets(&shared.known_wallets, &view);
    for effect in &effects {
        if let Effect::Post { transaction, .. } = effect {
            metrics::counter!("ferropay_ledger_transactions_total", "kind" => transaction.kind)
                .increment(1);
        }
    }
    Ok(Outcome {
        accepted,
        transactions: written.transactions,
        phases: Phases {
            begin_us,
            load_us,
            decide_us,
            rows_us: written.rows_us,
            ledger_us: written.ledger_us,
            commit_us,
            sync_us: 0,
        },
    })
}

/// Whether a smaller batch could succeed: the database refused something about the rows (a
/// constraint, a deadlock, a serialization failure) or a command broke an invariant. A
/// database out of reach, or shutting down, fails every half the same way.
fn worth_splitting(error: &Error) -> bool {
    match error {
        // Not a server going away (SQLSTATE 08, 57P: a shutdown, a restart): every half would
        // fail the same way, each after its own wait for a connection.
        Error::Database(db @ sqlx::Error::Database(_)) => !database_unreachable(db),
        Error::Internal(_) => true,
        _ => false,
    }
}

/// The error each command of a failed batch is answered with.
fn shared_error(error: &Error) -> Error {
    match error {
        Error::Database(_) | Error::Unavailable { .. } => Error::Unavailable {
            message: format!("the database failed the batch: {error}"),
            retry_after_s: 1,
        },
        other => Error::Internal(other.to_string()),
    }
}
