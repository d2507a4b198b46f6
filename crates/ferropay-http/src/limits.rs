//! What slow or greedy clients may take of a server, and what they get past it: the limits
//! ([`ServerLimits`]), the per-API-key rate limiter (governor's GCRA, 429 with `Retry-After`),
//! the in-flight request cap (tower's global concurrency limit with load shedding, 503 with
//! `Retry-After`), and the body-read deadline (408). The connection cap and the header-read
//! timeout are the accept loop's ([`crate::server`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ApiError, json_response, payload_too_large};

/// The server's limits; every one is a `ferropay serve` flag (README, "Limits").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a connection's opening, or the end of its previous answer, to the end of the next
    /// request's headers: a client idle or slow for longer is disconnected (the idle timeout
    /// and the header-read timeout in one).
    pub header_read_timeout_ms: u64,
    /// From the end of the headers to the end of the body: past it, 408 and the connection
    /// closes (a body trickled a byte at a time cannot hold a connection longer).
    pub body_read_timeout_ms: u64,
    /// Connections served at once. Past it a connection gets one answer, 503 with
    /// `Retry-After` (or `/healthz`'s own), and is closed; past a tenth more
    /// ([`crate::server::overflow_slots`]), it is closed unanswered. Keep it and that tenth
    /// under the process's file-descriptor limit, less the database pool's.
    pub max_connections: usize,
    /// API requests being handled at once; past it, 503 with `Retry-After`. `/healthz` and
    /// `/metrics` are not counted, and always answered.
    pub max_in_flight: usize,
    /// Requests per second one API key may make, sustained; past it, 429 with `Retry-After`.
    /// 0: no limit.
    pub rate_per_key_per_s: u32,
    /// Requests one API key may make at once above the sustained rate.
    pub rate_burst_per_key: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_connections: 768,
            max_in_flight: 512,
            rate_per_key_per_s: 500,
            rate_burst_per_key: 1_000,
        }
    }
}

/// Seconds a client is told to wait when the server is full.
pub const BUSY_RETRY_AFTER_S: u64 = 1;

/// The per-API-key limiter, handed to [`crate::extract::ApiKey`] in the request's extensions.
#[derive(Clone)]
pub struct KeyRateLimiter(Arc<DefaultKeyedRateLimiter<String>>);

impl KeyRateLimiter {
    /// `None` when `limits` sets no rate.
    pub fn new(limits: &ServerLimits) -> Option<Self> {
        let rate = NonZeroU32::new(limits.rate_per_key_per_s)?;
        let burst = NonZeroU32::new(limits.rate_burst_per_key.max(limits.rate_per_key_per_s))?;
        Some(Self(Arc::new(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ))))
    }

    /// Takes one request of `key_id`'s allowance, or says in how many seconds (at least 1) the
    /// next one will be allowed.
    pub fn check(&self, key_id: &str) -> Result<(), u64> {
        use governor::clock::Clock;
        self.0.check_key(&key_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.0.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// 503 in the contract's shape, for a full server. Counted, not logged: under a flood a log line
/// per refusal would be a second flood.
pub fn busy(what: &str) -> Response {
    metrics::counter!("ferropay_http_shed_total", "reason" => what.to_owned()).increment(1);
    let error = ferropay::Error::Unavailable {
        message: format!("{what}; try again shortly"),
        retry_after_s: BUSY_RETRY_AFTER_S,
    };
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, error.to_body().to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_S));
    response
}

/// The body read in full within `body_read_timeout_ms` and at most [`crate::MAX_BODY_BYTES`]
/// (a declared `Content-Length` over it is refused before a byte is read), then handed on.
pub async fn read_body_in_time(
    axum::extract::State(body_read_timeout): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let declared_bytes = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared_bytes.is_some_and(|bytes| bytes > crate::MAX_BODY_BYTES as u64) {
        return payload_too_large();
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        body_read_timeout,
        axum::body::to_bytes(body, crate::MAX_BODY_BYTES),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                return payload_too_large();
            }
            return ApiError::invalid("body", format!("could not be read: {error}"))
                .into_response();
        }
        Err(_) => return request_timeout(body_read_timeout),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// 408 in the contract's shape; the connection is closed after it.
fn request_timeout(body_read_timeout: Duration) -> Response {
    let body = serde_json::json!({"error": {
        "type": "invalid_request",
        "code": "request_timeout",
        "field": "body",
        "message": format!("the body did not arrive within {} ms", body_read_timeout.as_millis()),
    }});
    let mut response = json_response(StatusCode::REQUEST_TIMEOUT, body.to_string());
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_past_its_burst_waits_and_others_do_not() {
        let limiter = KeyRateLimiter::new(&ServerLimits {
            rate_per_key_per_s: 1,
            rate_burst_per_key: 3,
            ..ServerLimits::default()
        })
        .unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check("key_a"), Ok(()));
        }
        let wait_s = limiter.check("key_a").unwrap_err();
        assert!((1..=1).contains(&wait_s), "{wait_s}");
        assert_eq!(limiter.check("key_b"), Ok(()));
        assert!(
            KeyRateLimiter::new(&ServerLimits {
                rate_per_key_per_s: 0,
                ..ServerLimits::default()
            })
            .is_none()
        );
    }
}
