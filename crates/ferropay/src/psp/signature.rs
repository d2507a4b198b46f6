//! Webhook signatures in the contract's scheme: header `t=<unix s>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<raw body>")>`, checked on the raw body in constant time, with a 300 s tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WebhookError;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How far a webhook's timestamp may be from now, in seconds.
pub const TOLERANCE_S: i64 = 300;

/// Verifies `header` against `body`. Several `v1=` entries are allowed (secret rotation).
pub fn verify(
    secret: &Secret,
    header: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    check(secret.expose(), header, body, TOLERANCE_S, now_s)
}

/// The scheme itself, for any secret and tolerance: the PSP's webhooks to us, and ours to
/// merchants (`crate::webhooks::signature`), are signed the same way. Any one `v1` matching
/// passes; compared in constant time.
pub(crate) fn check(
    secret: &str,
    header: &str,
    body: &[u8],
    tolerance_s: i64,
    now_s: i64,
) -> Result<(), WebhookError> {
    let mut timestamp_s: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp_s = Some(
                    value
                        .parse()
                        .map_err(|_| WebhookError::MalformedSignature)?,
                );
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| WebhookError::MalformedSignature)?);
            }
            _ => {}
        }
    }
    let timestamp_s = timestamp_s.ok_or(WebhookError::MalformedSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    let skew_s = now_s.saturating_sub(timestamp_s);
    if skew_s.saturating_abs() > tolerance_s {
        return Err(WebhookError::StaleTimestamp(skew_s));
    }
    let mac = signed_mac(secret, timestamp_s, body);
    if signatures
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The header value for `body` signed at `timestamp_s` (used by tests and tools).
pub fn sign(secret: &Secret, timestamp_s: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp_s},v1={}",
        signature_hex(secret.expose(), timestamp_s, body)
    )
}

/// One `v1` value: hex HMAC-SHA256(secret, "<t>.<body>").
pub(crate) fn signature_hex(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    hex::encode(
        signed_mac(secret, timestamp_s, body)
            .finalize()
            .into_bytes(),
    )
}

fn signed_mac(secret: &str, timestamp_s: i64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bodies_verify_and_others_do_not() {
        let secret = Secret::new("whsec_test");
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(&secret, 1_000, body);
        assert_eq!(verify(&secret, Some(&header), body, 1_000), Ok(()));
        assert_eq!(verify(&secret, Some(&header), body, 1_299), Ok(()));
        assert_eq!(
            verify(&secret, Some(&header), body, 1_301),
            Err(WebhookError::StaleTimestamp(301))
        );
        assert_eq!(
            verify(&secret, Some(&header), br#"{"id":"evt_2"}"#, 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&Secret::new("other"), Some(&header), body, 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&secret, None, body, 1_000),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify(&secret, Some("t=abc,v1=00"), body, 1_000),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(
            verify(&secret, Some("t=1000"), body, 1_000),
            Err(WebhookError::MalformedSignature)
        );
    }
}
