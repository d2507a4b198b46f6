//! The Stripe connector: pay-in through Checkout Sessions (Stripe's hosted page), refunds of
//! the session's PaymentIntent, seller payouts as Connect transfers to each seller's connected
//! account, webhooks signed with `Stripe-Signature`, and the day's settlement from the balance
//! transactions of Stripe's payouts to our bank.
//!
//! Requests are form-encoded (`line_items[0][price_data][currency]=usd`) with our id as the
//! `Idempotency-Key`; currencies are lower case at Stripe. Our payment id travels as
//! `client_reference_id` and in the metadata of the session and of its PaymentIntent
//! (`ferropay_payment_id`); refunds and transfers carry `ferropay_refund_id` /
//! `ferropay_payout_id`. Statuses map in [`status`]; events parse in [`events`]; the
//! settlement in [`report`].

pub mod events;
pub mod report;
pub mod status;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{
    Accepted, Connector, DisputeUpdate, MadeByKey, PayoutRequest, PspError, PspEvent, PspFuture,
    PspSession, PspSessionStatus, RefundRequest, SessionRequest, SettlementUpdate, WebhookError,
};
use crate::secret::Secret;

/// The connector's name in URLs (`/webhooks/psp/stripe`), accounts and `payments.psp`.
pub const NAME: &str = "stripe";

/// The metadata key that carries our payment id.
pub const PAYMENT_KEY: &str = "ferropay_payment_id";
/// The metadata key that carries our refund id.
pub const REFUND_KEY: &str = "ferropay_refund_id";
/// The metadata key that carries our payout id.
pub const PAYOUT_KEY: &str = "ferropay_payout_id";

/// The Stripe API version ferropay is written against (sent as `Stripe-Version`).
pub const API_VERSION: &str = "2024-06-20";

#[derive(Clone, Debug)]
pub struct StripeConfig {
    /// `sk_test_…` in test mode.
    pub secret_key: Secret,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret: Secret,
    /// `https://api.stripe.com` (test mode is chosen by the key); a fake's URL in tests.
    pub api_base: String,
    pub timeout_ms: u64,
    /// How far a webhook's `t=` may be from now (Stripe's libraries use 300 s).
    pub webhook_tolerance_s: i64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            secret_key: Secret::new(""),
            webhook_secret: Secret::new(""),
            api_base: "https://api.stripe.com".into(),
            timeout_ms: 10_000,
            webhook_tolerance_s: super::signature::TOLERANCE_S,
        }
    }
}

pub struct StripeConnector {
    config: StripeConfig,
    base: String,
    http: reqwest::Client,
}

/// Form fields, in order (Stripe's nested keys are spelt out: `metadata[key]`).
type Form = Vec<(String, String)>;

