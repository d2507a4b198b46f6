//! Local fakes of real PSPs, each a real HTTP server (axum) that follows the provider's
//! published API: its paths, encodings, field names, signatures, statuses and error shapes, with
//! objects built from the providers' own example payloads (`shared/providers/`, read at run
//! time, not copied). What each fake follows is listed in docs/connectors.md.
//!
//! - [`stripe`]: Checkout Sessions and their hosted page, PaymentIntents, refunds, Connect
//!   transfers, disputes, payouts and balance transactions, `Stripe-Signature` webhooks;
//! - [`adyen`]: Pay by Link and its page, refunds by PSP reference, HMAC-signed notifications
//!   answered `[accepted]`, the Settlement details report;
//! - here: what both share: the fixtures, the injected faults, webhook delivery.

pub mod adyen;
pub mod stripe;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// `shared/providers/` (the providers' published API descriptions): `FERROPAY_PROVIDERS_DIR`, or
/// the nearest `shared/providers` beside an ancestor of this crate, or the workplace's
/// `/work/shared/providers`. Not found is a failure, never a skip: the connectors' tests are
/// only as good as the published examples the fakes answer with.
pub fn providers_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FERROPAY_PROVIDERS_DIR") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|dir| dir.join("shared/providers"))
        // The workplace's copy, wherever the clone is (CI clones elsewhere).
        .chain([PathBuf::from("/work/shared/providers")])
        .find(|dir| dir.is_dir())
        .expect("the providers' API descriptions: set FERROPAY_PROVIDERS_DIR or put shared/providers beside the clone")
}

/// A JSON file under `shared/providers/`, read once per process.
pub fn provider_json(relative: &'static str) -> &'static Value {
    static CACHE: OnceLock<Mutex<Vec<(&'static str, &'static Value)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap();
    if let Some((_, value)) = cache.iter().find(|(name, _)| *name == relative) {
        return value;
    }
    let path = providers_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: &'static Value = Box::leak(Box::new(serde_json::from_str(&text).unwrap()));
    cache.push((relative, value));
    value
}

/// Faults a test injects into a fake: the provider's real failure modes.
#[derive(Default)]
pub struct Faults {
    /// Answer this many API requests with 429 (the provider's rate limiting).
    pub rate_limited: AtomicU32,
    /// Answer this many API requests with a 5xx.
    pub server_errors: AtomicU32,
    /// Send every webhook twice.
    pub duplicate_webhooks: AtomicBool,
    /// Keep webhooks until [`Webhooks::release_reversed`] (then they arrive out of order).
    pub hold_webhooks: AtomicBool,
    /// Never send webhooks (lost: the poller or reconciliation must heal).
    pub drop_webhooks: AtomicBool,
    /// Make the effect of this many POSTs (a refund, a transfer), then answer 401 (as an
    /// expired or rotated key may answer a retry the provider had already served).
    pub unauthorized_after_effect: AtomicU32,
    /// Answer this many POSTs 401 without any effect.
    pub unauthorized_before_effect: AtomicU32,
    /// Called with the POST's path once its effect is made and before it is answered (a crash
    /// test kills ferropay there: the provider accepted, ferropay never stored the answer).
    #[allow(clippy::type_complexity)]
    pub on_accepted: Mutex<Option<Box<dyn Fn(&str) + Send + Sync>>>,
}

/// Takes one from `counter` if any is left.
pub fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// Takes one injected API failure, if any is left: `Some(429)` or `Some(500)`.
    pub fn take_api_fault(&self) -> Option<u16> {
        if take(&self.rate_limited) {
            Some(429)
        } else if take(&self.server_errors) {
            Some(500)
        } else {
            None
        }
    }

    /// Runs the crash hook, if a test set one, for an accepted POST to `path`.
    pub fn accepted(&self, path: &str) {
        if let Some(hook) = self.on_accepted.lock().unwrap().as_ref() {
            hook(path);
        }
    }
}

/// A webhook as the fake sends it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Webhook delivery to ferropay, with the faults applied; retried (as providers do) until a
/// 2xx, within bounds.
#[derive(Default)]
pub struct Webhooks {
    pub url: OnceLock<String>,
    held: Mutex<Vec<Outgoing>>,
    /// Every webhook sent (or held), for tests that replay one.
    pub sent: Mutex<Vec<Outgoing>>,
}

impl Webhooks {
    pub fn send(&self, faults: &Faults, webhook: Outgoing) {
        self.sent.lock().unwrap().push(webhook.clone());
        if faults.drop_webhooks.load(Ordering::SeqCst) {
            return;
        }
        if faults.hold_webhooks.load(Ordering::SeqCst) {
            self.held.lock().unwrap().push(webhook);
            return;
        }
        let copies = if faults.duplicate_webhooks.load(Ordering::SeqCst) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.spawn_delivery(webhook.clone());
        }
    }

    /// Sends the held webhooks, newest first.
    pub async fn release_reversed(&self) {
        let held: Vec<Outgoing> = std::mem::take(&mut *self.held.lock().unwrap());
        for webhook in held.into_iter().rev() {
            deliver(self.url.get().expect("webhook URL set"), &webhook).await;
        }
    }

    fn spawn_delivery(&self, webhook: Outgoing) {
        let url = self.url.get().expect("webhook URL set").clone();
        tokio::spawn(async move { deliver(&url, &webhook).await });
    }
}

/// Posts a webhook until ferropay answers 2xx (at most 50 tries, 100 ms apart).
pub async fn deliver(url: &str, webhook: &Outgoing) -> u16 {
    let client = reqwest::Client::new();
    let mut status = 0;
    for _ in 0..50 {
        let mut request = client.post(url).body(webhook.body.clone());
        for (name, value) in &webhook.headers {
            request = request.header(name, value);
        }
        if let Ok(response) = request.send().await {
            status = response.status().as_u16();
            if response.status().is_success() {
                return status;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

/// A random id with the provider's prefix (`cs_test_…`, `pi_…`).
pub fn random_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    crate::helpers::now_s()
}
