//! Adyen's standard notifications (`NotificationRequest` → `notificationItems[].
//! NotificationRequestItem`) as ferropay's events, each item verified by its HMAC first. Adyen
//! has no event id: an item is identified by `eventCode:pspReference:success`, so a notification
//! sent again changes nothing.
//!
//! | `eventCode` | `success` | ferropay |
//! |---|---|---|
//! | `AUTHORISATION` | `true` | payment succeeded (the merchant account captures immediately) |
//! | `AUTHORISATION` | `false` | recorded: the Pay by Link page lets the shopper try again |
//! | `CAPTURE` | `true` | payment succeeded (same as its authorisation; applied once) |
//! | `CANCELLATION`, `TECHNICAL_CANCEL` | `true` | payment failed (`cancelled`) |
//! | `OFFER_CLOSED`, `EXPIRE` | `true` | payment expired |
//! | `REFUND` | `true` / `false` | refund succeeded / failed |
//! | `REFUND_FAILED`, `REFUNDED_REVERSED` | any | refund failed |
//! | `NOTIFICATION_OF_CHARGEBACK`, `CHARGEBACK`, `REQUEST_FOR_INFORMATION` | any | dispute `needs_response` |
//! | `PREARBITRATION_OPEN`, `INFORMATION_SUPPLIED` | any | dispute `under_review` |
//! | `CHARGEBACK_REVERSED`, `PREARBITRATION_WON` | any | dispute `won` |
//! | `SECOND_CHARGEBACK`, `PREARBITRATION_LOST` | any | dispute `lost` |
//! | anything else | | recorded |

use serde_json::Value;

use super::hmac;
use crate::psp::{
    DisputeStatus, DisputeUpdate, PaymentUpdate, PspEvent, PspEventKind, PspOutcome,
    SettlementUpdate, WebhookError,
};

/// Verifies every item of a notification request and parses it.
pub fn parse(hex_key: &str, body: &[u8], now_s: i64) -> Result<Vec<PspEvent>, WebhookError> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(e.to_string()))?;
    let items = request["notificationItems"]
        .as_array()
        .ok_or_else(|| WebhookError::MalformedBody("`notificationItems` is missing".into()))?;
    let mut events = Vec::with_capacity(items.len());
    for (index, wrapper) in items.iter().enumerate() {
        let item = &wrapper["NotificationRequestItem"];
        if !item.is_object() {
            return Err(WebhookError::MalformedBody(format!(
                "notificationItems[{index}] has no NotificationRequestItem"
            )));
        }
        hmac::verify(hex_key, item)?;
        events.push(event_of(item, index, now_s)?);
    }
    Ok(events)
}

