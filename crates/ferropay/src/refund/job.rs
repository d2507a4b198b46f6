//! The refund's call to the PSP as a durable job (`refund.send`), enqueued in the transaction
//! that records the refund, so that a crash between the two loses nothing.

use std::sync::Arc;

use serde_json::json;

use crate::error::Result;
use crate::jobs::{self, ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::service::Ferropay;
use crate::store::Tx;

pub const KIND: &str = "refund.send";

pub(crate) async fn enqueue(tx: &mut Tx, refund_id: &str, now_ms: i64) -> Result<()> {
    jobs::enqueue(
        tx,
        KIND,
        &json!({ "refund_id": refund_id }),
        refund_id,
        now_ms,
    )
    .await?;
    Ok(())
}

struct SendRefund(Ferropay);

impl JobHandler for SendRefund {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let refund_id = job.payload["refund_id"]
                .as_str()
                .ok_or_else(|| JobError::Permanent("the payload has no `refund_id`".into()))?;
            super::send(&self.0, refund_id).await?;
            Ok(JobOutcome::Done)
        })
    }
}

pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(SendRefund(service.clone()))
}
