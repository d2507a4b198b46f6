//! `GET /metrics`: Prometheus text exposition of the process's metrics (the `metrics` facade,
//! recorded by the library and the HTTP layer; rendered by metrics-exporter-prometheus).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
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

pub async fn render() -> Response {
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
