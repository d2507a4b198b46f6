//! A task that runs in the background until it is told to stop: the job workers, the outbox
//! relay, retention. Stopping gives it a grace period, then abandons it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Background {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Background {
    /// Spawns `work`, which watches the receiver it is given and returns once it turns `true`.
    pub fn spawn<F, Fut>(work: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(work(stopped));
        Self { stop, task }
    }

    /// Tells the task to stop and waits up to `grace` for it; answers `false` when it was still
    /// running then and has been aborted.
    pub async fn stop(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            return false;
        }
        true
    }
}
