//! Seller payouts through Adyen's Balance Platform (Transfers API v4): an `internal` transfer
//! from the platform's balance account to the seller's balance account (`BA…`, registered with
//! ferropay), with our payout id as `reference` and `Idempotency-Key`. Its own API credential
//! (the TransferService role) and its own webhooks (`balancePlatform.transfer.created|updated`),
//! signed over the raw body with their own HMAC key in the `HmacSignature` header.
//!
//! | transfer `status` | ferropay payout |
//! |---|---|
//! | `received`, `authorised`, `pending`, other in-flight states | `in_transit` (asked again later) |
//! | `booked` | `paid` |
//! | `refused`, `failed`, `error`, `cancelled`, `returned` | `failed` (the money goes back to the wallet) |
//!
//! "Was it made?" (`payout_by_key`): `GET /transfers?balanceAccountId=…&reference={payout id}`
//! over the last [`LOOKUP_WINDOW_DAYS`] days (Adyen needs `createdSince` and `createdUntil`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::psp::{PspEvent, PspEventKind, SettlementUpdate, WebhookError};
use crate::secret::Secret;

/// How far back `payout_by_key` looks for a transfer (longer than any payout's retries).
pub const LOOKUP_WINDOW_DAYS: i64 = 30;

/// Where and how ferropay sends payouts through Adyen.
#[derive(Clone, Debug)]
pub struct AdyenPayoutsConfig {
    /// `https://balanceplatform-api-test.adyen.com/btl/v4` in test mode.
    pub transfers_base: String,
    /// The Transfers API credential's key (its own, with the TransferService role).
    pub api_key: Secret,
    /// The platform's balance account the payouts leave from (`BA…`).
    pub balance_account_id: String,
    /// The Balance Platform webhooks' HMAC key, hex.
    pub hmac_key: Secret,
}

/// The header the Balance Platform's webhooks carry their signature in.
pub const SIGNATURE_HEADER: &str = "HmacSignature";

/// The test environment's Transfers API.
pub const TEST_TRANSFERS_BASE: &str = "https://balanceplatform-api-test.adyen.com/btl/v4";

/// `POST /transfers`'s body for a payout.
pub fn transfer_body(
    config: &AdyenPayoutsConfig,
    payout_id: &str,
    destination: &str,
    amount_minor: i64,
    currency: &str,
) -> Value {
    json!({
        "amount": {"value": amount_minor, "currency": currency},
        "balanceAccountId": config.balance_account_id,
        "category": "internal",
        "counterparty": {"balanceAccountId": destination},
        "reference": payout_id,
        "referenceForBeneficiary": payout_id,
        "description": format!("ferropay payout {payout_id}"),
    })
}

/// Whether a transfer `status` is final: `Some(true)` booked, `Some(false)` failed, `None` in
/// flight.
pub fn transfer_settled(status: &str) -> Option<bool> {
    match status {
        "booked" => Some(true),
        "refused" | "failed" | "error" | "cancelled" | "returned" => Some(false),
        _ => None,
    }
}

/// A transfer object (`Transfer` or `TransferData`) as a payout's end, once it has ended.
pub fn transfer_update(transfer: &Value) -> Option<SettlementUpdate> {
    let status = transfer["status"].as_str()?;
    let succeeded = transfer_settled(status)?;
    Some(SettlementUpdate {
        reference: transfer["reference"].as_str()?.to_owned(),
        succeeded,
        psp_id: transfer["id"].as_str().map(str::to_owned),
        amount_minor: transfer["amount"]["value"].as_i64(),
        currency: transfer["amount"]["currency"].as_str().map(str::to_owned),
        failure_code: (!succeeded).then(|| {
            transfer["reason"]
                .as_str()
                .filter(|r| !r.is_empty() && *r != "approved")
                .unwrap_or(status)
                .to_owned()
        }),
    })
}

/// Whether a webhook body is a Balance Platform webhook (`{"type": "balancePlatform.…"}`) rather
/// than a standard notification.
pub fn is_balance_platform(body: &Value) -> bool {
    body["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("balancePlatform."))
}

/// Base64(HMAC-SHA256(hex key, raw body)): the `HmacSignature` header.
pub fn sign(hex_key: &str, body: &[u8]) -> Result<String, WebhookError> {
    Ok(STANDARD.encode(mac(hex_key, body)?.finalize().into_bytes()))
}

fn mac(hex_key: &str, body: &[u8]) -> Result<Hmac<Sha256>, WebhookError> {
    let key = hex::decode(hex_key).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(body);
    Ok(mac)
}

/// Verifies a Balance Platform webhook's `HmacSignature` on its raw body and parses it: a
/// transfer that ended (ours: it has a `reference`) settles its payout; anything else is
/// recorded. Its id is `{type}:{transfer id}:{status}` (the webhook has none of its own), so a
/// webhook sent again changes nothing.
pub fn parse(
    hex_key: &str,
    signature: Option<&str>,
    raw: &[u8],
    body: &Value,
    now_s: i64,
) -> Result<Vec<PspEvent>, WebhookError> {
    let signature = signature.ok_or(WebhookError::MissingSignature)?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| WebhookError::MalformedSignature)?;
    mac(hex_key, raw)?
        .verify_slice(&signature)
        .map_err(|_| WebhookError::BadSignature)?;
    let event_type = body["type"].as_str().unwrap_or_default();
    let data = &body["data"];
    let transfer_id = data["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| WebhookError::MalformedBody("`data.id` is missing".into()))?;
    let status = data["status"].as_str().unwrap_or_default();
    let created_s = body["timestamp"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(now_s, |t| t.unix_timestamp());
    let kind = if event_type.starts_with("balancePlatform.transfer.") {
        transfer_update(data).map_or(PspEventKind::Other, PspEventKind::Payout)
    } else {
        PspEventKind::Other
    };
    Ok(vec![PspEvent {
        id: format!("{event_type}:{transfer_id}:{status}"),
        event_type: event_type.to_owned(),
        created_s,
        kind,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

    #[test]
    fn the_status_table() {
        assert_eq!(transfer_settled("booked"), Some(true));
        for failed in ["refused", "failed", "error", "cancelled", "returned"] {
            assert_eq!(transfer_settled(failed), Some(false), "{failed}");
        }
        for pending in ["received", "authorised", "pendingApproval"] {
            assert_eq!(transfer_settled(pending), None, "{pending}");
        }
    }

    #[test]
    fn a_signed_transfer_webhook_settles_its_payout_and_a_forged_one_is_refused() {
        let body = json!({"type": "balancePlatform.transfer.updated", "environment": "test",
            "timestamp": "2026-12-07T10:00:00+01:00",
            "data": {"id": "48TYZO5ZVURJ2FCW", "status": "booked", "reference": "pout_1",
                     "amount": {"value": 1500, "currency": "USD"}, "category": "internal"}});
        let raw = body.to_string();
        let signature = sign(KEY, raw.as_bytes()).unwrap();
        let events = parse(KEY, Some(&signature), raw.as_bytes(), &body, 0).unwrap();
        let PspEventKind::Payout(update) = &events[0].kind else {
            panic!("{events:?}")
        };
        assert!(update.succeeded);
        assert_eq!(update.reference, "pout_1");
        assert_eq!(
            events[0].id,
            "balancePlatform.transfer.updated:48TYZO5ZVURJ2FCW:booked"
        );
        let tampered = raw.replace("1500", "1");
        assert_eq!(
            parse(KEY, Some(&signature), tampered.as_bytes(), &body, 0),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            parse(KEY, None, raw.as_bytes(), &body, 0),
            Err(WebhookError::MissingSignature)
        );
    }
}
