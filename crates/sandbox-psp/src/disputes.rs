//! Disputes (chargebacks): the buyer's bank takes a succeeded payment back. A dispute is opened
//! `dispute_delay_ms` after a payment with card `4000 0000 0000 2685` succeeds (reason
//! `fraudulent`, the whole amount; webhook `dispute.created`), or at once by the test hook
//! `POST /v1/test/chargebacks` (any succeeded payment, no webhook: a dispute whose webhook was
//! lost). The funds leave the merchant's balance when it opens (a `chargeback` line in that
//! day's settlement file, with the chargeback fee). The merchant may answer with evidence
//! (`POST /v1/disputes/{id}/evidence`: `needs_response` → `under_review`); a test decides it
//! (`POST /v1/test/disputes/{id}/decide`): `won` gives the funds back (a `chargeback_reversal`
//! line, no fee; webhook `dispute.won`), `lost` keeps them (webhook `dispute.lost`).

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
use crate::idempotency;
use crate::request::{Fields, json_object};
use crate::sessions::SessionStatus;
use crate::store::{Store, new_id};
use crate::webhooks::{self, Event};

/// The longest evidence text taken, in characters.
const EVIDENCE_MAX_CHARS: usize = 20_000;

/// The card network's reason given for a dispute opened by card `4000 0000 0000 2685`.
const DEFAULT_REASON: &str = "fraudulent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisputeStatus {
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
}

impl DisputeStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::NeedsResponse => "needs_response",
            Self::UnderReview => "under_review",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    fn is_open(self) -> bool {
        matches!(self, Self::NeedsResponse | Self::UnderReview)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Dispute {
    pub(crate) id: String,
    payment_token: String,
    /// The disputed payment's PSP reference and merchant reference.
    psp_reference: String,
    pub(crate) reference: String,
    pub(crate) currency: String,
    pub(crate) amount: i64,
    reason: String,
    pub(crate) status: DisputeStatus,
    evidence: Option<String>,
    /// When the funds were withdrawn (the `chargeback` line's day).
    pub(crate) created_unix_s: i64,
    /// When it was decided (a won dispute's `chargeback_reversal` line's day).
    pub(crate) decided_unix_s: Option<i64>,
}

impl Dispute {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "payment_token": self.payment_token,
            "psp_reference": self.psp_reference,
            "reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "reason": self.reason,
            "status": self.status.as_str(),
            "evidence_submitted": self.evidence.is_some(),
            "created": self.created_unix_s,
        })
    }

    fn event(&self, kind: &'static str) -> Event {
        Event::new(kind, self.to_json())
    }
}

/// Opens a dispute on the succeeded session `token` (the whole amount when `amount` is `None`):
/// the dispute, or why not.
pub(crate) fn open(
    store: &mut Store,
    token_or_psp_reference: &str,
    amount: Option<i64>,
    reason: &str,
) -> Result<Dispute, ApiError> {
    let Some(session) = store.session_by_token_or_psp_reference(token_or_psp_reference) else {
        return Err(ApiError::not_found(
            "no payment has this payment_token or psp_reference",
        ));
    };
    if session.status != SessionStatus::Succeeded {
        return Err(ApiError::invalid_field(
            "only a succeeded payment can be charged back",
        ));
    }
    let amount = amount.unwrap_or(session.amount);
    if amount > session.amount {
        return Err(ApiError::invalid_field(
            "amount must not exceed the payment's amount",
        ));
    }
    let dispute = Dispute {
        id: new_id("dp_"),
        payment_token: session.token.clone(),
        psp_reference: session.psp_reference.clone(),
        reference: session.reference.clone(),
        currency: session.currency.clone(),
        amount,
        reason: reason.to_owned(),
        status: DisputeStatus::NeedsResponse,
        evidence: None,
        created_unix_s: unix_now_s(),
        decided_unix_s: None,
    };
    store.disputes.push(dispute.clone());
    Ok(dispute)
}

