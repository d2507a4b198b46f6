//! Background work: webhook deliveries, review and settlement timers, the expiry sweeper. They
//! all run as tasks of one supervisor, so that stopping the sandbox cancels every one of them,
//! and a handler hands work over without ever waiting.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// How many submitted jobs may wait for the supervisor at once. Far above what a sandbox sees;
/// past it a job is dropped with an error log rather than blocking a handler.
const QUEUE_CAPACITY: usize = 65_536;

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Hands jobs to the supervisor.
pub(crate) struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts the supervisor; aborting the returned task cancels every job.
    pub(crate) fn start() -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        (Self { jobs }, tokio::spawn(supervise(queue)))
    }

    /// Runs `job` in the background. Never waits.
    pub(crate) fn submit(&self, job: impl Future<Output = ()> + Send + 'static) {
        match self.jobs.try_send(Box::pin(job)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::error!("sandbox PSP: background queue full, job dropped");
            }
            // The sandbox was shut down while a request was still being answered.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("sandbox PSP: shut down, background job dropped");
            }
        }
    }
}

async fn supervise(mut queue: mpsc::Receiver<Job>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = queue.recv() => match job {
                Some(job) => {
                    running.spawn(job);
                }
                None => break,
            },
            Some(finished) = running.join_next(), if !running.is_empty() => {
                if let Err(error) = finished
                    && error.is_panic()
                {
                    tracing::error!(%error, "sandbox PSP: background job panicked");
                }
            }
        }
    }
    // Every sender is gone: the sandbox is no longer reachable, but let running jobs finish.
    while running.join_next().await.is_some() {}
}
