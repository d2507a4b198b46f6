//! The payout's call to the payout provider as a durable job (`payout.send`), enqueued in the transaction
//! that records the payout, so that a crash between the two loses nothing.

use std::sync::Arc;

use serde_json::json;

use crate::error::Result;
use crate::jobs::{self, ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::service::Ferropay;
use crate::store::Tx;

pub const KIND: &str = "payout.send";

pub(crate) async fn enqueue(tx: &mut Tx, payout_id: &str, now_ms: i64) -> Result<()> {
    jobs::enqueue(
        tx,
        KIND,
        &json!({ "payout_id": payout_id }),
        payout_id,
        now_ms,
    )
    .await?;
    Ok(())
}

struct SendPayout(Ferropay);

impl JobHandler for SendPayout {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let payout_id = job.payload["payout_id"]
                .as_str()
                .ok_or_else(|| JobError::Permanent("the payload has no `payout_id`".into()))?;
            super::send(&self.0, payout_id).await?;
            Ok(JobOutcome::Done)
        })
    }
}

pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(SendPayout(service.clone()))
}
