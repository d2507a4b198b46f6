//! The pending-payment poller (`payin.poll_session`): a payment still `requires_payment` or
//! `processing` some time after it was created is asked for at the PSP, and what the PSP says
//! is applied through the same path as a webhook ([`super::apply::ApplyPaymentUpdate`]), so a lost
//! webhook delays a payment but never loses it; a session that expired expires the payment.
//!
//! One job per payment, enqueued with it and due `poll_after_ms` later. While the payment stays
//! pending the job comes back, each time a little later (half the payment's age, between
//! `poll_after_ms` and [`MAX_POLL_INTERVAL_MS`]), until the payment is final; a webhook that
//! makes the payment succeed first cancels it. A webhook that fails or expires it leaves the
//! job for one last look: if the PSP took the money after all (a page left open), the poller
//! books it as a late capture through the same path. A PSP that does not answer (an outage of
//! an hour or a day) only delays the next poll, up to the ceiling: the job never dead-letters
//! on its own.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use super::apply::{ApplyPaymentUpdate, ApplyResult};
use super::model::PaymentStatus;
use super::register::payment_id_of;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::jobs::{self, ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::psp::PspOutcome;
use crate::service::Ferropay;
use crate::store::Tx;

/// The job kind.
pub const KIND: &str = "payin.poll_session";

/// The longest wait between two polls of a payment that stays pending (held for review for
/// hours, or a buyer who never pays until the session expires).
pub const MAX_POLL_INTERVAL_MS: i64 = 15 * 60 * 1000;

/// Queues the poll of `payment_id`, due at `due_at_ms`, inside the payment's transaction.
pub(crate) async fn enqueue(tx: &mut Tx, payment_id: &str, due_at_ms: i64) -> Result<()> {
    jobs::enqueue(
        tx,
        KIND,
        &json!({ "payment_id": payment_id }),
        payment_id,
        due_at_ms,
    )
    .await?;
    Ok(())
}

/// When to poll a payment created at `created_at_ms` again: half its age from now, at least
/// `poll_after_ms`, at most [`MAX_POLL_INTERVAL_MS`].
pub fn next_poll_at_ms(now_ms: i64, created_at_ms: i64, poll_after_ms: i64) -> i64 {
    let floor_ms = poll_after_ms.max(1);
    let wait_ms = (now_ms.saturating_sub(created_at_ms) / 2)
        .clamp(floor_ms, MAX_POLL_INTERVAL_MS.max(floor_ms));
    now_ms.saturating_add(wait_ms)
}

/// The worker's handler.
pub struct PollSession(pub Ferropay);

pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(PollSession(service.clone()))
}

impl JobHandler for PollSession {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move { poll_once(&self.0, payment_id_of(job)?).await })
    }
}

