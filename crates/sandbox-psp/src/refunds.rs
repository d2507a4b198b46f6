//! Refunds (`POST /v1/refunds`, `GET /v1/refunds/{id}`): accepted as `pending`, settled
//! `settle_delay_ms` later against what remains refundable on the payment, then announced by a
//! `refund.succeeded` or `refund.failed` webhook.

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
use crate::sessions::SessionStatus;
use crate::store::new_id;
use crate::webhooks::{self, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub(crate) id: String,
    /// The refunded payment's session token and PSP reference.
    pub(crate) payment_token: String,
    psp_reference: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// The merchant's refund id.
    pub(crate) reference: String,
    pub(crate) status: RefundStatus,
    failure_code: Option<&'static str>,
    created_unix_s: i64,
    /// When it settled (unix s): the day whose settlement file carries a succeeded refund.
    pub(crate) settled_unix_s: Option<i64>,
}

impl Refund {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status.as_str(),
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "payment_token": self.payment_token,
            "psp_reference": self.psp_reference,
            "failure_code": self.failure_code,
            "created": self.created_unix_s,
        })
    }

    fn event(&self) -> Event {
        let kind = match self.status {
            RefundStatus::Failed => "refund.failed",
            RefundStatus::Pending | RefundStatus::Succeeded => "refund.succeeded",
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
                "psp_reference": self.psp_reference,
                "payment_token": self.payment_token,
            }),
        )
    }
}

/// `POST /v1/refunds` `{payment_token | psp_reference, amount, currency, reference}`.
pub(crate) async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let request = json_object(&body)?;
    let fields = Fields::of(&request)?;
    let payment = match (
        fields.optional_text("payment_token")?,
        fields.optional_text("psp_reference")?,
    ) {
        (Some(token), _) => token,
        (None, Some(psp_reference)) => psp_reference,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "payment_token or psp_reference is required",
            ));
        }
    };
    let amount = fields.amount("amount")?;
    let currency = fields.currency("currency")?;
    let reference = fields.text("reference")?;

    let mut store = app.store();
    match store.idempotency.check(Scope::Refunds, &key, &request) {
        Seen::Replay(answer) => return Ok(answer.replay()),
        Seen::Reused => return Err(ApiError::key_reused()),
        Seen::New => {}
    }
    let Some(session) = store.session_by_token_or_psp_reference(&payment) else {
        return Err(ApiError::not_found(
            "no payment has this payment_token or psp_reference",
        ));
    };
    if session.currency != currency {
        return Err(ApiError::invalid_field(format!(
            "currency must be the payment's currency, {}",
            session.currency
        )));
    }
    let refund = Refund {
        id: new_id("re_"),
        payment_token: session.token.clone(),
        psp_reference: session.psp_reference.clone(),
        amount,
        currency,
        reference,
        status: RefundStatus::Pending,
        failure_code: None,
        created_unix_s: unix_now_s(),
        settled_unix_s: None,
    };
    let answer = refund.to_json();
    store.refunds.insert(refund.id.clone(), refund.clone());
    store.idempotency.record(
        Scope::Refunds,
        key,
        request,
        StatusCode::CREATED,
        answer.clone(),
    );
    drop(store);
    app.background.submit(settle(app.clone(), refund.id));
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/refunds?idempotency_key=K` → `{"data": [refund]}`: the refund that the `POST` with
/// this key created, or an empty list when that call never took effect.
pub(crate) async fn find_by_key(
    State(app): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<idempotency::ByKey>,
) -> Result<Json<Value>, ApiError> {
    let key = query.key()?;
    let store = app.store();
    let found: Vec<Value> = store
        .idempotency
        .created_id(Scope::Refunds, &key)
        .and_then(|id| store.refunds.get(&id))
        .map(|refund| refund.to_json())
        .into_iter()
        .collect();
    Ok(Json(json!({ "data": found })))
}

/// `GET /v1/refunds/{id}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store();
    store
        .refunds
        .get(&id)
        .map(|refund| Json(refund.to_json()))
        .ok_or_else(|| ApiError::not_found("no refund has this id"))
}

async fn settle(app: AppState, id: String) {
    tokio::time::sleep(Duration::from_millis(app.config.settle_delay_ms)).await;
    let event = {
        let mut store = app.store();
        let Some(refund) = store.refunds.get(&id) else {
            return;
        };
        if refund.status != RefundStatus::Pending {
            return;
        }
        let (token, amount) = (refund.payment_token.clone(), refund.amount);
        let failure_code = match store.sessions.get_mut(&token) {
            Some(session) if session.status != SessionStatus::Succeeded => {
                Some("payment_not_succeeded")
            }
            Some(session) => match session.amount_refunded.checked_add(amount) {
                Some(total) if total <= session.amount => {
                    session.amount_refunded = total;
                    None
                }
                _ => Some("amount_exceeds_refundable"),
            },
            None => Some("payment_not_succeeded"),
        };
        let Some(refund) = store.refunds.get_mut(&id) else {
            return;
        };
        refund.status = if failure_code.is_some() {
            RefundStatus::Failed
        } else {
            RefundStatus::Succeeded
        };
        refund.failure_code = failure_code;
        refund.settled_unix_s = Some(unix_now_s());
        refund.event()
    };
    webhooks::emit(&app, vec![event]);
}
