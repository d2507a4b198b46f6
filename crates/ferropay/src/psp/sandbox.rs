//! The connector to the sandbox PSP (or any PSP that speaks the contract's sandbox API): hosted
//! sessions over HTTP with idempotency keys, webhooks signed with `Sandbox-Signature`, and the
//! daily settlement file (`GET /v1/settlements/{YYYY-MM-DD}.csv`).

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use serde::Deserialize;
use serde_json::Value;

use super::signature;
use super::{
    Connector, PaymentUpdate, PspError, PspEvent, PspEventKind, PspFuture, PspOutcome, PspSession,
    PspSessionStatus, SessionRequest, WebhookError,
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
        let body = self.send_raw(request).await?;
        let wire: WireSession = serde_json::from_slice(&body)
            .map_err(|e| PspError::Retryable(format!("unreadable sandbox session: {e}")))?;
        Ok(wire.into())
    }

    /// Sends `request` with our key; answers the body of a 2xx, or the failure told apart by
    /// whether a retry can help.
    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, PspError> {
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
        Ok(body.to_vec())
    }

    async fn download(&self, date: time::Date, destination: &Path) -> Result<u64, PspError> {
        let url = format!(
            "{}/v1/settlements/{:04}-{:02}-{:02}.csv",
            self.base_url,
            date.year(),
            u8::from(date.month()),
            date.day()
        );
        let mut response = self
            .http
            .get(url)
            .bearer_auth(self.api_key.expose())
            .timeout(Duration::from_millis(SETTLEMENT_TIMEOUT_MS))
            .send()
            .await
            .map_err(|e| PspError::Retryable(format!("sandbox unreachable: {e}")))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(PspError::Retryable(format!("sandbox answered {status}")));
        }
        if !status.is_success() {
            return Err(PspError::Permanent(format!(
                "sandbox answered {status} for the settlement file of {date}"
            )));
        }
        let local = |e: std::io::Error| {
            PspError::Permanent(format!("writing {}: {e}", destination.display()))
        };
        let mut file = tokio::fs::File::create(destination).await.map_err(local)?;
        let mut written: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| PspError::Retryable(format!("settlement file cut off: {e}")))?
        {
            file.write_all(&chunk).await.map_err(local)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        Ok(written)
    }
}

/// A settlement file may be large: its download gets this long, not the API calls' timeout.
const SETTLEMENT_TIMEOUT_MS: u64 = 15 * 60 * 1_000;

#[derive(Deserialize)]
struct WireSessionList {
    data: Vec<WireSession>,
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

    fn sessions_by_reference<'a>(&'a self, reference: &'a str) -> PspFuture<'a, Vec<PspSession>> {
        Box::pin(async move {
            let body = self
                .send_raw(
                    self.http
                        .get(format!("{}/v1/payment_sessions", self.base_url))
                        .query(&[("reference", reference)]),
                )
                .await?;
            let list: WireSessionList = serde_json::from_slice(&body)
                .map_err(|e| PspError::Retryable(format!("unreadable session list: {e}")))?;
            Ok(list.data.into_iter().map(PspSession::from).collect())
        })
    }

    fn settlement_file<'a>(
        &'a self,
        date: time::Date,
        destination: &'a Path,
    ) -> PspFuture<'a, u64> {
        Box::pin(self.download(date, destination))
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
            None => PspEventKind::Other,
        };
        Ok(PspEvent {
            id: wire.id,
            event_type: wire.event_type,
            created_s: wire.created,
            kind,
        })
    }
}
