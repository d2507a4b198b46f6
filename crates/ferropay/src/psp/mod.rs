//! PSP integration: the one trait that every PSP connector implements (register a hosted-page
//! session, ask a session's status or find sessions by our reference, verify and parse a
//! webhook, fetch a day's settlement file), and the types they speak.
//!
//! - [`sandbox`]: the built-in sandbox PSP (the default connector);
//! - [`stripe`]: Stripe (Checkout Sessions, refunds, Connect transfers, balance transactions);
//! - [`adyen`]: Adyen (Pay by Link, refunds by PSP reference, HMAC-signed notifications);
//! - [`registry`]: the connectors configured at once, and the rule that picks one per payment;
//! - [`config`]: the connectors' settings, from `ferropay.toml`, the environment and files;
//! - [`signature`]: the `t=…,v1=…` HMAC-SHA256 webhook signature (the sandbox's and Stripe's);
//! - [`dispute`], [`lookup`]: disputes as PSPs report them; what a PSP made of a call by its key.

pub mod adyen;
pub mod config;
pub mod dispute;
pub mod lookup;
pub mod registry;
pub mod sandbox;
pub mod signature;
pub mod stripe;

pub use dispute::{DisputeStatus, DisputeUpdate};
pub use lookup::MadeByKey;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::Deserialize;

/// The columns of ferropay's settlement file (CONTRACT.md, "Settlement file"), in order: what
/// [`Connector::settlement_file`] writes, whatever the PSP's own format.
pub const SETTLEMENT_COLUMNS: [&str; 9] = [
    "psp_reference",
    "merchant_reference",
    "type",
    "created_at",
    "currency",
    "gross",
    "fee",
    "net",
    "batch",
];

/// A boxed future, so that connectors can live behind `Arc<dyn Connector>`.
pub type PspFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PspError>> + Send + 'a>>;

/// What we ask the PSP to collect.
#[derive(Clone, Debug)]
pub struct SessionRequest {
    /// The PSP's idempotency key: the payment's id, never a fresh one on retry (I5).
    pub idempotency_key: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Our payment's id, which the PSP echoes as the merchant reference.
    pub reference: String,
    pub return_url: String,
    /// What the buyer is paying for, where the PSP's page shows it (`Checkout chk_1`).
    pub description: String,
}

/// A hosted-page session as the PSP reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PspSession {
    pub token: String,
    pub url: String,
    pub status: PspSessionStatus,
    pub psp_reference: Option<String>,
    /// The contract's session answer is `{token, url, status}`; a PSP that also says the amount,
    /// currency and our reference has them checked against the payment.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reference: Option<String>,
    pub failure_code: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PspSessionStatus {
    Open,
    Processing,
    Succeeded,
    Failed,
    Expired,
}

/// Why a call to the PSP failed, told apart by whether retrying can help.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PspError {
    /// Timeouts, connection errors, 5xx: retry with the same idempotency key.
    #[error("retryable PSP failure: {0}")]
    Retryable(String),
    /// 4xx and other refusals: retrying the same request will not help.
    #[error("permanent PSP failure: {0}")]
    Permanent(String),
}

/// A verified webhook event from a PSP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PspEvent {
    pub id: String,
    pub event_type: String,
    pub created_s: i64,
    pub kind: PspEventKind,
}

