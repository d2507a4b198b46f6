//! The Adyen connector (Checkout API v72): pay-in through Pay by Link (`POST /paymentLinks`,
//! Adyen's hosted page; `GET /paymentLinks/{linkId}` for its status), refunds by the payment's
//! PSP reference (`POST /payments/{paymentPspReference}/refunds`), and standard notification
//! webhooks verified item by item with their HMAC ([`hmac`], [`notifications`]) and answered
//! `[accepted]`. JSON requests with `X-API-Key` and our id as `Idempotency-Key`; amounts in
//! minor units as ferropay's.
//!
//! | payment link `status` | ferropay session |
//! |---|---|
//! | `active` | open (a refused card leaves the link usable) |
//! | `paymentPending` | processing |
//! | `completed`, `paid` | succeeded |
//! | `expired` | expired |
//!
//! Seller payouts go through the Balance Platform's Transfers API ([`transfers`], its own
//! credential and webhooks); the Settlement details reports are downloaded by API once announced
//! by `REPORT_AVAILABLE` ([`reports`]; reconciling a day reconciles the reports announced that
//! day, read with `crate::reconcile::adyen_report`). A dispute whose notification was lost is
//! booked from the report's Chargeback record (no Adyen API tells a dispute), and its reversal
//! from the ChargebackReversed record, found through the payment it names.
//!
//! Not supported: finding a refund by our reference (`refund_by_key`: no such API, so a refused
//! refund stays pending and is sent again with its key), dispute evidence, refund status by API
//! (Adyen tells it by `REFUND` notification only), finding links by our reference.

pub mod hmac;
pub mod notifications;
pub mod reports;
pub mod transfers;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Accepted, Connector, MadeByKey, PayoutRequest, PspError, PspEvent, PspFuture, PspSession,
    PspSessionStatus, RefundRequest, SessionRequest, SettlementUpdate, WebhookAck, WebhookError,
};
use crate::secret::Secret;

/// The connector's name in URLs (`/webhooks/psp/adyen`), accounts and `payments.psp`.
pub const NAME: &str = "adyen";

#[derive(Clone, Debug)]
pub struct AdyenConfig {
    pub api_key: Secret,
    pub merchant_account: String,
    /// The notification webhook's HMAC key, hex as the Customer Area shows it.
    pub hmac_key: Secret,
    /// `https://checkout-test.adyen.com/v72` in test mode; the live URL has a prefix.
    pub checkout_base: String,
    pub timeout_ms: u64,
    /// Seller payouts through the Balance Platform's Transfers API, when configured.
    pub payouts: Option<transfers::AdyenPayoutsConfig>,
    /// The Settlement details reports downloaded by API, when configured.
    pub reports: Option<reports::AdyenReportsConfig>,
}

impl Default for AdyenConfig {
    fn default() -> Self {
        Self {
            api_key: Secret::new(""),
            merchant_account: String::new(),
            hmac_key: Secret::new(""),
            checkout_base: "https://checkout-test.adyen.com/v72".into(),
            timeout_ms: 10_000,
            payouts: None,
            reports: None,
        }
    }
}

pub struct AdyenConnector {
    config: AdyenConfig,
    base: String,
    http: reqwest::Client,
}

/// A payment link's status (see the module's table).
pub fn link_status(status: &str) -> Option<PspSessionStatus> {
    Some(match status {
        "active" => PspSessionStatus::Open,
        "paymentPending" => PspSessionStatus::Processing,
        "completed" | "paid" => PspSessionStatus::Succeeded,
        "expired" => PspSessionStatus::Expired,
        _ => return None,
    })
}

