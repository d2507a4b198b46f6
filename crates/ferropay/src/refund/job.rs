//! The refund's work with the PSP as a durable job (`refund.send`), enqueued in the transaction
//! that records the refund, so that a crash between the two loses nothing. The job asks for the
//! refund, then, while the refund stays pending, asks the PSP where it stands, so that a lost
//! `refund.*` webhook delays a refund but never leaves it pending for good.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::clock::now_ms;
use crate::engine::Effect;
use crate::jobs::{ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::service::Ferropay;

pub const KIND: &str = "refund.send";

/// The job, as an effect of the decision that records the refund: it exists exactly when the
/// refund does.
pub(crate) fn effect(refund_id: &str, now_ms: i64) -> Effect {
    Effect::Job {
        kind: KIND,
        key: refund_id.to_owned(),
        payload: json!({ "refund_id": refund_id }),
        due_at_ms: now_ms,
    }
}

struct SendRefund(Ferropay);

impl JobHandler for SendRefund {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let service = &self.0;
            let refund_id = job.payload["refund_id"]
                .as_str()
                .ok_or_else(|| JobError::Permanent("the payload has no `refund_id`".into()))?;
            let row = sqlx::query(
                "SELECT r.status, r.psp_refund_id, r.created_at_ms, p.psp FROM refunds r \
                 JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
            )
            .bind(refund_id)
            .fetch_optional(service.store.pool())
            .await?
            .ok_or_else(|| JobError::Permanent(format!("no refund {refund_id}")))?;
            let status: String = row.try_get("status")?;
            let psp_refund_id: Option<String> = row.try_get("psp_refund_id")?;
            let created_at_ms: i64 = row.try_get("created_at_ms")?;
            let psp: String = row.try_get("psp")?;
            if status != "pending" {
                return Ok(JobOutcome::Done);
            }
            let Some(psp_refund_id) = psp_refund_id else {
                super::send(service, refund_id).await?;
                return Ok(follow_up(service, created_at_ms));
            };
            let connector = service.connectors.of(&psp)?;
            match connector.refund_status(&psp_refund_id).await? {
                None => Ok(follow_up(service, created_at_ms)),
                Some(mut update) => {
                    update.reference = refund_id.to_owned();
                    service
                        .engine
                        .submit(super::SettleRefund { psp, update })
                        .await?;
                    tracing::info!(%refund_id, "refund settled by polling the PSP");
                    Ok(JobOutcome::Done)
                }
            }
        })
    }
}

/// Comes back later to ask again, at the poller's pace: a webhook normally settles it first.
pub(crate) fn follow_up(service: &Ferropay, created_at_ms: i64) -> JobOutcome {
    let now = now_ms();
    let age_ms = now.saturating_sub(created_at_ms);
    let wait_ms = (age_ms / 2)
        .max(service.config.poll_after_ms)
        .min(crate::payin::poll::MAX_POLL_INTERVAL_MS);
    JobOutcome::RunAgainAt {
        due_at_ms: now + wait_ms,
    }
}

pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(SendRefund(service.clone()))
}
