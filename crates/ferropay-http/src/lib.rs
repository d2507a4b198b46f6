//! ferropay's HTTP face: the axum router for the pay-in API, reconciliation for operators, the
//! PSP webhooks, the buyer's status page and health. Handlers only translate HTTP to
//! [`ferropay::Ferropay`]'s use cases and their errors back to the contract's JSON errors.

pub mod error;
pub mod extract;
pub mod openapi;
mod routes;
pub mod scopes;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use ferropay::Ferropay;

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole application's routes over one shared [`Ferropay`].
pub fn router(service: Ferropay) -> Router {
    routes::metrics::install();
    Router::new()
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
        .route("/healthz", get(routes::health::healthz))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::docs))
        .route("/docs/docs.js", get(openapi::docs_js))
        .route("/metrics", get(routes::metrics::render))
        .fallback(routes::health::not_found)
        .method_not_allowed_fallback(routes::health::method_not_allowed)
        .layer(middleware::from_fn(refuse_nul_in_uri))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(service)
}

/// Serves [`router`] on `listener` until `shutdown` completes; requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Ferropay,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}

/// 400 for a path or query holding an encoded NUL (`%00`): no database text column takes it,
/// and no id or filter of ours contains it.
async fn refuse_nul_in_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let has_nul = |part: &str| part.to_ascii_lowercase().contains("%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        let field = if has_nul(uri.path()) { "path" } else { "query" };
        return axum::response::IntoResponse::into_response(error::ApiError::invalid(
            field,
            "must not contain the NUL character (%00)",
        ));
    }
    next.run(request).await
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