impl AdyenConnector {
    pub fn new(config: AdyenConfig) -> Result<Self, String> {
        if config.api_key.expose().is_empty() {
            return Err("Adyen needs an API key (FERROPAY_ADYEN_API_KEY)".into());
        }
        if !hex::decode(config.hmac_key.expose()).is_ok_and(|key| !key.is_empty()) {
            return Err("Adyen needs a hex HMAC key (FERROPAY_ADYEN_HMAC_KEY)".into());
        }
        if config.merchant_account.is_empty() {
            return Err("Adyen needs a merchant account (FERROPAY_ADYEN_MERCHANT_ACCOUNT)".into());
        }
        if let Some(payouts) = &config.payouts {
            if payouts.api_key.expose().is_empty() || payouts.balance_account_id.is_empty() {
                return Err("Adyen payouts need FERROPAY_ADYEN_TRANSFERS_API_KEY and \
                            FERROPAY_ADYEN_BALANCE_ACCOUNT_ID"
                    .into());
            }
            if !hex::decode(payouts.hmac_key.expose()).is_ok_and(|key| !key.is_empty()) {
                return Err(
                    "Adyen payouts need a hex HMAC key for the Balance Platform's \
                            webhooks (FERROPAY_ADYEN_BALANCE_PLATFORM_HMAC_KEY)"
                        .into(),
                );
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| format!("the HTTP client for Adyen: {e}"))?;
        Ok(Self {
            base: config.checkout_base.trim_end_matches('/').to_owned(),
            config,
            http,
        })
    }

    /// Sends with our key; 429, 5xx, a key in flight (`704`) and no answer are passing
    /// failures, other refusals not.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, PspError> {
        self.send_as(request, &self.config.api_key).await
    }

    /// [`Self::send`] with another credential's key (the Transfers API has its own).
    async fn send_as(
        &self,
        request: reqwest::RequestBuilder,
        key: &Secret,
    ) -> Result<Value, PspError> {
        let response = request
            .header("X-API-Key", key.expose())
            .send()
            .await
            .map_err(|e| PspError::Retryable(format!("Adyen unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| PspError::Retryable(format!("Adyen's answer cut off: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| PspError::Retryable(format!("unreadable Adyen answer: {e}")));
        }
        let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // The Checkout API answers a `ServiceError` (`message`, `errorType`); the Transfers
        // API a problem details object (`title`, `detail`, `type`).
        let text = |keys: [&str; 2], otherwise: &'static str| {
            keys.iter()
                .find_map(|key| error[*key].as_str())
                .unwrap_or(otherwise)
                .to_owned()
        };
        let message = format!(
            "Adyen answered {status}: {} (errorCode {}, {})",
            text(["message", "detail"], "no message"),
            error["errorCode"].as_str().unwrap_or("none"),
            text(["errorType", "type"], "no type"),
        );
        // 704: a request with this idempotency key is still being processed; the same request
        // again gets its answer.
        let in_flight = error["errorCode"].as_str() == Some("704");
        Err(
            if status.is_server_error()
                || status.as_u16() == 429
                || status.as_u16() == 409
                || in_flight
            {
                PspError::Retryable(message)
            } else {
                PspError::Permanent(message)
            },
        )
    }

    fn transfers_base<'b>(&self, payouts: &'b transfers::AdyenPayoutsConfig) -> &'b str {
        payouts.transfers_base.trim_end_matches('/')
    }

    fn link_of(object: &Value) -> Result<PspSession, PspError> {
        let text = |key: &str| object[key].as_str().map(str::to_owned);
        let id = text("id").ok_or_else(|| PspError::Retryable("a link without an id".into()))?;
        let said = object["status"].as_str().unwrap_or_default();
        let status = link_status(said).ok_or_else(|| {
            PspError::Retryable(format!(
                "Adyen link {id} is `{said}`, which ferropay does not know"
            ))
        })?;
        Ok(PspSession {
            url: text("url").unwrap_or_default(),
            token: id,
            status,
            psp_reference: None,
            amount_minor: object["amount"]["value"].as_i64(),
            currency: object["amount"]["currency"].as_str().map(str::to_owned),
            reference: text("reference"),
            failure_code: None,
        })
    }
}

impl Connector for AdyenConnector {
    fn name(&self) -> &str {
        NAME
    }

    fn register_session<'a>(&'a self, request: &'a SessionRequest) -> PspFuture<'a, PspSession> {
        Box::pin(async move {
            let body = json!({
                "merchantAccount": self.config.merchant_account,
                "reference": request.reference,
                "amount": {"value": request.amount_minor, "currency": request.currency},
                "returnUrl": request.return_url,
                "description": request.description,
            });
            let object = self
                .send(
                    self.http
                        .post(format!("{}/paymentLinks", self.base))
                        .header("Idempotency-Key", &request.idempotency_key)
                        .json(&body),
                )
                .await?;
            Self::link_of(&object)
        })
    }

