//! The sandbox PSP: a simulated payment service provider and payout provider, served over real
//! HTTP. It knows ferropay only through the public contract (`CONTRACT.md`, "Sandbox PSP"), as a
//! real PSP would. This file owns the configuration, `spawn`, the handle, and the route table.
//!
//! # Routes
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/payment_sessions` | registers a payment; answers the session JSON (201) |
//! | `GET /v1/payment_sessions/{token}` | the session with its current `status` and `failure_code` |
//! | `GET /v1/payment_sessions?reference=R` | `{"data": [sessions…]}` whose merchant reference is R |
//! | `POST /v1/refunds`, `GET /v1/refunds/{id}` | refunds, settled later by webhook |
//! | `GET /v1/refunds?idempotency_key=K` | `{"data": [refund]}` the POST with key K made, or `[]` |
//! | `POST /v1/payouts`, `GET /v1/payouts/{id}` | payouts to sellers, settled later by webhook |
//! | `GET /v1/payouts?idempotency_key=K` | `{"data": [payout]}` the POST with key K made, or `[]` |
//! | `GET /pay/{token}`, `POST /pay/{token}` | the hosted payment page |
//! | `POST /pay/{token}/challenge` | the 3-D Secure challenge |
//! | `GET /assets/hosted-page.js`, `GET /favicon.ico` | the hosted page's script and icon |
//! | `GET /v1/settlements/{YYYY-MM-DD}.csv` | that UTC day's settlement file (CSV, below) |
//! | `POST /v1/test/settlement_faults`, `DELETE …` | test hook: make settlement files wrong on purpose |
//! | `GET /v1/disputes/{id}` | a dispute (chargeback) and where it stands |
//! | `POST /v1/disputes/{id}/evidence` | the merchant's evidence: `needs_response` → `under_review` |
//! | `POST /v1/test/disputes/{id}/decide` | test hook: `{"outcome": "won" \| "lost"}` |
//! | `POST /v1/test/chargebacks` | test hook: a dispute on a succeeded payment, its webhook lost |
//! | `POST /v1/test/lost_webhooks` | test hook: never send webhooks about these merchant references |
//! | `POST /v1/test/outage`, `GET …` | test hook: every other `/v1/*` call answers 503 while down |
//! | `POST /v1/test/unauthorized_after_effect` | test hook: the next N refund/payout creations answer 401 after taking place |
//! | `POST /v1/test/unauthorized_before_effect` | test hook: the next N refund/payout creations or look-ups by key answer 401, doing nothing |
//!
//! # Decisions beyond the contract
//!
//! - **Auth.** Every `/v1/*` route needs `Authorization: Bearer <api_key>`, else 401. An empty
//!   `api_key` in the config turns the check off (handy for local play; a warning is logged).
//! - **Errors** are `{"error": {"type", "code", "message"}}`; a bad field names the field in the
//!   message, e.g. `amount must be an integer > 0`. Malformed JSON is a 400 `invalid_json`.
//! - **Idempotency.** `POST /v1/*` needs `Idempotency-Key` (1–255 characters), else 400. Keys are
//!   scoped per route and kept for the sandbox's life. The same key with the same JSON body (keys
//!   in any order) replays the first answer — status and body, which for a session is the first
//!   snapshot (`status: "open"`) — with header `Idempotent-Replayed: true`. The same key with
//!   another body: 422 `idempotency_key_reused`. Requests that fail validation are not recorded.
//! - **Session input.** `amount` an integer > 0 (minor units), `currency` three uppercase ASCII
//!   letters, `reference` 1–255 characters, `return_url` an absolute `http://` or `https://` URL
//!   of visible ASCII (it goes into a `Location` header). `created` and `expires_at` are unix
//!   seconds.
//! - **Hosted page.** `name` is optional. A bad field re-renders the form with 400; an unknown card
//!   number is a 400 "not a sandbox test card"; `4000 0000 0000 0119` re-renders the page (200)
//!   with the error, and the session stays open. Any CVC of up to four digits is taken. A POST on a session that is not open is a 409 page naming its status. While
//!   a 3-D Secure challenge is pending the session stays `open`; `GET /pay/{token}` shows the
//!   challenge again, and posting another card replaces the attempt. The redirect is a 303 to
//!   `return_url` with `payment=<reference>&status=<status>` added to its query (before any
//!   `#fragment`), the reference percent-encoded. The page shows the configured merchant name;
//!   its script (progressive: the form works without it) groups the card number, names the
//!   brand as it is typed and checks each field when it is left; the server checks again and
//!   puts every value back, the CVC included, when it shows the form again.
//! - **Expiry.** An `open` session becomes `expired` (webhook `payment.expired`) once
//!   `session_ttl_ms` has passed; a sweeper checks every `session_ttl_ms / 4`, clamped to
//!   10..=250 ms.
//! - **Refunds** name the payment by `payment_token` or `psp_reference`; `currency` must match the
//!   payment's (400 otherwise), an unknown payment is 404. Each refund settles `settle_delay_ms`
//!   later: `refund.succeeded`, or `refund.failed` with `payment_not_succeeded` when the payment
//!   has not succeeded, or `amount_exceeds_refundable` when it would refund more than what remains.
//! - **Payouts** settle `settle_delay_ms` later: `payout.paid`, or `payout.failed` with
//!   `account_closed` when `destination` starts with `closed_`.
//! - **Webhooks.** Event data: for payments `{token, reference, psp_reference, amount, currency,
//!   status, failure_code}`; for refunds `{id, reference, amount, currency, status, failure_code,
//!   psp_reference, payment_token}`; for payouts `{id, reference, amount, currency, status,
//!   failure_code, destination}`. The body is fixed at creation; each attempt is signed afresh. A
//!   non-2xx answer (redirects are not followed), a connection error or a 5 s timeout is retried
//!   after
//!   `min(webhook_retry_base_ms * 2^(n-1), webhook_retry_max_ms)`, jittered to 50–100 % of that,
//!   until `webhook_max_attempts`. An empty `webhook_url` sends nothing. Deliveries run in
//!   background tasks, never in a handler.
//! - **Faults** ([`Faults`]) apply to `/v1/*` calls and to webhook delivery, never to the hosted
//!   page. Latency is added before the call; a failure is decided per call, one of four alike:
//!   a 500 before the effect, a dropped connection before it, a 500 after the effect took place,
//!   a dropped connection after it. A dropped connection is a real one: the TCP connection is
//!   cut before any byte of the answer is written. A duplicated webhook is delivered again, with the same id,
//!   once the first delivery got its 2xx. A reordered event is held 0..=1000 ms before its first
//!   attempt. Events are always created in causal order (`processing` before `succeeded`).
//! - **Settlement files** (`GET /v1/settlements/{YYYY-MM-DD}.csv`, Bearer; `text/csv`; 400 for a
//!   date that is not a real `YYYY-MM-DD`): header
//!   `psp_reference,merchant_reference,type,created_at,currency,gross,fee,net,batch`, then one
//!   line per payment that succeeded that UTC day (`psp_reference` the session's, `merchant_reference`
//!   the merchant's reference), per refund that settled as succeeded that day (`psp_reference` the
//!   refund id `re_…`, `merchant_reference` the refunded payment's reference, as the contract
//!   says), per chargeback
//!   injected that day (`cb_…`, the payment's merchant reference), and one `payout_to_bank` line
//!   per currency (`po_YYYYMMDD_CUR`, empty merchant reference, created at 23:59:59). Amounts are
//!   signed minor units from the merchant balance's point of view: payments positive, refunds and
//!   chargebacks negative, and the payout takes the day's net to the bank, so it is
//!   `-(sum of the other lines' net)` and a file's nets sum to zero per currency (no payout line
//!   when that sum is zero). `gross - fee = net` on every line. Fees: a payment pays
//!   `settlement_fee_bps` basis points of its gross (default 290 = 2.9 %), rounded half up to a
//!   whole minor unit in integer arithmetic, plus `settlement_fee_fixed_minor` (default 30) in
//!   its own currency; a refund pays none (and the payment's fee is not given back); a chargeback
//!   pays `chargeback_fee_minor` (default 1500). `created_at` is RFC 3339 UTC to the second;
//!   `batch` is `stl_YYYYMMDD`. Fields with a comma or quote are quoted as RFC 4180 says. A file
//!   asked for during its day holds what happened so far.
//! - **Test hooks** (`/v1/test/*`) take the Bearer key but no `Idempotency-Key`.
//! - **Settlement faults** (test hook):
//!   `POST /v1/test/settlement_faults` with `{"missing": [ref…], "duplicated": [ref…],
//!   "amount_changed": [ref…], "currency_changed": [ref…], "unknown_lines": N}` (all optional;
//!   a `ref` is a line's `psp_reference` or `merchant_reference`, or a refund's own merchant
//!   reference, since a payment's reference does not touch its refunds' lines; at most 1,000
//!   each) replaces the discrepancies written into every settlement file from then on: a missing line is left out, a
//!   duplicated one is written twice, a changed amount is 100 minor units more (gross and net), a
//!   changed currency is EUR for USD and USD for any other, and each unknown line is a USD 1234
//!   payment for a reference nobody registered (ids fixed when the faults are set, dated at the
//!   start of the day asked for). The payout line adds up the lines as written. The answer echoes
//!   the faults with the unknown lines' references. `DELETE` clears them.
//! - **Disputes.** Card `4000 0000 0000 2685` succeeds, and `dispute_delay_ms` later (default
//!   10 s; `--dispute-delay-s`) the buyer's bank disputes the whole payment (reason
//!   `fraudulent`): webhook `dispute.created` with data `{id, payment_token, psp_reference,
//!   reference, amount, currency, reason, status: "needs_response", evidence_submitted,
//!   created}`, and the funds leave the merchant's balance (a `chargeback` line that day, fee
//!   `chargeback_fee_minor`). `POST /v1/disputes/{id}/evidence` `{text}` (1–20,000 characters,
//!   with an `Idempotency-Key`) moves an open dispute to `under_review` and answers it (400 once
//!   decided). The test hook `POST /v1/test/disputes/{id}/decide` `{"outcome": "won"|"lost"}`
//!   decides an open one: `dispute.won` (the funds come back: a `chargeback_reversal` line that
//!   day, gross `+amount`, no fee) or `dispute.lost`. `GET /v1/disputes/{id}` shows one.
//! - **Chargebacks** (test hook): `POST /v1/test/chargebacks` with `{payment_token |
//!   psp_reference, amount?, reason?, notify?}` (default: the whole payment, `fraudulent`; 400
//!   if the payment has not succeeded or the amount exceeds it, 404 if unknown) opens a dispute
//!   now, 201 with the dispute. Without `"notify": true` no webhook is sent (a dispute whose
//!   webhook was lost): only the settlement file and `GET /v1/disputes/{id}` tell of it.
//! - **Lost webhooks** (test hook): `POST /v1/test/lost_webhooks` with `{"references":
//!   [merchant reference…]}` (at most 1,000 in all) adds to the references whose webhook events
//!   are never sent from then on, as if every delivery were lost; answers the whole list. The
//!   sessions move as usual, so the payment shows in the settlement file and in
//!   `GET /v1/payment_sessions`.
//! - **Outage** (test hook): `POST /v1/test/outage` with `{"down": true}` makes every `/v1/*`
//!   call but the test hooks answer 503 `outage` (before the key check) until `{"down":
//!   false}`; the hosted page and webhooks go on. Answers (and `GET` shows) `{down,
//!   refused_calls}`, the calls refused since the outage began.
//! - **Lie after the effect** (test hook): `POST /v1/test/unauthorized_after_effect` with
//!   `{"count": N}` (0–100): the next N `POST /v1/refunds` or `POST /v1/payouts` that succeed
//!   take place (and settle as usual) but answer 401 `invalid_api_key`, as an expired or rotated
//!   key may answer a retry that the provider had already served.
//!   `POST /v1/test/unauthorized_before_effect` with `{"count": N}`: the next N refund or payout
//!   creations, or look-ups of one by `idempotency_key`, answer 401 and do nothing.
//! - **Secrets.** `SandboxConfig`'s `Debug` hides the API key and the webhook secret; nothing
//!   logs them, nor card numbers.
//! - **Lifetime.** [`spawn`] serves in background tasks; dropping the [`SandboxHandle`] leaves it
//!   running, [`SandboxHandle::shutdown`] stops it and every pending delivery and timer.

mod api;
mod background;
mod cards;
mod clock;
mod disputes;
mod errors;
mod faults;
mod hosted_page;
mod html;
mod idempotency;
mod listener;
mod payouts;
mod refunds;
mod request;
mod sessions;
mod settlements;
mod store;
mod test_hooks;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::Faults;
pub use settlements::HEADER as SETTLEMENT_HEADER;
pub use webhooks::sign;

use crate::background::Background;
use crate::listener::{ConnTag, CuttableListener};
use crate::store::Store;

/// The merchant name the hosted page shows when none is configured.
pub const DEFAULT_MERCHANT_NAME: &str = "Demo Marketplace";

/// How the sandbox behaves. `Default` gives the documented defaults with empty key and secret.
/// Its `Debug` output hides the key and the secret.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Bearer key clients must send on `/v1/*` calls; empty turns the check off.
    pub api_key: String,
    /// Where webhooks are POSTed; empty sends none.
    pub webhook_url: String,
    /// The HMAC-SHA256 secret webhooks are signed with.
    pub webhook_secret: String,
    /// Base URL used in a session's `url` (default: `http://{bound addr}`).
    pub public_url: Option<String>,
    /// The merchant's name the hosted page shows the buyer (a real PSP's account name).
    pub merchant_name: String,
    /// Card `4000 0000 0000 0259`: `processing` → `succeeded` after this long.
    pub review_delay_ms: u64,
    /// An open session expires this long after it was created.
    pub session_ttl_ms: u64,
    /// Refunds and payouts settle (by webhook) this long after they were created.
    pub settle_delay_ms: u64,
    /// First webhook retry delay; doubles on each retry.
    pub webhook_retry_base_ms: u64,
    /// Cap on one webhook retry delay.
    pub webhook_retry_max_ms: u64,
    /// A webhook delivery gives up after this many attempts (at least 1 is made).
    pub webhook_max_attempts: u32,
    /// The PSP's fee on each payment in its settlement file, in basis points of the gross.
    pub settlement_fee_bps: u32,
    /// The fixed part of the fee on each payment, in minor units of the payment's currency.
    pub settlement_fee_fixed_minor: i64,
    /// The fee on each chargeback, in minor units of its currency.
    pub chargeback_fee_minor: i64,
    /// Card `4000 0000 0000 2685`: the payment succeeds, and is disputed this long after.
    pub dispute_delay_ms: u64,
    /// Injected faults.
    pub faults: Faults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            public_url: None,
            merchant_name: DEFAULT_MERCHANT_NAME.to_owned(),
            review_delay_ms: 5_000,
            session_ttl_ms: 3_600_000,
            settle_delay_ms: 100,
            webhook_retry_base_ms: 500,
            webhook_retry_max_ms: 60_000,
            webhook_max_attempts: 50,
            settlement_fee_bps: 290,
            settlement_fee_fixed_minor: 30,
            chargeback_fee_minor: 1_500,
            dispute_delay_ms: 10_000,
            faults: Faults::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &str| if secret.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("SandboxConfig")
            .field("api_key", &hidden(&self.api_key))
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &hidden(&self.webhook_secret))
            .field("public_url", &self.public_url)
            .field("merchant_name", &self.merchant_name)
            .field("review_delay_ms", &self.review_delay_ms)
            .field("session_ttl_ms", &self.session_ttl_ms)
            .field("settle_delay_ms", &self.settle_delay_ms)
            .field("webhook_retry_base_ms", &self.webhook_retry_base_ms)
            .field("webhook_retry_max_ms", &self.webhook_retry_max_ms)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("settlement_fee_bps", &self.settlement_fee_bps)
            .field(
                "settlement_fee_fixed_minor",
                &self.settlement_fee_fixed_minor,
            )
            .field("chargeback_fee_minor", &self.chargeback_fee_minor)
            .field("dispute_delay_ms", &self.dispute_delay_ms)
            .field("faults", &self.faults)
            .finish()
    }
}

/// A running sandbox. Dropping it leaves the sandbox running; call [`SandboxHandle::shutdown`]
/// to stop it.
#[derive(Debug)]
pub struct SandboxHandle {
    /// The address the sandbox listens on.
    pub addr: SocketAddr,
    /// `http://{addr}`.
    pub base_url: String,
    stop: oneshot::Sender<()>,
    background: JoinHandle<()>,
}

impl SandboxHandle {
    /// Stops accepting connections, lets requests in flight finish (in the background), and
    /// cancels every pending webhook delivery, review, settlement and the expiry sweeper.
    pub fn shutdown(self) {
        let _ = self.stop.send(());
        self.background.abort();
    }
}

/// What every handler and background task shares.
pub(crate) struct App {
    pub(crate) config: SandboxConfig,
    /// Base of the hosted page URLs, without a trailing slash.
    pub(crate) public_url: String,
    store: Mutex<Store>,
    pub(crate) background: Background,
    pub(crate) http: reqwest::Client,
    /// The outage and lie-after-effect test switches.
    pub(crate) switches: test_hooks::TestSwitches,
}

impl App {
    /// Locks the state. Callers keep the guard for a few statements and never across an await.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while locked cannot leave the maps half-written in a way that matters to a
        // sandbox, so a poisoned lock is taken as it is.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) type AppState = Arc<App>;

/// Starts the sandbox on `listener` and returns at once; it serves in tokio tasks.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
) -> anyhow::Result<SandboxHandle> {
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let public_url = config
        .public_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| base_url.clone());
    if config.api_key.is_empty() {
        tracing::warn!("sandbox PSP: empty api_key, /v1/* calls are not authenticated");
    }
    let http = reqwest::Client::builder()
        .timeout(webhooks::ATTEMPT_TIMEOUT)
        // A webhook endpoint that answers 3xx has not taken the event: retry, never follow.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferropay-sandbox-psp/", env!("CARGO_PKG_VERSION")))
        .build()?;

    let (background, background_task) = Background::start();
    let app: AppState = Arc::new(App {
        config,
        public_url,
        store: Mutex::new(Store::default()),
        background,
        http,
        switches: test_hooks::TestSwitches::default(),
    });
    app.background.submit(sessions::sweep_expired(app.clone()));

    let router = routes(app);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(
            CuttableListener::new(listener),
            router.into_make_service_with_connect_info::<ConnTag>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await;
        if let Err(error) = served {
            tracing::error!(%error, "sandbox PSP server stopped");
        }
    });
    tracing::info!(%addr, "sandbox PSP listening");
    Ok(SandboxHandle {
        addr,
        base_url,
        stop,
        background: background_task,
    })
}

fn routes(app: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/payment_sessions",
            post(api::create_session).get(api::list_sessions),
        )
        .route("/payment_sessions/{token}", get(api::get_session))
        .route("/refunds", post(refunds::create).get(refunds::find_by_key))
        .route("/refunds/{id}", get(refunds::get))
        .route("/payouts", post(payouts::create).get(payouts::find_by_key))
        .route("/payouts/{id}", get(payouts::get))
        .route("/settlements/{file}", get(settlements::file))
        .route(
            "/test/settlement_faults",
            post(settlements::set_faults).delete(settlements::clear_faults),
        )
        .route("/test/chargebacks", post(disputes::create_chargeback))
        .route("/disputes/{id}", get(disputes::get))
        .route("/disputes/{id}/evidence", post(disputes::submit_evidence))
        .route("/test/disputes/{id}/decide", post(disputes::decide))
        .route("/test/lost_webhooks", post(settlements::lose_webhooks))
        .route(
            "/test/outage",
            post(test_hooks::set_outage).get(test_hooks::get_outage),
        )
        .route(
            "/test/unauthorized_after_effect",
            post(test_hooks::set_unauthorized_after_effect),
        )
        .route(
            "/test/unauthorized_before_effect",
            post(test_hooks::set_unauthorized_before_effect),
        )
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            api::require_api_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            test_hooks::apply_switches,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            faults::inject_api_faults,
        ));
    Router::new()
        .nest("/v1", v1)
        .route(
            "/pay/{token}",
            get(hosted_page::show).post(hosted_page::pay),
        )
        .route("/pay/{token}/challenge", post(hosted_page::challenge))
        .route("/favicon.ico", get(hosted_page::favicon))
        .route("/assets/hosted-page.js", get(hosted_page::script))
        .with_state(app)
}
