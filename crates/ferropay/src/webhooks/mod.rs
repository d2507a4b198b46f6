//! Webhooks to merchants: every event of the outbox ([`crate::events`]) pushed to the HTTP
//! endpoints merchants register, signed, retried, logged. (The PSP's webhooks *to* ferropay
//! are [`crate::psp`]'s.)
//!
//! - [`endpoints`]: register, list, delete, roll the signing secret (old one valid 24 h).
//! - [`dispatch`]: the outbox → one delivery and one durable job per subscribed endpoint,
//!   in one transaction with the event's mark, so a crash loses none.
//! - [`deliver`]: the job: a signed POST within a timeout, each attempt logged, retried with
//!   backoff and jitter for 3 days; an endpoint failing that long is disabled. Redelivery.
//! - [`signature`]: `Ferropay-Signature` and [`verify`], for receivers.
//! - [`guard`]: no request to a loopback, private or link-local address unless allowed.

pub mod deliver;
pub mod dispatch;
pub mod endpoints;
pub mod guard;
pub mod signature;

pub use signature::{HEADER, SignatureError, sign, verify, verify_at};

use crate::jobs::RetryPolicy;

/// The job kind of one delivery.
pub const DELIVER_KIND: &str = "webhook.deliver";

/// Three days: how long a delivery is retried, and how long an endpoint may fail every attempt
/// before it is disabled.
pub const RETRY_WINDOW_MS: i64 = 3 * 24 * 3_600_000;

/// How webhooks to merchants are sent.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Send to loopback, private and link-local addresses too (development and tests).
    pub allow_private_urls: bool,
    /// How long one attempt may take.
    pub timeout_ms: u64,
    /// The wait after a failed attempt: exponential from `base_delay_ms` up to `max_delay_ms`,
    /// fully jittered (`max_attempts` is unused: the window bounds the retries).
    pub retry: RetryPolicy,
    /// How long a delivery is retried, and an endpoint may fail, before giving up.
    pub retry_window_ms: i64,
    /// How long the dispatcher waits when no event is waiting.
    pub dispatch_idle_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_urls: false,
            timeout_ms: 10_000,
            retry: RetryPolicy {
                base_delay_ms: 10_000,
                max_delay_ms: 3_600_000,
                max_attempts: u32::MAX,
                retry_window_ms: 0,
            },
            retry_window_ms: RETRY_WINDOW_MS,
            dispatch_idle_ms: 250,
        }
    }
}