    fn session_status<'a>(&'a self, token: &'a str) -> PspFuture<'a, PspSession> {
        Box::pin(async move {
            let object = self
                .send(self.http.get(format!("{}/paymentLinks/{token}", self.base)))
                .await?;
            Self::link_of(&object)
        })
    }

    fn create_refund<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, Accepted> {
        Box::pin(async move {
            // Adyen refunds a payment by its PSP reference, which its AUTHORISATION notification
            // tells: until then, the refund waits.
            let Some(payment) = &request.psp_reference else {
                return Err(PspError::Retryable(
                    "the payment's Adyen PSP reference is not known yet (its AUTHORISATION \
                     notification has not arrived)"
                        .into(),
                ));
            };
            let body = json!({
                "merchantAccount": self.config.merchant_account,
                "reference": request.refund_id,
                "amount": {"value": request.amount_minor, "currency": request.currency},
            });
            let object = self
                .send(
                    self.http
                        .post(format!("{}/payments/{payment}/refunds", self.base))
                        .header("Idempotency-Key", &request.refund_id)
                        .json(&body),
                )
                .await?;
            let psp_id = object["pspReference"]
                .as_str()
                .ok_or_else(|| PspError::Retryable("a refund without a pspReference".into()))?;
            Ok(Accepted {
                psp_id: psp_id.to_owned(),
            })
        })
    }

    fn create_payout<'a>(&'a self, request: &'a PayoutRequest) -> PspFuture<'a, Accepted> {
        Box::pin(async move {
            let Some(payouts) = &self.config.payouts else {
                return Err(PspError::Permanent(format!(
                    "payout {}: Adyen payouts are not configured \
                     (FERROPAY_ADYEN_BALANCE_ACCOUNT_ID, FERROPAY_ADYEN_TRANSFERS_API_KEY)",
                    request.payout_id
                )));
            };
            let Some(destination) = &request.destination_account else {
                return Err(PspError::Permanent(format!(
                    "seller `{}` has no Adyen balance account registered with ferropay",
                    request.seller_id
                )));
            };
            let body = transfers::transfer_body(
                payouts,
                &request.payout_id,
                destination,
                request.amount_minor,
                &request.currency,
            );
            let transfer = self
                .send_as(
                    self.http
                        .post(format!("{}/transfers", self.transfers_base(payouts)))
                        .header("Idempotency-Key", &request.payout_id)
                        .json(&body),
                    &payouts.api_key,
                )
                .await?;
            let psp_id = transfer["id"]
                .as_str()
                .ok_or_else(|| PspError::Retryable("a transfer without an id".into()))?;
            Ok(Accepted {
                psp_id: psp_id.to_owned(),
            })
        })
    }

    fn payout_by_key<'a>(&'a self, idempotency_key: &'a str) -> PspFuture<'a, MadeByKey> {
        Box::pin(async move {
            let Some(payouts) = &self.config.payouts else {
                // Without payouts configured this connector never sends one: that is the proof.
                return Ok(MadeByKey::NotMade);
            };
            let now = time::OffsetDateTime::now_utc();
            let since = now - time::Duration::days(transfers::LOOKUP_WINDOW_DAYS);
            let format = |t: time::OffsetDateTime| {
                t.replace_nanosecond(0)
                    .unwrap_or(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            };
            let mut url = format!("{}/transfers", self.transfers_base(payouts));
            let mut query = vec![
                ("balanceAccountId", payouts.balance_account_id.clone()),
                ("reference", idempotency_key.to_owned()),
                ("createdSince", format(since)),
                // A minute ahead: a transfer made this second is inside the window.
                ("createdUntil", format(now + time::Duration::minutes(1))),
            ];
            // Pages are followed through `_links.next.href` (cursor-based).
            loop {
                let page = self
                    .send_as(self.http.get(&url).query(&query), &payouts.api_key)
                    .await?;
                let data = page["data"].as_array().cloned().unwrap_or_default();
                if let Some(transfer) = data.iter().find(|t| t["reference"] == idempotency_key) {
                    let psp_id = transfer["id"]
                        .as_str()
                        .ok_or_else(|| PspError::Retryable("a transfer without an id".into()))?;
                    return Ok(MadeByKey::Made {
                        psp_id: psp_id.to_owned(),
                        settled: transfers::transfer_update(transfer),
                    });
                }
                match page["_links"]["next"]["href"].as_str() {
                    Some(next) if !next.is_empty() => {
                        url = next.to_owned();
                        query.clear();
                    }
                    _ => return Ok(MadeByKey::NotMade),
                }
            }
        })
    }

    fn refund_status<'a>(&'a self, _psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        // Adyen tells a refund's end by its REFUND notification only.
        Box::pin(async { Ok(None) })
    }