impl PspEvent {
    /// The event's text fields by name (`id`, `data.reference`, …), for checking them before
    /// anything is stored.
    pub fn texts(&self) -> Vec<(&'static str, &str)> {
        fn optional<'a>(
            texts: &mut Vec<(&'static str, &'a str)>,
            name: &'static str,
            value: &'a Option<String>,
        ) {
            if let Some(value) = value {
                texts.push((name, value.as_str()));
            }
        }
        let mut texts = vec![("id", self.id.as_str()), ("type", self.event_type.as_str())];
        match &self.kind {
            PspEventKind::Payment(update) => {
                texts.push(("data.reference", update.reference.as_str()));
                optional(&mut texts, "data.psp_reference", &update.psp_reference);
                optional(&mut texts, "data.currency", &update.currency);
                optional(&mut texts, "data.failure_code", &update.failure_code);
            }
            PspEventKind::Refund(update) | PspEventKind::Payout(update) => {
                texts.push(("data.reference", update.reference.as_str()));
                optional(&mut texts, "data.id", &update.psp_id);
                optional(&mut texts, "data.currency", &update.currency);
                optional(&mut texts, "data.failure_code", &update.failure_code);
            }
            PspEventKind::Dispute(update) => {
                texts.push(("data.id", update.psp_dispute_id.as_str()));
                texts.push(("data.reference", update.reference.as_str()));
                texts.push(("data.currency", update.currency.as_str()));
                texts.push(("data.reason", update.reason.as_str()));
            }
            PspEventKind::Other => {}
        }
        texts
    }

    /// Refuses an event whose text fields no database column should take: a NUL or another
    /// control character, or more than [`EVENT_TEXT_MAX_CHARS`] characters.
    pub fn check_texts(&self) -> Result<(), WebhookError> {
        for (name, text) in self.texts() {
            if text.chars().any(char::is_control) || text.chars().count() > EVENT_TEXT_MAX_CHARS {
                return Err(WebhookError::MalformedBody(format!(
                    "`{name}` must be at most {EVENT_TEXT_MAX_CHARS} characters without the NUL \
                     or another control character"
                )));
            }
        }
        Ok(())
    }
}

/// The longest text field of a webhook event accepted (ids, references, codes).
pub const EVENT_TEXT_MAX_CHARS: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PspEventKind {
    /// A payment session moved: `payment.processing|succeeded|failed|expired`.
    Payment(PaymentUpdate),
    /// A refund settled: `refund.succeeded|failed`.
    Refund(SettlementUpdate),
    /// A payout settled: `payout.paid|failed`.
    Payout(SettlementUpdate),
    /// A dispute opened or decided (Stripe's `charge.dispute.*`, Adyen's `CHARGEBACK*`): recorded;
    /// the dispute flow acts on it.
    Dispute(DisputeUpdate),
    /// A type this version does not act on; recorded and acknowledged.
    Other,
}

/// How a refund or payout that we asked for ended, as the PSP reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementUpdate {
    /// Our refund or payout id (the reference we sent).
    pub reference: String,
    pub succeeded: bool,
    /// The PSP's id for the refund or payout.
    pub psp_id: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub failure_code: Option<String>,
}

/// A refund we ask the PSP to make.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    /// Our refund's id: the PSP idempotency key and the reference echoed in its webhook.
    pub refund_id: String,
    /// The refunded payment's session token at the PSP.
    pub payment_token: String,
    /// The refunded payment's reference at the PSP (Stripe's payment intent, Adyen's PSP
    /// reference), when the PSP has told it.
    pub psp_reference: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
}

/// A payout we ask the payout provider to send to a seller.
#[derive(Clone, Debug)]
pub struct PayoutRequest {
    /// Our payout's id: the idempotency key and the reference echoed in its webhook.
    pub payout_id: String,
    pub seller_id: String,
    /// The seller's account at this PSP (Stripe's connected account `acct_…`), when ferropay
    /// has one registered.
    pub destination_account: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
}

/// What the PSP answered when it accepted a refund or payout (settled later by webhook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub psp_id: String,
}

/// What a PSP says about one payment, from a webhook or from polling its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentUpdate {
    /// Our payment id (the merchant reference we registered).
    pub reference: String,
    pub outcome: PspOutcome,
    pub psp_reference: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub failure_code: Option<String>,
}

/// The outcome of a payment at the PSP, as far as it has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PspOutcome {
    Processing,
    Succeeded,
    Failed,
    Expired,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing signature header")]
    MissingSignature,
    #[error("malformed signature header")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("timestamp is {0} s away from now, more than the 300 s tolerance")]
    StaleTimestamp(i64),
    #[error("malformed webhook body: {0}")]
    MalformedBody(String),
}

/// How a webhook is answered once it is applied: the PSP decides what counts as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookAck {
    /// `200` with `{"received": true, "outcome": …}` (the sandbox, Stripe).
    Json,
    /// `200` with this exact text body (Adyen requires `[accepted]`).
    Text(&'static str),
}

