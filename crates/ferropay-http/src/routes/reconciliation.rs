//! Reconciliation for operators: `GET /v1/reconciliation/breaks` lists breaks
//! (`?status=open|resolved|all`, `?limit=1..1000`), `POST /v1/reconciliation/breaks/{id}/resolve`
//! `{"reason"}` marks one resolved, and `POST /v1/reconciliation/runs` `{"date": "YYYY-MM-DD"}`
//! fetches that day's settlement file from the PSP and reconciles it now (as the nightly run
//! does), answering the report.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::reconcile::BreakFilter;
use ferropay::reconcile::schedule::parse_date;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody};
use crate::openapi::schemas;

/// Breaks listed when `limit` is not given.
const DEFAULT_LIMIT: u32 = 100;

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the query parameters for OpenAPI; parsed by hand below.
struct BreakQuery {
    /// Which breaks (default `all`).
    #[param(pattern = "^(open|resolved|all)$")]
    status: Option<String>,
    /// Most breaks listed (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Reconciliation breaks, newest first.
#[utoipa::path(get, path = "/v1/reconciliation/breaks", tag = "reconciliation",
    params(BreakQuery),
    responses((status = 200, description = "Breaks", body = schemas::BreakList)))]
pub async fn list_breaks(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(name) = query
        .keys()
        .find(|k| !["status", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            name.clone(),
            "unknown query parameter (status, limit)",
        ));
    }
    let filter = match query.get("status").map(String::as_str) {
        None | Some("all") => BreakFilter::All,
        Some("open") => BreakFilter::Open,
        Some("resolved") => BreakFilter::Resolved,
        Some(_) => return Err(ApiError::invalid("status", "must be open, resolved or all")),
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::invalid("limit", "must be an integer from 1 to 1000"))?,
    };
    let breaks = service.reconciler().breaks(filter, limit).await?;
    Ok(Json(json!({ "data": breaks })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    reason: String,
}

/// Mark a break resolved, with the reason.
#[utoipa::path(post, path = "/v1/reconciliation/breaks/{id}/resolve", tag = "reconciliation",
    params(("id" = String, Path, description = "The break's id")),
    request_body = schemas::ResolveBreak,
    responses(
        (status = 200, description = "The resolved break", body = schemas::Break),
        (status = 409, description = "The break is resolved already", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
    ))]
pub async fn resolve_break(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Path(break_id): Path<String>,
    body: JsonBody<ResolveInput>,
) -> Result<Response, ApiError> {
    let resolved = service
        .reconciler()
        .resolve(&break_id, &body.typed.reason)
        .await?;
    Ok(Json(resolved).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    date: String,
}

/// Fetch a day's settlement file from the PSP and reconcile it now, as the nightly run does.
#[utoipa::path(post, path = "/v1/reconciliation/runs", tag = "reconciliation",
    request_body = schemas::ReconciliationRunRequest,
    responses(
        (status = 201, description = "The run's report", body = schemas::ReconciliationReport),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 502, description = "The PSP refused to give the file", body = schemas::ErrorBody),
        (status = 503, description = "The PSP is unavailable", body = schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub async fn run(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    body: JsonBody<RunInput>,
) -> Result<Response, ApiError> {
    let date =
        parse_date(&body.typed.date).map_err(|message| ApiError::invalid("date", message))?;
    let reconciler = service.reconciler();
    // A run outlives a client that hangs up: its row and postings are never left half done.
    let run =
        tokio::spawn(async move { reconciler.reconcile_day(date, &std::env::temp_dir()).await });
    let report = run.await.map_err(|e| {
        ApiError(ferropay::Error::Internal(format!(
            "reconciliation task: {e}"
        )))
    })??;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}
