//! The shapes of request and response bodies, as the OpenAPI description names them. The
//! domain's views (`ferropay::payin::model::PaymentView`, …) live in a crate that knows nothing
//! of HTTP or OpenAPI, so each is described here by a type of the same fields; the tests below
//! serialize a real view and fail when its fields and its description's differ, and the API
//! tester in CI checks every answer of the running server against these.
#![allow(dead_code)] // The fields are read by the derives only.

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{"error": {...}}` with a status that fits (400, 401, 403, 404, 405, 409, 413,
/// 422, 5xx).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request`, `authentication_error`, `permission_error`, `conflict`,
    /// `idempotency_error`, `psp_error`, `api_error`.
    #[serde(rename = "type")]
    #[schema(example = "invalid_request")]
    pub error_type: String,
    /// Stable for clients: `invalid_field`, `payload_too_large`, `invalid_api_key`,
    /// `insufficient_scope`, `not_found`, `method_not_allowed`, `idempotency_key_in_use`,
    /// `checkout_in_flight`, `insufficient_balance`, `idempotency_key_reused`,
    /// `psp_unavailable`, `psp_rejected`, `internal_error`, …
    #[schema(example = "invalid_field")]
    pub code: String,
    pub message: String,
    /// For 400 `invalid_field`: the wrong field as a path (`orders[1].amount`, `limit`).
    #[schema(example = "orders[1].amount")]
    pub field: Option<String>,
    /// For 403 `insufficient_scope`: a scope that would let the key in.
    pub required_scope: Option<Scope>,
}

/// What an API key may do.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Payments,
    Payouts,
    Operator,
    ReadOnly,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresPayment,
    Processing,
    Succeeded,
    Failed,
    Expired,
    PartiallyRefunded,
    Refunded,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    NotStarted,
    Executing,
    Pending,
    Succeeded,
    Failed,
    Expired,
    Refunded,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
}

/// A dispute (chargeback): what the buyer's bank took back of a payment, through the PSP.
#[derive(Serialize, ToSchema)]
pub struct Dispute {
    pub id: String,
    pub payment_id: String,
    /// Only forward: `needs_response` → `under_review` → `won` | `lost`.
    pub status: DisputeStatus,
    /// Minor units: what the PSP took back (taken from the sellers' wallets and the platform's
    /// fees at once; given back if the dispute is won).
    pub amount: i64,
    pub currency: String,
    /// The card network's reason (`fraudulent`, `product_not_received`, …).
    #[schema(example = "fraudulent")]
    pub reason: String,
    /// The PSP's id of the dispute (its settlement lines' `psp_reference`).
    pub psp_dispute_id: String,
    pub evidence_submitted: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// `POST /v1/disputes/{id}/evidence`.
#[derive(Serialize, ToSchema)]
pub struct DisputeEvidence {
    /// Delivery proof, correspondence, terms: what the PSP passes to the card network.
    #[schema(min_length = 1, max_length = 20000)]
    pub text: String,
}

/// A payment's disputes, oldest first (all of them).
#[derive(Serialize, ToSchema)]
pub struct DisputesOfPayment {
    pub data: Vec<Dispute>,
}

/// A page of disputes, newest first.
#[derive(Serialize, ToSchema)]
pub struct DisputeList {
    pub data: Vec<Dispute>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
}

/// `POST /v1/payments`: one checkout, its buyer, and one order per seller.
#[derive(Serialize, ToSchema)]
pub struct CreatePayment {
    /// 1–64 visible ASCII characters.
    #[schema(
        example = "chk_1001",
        min_length = 1,
        max_length = 64,
        pattern = "^[!-~]+$"
    )]
    pub checkout_id: String,
    pub buyer: BuyerInput,
    /// ISO 4217 (`USD`).
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// 1 to 100 orders.
    #[schema(min_items = 1, max_items = 100)]
    pub orders: Vec<OrderInput>,
    /// Where the PSP sends the buyer back (default: ferropay's status page).
    pub return_url: Option<String>,
    /// The PSP to pay through (`sandbox`, `stripe`, `adyen`: one configured on this instance);
    /// default: the PSP routed to for the currency, else the default PSP.
    #[schema(example = "stripe")]
    pub psp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BuyerInput {
    #[schema(
        example = "buyer_7",
        min_length = 1,
        max_length = 64,
        pattern = "^[!-~]+$"
    )]
    pub id: String,
    #[schema(example = "b@example.com")]
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderInput {
    #[schema(
        example = "ord_1",
        min_length = 1,
        max_length = 64,
        pattern = "^[!-~]+$"
    )]
    pub order_id: String,
    #[schema(
        example = "seller_a",
        min_length = 1,
        max_length = 64,
        pattern = "^[!-~]+$"
    )]
    pub seller_id: String,
    /// Minor units of the currency, 1 to 10^12.
    #[schema(example = 1500, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
}

