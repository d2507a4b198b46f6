//! The durable job queue: every step that talks to the outside world (PSP session registration
//! and status polls now; refunds, payouts and notifications next) is a row in the `jobs` table,
//! written in the same transaction as the change that calls for it, and run at least once.
//!
//! - [`enqueue`] adds a job inside the caller's transaction; `(kind, idempotency_key)` is
//!   unique, so enqueuing the same work twice is harmless.
//! - Workers ([`worker`]) claim due jobs with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
//!   on SQLite one write transaction at a time), so any number of workers in any number of
//!   instances share the queue. A job whose worker died is claimed again once its lease ends.
//! - A handler ([`JobHandler`], found by kind in a [`Registry`]) says done, run again later, or
//!   failed: retryable failures come back after an exponential backoff with full jitter
//!   ([`retry`]); a permanent failure, or the last allowed attempt, moves the job to the
//!   dead-letter queue ([`dlq`]) with its last error, where an operator lists and replays it.
//!
//! Handlers must be idempotent: a job runs at least once, and more often when a worker dies
//! between doing the work and recording it. Calls to the outside carry an idempotency key
//! derived from the job's subject (the payment's id for a PSP session), never a fresh one.
//!
//! Leases are wall-clock times (`*_ms`) written by each instance; instances are assumed to keep
//! their clocks within a small fraction of a lease of each other (NTP does, by far).

pub mod dlq;
mod queue;
pub mod retry;
pub mod scheduled;
pub mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) use queue::status_of;
pub use queue::{
    Enqueued, Failed, cancel_queued, claim_by_key, claim_due, complete, enqueue, fail, run_again_at,
};
pub use retry::RetryPolicy;

use crate::psp::PspError;

/// How the queue behaves: leases, retries, and how many jobs one instance runs at once.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// How long a claim lasts. A job (or an `Idempotency-Key`'s request) still claimed after
    /// this long is taken to have died, and its work is taken over. A handler is stopped well
    /// before its lease ends.
    pub lease_ms: i64,
    pub retry: RetryPolicy,
    /// Most jobs one instance runs at the same time.
    pub concurrency: usize,
    /// How long an idle worker waits before looking for due jobs again.
    pub idle_poll_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            retry: RetryPolicy::default(),
            concurrency: 8,
            idle_poll_ms: 250,
        }
    }
}

impl JobsConfig {
    /// How long one run of a handler may take: most of the lease, so that it is stopped (and
    /// its failure recorded) before another worker may claim the same job.
    pub fn run_timeout_ms(&self) -> u64 {
        u64::try_from(self.lease_ms.max(10) * 4 / 5).unwrap_or(8)
    }
}

/// Job statuses as stored.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const DEAD: &str = "dead";
}

/// A job a worker holds the lease of.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    /// Attempts made so far, this one included (1 on the first run).
    pub attempts: u32,
    /// Proves that the lease is still ours when the outcome is written (fencing): a worker
    /// whose lease ran out and was taken over cannot overwrite the new holder's outcome.
    pub lease_token: String,
}

/// What a handler made of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The work is done; the job will not run again.
    Done,
    /// Nothing failed, but the work is not over (a payment still pending at the PSP): run the
    /// job again at this time, without counting an attempt.
    RunAgainAt { due_at_ms: i64 },
}

/// Why a job failed, told apart by whether trying again can help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Timeouts, connection errors, 5xx, a database hiccup: retried after a backoff.
    #[error("{0}")]
    Retryable(String),
    /// A 4xx, a refusal, a malformed payload: dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<PspError> for JobError {
    fn from(error: PspError) -> Self {
        match error {
            PspError::Retryable(message) => Self::Retryable(message),
            PspError::Permanent(message) => Self::Permanent(message),
        }
    }
}

impl From<crate::Error> for JobError {
    fn from(error: crate::Error) -> Self {
        match error {
            crate::Error::Database(_)
            | crate::Error::PspUnavailable { .. }
            | crate::Error::Unavailable { .. } => Self::Retryable(error.to_string()),
            other => Self::Permanent(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retryable(format!("database error: {error}"))
    }
}

/// A boxed future, so that handlers can live behind `Arc<dyn JobHandler>`.
pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<JobOutcome, JobError>> + Send + 'a>>;

/// Runs the jobs of one kind. Must be idempotent (see the module's header).
pub trait JobHandler: Send + Sync {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a>;
}

/// The handlers a worker runs, by job kind. A worker claims only the kinds it knows, so an
/// older instance never takes (and fails) a job kind added by a newer one.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the handler for `kind`, replacing any earlier one.
    pub fn register(&mut self, kind: &str, handler: Arc<dyn JobHandler>) -> &mut Self {
        self.handlers.insert(kind.to_owned(), handler);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(kind)
    }

    /// The kinds this registry runs, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}
