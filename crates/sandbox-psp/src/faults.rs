//! Injected faults: latency and failures of `/v1/*` calls (as middleware), and the dice that
//! the webhook deliveries roll. Rates are probabilities in 0.0..=1.0 (clamped), not money.

use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use crate::AppState;
use crate::errors::ApiError;
use crate::listener::ConnTag;

/// Faults to inject. The default injects none.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added to every `/v1/*` call.
    pub latency_ms: u64,
    /// Share of `/v1/*` calls that fail, in four equal parts: answered 500 before the effect,
    /// connection dropped before the effect, answered 500 after the effect took place,
    /// connection dropped after the effect. A client must retry with its idempotency key.
    pub error_rate: f64,
    /// Share of webhook events delivered twice (same event id).
    pub webhook_duplicate_rate: f64,
    /// Share of webhook events whose first delivery attempt is dropped (not sent; delivered on
    /// a later retry).
    pub webhook_drop_rate: f64,
    /// Hold each webhook event a random 0..1000 ms before its first attempt, so that events
    /// arrive out of order.
    pub webhook_reorder: bool,
    /// Hold every webhook event this long before its first attempt: the buyer is back on the
    /// merchant's page before the merchant hears of the outcome, as happens with real PSPs.
    pub webhook_latency_ms: u64,
}

/// The longest a reordered webhook is held back.
const REORDER_HOLD_MAX_MS: u64 = 1_000;

/// True with probability `rate` (clamped to 0..=1; NaN never).
pub(crate) fn chance(rate: f64) -> bool {
    if rate.is_nan() || rate <= 0.0 {
        return false;
    }
    rate >= 1.0 || rand::rng().random::<f64>() < rate
}

/// A uniformly random count of milliseconds in `0..=max_ms`.
pub(crate) fn random_ms(max_ms: u64) -> u64 {
    rand::rng().random_range(0..=max_ms)
}

/// How long to hold a webhook event before its first attempt: the latency, plus a random
/// hold when reordering.
pub(crate) fn reorder_hold(faults: &Faults) -> Duration {
    let reorder_ms = if faults.webhook_reorder {
        random_ms(REORDER_HOLD_MAX_MS)
    } else {
        0
    };
    Duration::from_millis(faults.webhook_latency_ms.saturating_add(reorder_ms))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiFault {
    Error500Before,
    DropBefore,
    Error500After,
    DropAfter,
}

fn roll_api_fault(error_rate: f64) -> Option<ApiFault> {
    if !chance(error_rate) {
        return None;
    }
    let which: f64 = rand::rng().random();
    Some(if which < 0.25 {
        ApiFault::Error500Before
    } else if which < 0.5 {
        ApiFault::DropBefore
    } else if which < 0.75 {
        ApiFault::Error500After
    } else {
        ApiFault::DropAfter
    })
}

/// Middleware on `/v1/*`: latency first, then maybe a failure around the real handler.
pub(crate) async fn inject_api_faults(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let faults = &app.config.faults;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let Some(fault) = roll_api_fault(faults.error_rate) else {
        return next.run(request).await;
    };
    tracing::debug!(?fault, path = %request.uri().path(), "sandbox PSP: injecting an API fault");
    match fault {
        ApiFault::Error500Before => ApiError::injected().into_response(),
        ApiFault::DropBefore => {
            if let Some(ConnectInfo(connection)) =
                request.extensions().get::<ConnectInfo<ConnTag>>()
            {
                // Nothing happened, and the client hears nothing either.
                tracing::debug!(peer = %connection.peer(), "sandbox PSP: cutting the connection");
                connection.cut();
            }
            ApiError::injected().into_response()
        }
        ApiFault::Error500After => {
            let _effect = next.run(request).await;
            ApiError::injected().into_response()
        }
        ApiFault::DropAfter => {
            let connection = request.extensions().get::<ConnectInfo<ConnTag>>().cloned();
            let _effect = next.run(request).await;
            if let Some(ConnectInfo(connection)) = connection {
                // The answer below is never written: the connection fails on its first write.
                tracing::debug!(peer = %connection.peer(), "sandbox PSP: cutting the connection");
                connection.cut();
            }
            ApiError::injected().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_edges() {
        assert!(!chance(0.0));
        assert!(!chance(-1.0));
        assert!(!chance(f64::NAN));
        assert!(chance(1.0));
        assert!(chance(7.0));
    }

    #[test]
    fn api_faults_split_in_four_quarters() {
        let mut counts = [0u32; 4];
        for _ in 0..4_000 {
            match roll_api_fault(1.0) {
                Some(ApiFault::Error500Before) => counts[0] += 1,
                Some(ApiFault::DropBefore) => counts[1] += 1,
                Some(ApiFault::Error500After) => counts[2] += 1,
                Some(ApiFault::DropAfter) => counts[3] += 1,
                None => panic!("error_rate 1.0 must always fail"),
            }
        }
        for count in counts {
            assert!((800..1_200).contains(&count), "{counts:?}");
        }
        assert_eq!(roll_api_fault(0.0), None);
    }
}
