//! ferropay's HTTP face: the axum router for the pay-in API, reconciliation for operators, the
//! PSP webhooks, the buyer's status page, the operator console (`/console`) and health. Handlers only translate HTTP to
//! [`ferropay::Ferropay`]'s use cases and their errors back to the contract's JSON errors.

mod console;
pub mod error;
pub mod extract;
pub mod json;
pub mod limits;
pub mod openapi;
mod routes;
pub mod scopes;
pub mod server;

use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{BoxError, Extension, Router};
use ferropay::Ferropay;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

pub use limits::ServerLimits;

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole application's routes over one shared [`Ferropay`], with the default limits.
pub fn router(service: Ferropay) -> Router {
    router_with(service, &ServerLimits::default())
}

/// The whole application's routes under `limits`: API requests past `max_in_flight` are shed
/// with 503 (`/healthz` and `/metrics` never are), each API key is rate-limited, each body read
/// within its deadline.
pub fn router_with(service: Ferropay, limits: &ServerLimits) -> Router {
    routes::metrics::install();
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: BoxError| async {
            limits::busy("too many requests in flight")
        }))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight.max(1),
        ));
    let app = Router::new()
        .route(
            "/v1/payments",
            post(routes::payments::create).get(routes::payments::list),
        )
        .route("/v1/payments/{id}", get(routes::payments::show))
        .route(
            "/v1/payments/{id}/refunds",
            post(routes::refunds::create).get(routes::refunds::list),
        )
        .route("/v1/refunds", get(routes::refunds::list_all))
        .route("/v1/payments/{id}/disputes", get(routes::disputes::list))
        .route("/v1/disputes", get(routes::disputes::list_all))
        .route(
            "/v1/disputes/{id}/evidence",
            post(routes::disputes::submit_evidence),
        )
        .route("/v1/sellers/{seller_id}/wallet", get(routes::wallets::show))
        .route(
            "/v1/sellers/{seller_id}/payouts",
            post(routes::payouts::create).get(routes::payouts::list),
        )
        .route("/v1/payouts", get(routes::payouts::list_all))
        .route(
            "/v1/sellers/{seller_id}/psp_accounts/{psp}",
            put(routes::sellers::set_psp_account),
        )
        .route("/v1/events", get(routes::events::list))
        .route(
            "/v1/reconciliation/breaks",
            get(routes::reconciliation::list_breaks),
        )
        .route(
            "/v1/reconciliation/breaks/{id}/resolve",
            post(routes::reconciliation::resolve_break),
        )
        .route("/v1/reconciliation/runs", post(routes::reconciliation::run))
        .route(
            "/v1/reconciliation/settlement_files/{file}",
            get(routes::reconciliation::settlement_file),
        )
        .route("/v1/api_keys", get(routes::api_keys::list))
        .route("/v1/api_keys/{id}/revoke", post(routes::api_keys::revoke))
        .route(
            "/v1/webhook_endpoints",
            post(routes::webhook_endpoints::create).get(routes::webhook_endpoints::list),
        )
        .route(
            "/v1/webhook_endpoints/{id}",
            get(routes::webhook_endpoints::show)
                .post(routes::webhook_endpoints::update)
                .delete(routes::webhook_endpoints::delete),
        )
        .route(
            "/v1/webhook_endpoints/{id}/roll_secret",
            post(routes::webhook_endpoints::roll_secret),
        )
        .route(
            "/v1/webhook_endpoints/{id}/deliveries",
            get(routes::webhook_endpoints::deliveries),
        )
        .route(
            "/v1/webhook_deliveries/{id}/redeliver",
            post(routes::webhook_endpoints::redeliver),
        )
        .route("/webhooks/psp/{psp}", post(routes::webhooks::receive))
        .route("/payments/{id}/status", get(routes::pages::payment_status))
        .route("/favicon.ico", get(routes::pages::favicon))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::docs))
        .route("/docs/docs.js", get(openapi::docs_js))
        .merge(console::router())
        .fallback(routes::health::not_found)
        .method_not_allowed_fallback(routes::health::method_not_allowed)
        .layer(shed)
        // Added after the shedding layer, so never shed.
        .route("/healthz", get(routes::health::healthz))
        .route("/metrics", get(routes::metrics::render))
        .layer(middleware::from_fn_with_state(
            std::time::Duration::from_millis(limits.body_read_timeout_ms),
            limits::read_body_in_time,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let app = match limits::KeyRateLimiter::new(limits) {
        Some(limiter) => app.layer(Extension(limiter)),
        None => app,
    };
    app.layer(middleware::from_fn(log_request))
        .with_state(service)
}

/// What a connection past the server's cap is answered: `/healthz` as usual, anything else 503.
pub fn overflow_router(service: Ferropay) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .fallback(|| async { limits::busy("too many connections") })
        .with_state(service)
}

/// Serves [`router_with`] `limits` on `listener` until `shutdown` completes; requests in flight
/// finish ([`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Ferropay,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(service.clone(), &limits);
    server::run(listener, app, overflow_router(service), &limits, shutdown).await
}

/// One structured log line per request: method, route, status, latency.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("ferropay_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("ferropay_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
