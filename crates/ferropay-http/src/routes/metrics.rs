//! `GET /metrics`: Prometheus text exposition of the process's metrics (the `metrics` facade,
//! recorded by the library and the HTTP layer; rendered by metrics-exporter-prometheus), and the
//! shared backlog read from the database at each scrape (`ferropay::backlog`): jobs by status,
//! the outbox relay's lag, open reconciliation breaks, payments pending for long.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once; later calls are no-ops. Answers `false`
/// when another recorder was installed first (then `/metrics` is empty).
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics recorder not installed");
                None
            }
        })
        .is_some()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
pub async fn render(State(service): State<Ferropay>) -> Response {
    let relays = &service.config.outbox_relays;
    match ferropay::backlog::read(&service.store, ferropay::clock::now_ms(), relays).await {
        Ok(backlog) => {
            let gauge = |name: &'static str, value: i64| metrics::gauge!(name).set(value as f64);
            for (status, count) in [
                ("queued", backlog.jobs_queued),
                ("running", backlog.jobs_running),
                ("dead", backlog.jobs_dead),
            ] {
                metrics::gauge!("ferropay_jobs", "status" => status).set(count as f64);
            }
            if let Some(lag_s) = backlog.outbox_lag_s {
                gauge("ferropay_outbox_lag_seconds", lag_s);
            }
            gauge(
                "ferropay_reconciliation_breaks_open",
                backlog.reconciliation_breaks_open,
            );
            gauge(
                "ferropay_payments_pending_long",
                backlog.payments_pending_long,
            );
        }
        // The counters still render; the gauges keep their last values.
        Err(error) => tracing::warn!(%error, "metrics: the backlog could not be read"),
    }
    let body = HANDLE
        .get()
        .and_then(|handle| handle.as_ref())
        .map(|handle| {
            handle.run_upkeep();
            handle.render()
        })
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}
