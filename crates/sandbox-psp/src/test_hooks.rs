//! Test hooks that make the sandbox misbehave on demand, for the failures a client must ride
//! out: an outage (every `/v1/*` call but the test hooks answers 503 until it ends, counted),
//! answers that lie after the effect (the next N refund or payout creations take place, then
//! answer 401, as an expired or rotated key might on a retry the provider had already served),
//! and refusals before any effect (the next N refund or payout creations or look-ups by key
//! answer 401 and do nothing).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::errors::ApiError;
use crate::request::json_object;

/// The switches, shared by every request (atomics: the middleware never takes the store lock).
#[derive(Debug, Default)]
pub(crate) struct TestSwitches {
    outage: AtomicBool,
    /// Calls answered 503 since the outage began.
    refused_calls: AtomicU64,
    /// Refund or payout creations still to answer 401 after taking place.
    unauthorized_after_effect: AtomicU32,
    /// Refund or payout creations, and look-ups by key, still to answer 401 without effect.
    unauthorized_before_effect: AtomicU32,
}

/// `POST /v1/test/outage` `{"down": bool}`: starts or ends an outage; answers `{down,
/// refused_calls}` (the count restarts when an outage starts). `GET` answers the same.
pub(crate) async fn set_outage(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = json_object(&body)?;
    let down = body
        .get("down")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::invalid_field("down must be true or false"))?;
    let switches = &app.switches;
    if down && !switches.outage.swap(true, Ordering::SeqCst) {
        switches.refused_calls.store(0, Ordering::SeqCst);
    }
    if !down {
        switches.outage.store(false, Ordering::SeqCst);
    }
    Ok(outage_json(&app))
}

/// `GET /v1/test/outage`.
pub(crate) async fn get_outage(State(app): State<AppState>) -> Json<Value> {
    outage_json(&app)
}

fn outage_json(app: &AppState) -> Json<Value> {
    Json(json!({
        "down": app.switches.outage.load(Ordering::SeqCst),
        "refused_calls": app.switches.refused_calls.load(Ordering::SeqCst),
    }))
}

/// `POST /v1/test/unauthorized_after_effect` `{"count": N}` (0..=100): the next N refund or
/// payout creations take place and then answer 401 `invalid_api_key`.
pub(crate) async fn set_unauthorized_after_effect(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let count = count_of(&body)?;
    app.switches
        .unauthorized_after_effect
        .store(count, Ordering::SeqCst);
    Ok(Json(json!({ "count": count })))
}

/// `POST /v1/test/unauthorized_before_effect` `{"count": N}` (0..=100): the next N refund or
/// payout creations, and look-ups of one by idempotency key, answer 401 `invalid_api_key`
/// without doing anything (a key that really is wrong).
pub(crate) async fn set_unauthorized_before_effect(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let count = count_of(&body)?;
    app.switches
        .unauthorized_before_effect
        .store(count, Ordering::SeqCst);
    Ok(Json(json!({ "count": count })))
}

fn count_of(body: &Bytes) -> Result<u32, ApiError> {
    let body = json_object(body)?;
    let count = body
        .get("count")
        .and_then(Value::as_u64)
        .filter(|count| *count <= 100)
        .ok_or_else(|| ApiError::invalid_field("count must be an integer from 0 to 100"))?;
    Ok(u32::try_from(count).unwrap_or(100))
}

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Middleware on `/v1/*`, outside the key check: the outage, then the 401s.
pub(crate) async fn apply_switches(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let switches = &app.switches;
    if path.starts_with("/test/") || path.starts_with("/v1/test/") {
        return next.run(request).await;
    }
    if switches.outage.load(Ordering::SeqCst) {
        switches.refused_calls.fetch_add(1, Ordering::SeqCst);
        return ApiError::outage().into_response();
    }
    let money_route = path.ends_with("/refunds") || path.ends_with("/payouts");
    let creates_money_movement = request.method() == Method::POST && money_route;
    let looks_up_by_key = request.method() == Method::GET
        && money_route
        && request
            .uri()
            .query()
            .is_some_and(|q| q.contains("idempotency_key="));
    if (creates_money_movement || looks_up_by_key) && take_one(&switches.unauthorized_before_effect)
    {
        tracing::debug!(%path, "sandbox PSP: answering 401 before any effect");
        return ApiError::unauthorized().into_response();
    }
    if !creates_money_movement {
        return next.run(request).await;
    }
    let answer = next.run(request).await;
    if answer.status().is_success() && take_one(&switches.unauthorized_after_effect) {
        tracing::debug!(%path, "sandbox PSP: answering 401 after the effect");
        return ApiError::unauthorized().into_response();
    }
    answer
}
