//! Payouts to sellers (`POST /v1/payouts`, `GET /v1/payouts/{id}`): accepted as `pending`, then
//! `settle_delay_ms` later `paid` (webhook `payout.paid`), or `failed` with `account_closed`
//! (webhook `payout.failed`) when the destination starts with `closed_`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::clock::unix_now_s;
use crate::errors::ApiError;
use crate::idempotency::{self, Scope, Seen};
use crate::request::{Fields, json_object};
use crate::store::new_id;
use crate::webhooks::{self, Event};

/// Destinations (seller ids) with this prefix are closed accounts: their payouts fail.
const CLOSED_DESTINATION_PREFIX: &str = "closed_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayoutStatus {
    Pending,
    Paid,
    Failed,
}

impl PayoutStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Payout {
    id: String,
    amount: i64,
    currency: String,
    /// The seller being paid.
    destination: String,
    /// The merchant's payout id.
    reference: String,
    status: PayoutStatus,
    failure_code: Option<&'static str>,
    created_unix_s: i64,
}

impl Payout {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status.as_str(),
            "amount": self.amount,
            "currency": self.currency,
            "destination": self.destination,
            "reference": self.reference,
            "failure_code": self.failure_code,
            "created": self.created_unix_s,
        })
    }

    fn event(&self) -> Event {
        let kind = match self.status {
            PayoutStatus::Failed => "payout.failed",
            PayoutStatus::Pending | PayoutStatus::Paid => "payout.paid",
        };
        Event::new(
            kind,
            json!({
                "id": self.id,
                "reference": self.reference,
                "amount": self.amount,
                "currency": self.currency,
                "status": self.status.as_str(),
                "failure_code": self.failure_code,
                "destination": self.destination,
            }),
        )
    }
}

/// `POST /v1/payouts` `{amount, currency, destination, reference}`.
pub(crate) async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let request = json_object(&body)?;
    let fields = Fields::of(&request)?;
    let payout = Payout {
        id: new_id("po_"),
        amount: fields.amount("amount")?,
        currency: fields.currency("currency")?,
        destination: fields.text("destination")?,
        reference: fields.text("reference")?,
        status: PayoutStatus::Pending,
        failure_code: None,
        created_unix_s: unix_now_s(),
    };

    let mut store = app.store();
    match store.idempotency.check(Scope::Payouts, &key, &request) {
        Seen::Replay(answer) => return Ok(answer.replay()),
        Seen::Reused => return Err(ApiError::key_reused()),
        Seen::New => {}
    }
    let answer = payout.to_json();
    store.payouts.insert(payout.id.clone(), payout.clone());
    store.idempotency.record(
        Scope::Payouts,
        key,
        request,
        StatusCode::CREATED,
        answer.clone(),
    );
    drop(store);
    app.background.submit(settle(app.clone(), payout.id));
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/payouts?idempotency_key=K` → `{"data": [payout]}`: the payout that the `POST` with
/// this key created, or an empty list when that call never took effect.
pub(crate) async fn find_by_key(
    State(app): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<idempotency::ByKey>,
) -> Result<Json<Value>, ApiError> {
    let key = query.key()?;
    let store = app.store();
    let found: Vec<Value> = store
        .idempotency
        .created_id(Scope::Payouts, &key)
        .and_then(|id| store.payouts.get(&id))
        .map(|payout| payout.to_json())
        .into_iter()
        .collect();
    Ok(Json(json!({ "data": found })))
}

/// `GET /v1/payouts/{id}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store();
    store
        .payouts
        .get(&id)
        .map(|payout| Json(payout.to_json()))
        .ok_or_else(|| ApiError::not_found("no payout has this id"))
}

async fn settle(app: AppState, id: String) {
    tokio::time::sleep(Duration::from_millis(app.config.settle_delay_ms)).await;
    let event = {
        let mut store = app.store();
        let Some(payout) = store.payouts.get_mut(&id) else {
            return;
        };
        if payout.status != PayoutStatus::Pending {
            return;
        }
        if payout.destination.starts_with(CLOSED_DESTINATION_PREFIX) {
            payout.status = PayoutStatus::Failed;
            payout.failure_code = Some("account_closed");
        } else {
            payout.status = PayoutStatus::Paid;
        }
        payout.event()
    };
    webhooks::emit(&app, vec![event]);
}