/// One PSP, as ferropay sees it (after hyperswitch's connector trait).
pub trait Connector: Send + Sync {
    /// The PSP's name in URLs and account names (`sandbox`).
    fn name(&self) -> &str;

    /// Registers a hosted-page session. The same `idempotency_key` returns the same session.
    fn register_session<'a>(&'a self, request: &'a SessionRequest) -> PspFuture<'a, PspSession>;

    /// The session's current state, for the poller and for reconciliation.
    fn session_status<'a>(&'a self, token: &'a str) -> PspFuture<'a, PspSession>;

    /// Asks for a refund of (part of) a captured payment. Idempotent on `refund_id`.
    fn create_refund<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, Accepted>;

    /// Asks the payout provider to send money to a seller. Idempotent on `payout_id`.
    fn create_payout<'a>(&'a self, request: &'a PayoutRequest) -> PspFuture<'a, Accepted>;

    /// Where a refund stands at the PSP (by the PSP's refund id): `None` while it is pending.
    fn refund_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>>;

    /// Where a payout stands at the provider (by its payout id): `None` while it is in flight.
    fn payout_status<'a>(&'a self, psp_id: &'a str) -> PspFuture<'a, Option<SettlementUpdate>>;
    /// The sessions registered with our merchant reference (our payment id), oldest first: how
    /// reconciliation finds a payment whose token we never stored.
    fn sessions_by_reference<'a>(&'a self, reference: &'a str) -> PspFuture<'a, Vec<PspSession>>;

    /// Downloads the settlement file of one UTC day into `destination` (created or truncated),
    /// streamed chunk by chunk so memory does not grow with the file. Answers the bytes written.
    fn settlement_file<'a>(&'a self, date: time::Date, destination: &'a Path)
    -> PspFuture<'a, u64>;

    /// The refund that our `create_refund` of `request` (idempotency key: our refund id) made,
    /// if it took effect: asked before a refusal is believed, so that only the PSP's "not made"
    /// (or "failed") fails a refund. The request is given whole because a PSP may find refunds
    /// only under their payment (Stripe lists a PaymentIntent's refunds). A PSP that cannot
    /// answer leaves the refund pending.
    fn refund_by_key<'a>(&'a self, request: &'a RefundRequest) -> PspFuture<'a, MadeByKey> {
        Box::pin(async move {
            Err(PspError::Retryable(format!(
                "{} cannot look up refund {} by its idempotency key",
                self.name(),
                request.refund_id
            )))
        })
    }

    /// The payout that our `create_payout` with this idempotency key (our payout id) made, if it
    /// took effect (see [`Connector::refund_by_key`]).
    fn payout_by_key<'a>(&'a self, idempotency_key: &'a str) -> PspFuture<'a, MadeByKey> {
        Box::pin(async move {
            Err(PspError::Retryable(format!(
                "{} cannot look up payout {idempotency_key} by its idempotency key",
                self.name()
            )))
        })
    }

    /// A dispute as the PSP has it now (reconciliation heals a dispute whose webhook was lost).
    fn dispute_status<'a>(&'a self, psp_dispute_id: &'a str) -> PspFuture<'a, DisputeUpdate> {
        Box::pin(async move {
            Err(PspError::Permanent(format!(
                "{} cannot tell dispute {psp_dispute_id}",
                self.name()
            )))
        })
    }

