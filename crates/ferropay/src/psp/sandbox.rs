//! The connector to the sandbox PSP (or any PSP that speaks the contract's sandbox API): hosted
//! sessions over HTTP with idempotency keys, and webhooks signed with `Sandbox-Signature`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::signature;
use super::{
    Accepted, Connector, PaymentUpdate, PayoutRequest, PspError, PspEvent, PspEventKind, PspFuture,
    PspOutcome, PspSession, PspSessionStatus, RefundRequest, SessionRequest, SettlementUpdate,
    WebhookError,
};
use crate::secret::Secret;

/// The PSP's name as it appears in webhook URLs (`/webhooks/psp/sandbox`) and accounts.
pub const NAME: &str = "sandbox";

pub struct SandboxConnector {
    base_url: String,
    api_key: Secret,
    webhook_secret: Secret,
    http: reqwest::Client,
}

impl SandboxConnector {
    /// `base_url` without a trailing slash, e.g. `http://127.0.0.1:8090`.
    pub fn new(base_url: &str, api_key: Secret, webhook_secret: Secret, timeout_ms: u64) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            webhook_secret,
            http,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<PspSession, PspError> {
        let wire: WireSession = self.call(request, "session").await?;
        Ok(wire.into())
    }

    /// Sends an authenticated call and reads its JSON answer, telling passing failures (no
    /// answer, 5xx, 429, an unreadable body) from permanent ones (other 4xx).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, PspError> {
        let response = request
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(|e| PspError::Retryable(format!("sandbox unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| PspError::Retryable(format!("sandbox answer cut off: {e}")))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(PspError::Retryable(format!("sandbox answered {status}")));
        }
        if !status.is_success() {
            return Err(PspError::Permanent(format!(
                "sandbox answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| PspError::Retryable(format!("unreadable sandbox {what}: {e}")))
    }
}

impl SandboxConnector {
    /// Asks for a refund or payout (`what`: `refunds`, `payouts`), keyed by our id; the PSP
    /// accepts it now and settles it later by webhook.
    async fn accept(
        &self,
        what: &'static str,
        idempotency_key: &str,
        body: Value,
    ) -> Result<Accepted, PspError> {
        let accepted: WireAccepted = self
            .call(
                self.http
                    .post(format!("{}/v1/{what}", self.base_url))
                    .header("Idempotency-Key", idempotency_key)
                    .json(&body),
                what,
            )
            .await?;
        Ok(Accepted {
            psp_id: accepted.id,
        })
    }
}

impl SandboxConnector {
    /// A refund's or payout's state (`what`: `refunds`, `payouts`); `None` while not settled.
    async fn settlement(
        &self,
        what: &'static str,
        psp_id: &str,
        success: &str,
    ) -> Result<Option<SettlementUpdate>, PspError> {
        let wire: WireSettlement = self
            .call(
                self.http
                    .get(format!("{}/v1/{what}/{psp_id}", self.base_url)),
                what,
            )
            .await?;
        let succeeded = match wire.status.as_str() {
            "failed" => false,
            status if status == success => true,
            _ => return Ok(None),
        };
        Ok(Some(wire.data.into_update(succeeded)))
    }
}

/// A refund or payout as the sandbox shows it.
#[derive(Deserialize)]
struct WireSettlement {
    status: String,
    #[serde(flatten)]
    data: WireSettlementData,
}

#[derive(Deserialize)]
struct WireSession {
    token: String,
    url: String,
    status: PspSessionStatus,
    #[serde(default)]
    psp_reference: Option<String>,
    amount: i64,
    currency: String,
    reference: String,
    #[serde(default)]
    failure_code: Option<String>,
}

impl From<WireSession> for PspSession {
    fn from(wire: WireSession) -> Self {
        Self {
            token: wire.token,
            url: wire.url,
            status: wire.status,
            psp_reference: wire.psp_reference,
            amount_minor: wire.amount,
            currency: wire.currency,
            reference: wire.reference,
            failure_code: wire.failure_code,
        }
    }
}

#[derive(Deserialize)]
struct WireAccepted {
    id: String,
}

#[derive(Deserialize)]
struct WireSettlementData {
    reference: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
}

impl WireSettlementData {
    fn into_update(self, succeeded: bool) -> SettlementUpdate {
        SettlementUpdate {
            reference: self.reference,
            succeeded,
            psp_id: self.id,
            amount_minor: self.amount,
            currency: self.currency,
            failure_code: self.failure_code,
        }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: Value,
}

#[derive(Deserialize)]
struct WirePaymentData {
    reference: String,
    #[serde(default)]
    psp_reference: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
}

impl Connector for SandboxConnector {
    fn name(&self) -> &str {
        NAME
    }

    fn register_session<'a>(&'a self, request: &'a SessionRequest) -> PspFuture<'a, PspSession> {
        Box::pin(async move {
            let body = serde_json::json!({
                "amount": request.amount_minor,
                "currency": request.currency,
                "reference": request.reference,
                "return_url": request.return_url,
            });
            self.send(
                self.http
                    .post(format!("{}/v1/payment_sessions", self.base_url))
                    .header("Idempotency-Key", &request.idempotency_key)
                    .json(&body),
            )
            .await
        })
    }

    fn session_status<'a>(&'a self, token: &'a str) -> PspFuture<'a, PspSession> {
        Box::pin(async move {
            self.send(
                self.http
                    .get(format!("{}/v1/payment_sessions/{token}", self.base_url)),
            )
            .await
        })
    }

    fn create_refund<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, Accepted> {
        let body = serde_json::json!({
            "payment_token": request.payment_token,
            "amount": request.amount_minor,
            "currency": request.currency,
            "reference": request.refund_id,
        });
        Box::pin(self.accept("refunds", &request.refund_id, body))
    }

    fn create_payout<'a>(&'a self, request: &'a PayoutRequest) -> PspFuture<'a, Accepted> {
        let body = serde_json::json!({
            "amount": request.amount_minor,
            "currency": request.currency,
            "destination": request.seller_id,
            "reference": request.payout_id,
        });
        Box::pin(self.accept("payouts", &request.payout_id, body))
    }

    fn refund_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        Box::pin(self.settlement("refunds", psp_id, "succeeded"))
    }

    fn payout_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        Box::pin(self.settlement("payouts", psp_id, "paid"))
    }

    fn signature_header(&self) -> &'static str {
        "Sandbox-Signature"
    }

    fn verify_webhook(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<PspEvent, WebhookError> {
        signature::verify(&self.webhook_secret, signature_header, body, now_s)?;
        let wire: WireEvent =
            serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(e.to_string()))?;
        if wire.id.is_empty() {
            return Err(WebhookError::MalformedBody("`id` is empty".into()));
        }
        let outcome = match wire.event_type.as_str() {
            "payment.processing" => Some(PspOutcome::Processing),
            "payment.succeeded" => Some(PspOutcome::Succeeded),
            "payment.failed" => Some(PspOutcome::Failed),
            "payment.expired" => Some(PspOutcome::Expired),
            _ => None,
        };
        let kind = match outcome {
            Some(outcome) => {
                let data: WirePaymentData = serde_json::from_value(wire.data)
                    .map_err(|e| WebhookError::MalformedBody(format!("data: {e}")))?;
                PspEventKind::Payment(PaymentUpdate {
                    reference: data.reference,
                    outcome,
                    psp_reference: data.psp_reference,
                    amount_minor: data.amount,
                    currency: data.currency,
                    failure_code: data.failure_code,
                })
            }
            None => {
                let settlement = |succeeded| -> Result<SettlementUpdate, WebhookError> {
                    let data: WireSettlementData = serde_json::from_value(wire.data.clone())
                        .map_err(|e| WebhookError::MalformedBody(format!("data: {e}")))?;
                    Ok(data.into_update(succeeded))
                };
                match wire.event_type.as_str() {
                    "refund.succeeded" => PspEventKind::Refund(settlement(true)?),
                    "refund.failed" => PspEventKind::Refund(settlement(false)?),
                    "payout.paid" => PspEventKind::Payout(settlement(true)?),
                    "payout.failed" => PspEventKind::Payout(settlement(false)?),
                    _ => PspEventKind::Other,
                }
            }
        };
        Ok(PspEvent {
            id: wire.id,
            event_type: wire.event_type,
            created_s: wire.created,
            kind,
        })
    }
}
