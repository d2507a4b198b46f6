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
    Accepted, Connector, DisputeStatus, DisputeUpdate, MadeByKey, PaymentUpdate, PayoutRequest,
    PspError, PspEvent, PspEventKind, PspFuture, PspOutcome, PspSession, PspSessionStatus,
    RefundRequest, SessionRequest, SettlementUpdate, WebhookError,
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
    /// `base_url`, e.g. `http://127.0.0.1:8090` or `https://psp.example`. Over HTTPS the PSP's
    /// certificate is checked against the system's roots, and also against `root_ca_pem` (PEM
    /// certificates of a private CA) when given. Fails on a CA file that is not PEM.
    pub fn new(
        base_url: &str,
        api_key: Secret,
        webhook_secret: Secret,
        timeout_ms: u64,
        root_ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_millis(timeout_ms));
        if let Some(pem) = root_ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the PSP's CA certificates: {e}"))?;
            if certificates.is_empty() {
                return Err("the PSP's CA file holds no PEM certificate".into());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("the HTTP client for the PSP: {e}"))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            webhook_secret,
            http,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<PspSession, PspError> {
        let wire: WireSession = self.call(request, "session").await?;
        Ok(wire.into())
    }

    /// Sends an authenticated call and reads its JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, PspError> {
        let body = self.send_raw(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| PspError::Retryable(format!("unreadable sandbox {what}: {e}")))
    }

    /// Sends `request` with our key; answers the body of a 2xx, or the failure told apart by
    /// whether a retry can help (no answer, 5xx, 429: yes; other 4xx: no).
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
            // The PSP's reason, as it put it (its JSON error's message, or its text), cut short.
            let text = response.text().await.unwrap_or_default();
            let reason = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            let reason: String = reason.chars().take(500).collect();
            return Err(PspError::Permanent(format!(
                "sandbox answered {status} for the settlement file of {date}: {reason}"
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

impl SandboxConnector {
    /// The refund or payout (`what`) our `POST` with `key` made, if any.
    async fn by_key(
        &self,
        what: &'static str,
        key: &str,
        success: &str,
    ) -> Result<MadeByKey, PspError> {
        let list: WireList<WireSettlementFull> = self
            .call(
                self.http
                    .get(format!("{}/v1/{what}", self.base_url))
                    .query(&[("idempotency_key", key)]),
                what,
            )
            .await?;
        let Some(found) = list.data.into_iter().next() else {
            return Ok(MadeByKey::NotMade);
        };
        let psp_id = found.id.clone();
        let succeeded = match found.status.as_str() {
            "failed" => Some(false),
            status if status == success => Some(true),
            _ => None,
        };
        let settled = succeeded.map(|succeeded| {
            WireSettlementData {
                reference: found.reference,
                id: Some(found.id),
                amount: found.amount,
                currency: found.currency,
                failure_code: found.failure_code,
            }
            .into_update(succeeded)
        });
        Ok(MadeByKey::Made { psp_id, settled })
    }

    async fn dispute(&self, request: reqwest::RequestBuilder) -> Result<DisputeUpdate, PspError> {
        let wire: WireDispute = self.call(request, "dispute").await?;
        wire.into_update()
            .map_err(|e| PspError::Retryable(format!("unreadable sandbox dispute: {e}")))
    }
}

#[derive(Deserialize)]
struct WireList<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct WireSettlementFull {
    id: String,
    status: String,
    reference: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
}

/// A dispute as the sandbox shows it (and sends it in `dispute.*` webhooks).
#[derive(Deserialize)]
struct WireDispute {
    id: String,
    reference: String,
    amount: i64,
    currency: String,
    reason: String,
    status: String,
}

impl WireDispute {
    fn into_update(self) -> Result<DisputeUpdate, String> {
        let status = DisputeStatus::parse(&self.status)
            .ok_or_else(|| format!("dispute status `{}`", self.status))?;
        Ok(DisputeUpdate {
            psp_dispute_id: self.id,
            reference: self.reference,
            amount_minor: self.amount,
            currency: self.currency,
            reason: self.reason,
            status,
        })
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
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    reference: Option<String>,
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

    fn refund_by_key<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, MadeByKey> {
        Box::pin(self.by_key("refunds", &request.refund_id, "succeeded"))
    }

    fn payout_by_key<'a>(&'a self, idempotency_key: &'a str) -> PspFuture<'a, MadeByKey> {
        Box::pin(self.by_key("payouts", idempotency_key, "paid"))
    }

    fn dispute_status<'a>(&'a self, psp_dispute_id: &'a str) -> PspFuture<'a, DisputeUpdate> {
        Box::pin(
            self.dispute(
                self.http
                    .get(format!("{}/v1/disputes/{psp_dispute_id}", self.base_url)),
            ),
        )
    }

    fn submit_dispute_evidence<'a>(
        &'a self,
        psp_dispute_id: &'a str,
        evidence: &'a str,
    ) -> PspFuture<'a, DisputeUpdate> {
        Box::pin(
            self.dispute(
                self.http
                    .post(format!(
                        "{}/v1/disputes/{psp_dispute_id}/evidence",
                        self.base_url
                    ))
                    // Sending the same evidence again is harmless: one key per submission.
                    .header("Idempotency-Key", crate::ids::new_id("evd"))
                    .json(&serde_json::json!({ "text": evidence })),
            ),
        )
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

    fn signature_header(&self) -> Option<&'static str> {
        Some("Sandbox-Signature")
    }

    fn verify_webhook(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Vec<PspEvent>, WebhookError> {
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
                    "dispute.created" | "dispute.won" | "dispute.lost" => {
                        let data: WireDispute = serde_json::from_value(wire.data.clone())
                            .map_err(|e| WebhookError::MalformedBody(format!("data: {e}")))?;
                        PspEventKind::Dispute(
                            data.into_update()
                                .map_err(|e| WebhookError::MalformedBody(format!("data: {e}")))?,
                        )
                    }
                    _ => PspEventKind::Other,
                }
            }
        };
        Ok(vec![PspEvent {
            id: wire.id,
            event_type: wire.event_type,
            created_s: wire.created,
            kind,
        }])
    }
}
