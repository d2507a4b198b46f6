//! The `/v1/*` JSON routes for payment sessions, and what every `/v1/*` route shares: the
//! Bearer key check and the 404 fallback. Refunds and payouts have their own modules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::errors::ApiError;
use crate::idempotency::{self, Scope, Seen};
use crate::request::{Fields, json_object};
use crate::sessions::{self, NewSession};

/// At most this many sessions are listed by `GET /v1/payment_sessions` (the newest).
const LIST_MAX: usize = 1_000;

/// Middleware on `/v1/*`: `Authorization: Bearer <api_key>`, compared in constant time.
pub(crate) async fn require_api_key(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let expected = app.config.api_key.as_bytes();
    if expected.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| {
            // The scheme's name is case-insensitive (RFC 7235).
            let (scheme, key) = value.as_bytes().split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(key)
        });
    match presented {
        Some(key) if constant_time_eq(key, expected) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Equality whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// `POST /v1/payment_sessions`.
pub(crate) async fn create_session(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let request = json_object(&body)?;
    let fields = Fields::of(&request)?;
    let new = NewSession {
        amount: fields.amount("amount")?,
        currency: fields.currency("currency")?,
        reference: fields.text("reference")?,
        return_url: fields.url("return_url")?,
    };
    let mut store = app.store();
    match store
        .idempotency
        .check(Scope::PaymentSessions, &key, &request)
    {
        Seen::Replay(answer) => return Ok(answer.replay()),
        Seen::Reused => return Err(ApiError::key_reused()),
        Seen::New => {}
    }
    let session = sessions::open(&mut store, &app, new);
    let answer = session.to_json();
    store.idempotency.record(
        Scope::PaymentSessions,
        key,
        request,
        StatusCode::CREATED,
        answer.clone(),
    );
    drop(store);
    tracing::debug!(token = %session.token, reference = %session.reference, "sandbox PSP: session opened");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/payment_sessions/{token}`.
pub(crate) async fn get_session(
    State(app): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store();
    store
        .sessions
        .get(&token)
        .map(|session| Json(session.to_json()))
        .ok_or_else(|| ApiError::not_found("no payment session has this token"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    reference: Option<String>,
}

/// `GET /v1/payment_sessions[?reference=R]` → `{"data": [...]}`, oldest first.
pub(crate) async fn list_sessions(
    State(app): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Json<Value> {
    let store = app.store();
    let mut listed: Vec<Value> = match &query.reference {
        Some(reference) => store
            .tokens_by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|token| store.sessions.get(token))
            .map(|session| session.to_json())
            .collect(),
        None => {
            // Tokens are UUIDv7s: their order is the order they were made in.
            let mut tokens: Vec<&String> = store.sessions.keys().collect();
            tokens.sort_unstable();
            let skip = tokens.len().saturating_sub(LIST_MAX);
            tokens
                .into_iter()
                .skip(skip)
                .filter_map(|token| store.sessions.get(token))
                .map(|session| session.to_json())
                .collect()
        }
    };
    drop(store);
    if listed.len() > LIST_MAX {
        listed.drain(..listed.len() - LIST_MAX);
    }
    Json(json!({ "data": listed }))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"sk_a", b"sk_a"));
        assert!(!constant_time_eq(b"sk_a", b"sk_b"));
        assert!(!constant_time_eq(b"sk_a", b"sk_ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
