//! Webhook events: their signature (`Sandbox-Signature: t=…,v1=…`) and their delivery in
//! background tasks, retried with capped exponential backoff and jitter until a 2xx, with the
//! webhook faults (drop, duplicate, reorder) applied.

use std::time::Duration;

use axum::body::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::AppState;
use crate::clock::unix_now_s;
use crate::faults::{chance, random_ms, reorder_hold};
use crate::store::new_id;

/// One delivery attempt gives up after this long.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Sandbox-Signature` header value for `body` sent at `timestamp_s`:
/// `t=<timestamp_s>,v1=<hex HMAC-SHA256(secret, "<timestamp_s>.<body>")>`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this constructor cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={timestamp_s},v1={}", hex::encode(digest))
}

/// A webhook event; its body (and so its id) is fixed when it is created.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    id: String,
    kind: &'static str,
    body: Bytes,
    /// The merchant reference in `data.reference`, for the lost-webhooks test hook.
    reference: Option<String>,
}

impl Event {
    /// `{"id": "evt_…", "type": kind, "created": unix_s, "data": data}`.
    pub(crate) fn new(kind: &'static str, data: Value) -> Self {
        let id = new_id("evt_");
        let reference = data["reference"].as_str().map(str::to_owned);
        let envelope = json!({"id": id, "type": kind, "created": unix_now_s(), "data": data});
        let body = Bytes::from(envelope.to_string());
        Self {
            id,
            kind,
            body,
            reference,
        }
    }
}

/// Delivers `events` in the background, in the order given unless reordering is injected.
pub(crate) fn emit(app: &AppState, events: Vec<Event>) {
    if app.config.webhook_url.is_empty() {
        return;
    }
    let faults = &app.config.faults;
    for event in events {
        let lost = event
            .reference
            .as_ref()
            .is_some_and(|reference| app.store().lost_webhook_references.contains(reference));
        if lost {
            tracing::debug!(id = %event.id, kind = event.kind, "sandbox PSP: losing a webhook on request");
            continue;
        }
        let plan = DeliveryPlan {
            hold: reorder_hold(faults),
            drop_first_attempt: chance(faults.webhook_drop_rate),
            duplicate: chance(faults.webhook_duplicate_rate),
        };
        app.background.submit(deliver(app.clone(), event, plan));
    }
}

/// What the faults decided for one event.
#[derive(Debug, Clone, Copy)]
struct DeliveryPlan {
    hold: Duration,
    drop_first_attempt: bool,
    duplicate: bool,
}

async fn deliver(app: AppState, event: Event, plan: DeliveryPlan) {
    if !plan.hold.is_zero() {
        tokio::time::sleep(plan.hold).await;
    }
    let delivered = deliver_with_retries(&app, &event, plan.drop_first_attempt).await;
    if delivered && plan.duplicate {
        tracing::debug!(id = %event.id, "sandbox PSP: delivering a duplicate webhook");
        deliver_with_retries(&app, &event, false).await;
    }
}

/// Attempts until a 2xx or `webhook_max_attempts`; true if delivered.
async fn deliver_with_retries(app: &AppState, event: &Event, drop_first_attempt: bool) -> bool {
    let max_attempts = app.config.webhook_max_attempts.max(1);
    for attempt in 1..=max_attempts {
        if attempt == 1 && drop_first_attempt {
            tracing::debug!(id = %event.id, "sandbox PSP: dropping a webhook's first attempt");
        } else {
            match attempt_once(app, event).await {
                Ok(()) => return true,
                Err(reason) => tracing::debug!(
                    id = %event.id, kind = event.kind, attempt, %reason,
                    "sandbox PSP: webhook attempt failed"
                ),
            }
        }
        if attempt < max_attempts {
            tokio::time::sleep(retry_delay(
                app.config.webhook_retry_base_ms,
                app.config.webhook_retry_max_ms,
                attempt,
            ))
            .await;
        }
    }
    tracing::warn!(
        id = %event.id, kind = event.kind, attempts = max_attempts,
        "sandbox PSP: giving up on a webhook"
    );
    false
}

async fn attempt_once(app: &AppState, event: &Event) -> Result<(), String> {
    let signature = sign(&app.config.webhook_secret, unix_now_s(), &event.body);
    let response = app
        .http
        .post(&app.config.webhook_url)
        .header("content-type", "application/json")
        .header("sandbox-signature", signature)
        .body(event.body.clone())
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

/// The wait after failed attempt number `attempt` (1-based): `base_ms * 2^(attempt-1)`, capped
/// at `max_ms`, then jittered to a uniform 50–100 % of that.
fn retry_delay(base_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let exponential_ms = base_ms.saturating_mul(2u64.saturating_pow(attempt.saturating_sub(1)));
    let capped_ms = exponential_ms.min(max_ms);
    let half_ms = capped_ms / 2;
    Duration::from_millis(capped_ms - half_ms + random_ms(half_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1764000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", 1_764_000_000, br#"{"a":1}"#),
            "t=1764000000,v1=c862972147a4361237a5bcb4f74195e2e5d448641115622fe658a65985c5ae8c"
        );
    }

    #[test]
    fn retry_delays_double_and_cap() {
        for _ in 0..50 {
            let first = retry_delay(100, 1_000, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = retry_delay(100, 1_000, 3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = retry_delay(100, 1_000, 40).as_millis();
            assert!((500..=1_000).contains(&late), "{late}");
            let huge = retry_delay(u64::MAX, u64::MAX, u32::MAX);
            assert!(huge >= Duration::from_millis(u64::MAX / 2));
        }
    }
}
