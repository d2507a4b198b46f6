//! The payout's work with the payout provider as a durable job (`payout.send`), enqueued in the
//! transaction that records the payout, so that a crash between the two loses nothing. The job
//! asks for the payout, then, while it is in flight, asks the provider where it stands, so that
//! a lost `payout.*` webhook delays a payout but never leaves it in flight for good.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::engine::Effect;
use crate::jobs::{ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::refund::job::follow_up;
use crate::service::Ferropay;

pub const KIND: &str = "payout.send";

/// The job, as an effect of the decision that records the payout: it exists exactly when the
/// payout does.
pub(crate) fn effect(payout_id: &str, now_ms: i64) -> Effect {
    Effect::Job {
        kind: KIND,
        key: payout_id.to_owned(),
        payload: json!({ "payout_id": payout_id }),
        due_at_ms: now_ms,
    }
}

struct SendPayout(Ferropay);

impl JobHandler for SendPayout {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let service = &self.0;
            let payout_id = job.payload["payout_id"]
                .as_str()
                .ok_or_else(|| JobError::Permanent("the payload has no `payout_id`".into()))?;
            let row = sqlx::query(
                "SELECT status, psp_payout_id, psp, created_at_ms FROM payouts WHERE id = $1",
            )
            .bind(payout_id)
            .fetch_optional(service.store.pool())
            .await?
            .ok_or_else(|| JobError::Permanent(format!("no payout {payout_id}")))?;
            let status: String = row.try_get("status")?;
            let psp_payout_id: Option<String> = row.try_get("psp_payout_id")?;
            let created_at_ms: i64 = row.try_get("created_at_ms")?;
            if !matches!(status.as_str(), "pending" | "in_transit") {
                return Ok(JobOutcome::Done);
            }
            let Some(psp_payout_id) = psp_payout_id else {
                super::send(service, payout_id).await?;
                return Ok(follow_up(service, created_at_ms));
            };
            // The provider it was sent to (older payouts: the one payouts go to now).
            let psp: Option<String> = row.try_get("psp")?;
            let connector = match &psp {
                Some(psp) => service.connectors.of(psp)?,
                None => service.connectors.payouts(),
            };
            match connector.payout_status(&psp_payout_id).await? {
                None => Ok(follow_up(service, created_at_ms)),
                Some(mut update) => {
                    update.reference = payout_id.to_owned();
                    service
                        .engine
                        .submit(super::SettlePayout { update })
                        .await?;
                    tracing::info!(%payout_id, "payout settled by polling the provider");
                    Ok(JobOutcome::Done)
                }
            }
        })
    }
}

pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(SendPayout(service.clone()))
}
