//! Auto-healing a `missing_in_ledger` line: the file says the PSP took a payment that our books
//! lack (its webhook was lost, the poller has not run). Ask the PSP for the session — by the
//! token we stored, or by our merchant reference when we never stored one — and apply what it
//! says through the same path as a webhook (`payin::apply::ApplyPaymentUpdate`, the money engine's command:
//! statuses, capture posting, outbox, in one commit). Whether that healed it is read back from the ledger.
//! A `chargeback` or `chargeback_reversal` line the ledger lacks is healed the same way, by
//! asking the PSP for the dispute ([`heal_dispute`]); a reversal that names its payment (Adyen),
//! from the line, on the dispute found through the payment ([`heal_reversal`]).

use std::time::Duration;

use super::line::{LineType, SettlementLine};
use crate::dispute::{ApplyDispute, ApplyReversal, DisputeApplied};
use crate::engine::Engine;
use crate::payin::apply::{ApplyPaymentUpdate, ApplyResult};
use crate::psp::{Connector, DisputeStatus, DisputeUpdate, PspError, PspSession, PspSessionStatus};
use crate::store::Store;

/// Tries per PSP call when it fails for a passing reason.
const PSP_ATTEMPTS: u32 = 3;
/// The pause before the next try grows by this much each time.
const PSP_BACKOFF_MS: u64 = 200;

/// What reconciliation knows of a payment the file names but the ledger has not captured.
pub(crate) struct Unposted<'a> {
    pub payment_id: &'a str,
    pub psp_token: Option<&'a str>,
    /// The line's PSP reference: picks the session when several carry our reference.
    pub psp_reference: &'a str,
}

/// Answers what was done, for the break's detail. The caller checks the ledger afterwards.
pub(crate) async fn heal(
    engine: &Engine,
    connector: &dyn Connector,
    platform_fee_bps: u32,
    payment: &Unposted<'_>,
) -> String {
    let session = match find_session(connector, payment).await {
        Ok(Some(session)) => session,
        Ok(None) => return "the PSP has no session with our reference".to_owned(),
        Err(error) => return format!("asking the PSP failed: {error}"),
    };
    let Some(update) = session.as_update(payment.payment_id) else {
        return "the PSP says the session is still open".to_owned();
    };
    let command = ApplyPaymentUpdate {
        psp: connector.name().to_owned(),
        update,
        fallback_fee_bps: platform_fee_bps,
    };
    match engine.submit(command).await {
        Ok(ApplyResult::Applied { from, to, .. }) => format!(
            "asked the PSP: the session is {}; the payment moved from {} to {}",
            session_status(&session),
            from.as_str(),
            to.as_str()
        ),
        Ok(ApplyResult::Unchanged { status, .. }) => format!(
            "asked the PSP: the session is {}, which does not move a {} payment",
            session_status(&session),
            status.as_str()
        ),
        Ok(other) => format!("asked the PSP; applying its answer did nothing: {other:?}"),
        Err(error) => format!("the PSP's answer could not be applied: {error}"),
    }
}

fn session_status(session: &PspSession) -> &'static str {
    match session.status {
        PspSessionStatus::Open => "open",
        PspSessionStatus::Processing => "processing",
        PspSessionStatus::Succeeded => "succeeded",
        PspSessionStatus::Failed => "failed",
        PspSessionStatus::Expired => "expired",
    }
}

async fn find_session(
    connector: &dyn Connector,
    payment: &Unposted<'_>,
) -> Result<Option<PspSession>, PspError> {
    if let Some(token) = payment.psp_token {
        return with_retries(|| connector.session_status(token))
            .await
            .map(Some);
    }
    let sessions = with_retries(|| connector.sessions_by_reference(payment.payment_id)).await?;
    // The session the file names, else one that took the money, else the newest.
    let pick = sessions
        .iter()
        .position(|s| s.psp_reference.as_deref() == Some(payment.psp_reference))
        .or_else(|| {
            sessions
                .iter()
                .position(|s| s.status == PspSessionStatus::Succeeded)
        })
        .or_else(|| sessions.len().checked_sub(1));
    Ok(pick.map(|index| sessions[index].clone()))
}