/// After the dispute delay, the buyer's bank disputes the payment paid with the disputing card.
pub(crate) async fn open_later(app: AppState, token: String) {
    tokio::time::sleep(Duration::from_millis(app.config.dispute_delay_ms)).await;
    let opened = open(&mut app.store(), &token, None, DEFAULT_REASON);
    match opened {
        Ok(dispute) => webhooks::emit(&app, vec![dispute.event("dispute.created")]),
        Err(error) => tracing::debug!(?error, %token, "sandbox PSP: no dispute opened"),
    }
}

/// `GET /v1/disputes/{id}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store();
    store
        .disputes
        .iter()
        .find(|d| d.id == id)
        .map(|d| Json(d.to_json()))
        .ok_or_else(|| ApiError::not_found("no dispute has this id"))
}

/// `POST /v1/disputes/{id}/evidence` `{text}` (with an `Idempotency-Key`): an open dispute goes
/// `under_review`; sending evidence again while it is under review replaces it.
pub(crate) async fn submit_evidence(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    idempotency::key_from(&headers)?;
    let request = json_object(&body)?;
    let text = request
        .get("text")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty() && text.chars().count() <= EVIDENCE_MAX_CHARS)
        .ok_or_else(|| {
            ApiError::invalid_field(format!(
                "text must be a string of 1 to {EVIDENCE_MAX_CHARS} characters"
            ))
        })?
        .to_owned();
    let mut store = app.store();
    let dispute = store
        .disputes
        .iter_mut()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found("no dispute has this id"))?;
    if !dispute.status.is_open() {
        return Err(ApiError::invalid_field(format!(
            "the dispute is {}: it takes no more evidence",
            dispute.status.as_str()
        )));
    }
    dispute.evidence = Some(text);
    dispute.status = DisputeStatus::UnderReview;
    Ok(Json(dispute.to_json()))
}

/// `POST /v1/test/disputes/{id}/decide` `{"outcome": "won" | "lost"}`: the card network decides
/// an open dispute; its webhook follows.
pub(crate) async fn decide(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = json_object(&body)?;
    let outcome = match request.get("outcome").and_then(Value::as_str) {
        Some("won") => DisputeStatus::Won,
        Some("lost") => DisputeStatus::Lost,
        _ => return Err(ApiError::invalid_field("outcome must be won or lost")),
    };
    let event = {
        let mut store = app.store();
        let dispute = store
            .disputes
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| ApiError::not_found("no dispute has this id"))?;
        if !dispute.status.is_open() {
            return Err(ApiError::invalid_field(format!(
                "the dispute is already {}",
                dispute.status.as_str()
            )));
        }
        dispute.status = outcome;
        dispute.decided_unix_s = Some(unix_now_s());
        let kind = if outcome == DisputeStatus::Won {
            "dispute.won"
        } else {
            "dispute.lost"
        };
        (dispute.event(kind), dispute.to_json())
    };
    webhooks::emit(&app, vec![event.0]);
    Ok((StatusCode::OK, Json(event.1)).into_response())
}

/// `POST /v1/test/chargebacks` `{payment_token | psp_reference, amount?, reason?, notify?}`: a
/// dispute opened now on a succeeded payment. Its `dispute.created` webhook is sent only with
/// `"notify": true`; otherwise it is as if lost, and only the settlement file (and
/// `GET /v1/disputes/{id}`) tell of it.
pub(crate) async fn create_chargeback(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_object(&body)?;
    let fields = Fields::of(&body)?;
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
    let amount = match body.get("amount") {
        None | Some(Value::Null) => None,
        Some(_) => Some(fields.amount("amount")?),
    };
    let reason = fields
        .optional_text("reason")?
        .unwrap_or_else(|| DEFAULT_REASON.to_owned());
    let notify = match body.get("notify") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(notify)) => *notify,
        Some(_) => return Err(ApiError::invalid_field("notify must be true or false")),
    };
    let dispute = open(&mut app.store(), &payment, amount, &reason)?;
    if notify {
        webhooks::emit(&app, vec![dispute.event("dispute.created")]);
    }
    Ok((StatusCode::CREATED, Json(dispute.to_json())).into_response())
}
