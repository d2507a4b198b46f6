//! The signature on every webhook ferropay sends: header
//! `Ferropay-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, with one
//! `v1` per live secret (two while a roll is in progress). [`verify`] is what a receiver calls.

use std::time::Duration;

use crate::psp::WebhookError;
use crate::psp::signature::{check, signature_hex};

/// The header the signature travels in.
pub const HEADER: &str = "Ferropay-Signature";

/// Why a webhook did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed (expected t=<unix s>,v1=<hex>)")]
    Malformed,
    #[error("the signature's timestamp is {0} s away from now, more than the tolerance")]
    Stale(i64),
    #[error("no v1 signature matches the body with this secret")]
    Mismatch,
}

/// The header value for `body` signed at `timestamp_s` with each of `secrets`.
pub fn sign(secrets: &[&str], timestamp_s: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp_s}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature_hex(secret, timestamp_s, body));
    }
    header
}

/// Checks a webhook from ferropay: `header` is the `Ferropay-Signature` value, `body` the raw
/// request body (before any parsing), `tolerance` how far the signing time may be from now
/// (5 minutes is usual: it bounds how long a captured request can be replayed). Compares in
/// constant time; any one `v1` matching passes (two are sent while a secret is rolled).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    verify_at(secret, header, body, tolerance, now_s)
}

/// [`verify`] as of `now_s` (Unix seconds). The scheme is the PSP webhooks' own
/// (`crate::psp::signature`), with its errors in a receiver's words.
pub fn verify_at(
    secret: &str,
    header: &str,
    body: &[u8],
    tolerance: Duration,
    now_s: i64,
) -> Result<(), SignatureError> {
    let tolerance_s = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    check(secret, header, body, tolerance_s, now_s).map_err(|error| match error {
        WebhookError::StaleTimestamp(skew_s) => SignatureError::Stale(skew_s),
        WebhookError::BadSignature => SignatureError::Mismatch,
        _ => SignatureError::Malformed,
    })
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    type HmacSha256 = Hmac<Sha256>;

    const MINUTES_5: Duration = Duration::from_secs(300);

    #[test]
    fn a_signed_body_verifies_with_either_secret_of_a_roll_and_nothing_else() {
        let header = sign(&["whsec_new", "whsec_old"], 1_000, b"{\"a\":1}");
        assert!(verify_at("whsec_new", &header, b"{\"a\":1}", MINUTES_5, 1_010).is_ok());
        assert!(verify_at("whsec_old", &header, b"{\"a\":1}", MINUTES_5, 1_010).is_ok());
        assert_eq!(
            verify_at("whsec_other", &header, b"{\"a\":1}", MINUTES_5, 1_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_at("whsec_new", &header, b"{\"a\":2}", MINUTES_5, 1_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_at("whsec_new", &header, b"{\"a\":1}", MINUTES_5, 1_301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify_at("whsec_new", "v1=zz", b"", MINUTES_5, 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_mac_is_of_timestamp_dot_body() {
        // HMAC-SHA256("k", "1.b"), as any receiver computes it.
        let header = sign(&["k"], 1, b"b");
        let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
        mac.update(b"1.b");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("t=1,v1={expected}"));
    }
}