    /// Sends the merchant's evidence on a dispute; answers the dispute as it then stands.
    fn submit_dispute_evidence<'a>(
        &'a self,
        psp_dispute_id: &'a str,
        evidence: &'a str,
    ) -> PspFuture<'a, DisputeUpdate> {
        let _ = evidence;
        Box::pin(async move {
            Err(PspError::Permanent(format!(
                "{} takes no evidence on dispute {psp_dispute_id}",
                self.name()
            )))
        })
    }

    /// The header that carries this PSP's webhook signature; `None` when the signature is in
    /// the body (Adyen's `additionalData.hmacSignature`).
    fn signature_header(&self) -> Option<&'static str>;

    /// Verifies a webhook on its raw body and parses its events (Adyen batches several in one
    /// request). `now_s` is the current Unix time. Any item failing refuses the whole request.
    fn verify_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Vec<PspEvent>, WebhookError>;

    /// The webhook event type by which this PSP announces its settlement reports (Adyen's
    /// `REPORT_AVAILABLE`), when [`Connector::settlement_report`] downloads them: reconciling a
    /// day then reconciles the reports announced that day.
    fn settlement_report_event(&self) -> Option<&'static str> {
        None
    }

    /// The settlement report an announcing event (by its id) names, if it names one.
    fn settlement_report_name(&self, event_id: &str) -> Option<String> {
        let _ = event_id;
        None
    }

    /// Downloads the settlement report named `name` (as its announcement named it) into
    /// `destination`; answers the bytes written.
    fn settlement_report<'a>(&'a self, name: &'a str, destination: &'a Path) -> PspFuture<'a, u64> {
        let _ = destination;
        Box::pin(async move {
            Err(PspError::Permanent(format!(
                "{} has no settlement report `{name}` to download",
                self.name()
            )))
        })
    }

    /// Whether a `chargeback` line of this PSP's settlement is itself the PSP's word on the
    /// dispute (Adyen, which has no API that tells a dispute): reconciliation then books a
    /// dispute whose notification was lost from the line (`needs_response`, or `won` for a
    /// reversal) instead of asking [`Connector::dispute_status`].
    fn settlement_tells_disputes(&self) -> bool {
        false
    }

    /// Whether [`Connector::settlement_file`] can fetch a day's settlement (the nightly run asks
    /// only those that can).
    fn settles_by_day(&self) -> bool {
        true
    }

    /// How an applied webhook is answered.
    fn webhook_ack(&self) -> WebhookAck {
        WebhookAck::Json
    }
}

impl PspSession {
    /// Whether what the session says of itself (a PSP may say the amount, currency and our
    /// reference, or not) agrees with the payment it was made for.
    pub fn matches(&self, amount_minor: i64, currency: &str, payment_id: &str) -> bool {
        let agrees = |said: Option<&str>, ours: &str| said.is_none_or(|said| said == ours);
        self.amount_minor.is_none_or(|said| said == amount_minor)
            && agrees(self.currency.as_deref(), currency)
            && agrees(self.reference.as_deref(), payment_id)
    }

    /// The session's state as an update of `payment_id` (the payment the caller found the
    /// session for, having checked any reference it carries), when the PSP has decided
    /// something.
    pub fn as_update(&self, payment_id: &str) -> Option<PaymentUpdate> {
        let outcome = match self.status {
            PspSessionStatus::Open => return None,
            PspSessionStatus::Processing => PspOutcome::Processing,
            PspSessionStatus::Succeeded => PspOutcome::Succeeded,
            PspSessionStatus::Failed => PspOutcome::Failed,
            PspSessionStatus::Expired => PspOutcome::Expired,
        };
        Some(PaymentUpdate {
            reference: payment_id.to_owned(),
            outcome,
            psp_reference: self.psp_reference.clone(),
            amount_minor: self.amount_minor,
            currency: self.currency.clone(),
            failure_code: self.failure_code.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        amount_minor: Option<i64>,
        currency: Option<&str>,
        reference: Option<&str>,
    ) -> PspSession {
        PspSession {
            token: "tok".into(),
            url: "https://psp.example/pay/tok".into(),
            status: PspSessionStatus::Open,
            psp_reference: None,
            amount_minor,
            currency: currency.map(str::to_owned),
            reference: reference.map(str::to_owned),
            failure_code: None,
        }
    }

    #[test]
    fn a_session_matches_its_payment_in_what_it_says() {
        assert!(session(None, None, None).matches(500, "EUR", "pay_1"));
        assert!(session(Some(500), Some("EUR"), Some("pay_1")).matches(500, "EUR", "pay_1"));
        assert!(!session(Some(499), None, None).matches(500, "EUR", "pay_1"));
        assert!(!session(None, Some("USD"), None).matches(500, "EUR", "pay_1"));
        assert!(!session(None, None, Some("pay_2")).matches(500, "EUR", "pay_1"));
    }
}