fn event_of(item: &Value, index: usize, now_s: i64) -> Result<PspEvent, WebhookError> {
    let field = |name: &str| -> Result<&str, WebhookError> {
        item[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                WebhookError::MalformedBody(format!("notificationItems[{index}].{name} is missing"))
            })
    };
    let code = field("eventCode")?;
    let psp_reference = field("pspReference")?;
    let success = match field("success")? {
        "true" => true,
        "false" => false,
        other => {
            return Err(WebhookError::MalformedBody(format!(
                "notificationItems[{index}].success is `{other}`"
            )));
        }
    };
    let merchant_reference = item["merchantReference"].as_str().unwrap_or_default();
    let original = item["originalReference"].as_str().map(str::to_owned);
    let amount_minor = item["amount"]["value"].as_i64();
    let currency = item["amount"]["currency"].as_str().map(str::to_owned);
    let payment = |outcome: PspOutcome, failure: Option<&str>| {
        PspEventKind::Payment(PaymentUpdate {
            reference: merchant_reference.to_owned(),
            outcome,
            psp_reference: Some(original.clone().unwrap_or_else(|| psp_reference.to_owned())),
            amount_minor,
            currency: currency.clone(),
            failure_code: failure.map(str::to_owned),
        })
    };
    let refund = |succeeded: bool| {
        PspEventKind::Refund(SettlementUpdate {
            reference: merchant_reference.to_owned(),
            succeeded,
            psp_id: Some(psp_reference.to_owned()),
            amount_minor,
            currency: currency.clone(),
            failure_code: (!succeeded).then(|| {
                item["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .unwrap_or("refund_failed")
                    .to_owned()
            }),
        })
    };
    let dispute = |status: DisputeStatus| -> Result<PspEventKind, WebhookError> {
        let missing = |what: &str| {
            WebhookError::MalformedBody(format!(
                "notificationItems[{index}]: a {code} without {what}"
            ))
        };
        Ok(PspEventKind::Dispute(DisputeUpdate {
            psp_dispute_id: psp_reference.to_owned(),
            reference: Some(merchant_reference)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| missing("merchantReference"))?
                .to_owned(),
            amount_minor: amount_minor.ok_or_else(|| missing("amount.value"))?,
            currency: currency.clone().ok_or_else(|| missing("amount.currency"))?,
            reason: item["additionalData"]["chargebackReasonCode"]
                .as_str()
                .or_else(|| item["reason"].as_str())
                .unwrap_or_default()
                .trim()
                .to_owned(),
            status,
        }))
    };
    let kind = match (code, success) {
        ("AUTHORISATION" | "CAPTURE", true) => payment(PspOutcome::Succeeded, None),
        ("CANCELLATION" | "TECHNICAL_CANCEL", true) => {
            payment(PspOutcome::Failed, Some("cancelled"))
        }
        ("OFFER_CLOSED" | "EXPIRE", true) => payment(PspOutcome::Expired, None),
        ("REFUND", succeeded) => refund(succeeded),
        ("REFUND_FAILED" | "REFUNDED_REVERSED", _) => refund(false),
        ("NOTIFICATION_OF_CHARGEBACK" | "CHARGEBACK" | "REQUEST_FOR_INFORMATION", _) => {
            dispute(DisputeStatus::NeedsResponse)?
        }
        ("PREARBITRATION_OPEN" | "INFORMATION_SUPPLIED", _) => dispute(DisputeStatus::UnderReview)?,
        ("CHARGEBACK_REVERSED" | "PREARBITRATION_WON", _) => dispute(DisputeStatus::Won)?,
        ("SECOND_CHARGEBACK" | "PREARBITRATION_LOST", _) => dispute(DisputeStatus::Lost)?,
        _ => PspEventKind::Other,
    };
    let created_s = item["eventDate"]
        .as_str()
        .and_then(|at| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(now_s, |at| at.unix_timestamp());
    Ok(PspEvent {
        id: format!("{code}:{psp_reference}:{success}"),
        event_type: code.to_owned(),
        created_s,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

    fn request(items: Vec<Value>) -> Vec<u8> {
        let items: Vec<Value> = items
            .into_iter()
            .map(|mut item| {
                let signature = hmac::sign(KEY, &item).unwrap();
                item["additionalData"] = json!({"hmacSignature": signature});
                json!({"NotificationRequestItem": item})
            })
            .collect();
        json!({"live": "false", "notificationItems": items})
            .to_string()
            .into_bytes()
    }

    fn item(code: &str, success: &str, reference: &str) -> Value {
        json!({"pspReference": "QFQTPCQ8HXSKGK82", "merchantAccountCode": "Shop",
            "merchantReference": reference, "amount": {"value": 1750, "currency": "EUR"},
            "eventCode": code, "eventDate": "2026-11-24T10:00:00+01:00", "success": success})
    }

    #[test]
    fn the_event_table() {
        let events = parse(
            KEY,
            &request(vec![
                item("AUTHORISATION", "true", "pay_1"),
                item("AUTHORISATION", "false", "pay_2"),
                item("REFUND", "false", "rf_1"),
                item("CHARGEBACK", "true", "pay_1"),
                item("REPORT_AVAILABLE", "true", ""),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(events.len(), 5);
        assert!(matches!(events[0].kind, PspEventKind::Payment(ref u)
            if u.outcome == PspOutcome::Succeeded && u.reference == "pay_1"
            && u.psp_reference.as_deref() == Some("QFQTPCQ8HXSKGK82")));
        assert_eq!(events[0].id, "AUTHORISATION:QFQTPCQ8HXSKGK82:true");
        assert_eq!(events[0].created_s, 1_795_510_800);
        assert_eq!(events[1].kind, PspEventKind::Other);
        assert!(matches!(events[2].kind, PspEventKind::Refund(ref u) if !u.succeeded));
        assert!(
            matches!(events[3].kind, PspEventKind::Dispute(ref d) if d.status == DisputeStatus::NeedsResponse && d.reference == "pay_1")
        );
        assert_eq!(events[4].kind, PspEventKind::Other);
    }

    #[test]
    fn one_forged_item_refuses_the_request() {
        let mut body: Value =
            serde_json::from_slice(&request(vec![item("AUTHORISATION", "true", "pay_1")])).unwrap();
        body["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = json!(1);
        let error = parse(KEY, body.to_string().as_bytes(), 0).unwrap_err();
        assert_eq!(error, WebhookError::BadSignature);
        assert!(parse(KEY, b"{}", 0).is_err());
    }
}
