//! Adyen's HMAC signature of a standard notification item: Base64(HMAC-SHA256(hex-decoded key,
//! "pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success")),
//! absent fields as empty strings, sent in `additionalData.hmacSignature`. Compared in constant
//! time. Adyen's signature carries no timestamp: a replayed notification is caught by the
//! event's dedupe row instead.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::psp::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// The signed string of a `NotificationRequestItem`.
pub fn signed_payload(item: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => String::new(),
    };
    [
        text(&item["pspReference"]),
        text(&item["originalReference"]),
        text(&item["merchantAccountCode"]),
        text(&item["merchantReference"]),
        text(&item["amount"]["value"]),
        text(&item["amount"]["currency"]),
        text(&item["eventCode"]),
        text(&item["success"]),
    ]
    .join(":")
}

fn mac(hex_key: &str, item: &Value) -> Result<HmacSha256, WebhookError> {
    let key = hex::decode(hex_key).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(signed_payload(item).as_bytes());
    Ok(mac)
}

/// The signature of `item` under the hex key (tests and tools sign with it).
pub fn sign(hex_key: &str, item: &Value) -> Result<String, WebhookError> {
    Ok(STANDARD.encode(mac(hex_key, item)?.finalize().into_bytes()))
}

/// Checks `item`'s `additionalData.hmacSignature`.
pub fn verify(hex_key: &str, item: &Value) -> Result<(), WebhookError> {
    let signature = item["additionalData"]["hmacSignature"]
        .as_str()
        .ok_or(WebhookError::MissingSignature)?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| WebhookError::MalformedSignature)?;
    mac(hex_key, item)?
        .verify_slice(&signature)
        .map_err(|_| WebhookError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_items_verify_and_changed_ones_do_not() {
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        let mut item = json!({"pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704", "amount": {"value": 1130, "currency": "EUR"},
            "eventCode": "AUTHORISATION", "success": "true"});
        assert_eq!(
            signed_payload(&item),
            "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
        );
        let signature = sign(key, &item).unwrap();
        item["additionalData"] = json!({"hmacSignature": signature});
        assert_eq!(verify(key, &item), Ok(()));
        item["amount"]["value"] = json!(1131);
        assert_eq!(verify(key, &item), Err(WebhookError::BadSignature));
        item["additionalData"] = json!({});
        assert_eq!(verify(key, &item), Err(WebhookError::MissingSignature));
        item["additionalData"] = json!({"hmacSignature": "not base64!"});
        assert_eq!(verify(key, &item), Err(WebhookError::MalformedSignature));
    }
}
