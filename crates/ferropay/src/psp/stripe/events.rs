//! Stripe's webhook events (an `event` object: `id`, `type`, `created`, `data.object`) as
//! ferropay's [`PspEvent`]s: `checkout.session.*` move payments, refund events settle refunds,
//! `transfer.created` settles payouts, `charge.dispute.*` are disputes. Other types are
//! recorded and acknowledged.

use serde_json::Value;

use super::status::{self, SessionEvent};
use super::{PAYMENT_KEY, PAYOUT_KEY, REFUND_KEY};
use crate::psp::{
    DisputeUpdate, PaymentUpdate, PspEvent, PspEventKind, PspOutcome, PspSessionStatus,
    SettlementUpdate, WebhookError,
};

/// Parses a verified event body.
pub fn parse(body: &[u8]) -> Result<PspEvent, WebhookError> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(e.to_string()))?;
    let malformed = |what: &str| WebhookError::MalformedBody(what.to_owned());
    let id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed("`id` is missing"))?;
    let event_type = event["type"]
        .as_str()
        .ok_or_else(|| malformed("`type` is missing"))?;
    let created_s = event["created"]
        .as_i64()
        .ok_or_else(|| malformed("`created` is missing"))?;
    let object = &event["data"]["object"];
    if !object.is_object() {
        return Err(malformed("`data.object` is missing"));
    }
    let kind = if let Some(said) = status::session_event(event_type) {
        session_kind(object, said)?
    } else if status::REFUND_EVENTS.contains(&event_type) {
        refund_update(object).map_or(PspEventKind::Other, PspEventKind::Refund)
    } else if event_type == "transfer.created" {
        transfer_update(object).map_or(PspEventKind::Other, PspEventKind::Payout)
    } else if event_type.starts_with("charge.dispute.") {
        dispute_update(object).map_or(PspEventKind::Other, PspEventKind::Dispute)
    } else {
        PspEventKind::Other
    };
    Ok(PspEvent {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        created_s,
        kind,
    })
}