async fn with_retries<'a, T, F>(call: F) -> Result<T, PspError>
where
    F: Fn() -> crate::psp::PspFuture<'a, T>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(PspError::Retryable(reason)) if attempt < PSP_ATTEMPTS => {
                tracing::debug!(%reason, attempt, "reconciliation: PSP call failed, retrying");
                tokio::time::sleep(Duration::from_millis(PSP_BACKOFF_MS * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Auto-healing a `chargeback` or `chargeback_reversal` line the ledger lacks: the dispute's
/// webhook was lost. Ask the PSP for the dispute (`psp_dispute_id`, the line's PSP reference) —
/// or, for a PSP whose settlement is its word on disputes (Adyen: no API tells a dispute), take
/// the line itself — and apply it as its webhook would (`dispute::ApplyDispute`: the dispute
/// recorded, the funds withdrawn, and given back if won). The dispute names the payment as the
/// PSP knows it (Stripe: its PaymentIntent), resolved to ours as for a webhook. Answers what was
/// done, for the break's detail.
pub(crate) async fn heal_dispute(
    engine: &Engine,
    store: &Store,
    connector: &dyn Connector,
    line: &SettlementLine,
) -> String {
    let psp_dispute_id = line.psp_reference.as_str();
    let (mut update, source) = if connector.settlement_tells_disputes() {
        match dispute_of_line(line) {
            Some(update) => (update, "the settlement line says"),
            None => {
                return format!(
                    "dispute {psp_dispute_id}: the line names no payment or amount to book"
                );
            }
        }
    } else {
        match with_retries(|| connector.dispute_status(psp_dispute_id)).await {
            Ok(update) => (update, "asked the PSP"),
            Err(error) => {
                return format!("asking the PSP for dispute {psp_dispute_id} failed: {error}");
            }
        }
    };
    match crate::payin::repo::resolve_payment_id(store, connector.name(), &update.reference).await {
        Ok(Some(payment_id)) => update.reference = payment_id,
        Ok(None) => {}
        Err(error) => return format!("finding the payment of dispute {psp_dispute_id}: {error}"),
    }
    let status = update.status.as_str();
    let command = ApplyDispute {
        psp: connector.name().to_owned(),
        update,
    };
    match engine.submit(command).await {
        Ok(DisputeApplied::Moved { dispute_id, .. }) => {
            format!("{source}: dispute {psp_dispute_id} is {status}; booked as {dispute_id}")
        }
        Ok(DisputeApplied::Unchanged { dispute_id, status }) => {
            format!("{source}: dispute {dispute_id} is already {status}")
        }
        Ok(DisputeApplied::UnknownPayment) => {
            format!("{source}: dispute {psp_dispute_id} names a payment we do not have")
        }
        Err(error) => {
            format!("the PSP's word on dispute {psp_dispute_id} could not be applied: {error}")
        }
    }
}

/// Auto-healing a `chargeback_reversal` line that names its payment (Adyen's
/// `ChargebackReversed`), whose dispute `psp_dispute_id` was found through the payment
/// (`reconcile::dispute_lines`) but whose reinstatement the ledger lacks: its notification was
/// lost. The settlement is the PSP's word: the dispute moves to `won` (from `lost` too) and its
/// reinstatement is booked once (`dispute::ApplyReversal`). Answers what was done.
pub(crate) async fn heal_reversal(
    engine: &Engine,
    connector: &dyn Connector,
    psp_dispute_id: &str,
    line: &SettlementLine,
) -> String {
    if !connector.settlement_tells_disputes() {
        return format!(
            "{} does not take its settlement as its word on disputes",
            connector.name()
        );
    }
    let command = ApplyReversal {
        psp: connector.name().to_owned(),
        update: DisputeUpdate {
            psp_dispute_id: psp_dispute_id.to_owned(),
            reference: line.merchant_reference.clone(),
            amount_minor: line.gross_minor.abs(),
            currency: line.currency.clone(),
            reason: "chargeback".to_owned(),
            status: DisputeStatus::Won,
        },
    };
    match engine.submit(command).await {
        Ok(DisputeApplied::Moved { dispute_id, .. }) => format!(
            "the settlement line says: payment {}'s dispute {psp_dispute_id} was reversed; \
             booked {dispute_id} as won",
            line.merchant_reference
        ),
        Ok(DisputeApplied::Unchanged { dispute_id, status }) => {
            format!("the settlement line says: dispute {dispute_id} is already {status}")
        }
        Ok(DisputeApplied::UnknownPayment) => format!(
            "the settlement line names payment {}, which we do not have",
            line.merchant_reference
        ),
        Err(error) => {
            format!("the reversal of dispute {psp_dispute_id} could not be booked: {error}")
        }
    }
}

/// A `chargeback` (funds withdrawn: `needs_response`) or `chargeback_reversal` (given back:
/// `won`) line as the PSP's word on its dispute: the dispute is the line's PSP reference, the
/// payment its merchant reference, the amount its gross.
fn dispute_of_line(line: &SettlementLine) -> Option<DisputeUpdate> {
    let status = match line.kind {
        LineType::Chargeback => DisputeStatus::NeedsResponse,
        LineType::ChargebackReversal => DisputeStatus::Won,
        _ => return None,
    };
    if line.merchant_reference.is_empty() || line.gross_minor == 0 {
        return None;
    }
    Some(DisputeUpdate {
        psp_dispute_id: line.psp_reference.clone(),
        reference: line.merchant_reference.clone(),
        amount_minor: line.gross_minor.abs(),
        currency: line.currency.clone(),
        // The report does not say the network's reason.
        reason: "chargeback".to_owned(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: LineType, merchant_reference: &str, gross_minor: i64) -> SettlementLine {
        SettlementLine {
            line_no: 1,
            psp_reference: "8825408195409505".into(),
            merchant_reference: merchant_reference.into(),
            kind,
            created_at_ms: 0,
            currency: "USD".into(),
            gross_minor,
            fee_minor: 750,
            net_minor: gross_minor - 750,
            batch: "1".into(),
            dispute_by_payment: false,
        }
    }

    #[test]
    fn a_chargeback_line_is_the_dispute_it_withdrew() {
        let update = dispute_of_line(&line(LineType::Chargeback, "pay_1", -1750)).unwrap();
        assert_eq!(update.psp_dispute_id, "8825408195409505");
        assert_eq!(update.reference, "pay_1");
        assert_eq!((update.amount_minor, &update.currency[..]), (1750, "USD"));
        assert_eq!(update.status, DisputeStatus::NeedsResponse);
        let reversal = dispute_of_line(&line(LineType::ChargebackReversal, "pay_1", 1750)).unwrap();
        assert_eq!(reversal.status, DisputeStatus::Won);
        assert_eq!(
            dispute_of_line(&line(LineType::Chargeback, "", -1750)),
            None
        );
        assert_eq!(
            dispute_of_line(&line(LineType::Payment, "pay_1", 1750)),
            None
        );
    }
}
