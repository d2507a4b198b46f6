// The API's request bodies as the routes read them: the `JsonBody` extractor on any bytes, for
// each body type, then the use case's own checks where they need no database (a payment's).
// Oracles: no panic; a refused body is a 4xx in the JSON error shape naming a field; an
// accepted payment has positive order amounts that sum to its total.
//
// Shared by the fuzz target `fuzz/fuzz_targets/api_bodies.rs` and the normal test suite
// (`crates/ferropay-cli/tests/api/fuzz_corpus.rs`), which runs the committed corpus and every
// regression input in `fuzz/regressions/api_bodies/` through it.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::IntoResponse;
use ferropay::payin::request::{CreatePaymentInput, NewPayment};
use ferropay::payout::PayoutInput;
use ferropay::refund::RefundInput;
use ferropay_http::extract::JsonBody;
use serde::de::DeserializeOwned;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// Reads `data` as the route for `T` would; a refusal must be a 4xx JSON error with a field.
fn extract<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a request");
    match runtime().block_on(JsonBody::<T>::from_request(request, &())) {
        Ok(body) => Some(body.typed),
        Err(rejection) => {
            let response = rejection.into_response();
            let status = response.status();
            assert!(status.is_client_error(), "refused with {status}");
            let bytes = runtime()
                .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                .expect("the error body");
            let error: serde_json::Value =
                serde_json::from_slice(&bytes).expect("the error body is JSON");
            assert!(error["error"]["code"].is_string(), "{error}");
            if status.as_u16() == 400 {
                assert!(
                    error["error"]["field"].is_string(),
                    "no field named: {error}"
                );
            }
            None
        }
    }
}

pub fn check(data: &[u8]) {
    if let Some(input) = extract::<CreatePaymentInput>(data)
        && let Ok(payment) = NewPayment::parse(input)
    {
        let mut sum = 0_i64;
        for order in &payment.orders {
            assert!(order.amount.get() > 0);
            sum = sum.checked_add(order.amount.get()).expect("the total fits");
        }
        assert_eq!(sum, payment.total.get());
    }
    let _ = extract::<RefundInput>(data);
    let _ = extract::<PayoutInput>(data);
}