fn session_kind(object: &Value, said: SessionEvent) -> Result<PspEventKind, WebhookError> {
    let reference = object["client_reference_id"]
        .as_str()
        .or_else(|| object["metadata"][PAYMENT_KEY].as_str());
    // A session that is not ours (made in the Dashboard, another integration): recorded.
    let Some(reference) = reference else {
        return Ok(PspEventKind::Other);
    };
    let session_status = match said {
        SessionEvent::Is(status) => Some(status),
        SessionEvent::FromObject => status::session_status(
            object["status"].as_str().unwrap_or_default(),
            object["payment_status"].as_str().unwrap_or_default(),
            None,
        ),
    };
    let outcome = match session_status {
        Some(PspSessionStatus::Processing) => PspOutcome::Processing,
        Some(PspSessionStatus::Succeeded) => PspOutcome::Succeeded,
        Some(PspSessionStatus::Failed) => PspOutcome::Failed,
        Some(PspSessionStatus::Expired) => PspOutcome::Expired,
        Some(PspSessionStatus::Open) | None => return Ok(PspEventKind::Other),
    };
    let intent = match &object["payment_intent"] {
        Value::String(id) => Some(id.clone()),
        Value::Object(intent) => intent.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    Ok(PspEventKind::Payment(PaymentUpdate {
        reference: reference.to_owned(),
        outcome,
        psp_reference: intent,
        amount_minor: object["amount_total"].as_i64(),
        currency: object["currency"].as_str().map(str::to_ascii_uppercase),
        failure_code: (outcome == PspOutcome::Failed).then(|| "payment_failed".to_owned()),
    }))
}

/// A refund object's end, if it has ended and is ours (it carries our refund id).
pub fn refund_update(refund: &Value) -> Option<SettlementUpdate> {
    let succeeded = status::refund_settled(refund["status"].as_str()?)?;
    Some(SettlementUpdate {
        reference: refund["metadata"][REFUND_KEY].as_str()?.to_owned(),
        succeeded,
        psp_id: refund["id"].as_str().map(str::to_owned),
        amount_minor: refund["amount"].as_i64(),
        currency: refund["currency"].as_str().map(str::to_ascii_uppercase),
        failure_code: (!succeeded).then(|| {
            refund["failure_reason"]
                .as_str()
                .unwrap_or("refund_failed")
                .to_owned()
        }),
    })
}

/// A transfer to a connected account that is ours (it carries our payout id): paid when it
/// exists and is not reversed in full.
pub fn transfer_update(transfer: &Value) -> Option<SettlementUpdate> {
    let reference = transfer["metadata"][PAYOUT_KEY].as_str()?;
    let succeeded = !transfer["reversed"].as_bool().unwrap_or(false);
    Some(SettlementUpdate {
        reference: reference.to_owned(),
        succeeded,
        psp_id: transfer["id"].as_str().map(str::to_owned),
        amount_minor: transfer["amount"].as_i64(),
        currency: transfer["currency"].as_str().map(str::to_ascii_uppercase),
        failure_code: (!succeeded).then(|| "transfer_reversed".to_owned()),
    })
}

/// A dispute: `reference` is the disputed PaymentIntent until ferropay resolves it to our payment
/// (a dispute carries no metadata of ours; `Ferropay::handle_webhook` finds the payment by its
/// PSP reference). Also what `GET /v1/disputes/{id}` answers.
pub fn dispute_update(object: &Value) -> Option<DisputeUpdate> {
    Some(DisputeUpdate {
        psp_dispute_id: object["id"].as_str()?.to_owned(),
        reference: object["metadata"][PAYMENT_KEY]
            .as_str()
            .or_else(|| object["payment_intent"].as_str())
            .or_else(|| object["charge"].as_str())?
            .to_owned(),
        amount_minor: object["amount"].as_i64()?,
        currency: object["currency"].as_str()?.to_ascii_uppercase(),
        reason: object["reason"].as_str().unwrap_or("general").to_owned(),
        status: status::dispute_status(object["status"].as_str()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psp::DisputeStatus;
    use serde_json::json;

    fn event(kind: &str, object: Value) -> Vec<u8> {
        json!({"id": "evt_1", "object": "event", "type": kind, "created": 1_700_000_000,
               "data": {"object": object}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn checkout_sessions_move_payments() {
        let session = json!({"id": "cs_test_1", "object": "checkout.session",
            "client_reference_id": "pay_1", "status": "complete", "payment_status": "paid",
            "payment_intent": "pi_1", "amount_total": 1750, "currency": "usd"});
        let parsed = parse(&event("checkout.session.completed", session.clone())).unwrap();
        let PspEventKind::Payment(update) = parsed.kind else {
            panic!("{parsed:?}")
        };
        assert_eq!(update.outcome, PspOutcome::Succeeded);
        assert_eq!(update.reference, "pay_1");
        assert_eq!(update.psp_reference.as_deref(), Some("pi_1"));
        assert_eq!(update.currency.as_deref(), Some("USD"));

        let mut unpaid = session.clone();
        unpaid["payment_status"] = json!("unpaid");
        let parsed = parse(&event("checkout.session.completed", unpaid.clone())).unwrap();
        assert!(
            matches!(parsed.kind, PspEventKind::Payment(ref u) if u.outcome == PspOutcome::Processing)
        );
        let parsed = parse(&event("checkout.session.async_payment_failed", unpaid)).unwrap();
        assert!(
            matches!(parsed.kind, PspEventKind::Payment(ref u) if u.outcome == PspOutcome::Failed)
        );
        let mut foreign = session;
        foreign["client_reference_id"] = Value::Null;
        let parsed = parse(&event("checkout.session.completed", foreign)).unwrap();
        assert_eq!(parsed.kind, PspEventKind::Other);
    }

    #[test]
    fn refunds_transfers_and_disputes() {
        let refund = json!({"id": "re_1", "object": "refund", "status": "succeeded",
            "amount": 500, "currency": "usd", "metadata": {"ferropay_refund_id": "rf_1"}});
        let parsed = parse(&event("refund.created", refund)).unwrap();
        assert!(
            matches!(parsed.kind, PspEventKind::Refund(ref u) if u.succeeded && u.reference == "rf_1")
        );
        let pending =
            json!({"id": "re_2", "status": "pending", "metadata": {"ferropay_refund_id": "rf_2"}});
        assert_eq!(
            parse(&event("refund.updated", pending)).unwrap().kind,
            PspEventKind::Other
        );
        let transfer = json!({"id": "tr_1", "object": "transfer", "amount": 900, "currency": "usd",
            "reversed": false, "metadata": {"ferropay_payout_id": "pout_1"}});
        assert!(matches!(
            parse(&event("transfer.created", transfer)).unwrap().kind,
            PspEventKind::Payout(ref u) if u.succeeded && u.reference == "pout_1"
        ));
        let dispute = json!({"id": "du_1", "object": "dispute", "amount": 1750, "currency": "usd",
            "charge": "ch_1", "payment_intent": "pi_1", "reason": "fraudulent",
            "status": "needs_response"});
        let PspEventKind::Dispute(update) = parse(&event("charge.dispute.created", dispute))
            .unwrap()
            .kind
        else {
            panic!("not a dispute")
        };
        assert_eq!(update.status, DisputeStatus::NeedsResponse);
        assert_eq!(update.reference, "pi_1");
        assert_eq!((update.amount_minor, &update.currency[..]), (1750, "USD"));
    }

    #[test]
    fn malformed_events_are_refused() {
        assert!(parse(b"{").is_err());
        assert!(parse(br#"{"id":"evt_1","type":"x","created":1}"#).is_err());
        assert!(parse(br#"{"type":"x","created":1,"data":{"object":{}}}"#).is_err());
    }
}
