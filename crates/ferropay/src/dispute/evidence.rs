//! `POST /v1/disputes/{id}/evidence`: the merchant's answer to a dispute, sent to the PSP while
//! the dispute needs a response. The PSP's answer (the dispute `under_review`) is applied as any
//! word of the PSP's on a dispute ([`super::ApplyDispute`]); the text is kept with the dispute.

use serde::Deserialize;
use sqlx::Row;

use super::list::{DisputeView, get};
use super::{ApplyDispute, DisputeApplied};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::psp::{DisputeStatus, PspError};
use crate::service::Ferropay;

/// The longest evidence text, in characters.
pub const EVIDENCE_MAX_CHARS: usize = 20_000;

/// `POST /v1/disputes/{id}/evidence` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceInput {
    /// What the merchant has to show: delivery proof, correspondence, terms.
    pub text: String,
}

/// Sends `input` to the PSP for `dispute_id`; answers the dispute as it then stands.
pub async fn submit(
    service: &Ferropay,
    dispute_id: &str,
    input: &EvidenceInput,
) -> Result<DisputeView> {
    let text = input.text.trim();
    if text.is_empty() || text.chars().count() > EVIDENCE_MAX_CHARS {
        return Err(Error::invalid(
            "text",
            format!("must hold 1 to {EVIDENCE_MAX_CHARS} characters"),
        ));
    }
    let row =
        sqlx::query("SELECT psp, psp_dispute_id, payment_id, status FROM disputes WHERE id = $1")
            .bind(dispute_id)
            .fetch_optional(service.store.pool())
            .await?
            .ok_or_else(|| Error::NotFound(format!("dispute `{dispute_id}`")))?;
    let psp: String = row.try_get("psp")?;
    let psp_dispute_id: String = row.try_get("psp_dispute_id")?;
    let status: String = row.try_get("status")?;
    if status != DisputeStatus::NeedsResponse.as_str() {
        return Err(Error::conflict(
            "dispute_not_open",
            format!("dispute {dispute_id} is {status}; evidence is taken while it needs_response"),
        ));
    }
    let Some(connector) = service.connectors.get(&psp) else {
        return Err(Error::Internal(format!(
            "dispute {dispute_id} belongs to PSP `{psp}`, which is not configured"
        )));
    };
    let mut update = connector
        .submit_dispute_evidence(&psp_dispute_id, text)
        .await
        .map_err(|error| match error {
            PspError::Retryable(message) => Error::PspUnavailable {
                message,
                retry_after_s: 5,
            },
            PspError::Permanent(message) => Error::conflict("psp_refused_evidence", message),
        })?;
    // The PSP names the payment as it knows it (Stripe: its PaymentIntent); the dispute is
    // ours, and so is its payment.
    update.reference = row.try_get("payment_id")?;
    sqlx::query("UPDATE disputes SET evidence = $1, updated_at_ms = $2 WHERE id = $3")
        .bind(text)
        .bind(now_ms())
        .bind(dispute_id)
        .execute(service.store.pool())
        .await?;
    let applied = service
        .engine
        .try_submit(ApplyDispute { psp, update })
        .await?;
    if applied == DisputeApplied::UnknownPayment {
        return Err(Error::Internal(format!(
            "dispute {dispute_id}: the PSP names a payment we do not have"
        )));
    }
    get(&service.store, dispute_id).await
}