/// A payment: one checkout paid once through one PSP session, split into one order per seller.
#[derive(Serialize, ToSchema)]
pub struct Payment {
    #[schema(example = "pay_0193a4…")]
    pub id: String,
    pub checkout_id: String,
    pub status: PaymentStatus,
    /// The total, in minor units.
    pub amount: i64,
    pub currency: String,
    /// The PSP the payment was registered with; it keeps it for its refunds and webhooks.
    #[schema(example = "sandbox")]
    pub psp: String,
    /// The PSP's hosted payment page; `null` only while the session is not registered.
    pub redirect_url: Option<String>,
    pub return_url: Option<String>,
    pub failure_code: Option<String>,
    pub buyer: Buyer,
    pub orders: Vec<Order>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Buyer {
    pub id: String,
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount: i64,
    pub status: OrderStatus,
}

/// `POST /v1/payments/{id}/refunds`.
#[derive(Serialize, ToSchema)]
pub struct CreateRefund {
    /// The checkout's order to refund.
    #[schema(example = "ord_1")]
    pub order_id: String,
    /// Minor units; absent: the rest of the order.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub failure_code: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// `PUT /v1/sellers/{seller_id}/psp_accounts/{psp}`.
#[derive(Serialize, ToSchema)]
pub struct SetPspAccount {
    /// The seller's account at the PSP (Stripe: the connected account, `acct_…`; Adyen: the
    /// seller's balance account, `BA…`).
    #[schema(example = "acct_1PgafTB7WZ01zgkW", min_length = 1, max_length = 255)]
    pub account_id: String,
}

/// Where a seller's payouts go at one PSP.
#[derive(Serialize, ToSchema)]
pub struct PspAccount {
    pub seller_id: String,
    #[schema(example = "stripe")]
    pub psp: String,
    pub account_id: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// `POST /v1/sellers/{seller_id}/payouts`.
#[derive(Serialize, ToSchema)]
pub struct CreatePayout {
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Minor units; absent: all that is available.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Payout {
    pub id: String,
    pub seller_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: PayoutStatus,
    pub failure_code: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// What the platform owes a seller, per currency.
#[derive(Serialize, ToSchema)]
pub struct Wallet {
    pub seller_id: String,
    pub balances: Vec<WalletBalance>,
}

#[derive(Serialize, ToSchema)]
pub struct WalletBalance {
    pub currency: String,
    /// What the platform owes the seller: the balance plus payouts not yet paid.
    pub amount: i64,
    /// What can be paid out now.
    pub available: i64,
    /// Payouts sent but not yet paid.
    pub payouts_in_flight: i64,
}

/// An event of the outbox, as listed and as pushed to webhook endpoints.
#[derive(Serialize, ToSchema)]
pub struct Event {
    #[schema(example = "obx_0193a4…")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "payment.succeeded")]
    pub event_type: String,
    pub aggregate_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The event's own fields.
    pub data: serde_json::Value,
}

/// An API key, never with its secret.
#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
}

/// A reconciliation break.
#[derive(Serialize, ToSchema)]
pub struct Break {
    pub id: String,
    pub run_id: String,
    /// `missing_in_ledger`, `missing_in_file`, `amount_mismatch`, `currency_mismatch`,
    /// `duplicate_line`, `unknown_reference`, `malformed_line`.
    pub kind: String,
    pub psp_reference: Option<String>,
    pub merchant_reference: Option<String>,
    pub line_no: Option<i64>,
    pub currency: Option<String>,
    pub expected_amount: Option<i64>,
    pub actual_amount: Option<i64>,
    pub detail: String,
    pub auto_healed: bool,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResolveBreak {
    #[schema(min_length = 1)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationRunRequest {
    /// The settlement day, `YYYY-MM-DD`.
    #[schema(example = "2026-11-24", format = Date)]
    pub date: String,
    /// The PSP to reconcile (`sandbox`, `stripe`; Adyen settles per batch: see `ferropay
    /// reconcile --psp adyen --file`); default: the default PSP.
    #[schema(example = "stripe")]
    pub psp: Option<String>,
    /// `true` reconciles a day that has not closed (today's file is still partial): the run
    /// reads and matches and posts nothing, stores no break. Default `false`: only a closed
    /// UTC day (not today, not later, not before our first payment) is accepted.
    pub provisional: Option<bool>,
}

/// The report of a reconciliation run (`lines`, `matched`, `breaks`, `run_id`, …).
#[derive(Serialize, ToSchema)]
pub struct ReconciliationReport {
    pub run_id: String,
    /// The run was provisional: nothing was posted or stored.
    pub provisional: bool,
    pub lines: u64,
    pub matched: u64,
    pub breaks: Vec<serde_json::Value>,
}

/// The PSP webhook's answer.
#[derive(Serialize, ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
    /// `{"result": "applied"|"unchanged"|"duplicate"|…}`.
    pub outcome: serde_json::Value,
}

/// The list answers: a page of items and whether more follow (ask again with
/// `starting_after` set to the last item's id).
#[derive(Serialize, ToSchema)]
pub struct PaymentList {
    pub data: Vec<Payment>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RefundList {
    pub data: Vec<Refund>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PayoutList {
    pub data: Vec<Payout>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<Event>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
    pub has_more: bool,
}

/// A payment's refunds, oldest first (all of them).
#[derive(Serialize, ToSchema)]
pub struct RefundsOfPayment {
    pub data: Vec<Refund>,
}

/// A seller's payouts, newest first (all of them).
#[derive(Serialize, ToSchema)]
pub struct PayoutsOfSeller {
    pub seller_id: String,
    pub data: Vec<Payout>,
}

/// Reconciliation breaks, newest first.
#[derive(Serialize, ToSchema)]
pub struct BreakList {
    pub data: Vec<Break>,
}

/// `POST /v1/webhook_endpoints`.
#[derive(Serialize, ToSchema)]
pub struct CreateWebhookEndpoint {
    /// `https://…` (loopback, private and link-local addresses are refused unless the server
    /// runs with `--allow-private-webhook-urls`).
    #[schema(example = "https://shop.example/ferropay/webhooks", max_length = 2048)]
    pub url: String,
    /// Event types (`payment.succeeded`, …), or `["*"]` for all.
    #[schema(example = json!(["*"]), min_items = 1, max_items = 50)]
    pub event_types: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// `POST /v1/webhook_endpoints/{id}`: what to change.
#[derive(Serialize, ToSchema)]
pub struct UpdateWebhookEndpoint {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Enabling clears why it was disabled.
    pub enabled: Option<bool>,
}

/// A webhook endpoint; `secret` only in the answers that make or roll it.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    #[schema(example = "we_0193a4…")]
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// While a rolled secret is still valid: until when.
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `whsec_…`: shown once.
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One event for one endpoint, with every attempt.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    #[schema(example = "whd_0193a4…")]
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryAttempt {
    #[schema(format = DateTime)]
    pub attempted_at: String,
    /// The endpoint's HTTP status; `null` when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}