impl StripeConnector {
    pub fn new(config: StripeConfig) -> Result<Self, String> {
        if config.secret_key.expose().is_empty() {
            return Err("Stripe needs a secret key (FERROPAY_STRIPE_SECRET_KEY)".into());
        }
        if config.webhook_secret.expose().is_empty() {
            return Err("Stripe needs a webhook secret (FERROPAY_STRIPE_WEBHOOK_SECRET)".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| format!("the HTTP client for Stripe: {e}"))?;
        Ok(Self {
            base: config.api_base.trim_end_matches('/').to_owned(),
            config,
            http,
        })
    }

    /// `POST` a form with an idempotency key.
    async fn post(&self, path: &str, key: &str, form: &Form) -> Result<Value, PspError> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("Idempotency-Key", key)
                .form(form),
        )
        .await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PspError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    /// Sends with our key; the failure told apart by whether retrying can help. Stripe says so
    /// in `Stripe-Should-Retry` when it knows; otherwise 429, 409 (the same key in flight) and
    /// 5xx are passing, other 4xx are not.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, PspError> {
        let response = request
            .bearer_auth(self.config.secret_key.expose())
            .header("Stripe-Version", API_VERSION)
            .send()
            .await
            .map_err(|e| PspError::Retryable(format!("Stripe unreachable: {e}")))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let body = response
            .bytes()
            .await
            .map_err(|e| PspError::Retryable(format!("Stripe's answer cut off: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| PspError::Retryable(format!("unreadable Stripe answer: {e}")));
        }
        let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = format!(
            "Stripe answered {status}: {} ({})",
            error["error"]["message"].as_str().unwrap_or("no message"),
            error["error"]["type"].as_str().unwrap_or("no type"),
        );
        let retry = should_retry.unwrap_or(
            status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409,
        );
        Err(if retry {
            PspError::Retryable(message)
        } else {
            PspError::Permanent(message)
        })
    }

    /// The session with its PaymentIntent expanded.
    async fn session(&self, id: &str) -> Result<PspSession, PspError> {
        let object = self
            .get(
                &format!("/v1/checkout/sessions/{id}"),
                &[("expand[]", "payment_intent")],
            )
            .await?;
        session_of(&object)
    }

    /// The payment intent of a session (`pi_…`), for a refund of a payment whose intent we
    /// have not stored.
    async fn intent_of(&self, token: &str) -> Result<String, PspError> {
        self.session(token).await?.psp_reference.ok_or_else(|| {
            PspError::Permanent(format!("Stripe session {token} has no payment intent"))
        })
    }
}

/// A Checkout Session object as a [`PspSession`]; `payment_intent` may be an id or expanded.
pub(crate) fn session_of(object: &Value) -> Result<PspSession, PspError> {
    let text = |key: &str| object[key].as_str().map(str::to_owned);
    let id = text("id").ok_or_else(|| PspError::Retryable("a session without an id".into()))?;
    let intent = &object["payment_intent"];
    let (intent_id, intent_status) = match intent {
        Value::String(id) => (Some(id.clone()), None),
        Value::Object(_) => (
            intent["id"].as_str().map(str::to_owned),
            intent["status"].as_str(),
        ),
        _ => (None, None),
    };
    let session_status = object["status"].as_str().unwrap_or_default();
    let payment_status = object["payment_status"].as_str().unwrap_or_default();
    let status =
        status::session_status(session_status, payment_status, intent_status).ok_or_else(|| {
            PspError::Retryable(format!(
                "Stripe session {id} is `{session_status}`/`{payment_status}`, which ferropay does not know"
            ))
        })?;
    let failure_code = (status == PspSessionStatus::Failed).then(|| {
        intent["last_payment_error"]["code"]
            .as_str()
            .unwrap_or("payment_failed")
            .to_owned()
    });
    Ok(PspSession {
        url: text("url").unwrap_or_default(),
        token: id,
        status,
        psp_reference: intent_id,
        amount_minor: object["amount_total"].as_i64(),
        currency: text("currency").map(|c| c.to_ascii_uppercase()),
        reference: text("client_reference_id")
            .or_else(|| object["metadata"][PAYMENT_KEY].as_str().map(str::to_owned)),
        failure_code,
    })
}

/// A refund or transfer object's id.
fn id_of(object: &Value, what: &str) -> Result<String, PspError> {
    object["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PspError::Retryable(format!("a Stripe {what} without an id")))
}

#[derive(Deserialize)]
struct List {
    data: Vec<Value>,
}

/// A page of a list (`has_more`: ask again `starting_after` the last id).
#[derive(Deserialize)]
struct Page {
    data: Vec<Value>,
    #[serde(default)]
    has_more: bool,
}

/// A dispute object as ferropay's [`DisputeUpdate`] (its `reference` is the PaymentIntent until
/// ferropay resolves it to our payment).
fn dispute_of(object: &Value, psp_dispute_id: &str) -> Result<DisputeUpdate, PspError> {
    events::dispute_update(object).ok_or_else(|| {
        PspError::Retryable(format!(
            "Stripe dispute {psp_dispute_id} lacks a field ferropay reads, or is `{}`",
            object["status"].as_str().unwrap_or("without a status")
        ))
    })
}

impl Connector for StripeConnector {
    fn name(&self) -> &str {
        NAME
    }

    fn register_session<'a>(&'a self, request: &'a SessionRequest) -> PspFuture<'a, PspSession> {
        Box::pin(async move {
            let form: Form = [
                ("mode", "payment".to_owned()),
                ("success_url", request.return_url.clone()),
                ("cancel_url", request.return_url.clone()),
                ("client_reference_id", request.reference.clone()),
                ("metadata[ferropay_payment_id]", request.reference.clone()),
                (
                    "payment_intent_data[metadata][ferropay_payment_id]",
                    request.reference.clone(),
                ),
                ("line_items[0][quantity]", "1".to_owned()),
                (
                    "line_items[0][price_data][currency]",
                    request.currency.to_ascii_lowercase(),
                ),
                (
                    "line_items[0][price_data][unit_amount]",
                    request.amount_minor.to_string(),
                ),
                (
                    "line_items[0][price_data][product_data][name]",
                    request.description.clone(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let object = self
                .post("/v1/checkout/sessions", &request.idempotency_key, &form)
                .await?;
            session_of(&object)
        })
    }

    fn session_status<'a>(&'a self, token: &'a str) -> PspFuture<'a, PspSession> {
        Box::pin(self.session(token))
    }

    fn create_refund<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, Accepted> {
        Box::pin(async move {
            let intent = match &request.psp_reference {
                Some(intent) => intent.clone(),
                None => self.intent_of(&request.payment_token).await?,
            };
            let form: Form = vec![
                ("payment_intent".into(), intent),
                ("amount".into(), request.amount_minor.to_string()),
                (format!("metadata[{REFUND_KEY}]"), request.refund_id.clone()),
            ];
            let object = self.post("/v1/refunds", &request.refund_id, &form).await?;
            Ok(Accepted {
                psp_id: id_of(&object, "refund")?,
            })
        })
    }

    fn create_payout<'a>(&'a self, request: &'a PayoutRequest) -> PspFuture<'a, Accepted> {
        Box::pin(async move {
            let Some(account) = &request.destination_account else {
                return Err(PspError::Permanent(format!(
                    "seller `{}` has no Stripe connected account registered with ferropay",
                    request.seller_id
                )));
            };
            let form: Form = vec![
                ("amount".into(), request.amount_minor.to_string()),
                ("currency".into(), request.currency.to_ascii_lowercase()),
                ("destination".into(), account.clone()),
                ("transfer_group".into(), request.payout_id.clone()),
                (format!("metadata[{PAYOUT_KEY}]"), request.payout_id.clone()),
            ];
            let object = self
                .post("/v1/transfers", &request.payout_id, &form)
                .await?;
            Ok(Accepted {
                psp_id: id_of(&object, "transfer")?,
            })
        })
    }

    fn refund_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        Box::pin(async move {
            let refund = self.get(&format!("/v1/refunds/{psp_id}"), &[]).await?;
            Ok(events::refund_update(&refund))
        })
    }

    fn payout_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        Box::pin(async move {
            // A transfer moves the money when it is created; a reversal is a later, separate
            // flow.
            let transfer = self.get(&format!("/v1/transfers/{psp_id}"), &[]).await?;
            Ok(events::transfer_update(&transfer))
        })
    }

    fn sessions_by_reference<'a>(&'a self, reference: &'a str) -> PspFuture<'a, Vec<PspSession>> {
        Box::pin(async move {
            // Sessions cannot be listed by `client_reference_id`: find the PaymentIntents that
            // carry our payment id in their metadata, then each one's session.
            let query = format!("metadata['{PAYMENT_KEY}']:'{reference}'");
            let intents: List = serde_json::from_value(
                self.get("/v1/payment_intents/search", &[("query", &query)])
                    .await?,
            )
            .map_err(|e| PspError::Retryable(format!("unreadable search result: {e}")))?;
            let mut sessions = Vec::new();
            for intent in intents.data {
                let Some(intent_id) = intent["id"].as_str() else {
                    continue;
                };
                let list: List = serde_json::from_value(
                    self.get(
                        "/v1/checkout/sessions",
                        &[
                            ("payment_intent", intent_id),
                            ("expand[]", "data.payment_intent"),
                        ],
                    )
                    .await?,
                )
                .map_err(|e| PspError::Retryable(format!("unreadable session list: {e}")))?;
                for object in list.data {
                    sessions.push(session_of(&object)?);
                }
            }
            Ok(sessions)
        })
    }

    fn settlement_file<'a>(
        &'a self,
        date: time::Date,
        destination: &'a Path,
    ) -> PspFuture<'a, u64> {
        Box::pin(report::write_day(self, date, destination))
    }

    fn payout_by_key<'a>(&'a self, idempotency_key: &'a str) -> PspFuture<'a, MadeByKey> {
        Box::pin(async move {
            // Our transfers carry the payout id as their `transfer_group`.
            let list: List = serde_json::from_value(
                self.get("/v1/transfers", &[("transfer_group", idempotency_key)])
                    .await?,
            )
            .map_err(|e| PspError::Retryable(format!("unreadable transfer list: {e}")))?;
            Ok(match list.data.first() {
                None => MadeByKey::NotMade,
                Some(transfer) => MadeByKey::Made {
                    psp_id: id_of(transfer, "transfer")?,
                    settled: events::transfer_update(transfer),
                },
            })
        })
    }

    fn refund_by_key<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, MadeByKey> {
        Box::pin(async move {
            // Stripe lists refunds by PaymentIntent (not by metadata): our refund is the one
            // carrying our refund id in its metadata. No such refund under the payment's
            // intent: never made.
            let intent = match &request.psp_reference {
                Some(intent) => intent.clone(),
                None => self.intent_of(&request.payment_token).await?,
            };
            let mut after: Option<String> = None;
            loop {
                let mut query = vec![("payment_intent", intent.as_str()), ("limit", "100")];
                if let Some(last) = &after {
                    query.push(("starting_after", last.as_str()));
                }
                let page: Page = serde_json::from_value(self.get("/v1/refunds", &query).await?)
                    .map_err(|e| PspError::Retryable(format!("unreadable refund list: {e}")))?;
                if let Some(refund) = page
                    .data
                    .iter()
                    .find(|r| r["metadata"][REFUND_KEY] == request.refund_id.as_str())
                {
                    return Ok(MadeByKey::Made {
                        psp_id: id_of(refund, "refund")?,
                        settled: events::refund_update(refund),
                    });
                }
                match page.data.last() {
                    Some(last) if page.has_more => after = Some(id_of(last, "refund")?),
                    _ => return Ok(MadeByKey::NotMade),
                }
            }
        })
    }

    fn dispute_status<'a>(&'a self, psp_dispute_id: &'a str) -> PspFuture<'a, DisputeUpdate> {
        Box::pin(async move {
            let dispute = self
                .get(&format!("/v1/disputes/{psp_dispute_id}"), &[])
                .await?;
            dispute_of(&dispute, psp_dispute_id)
        })
    }

    fn submit_dispute_evidence<'a>(
        &'a self,
        psp_dispute_id: &'a str,
        evidence: &'a str,
    ) -> PspFuture<'a, DisputeUpdate> {
        Box::pin(async move {
            // Updating a dispute with `submit=true` sends its evidence to the bank at once
            // (`under_review`). One key per submission: sending evidence again is the merchant's
            // choice, not a retry.
            let form: Form = vec![
                (
                    "evidence[uncategorized_text]".to_owned(),
                    evidence.to_owned(),
                ),
                ("submit".to_owned(), "true".to_owned()),
            ];
            let dispute = self
                .post(
                    &format!("/v1/disputes/{psp_dispute_id}"),
                    &crate::ids::new_id("evd"),
                    &form,
                )
                .await?;
            dispute_of(&dispute, psp_dispute_id)
        })
    }

    fn signature_header(&self) -> Option<&'static str> {
        Some("Stripe-Signature")
    }

    fn verify_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Vec<PspEvent>, WebhookError> {
        let header = signature.ok_or(WebhookError::MissingSignature)?;
        super::signature::check(
            self.config.webhook_secret.expose(),
            header,
            body,
            self.config.webhook_tolerance_s,
            now_s,
        )?;
        Ok(vec![events::parse(body)?])
    }
}