    fn payout_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>> {
        Box::pin(async move {
            let Some(payouts) = &self.config.payouts else {
                return Ok(None);
            };
            let transfer = self
                .send_as(
                    self.http.get(format!(
                        "{}/transfers/{psp_id}",
                        self.transfers_base(payouts)
                    )),
                    &payouts.api_key,
                )
                .await?;
            Ok(transfers::transfer_update(&transfer))
        })
    }

    fn sessions_by_reference<'a>(&'a self, _reference: &'a str) -> PspFuture<'a, Vec<PspSession>> {
        // Payment links cannot be listed by reference.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn settlement_file<'a>(
        &'a self,
        date: time::Date,
        _destination: &'a Path,
    ) -> PspFuture<'a, u64> {
        Box::pin(async move {
            Err(PspError::Permanent(format!(
                "Adyen's settlement is a Settlement details report per batch, not per day \
                 ({date}): download it and run `ferropay reconcile --psp adyen --file <report.csv>`"
            )))
        })
    }

    fn signature_header(&self) -> Option<&'static str> {
        // The Balance Platform's webhooks (transfers) sign in this header; the standard
        // notifications sign each item in its body.
        Some(transfers::SIGNATURE_HEADER)
    }

    fn verify_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Vec<PspEvent>, WebhookError> {
        let parsed: Value =
            serde_json::from_slice(body).map_err(|e| WebhookError::MalformedBody(e.to_string()))?;
        if transfers::is_balance_platform(&parsed) {
            let Some(payouts) = &self.config.payouts else {
                return Err(WebhookError::MalformedBody(
                    "a Balance Platform webhook, but Adyen payouts are not configured".into(),
                ));
            };
            return transfers::parse(payouts.hmac_key.expose(), signature, body, &parsed, now_s);
        }
        notifications::parse(self.config.hmac_key.expose(), body, now_s)
    }

    fn settles_by_day(&self) -> bool {
        false
    }

    fn settlement_report_event(&self) -> Option<&'static str> {
        self.config
            .reports
            .as_ref()
            .map(|_| reports::REPORT_AVAILABLE)
    }

    fn settlement_report_name(&self, event_id: &str) -> Option<String> {
        reports::settlement_report_of_event(event_id).map(str::to_owned)
    }

    fn settlement_report<'a>(&'a self, name: &'a str, destination: &'a Path) -> PspFuture<'a, u64> {
        Box::pin(async move {
            let Some(reports) = &self.config.reports else {
                return Err(PspError::Permanent(
                    "Adyen report downloads are not configured (FERROPAY_ADYEN_REPORT_API_KEY)"
                        .into(),
                ));
            };
            reports::download(
                &self.http,
                reports,
                &self.config.merchant_account,
                name,
                destination,
            )
            .await
        })
    }

    fn settlement_tells_disputes(&self) -> bool {
        // No Adyen API tells a dispute by its reference: the report's Chargeback record is
        // Adyen's word that the funds were withdrawn, its ChargebackReversed that they came back.
        true
    }

    fn webhook_ack(&self) -> WebhookAck {
        WebhookAck::Text("[accepted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_table() {
        assert_eq!(link_status("active"), Some(PspSessionStatus::Open));
        assert_eq!(
            link_status("paymentPending"),
            Some(PspSessionStatus::Processing)
        );
        assert_eq!(link_status("completed"), Some(PspSessionStatus::Succeeded));
        assert_eq!(link_status("paid"), Some(PspSessionStatus::Succeeded));
        assert_eq!(link_status("expired"), Some(PspSessionStatus::Expired));
        assert_eq!(link_status("deleted"), None);
    }
}
