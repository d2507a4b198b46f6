//! The operator console at `/console`: server-rendered HTML pages over `ferropay::console`'s
//! reads, for the payments team's daily work (find a payment and read its life, the books, the
//! open breaks, the dead letters, the disputes, the merchant webhook deliveries) and the few actions they take
//! (resolve a break, replay a dead letter, redeliver a webhook, verify the ledger), each calling
//! the use case the API and the CLI call.
//!
//! Why maud: templates are Rust expressions checked by the compiler (a missing field or a typo
//! is a build error, not a blank on a page), every spliced value is HTML-escaped unless wrapped
//! in `PreEscaped`, and there is no template directory to ship or keep in step with the code.
//! Askama would have done as well with templates in files; maud keeps each page's markup beside
//! the handler that fills it. No script at all: links and forms, so the pages work with any
//! browser, offline, and the one stylesheet (`console.css`) is compiled into the binary. The
//! overview's chart is an inline SVG drawn on the server.
//!
//! Sign-in and CSRF: [`auth`]. The console's routes take a session cookie, not a bearer key, and
//! answer HTML, so they are neither in the API's scope table (`crate::scopes`) nor in the
//! OpenAPI description; `docs/api.md` lists them.
//!
//! Pages, one module each: [`overview`], [`payments`], [`sellers`], [`ledger`],
//! [`reconciliation`], [`dead_letters`], [`disputes`], [`deliveries`]; what list pages share
//! (query, filter choices, table, pager): [`list`].

mod auth;
mod dead_letters;
mod deliveries;
mod disputes;
mod error;
mod layout;
mod ledger;
mod list;
mod overview;
mod payments;
mod reconciliation;
mod sellers;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use ferropay::Ferropay;

/// The console's routes, to be merged into the application's router.
pub fn router() -> Router<Ferropay> {
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/assets/console.css", get(layout::stylesheet))
        .route("/console/payments", get(payments::list))
        .route("/console/payments/{id}", get(payments::show))
        .route("/console/sellers", get(sellers::list))
        .route("/console/sellers/{id}", get(sellers::show))
        .route("/console/ledger", get(ledger::page))
        .route("/console/ledger/verify", post(ledger::verify))
        .route("/console/ledger/settlement", get(ledger::settlement))
        .route(
            "/console/ledger/transactions/{id}",
            get(ledger::transaction),
        )
        .route("/console/reconciliation", get(reconciliation::page))
        .route("/console/reconciliation/runs", get(reconciliation::runs))
        .route(
            "/console/reconciliation/breaks/{id}",
            get(reconciliation::show_break),
        )
        .route(
            "/console/reconciliation/breaks/{id}/resolve",
            post(reconciliation::resolve),
        )
        .route("/console/dead-letters", get(dead_letters::list))
        .route("/console/dead-letters/{id}", get(dead_letters::show))
        .route(
            "/console/dead-letters/{id}/replay",
            post(dead_letters::replay),
        )
        .route("/console/disputes", get(disputes::list))
        .route("/console/disputes/{id}", get(disputes::show))
        .route("/console/deliveries", get(deliveries::list))
        .route(
            "/console/deliveries/{id}/redeliver",
            post(deliveries::redeliver),
        )
        .layer(middleware::map_response(protect))
}

/// Headers on every console response: never cached (pages show money and state), never framed,
/// nothing loaded from elsewhere, no referrer leaving the site.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