/// Asks the PSP about a pending payment once and applies the answer. A payment that a webhook
/// failed or expired gets the same look while its session is still open at the PSP: a buyer who
/// pays on a page left open after all is captured (a late capture), never lost.
///
/// A PSP (or engine) that does not answer never fails the job: the poll comes back at the
/// poller's pace, which backs off with the payment's age to [`MAX_POLL_INTERVAL_MS`], so an
/// outage of an hour or a day delays payments but never dead-letters their polls.
async fn poll_once(service: &Ferropay, payment_id: &str) -> Result<JobOutcome, JobError> {
    let row =
        sqlx::query("SELECT status, psp, psp_token, created_at_ms FROM payments WHERE id = $1")
            .bind(payment_id)
            .fetch_optional(service.store.pool())
            .await?
            .ok_or_else(|| JobError::Permanent(format!("no payment `{payment_id}`")))?;
    let status = parse_status(&row.try_get::<String, _>("status")?)?;
    // Failed or expired on our side: one more look while the PSP may still take the money.
    let last_look = matches!(status, PaymentStatus::Failed | PaymentStatus::Expired);
    if status.is_final() && !last_look {
        return Ok(JobOutcome::Done);
    }
    let created_at_ms: i64 = row.try_get("created_at_ms")?;
    let again = || JobOutcome::RunAgainAt {
        due_at_ms: next_poll_at_ms(now_ms(), created_at_ms, service.config.poll_after_ms),
    };
    let psp: String = row.try_get("psp")?;
    let Some(connector) = service.connectors.get(&psp) else {
        return Err(JobError::Permanent(format!(
            "payment `{payment_id}` belongs to PSP `{psp}`, which is not configured"
        )));
    };
    // Not registered yet: its registration job is on it; look again later.
    let Some(token) = row.try_get::<Option<String>, _>("psp_token")? else {
        return Ok(if last_look { JobOutcome::Done } else { again() });
    };
    let session = match connector.session_status(&token).await {
        Ok(session) => session,
        Err(error) => {
            // A poll is a read: asking again later is always safe, and giving up would leave
            // a payment the buyer may have paid in the dark.
            tracing::warn!(%payment_id, %error, "the PSP did not answer a poll; polling again later");
            metrics::counter!("ferropay_poll_psp_failures_total").increment(1);
            return Ok(again());
        }
    };
    if let Some(reference) = session.reference.as_deref()
        && reference != payment_id
    {
        return Err(JobError::Permanent(format!(
            "the PSP's session {token} names `{reference}`, not payment `{payment_id}`"
        )));
    }
    let Some(update) = session.as_update(payment_id) else {
        return Ok(again()); // still open: the buyer has not paid yet
    };
    if last_look && update.outcome != PspOutcome::Succeeded {
        // Still open (processing): look again; decided otherwise: nothing more to learn.
        return Ok(if update.outcome == PspOutcome::Processing {
            again()
        } else {
            JobOutcome::Done
        });
    }
    let applied = service
        .engine
        .submit(ApplyPaymentUpdate {
            psp: psp.clone(),
            update,
            fallback_fee_bps: service.config.platform_fee_bps,
        })
        .await;
    let result = match applied {
        Ok(result) => result,
        Err(error) => match JobError::from(error) {
            JobError::Retryable(message) => {
                tracing::warn!(%payment_id, %message, "the PSP's answer could not be applied yet; polling again later");
                return Ok(again());
            }
            permanent => return Err(permanent),
        },
    };
    let now_status = match &result {
        ApplyResult::Applied { to, .. } => *to,
        ApplyResult::Unchanged { status, .. } => *status,
        other => {
            return Err(JobError::Permanent(format!(
                "applying the PSP's answer: {other:?}"
            )));
        }
    };
    if let ApplyResult::Applied { from, to, .. } = &result {
        tracing::info!(%payment_id, from = from.as_str(), to = to.as_str(), "poller applied the PSP's outcome");
    }
    Ok(if now_status.is_final() {
        JobOutcome::Done
    } else {
        again()
    })
}

fn parse_status(text: &str) -> Result<PaymentStatus, JobError> {
    PaymentStatus::parse(text)
        .ok_or_else(|| JobError::from(Error::Internal(format!("payment status `{text}`"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_with_the_payment_age_within_bounds() {
        let minute = 60_000;
        // Young payment: the floor.
        assert_eq!(
            next_poll_at_ms(1_000_000, 1_000_000 - minute, minute),
            1_000_000 + minute
        );
        // Ten minutes old: five minutes on.
        assert_eq!(
            next_poll_at_ms(10 * minute, 0, minute),
            10 * minute + 5 * minute
        );
        // A day old: the cap.
        assert_eq!(
            next_poll_at_ms(1_440 * minute, 0, minute),
            1_440 * minute + MAX_POLL_INTERVAL_MS
        );
        // A floor above the cap wins; a zero floor is taken as 1 ms.
        assert_eq!(
            next_poll_at_ms(0, 0, 2 * MAX_POLL_INTERVAL_MS),
            2 * MAX_POLL_INTERVAL_MS
        );
        assert_eq!(next_poll_at_ms(5, 5, 0), 6);
    }
}
