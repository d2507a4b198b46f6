//! Idempotency keys of the `POST /v1/*` routes: the first answer of a key is recorded with its
//! request body; the same key and body replay it, the same key with another body is refused.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::errors::ApiError;

/// Longest accepted `Idempotency-Key`, in characters.
const KEY_MAX_CHARS: usize = 255;

/// The query of a lookup by key (`GET /v1/refunds?idempotency_key=K`, `GET /v1/payouts?…`):
/// what the `POST` with that key created, if it took effect.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ByKey {
    idempotency_key: Option<String>,
}

impl ByKey {
    /// The key, or 400 when it is missing or empty.
    pub(crate) fn key(self) -> Result<String, ApiError> {
        self.idempotency_key
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::invalid_field("idempotency_key is required"))
    }
}

/// Which route a key belongs to: the same key may be used once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    PaymentSessions,
    Refunds,
    Payouts,
}

#[derive(Debug, Clone)]
pub(crate) struct SavedAnswer {
    status: StatusCode,
    body: Value,
}

impl SavedAnswer {
    /// The recorded answer again, marked as a replay.
    pub(crate) fn replay(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        response
    }
}

struct Record {
    /// The parsed request body; JSON objects compare equal whatever their keys' order.
    request: Value,
    answer: SavedAnswer,
}

#[derive(Default)]
pub(crate) struct IdempotencyRecords {
    records: HashMap<(Scope, String), Record>,
}

/// What a key says about a request.
pub(crate) enum Seen {
    /// First use: go ahead, then `record` the answer.
    New,
    /// Same key, same body: answer this.
    Replay(SavedAnswer),
    /// Same key, another body.
    Reused,
}

impl IdempotencyRecords {
    pub(crate) fn check(&self, scope: Scope, key: &str, request: &Value) -> Seen {
        match self.records.get(&(scope, key.to_owned())) {
            None => Seen::New,
            Some(record) if record.request == *request => Seen::Replay(record.answer.clone()),
            Some(_) => Seen::Reused,
        }
    }

    /// The id of what a key's request created (its recorded 2xx answer's `id`), if it created
    /// something: how a client that lost the answer finds out whether its call took effect.
    pub(crate) fn created_id(&self, scope: Scope, key: &str) -> Option<String> {
        let record = self.records.get(&(scope, key.to_owned()))?;
        if !record.answer.status.is_success() {
            return None;
        }
        record.answer.body.get("id")?.as_str().map(str::to_owned)
    }

    pub(crate) fn record(
        &mut self,
        scope: Scope,
        key: String,
        request: Value,
        status: StatusCode,
        body: Value,
    ) {
        let answer = SavedAnswer { status, body };
        self.records
            .insert((scope, key), Record { request, answer });
    }
}

/// The `Idempotency-Key` header: required, 1–255 characters.
pub(crate) fn key_from(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::invalid_request(
            "missing_idempotency_key",
            "the Idempotency-Key header is required",
        ));
    };
    let key = value.to_str().map_err(|_| {
        ApiError::invalid_request(
            "invalid_idempotency_key",
            "the Idempotency-Key header must be visible ASCII",
        )
    })?;
    let chars = key.chars().count();
    if chars == 0 || chars > KEY_MAX_CHARS {
        return Err(ApiError::invalid_request(
            "invalid_idempotency_key",
            format!("the Idempotency-Key header must have 1 to {KEY_MAX_CHARS} characters"),
        ));
    }
    Ok(key.to_owned())
}
