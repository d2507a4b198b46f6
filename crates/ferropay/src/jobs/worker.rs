//! The workers of one instance: a dispatcher that claims due jobs of the kinds its registry
//! knows and runs each in a task of its own, at most `concurrency` at a time (a semaphore
//! permit is taken before a claim, so a claimed job never waits for a slot while its lease runs).
//! Each run is bounded by [`JobsConfig::run_timeout_ms`], inside the lease.
//!
//! Stopping lets running jobs finish for a grace period, then abandons them: their leases run
//! out and another worker (here after a restart, or in another instance) takes them over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{ClaimedJob, JobError, JobOutcome, JobsConfig, Registry, queue};
use crate::background::Background;
use crate::store::Store;

/// A running set of workers; [`Workers::shutdown`] stops them.
pub struct Workers {
    dispatcher: Background,
}

impl Workers {
    /// Starts claiming and running jobs in the background.
    pub fn spawn(store: Store, registry: Registry, config: JobsConfig) -> Self {
        let registry = Arc::new(registry);
        let dispatcher =
            Background::spawn(move |stopped| dispatch(store, registry, config, stopped));
        Self { dispatcher }
    }

    /// Stops claiming, waits up to `grace` for running jobs, then abandons the rest (their
    /// leases run out and they are taken over).
    pub async fn shutdown(self, grace: Duration) {
        if !self.dispatcher.stop(grace).await {
            tracing::warn!("jobs still running at shutdown are abandoned to their leases");
        }
    }
}

async fn dispatch(
    store: Store,
    registry: Arc<Registry>,
    config: JobsConfig,
    mut stop: watch::Receiver<bool>,
) {
    let kinds = registry.kinds();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let idle = Duration::from_millis(config.idle_poll_ms.max(1));
    let mut running = JoinSet::new();
    tracing::info!(
        ?kinds,
        concurrency = config.concurrency,
        "job workers started"
    );
    loop {
        while let Some(finished) = running.try_join_next() {
            if let Err(error) = finished
                && error.is_panic()
            {
                // The job stays leased; it is retried when the lease runs out.
                tracing::error!(%error, "a job handler panicked");
            }
        }
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        match queue::claim_due(&store, &kinds, &config).await {
            Ok(Some(job)) => {
                let (store, registry, config) = (store.clone(), registry.clone(), config.clone());
                running.spawn(async move {
                    run_one(&store, &registry, &config, job).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                if sleep_or_stop(idle, &mut stop).await {
                    break;
                }
            }
            Err(error) => {
                drop(permit);
                tracing::warn!(%error, "claiming jobs failed; trying again");
                if sleep_or_stop(idle * 4, &mut stop).await {
                    break;
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
    tracing::info!("job workers stopped");
}

/// Sleeps for `duration`; true when asked to stop meanwhile.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Runs one claimed job and records its outcome. Errors writing the outcome are logged: the
/// lease then runs out and the (idempotent) job runs again.
async fn run_one(store: &Store, registry: &Registry, config: &JobsConfig, job: ClaimedJob) {
    let Some(handler) = registry.get(&job.kind) else {
        // Cannot happen: only the registry's kinds are claimed.
        tracing::error!(kind = %job.kind, "claimed a job without a handler");
        return;
    };
    let timeout_ms = config.run_timeout_ms();
    let result =
        match tokio::time::timeout(Duration::from_millis(timeout_ms), handler.run(&job)).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Retryable(format!(
                "the run took longer than {timeout_ms} ms"
            ))),
        };
    let recorded = match result {
        Ok(JobOutcome::Done) => queue::complete(store.pool(), &job).await.map(|_| ()),
        Ok(JobOutcome::RunAgainAt { due_at_ms }) => queue::run_again_at(store, &job, due_at_ms)
            .await
            .map(|_| ()),
        Err(error) => {
            tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, %error,
                "job failed");
            queue::fail(store, &job, &error, config).await.map(|_| ())
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(job_id = %job.id, %error, "could not record a job's outcome; its lease will run out");
    }
}
