//! Reconciliation for operators: `GET /v1/reconciliation/breaks` lists breaks
//! (`?status=open|resolved|all`, `?limit=1..1000`), `POST /v1/reconciliation/breaks/{id}/resolve`
//! `{"reason"}` marks one resolved, and `POST /v1/reconciliation/runs` `{"date": "YYYY-MM-DD"}`
//! fetches that day's settlement file from the PSP and reconciles it now (as the nightly run
//! does), answering the report. `GET /v1/reconciliation/settlement_files/{YYYY-MM-DD}` hands
//! that day's file from the PSP over as it is (CSV), for `ferropay reconcile --file` or a look.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::psp::PspError;
use ferropay::reconcile::BreakFilter;
use ferropay::reconcile::schedule::parse_date;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams};
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
    QueryParams(query): QueryParams<HashMap<String, String>>,
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
    PathId(break_id): PathId,
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
    /// The PSP to reconcile; default: the default PSP.
    #[serde(default)]
    psp: Option<String>,
    /// Reconcile a day that has not closed (today): read and match only, post nothing.
    #[serde(default)]
    provisional: bool,
}

/// Fetch a day's settlement file from the PSP and reconcile it now, as the nightly run does.
/// Only a closed UTC day is reconciled for good; today's (or a later day's, or a day before our
/// first payment) is 400 unless `provisional`, which reads and matches and posts nothing.
#[utoipa::path(post, path = "/v1/reconciliation/runs", tag = "reconciliation",
    request_body = schemas::ReconciliationRunRequest,
    responses(
        (status = 201, description = "The run's report", body = schemas::ReconciliationReport),
        (status = 400, description = "Not a date, no PSP of that name, or a day that has not closed (and not provisional), is in the future or is before our first payment", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 502, description = "The PSP refused the file for good (its reason is in the message); no retry helps", body = schemas::ErrorBody),
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
    let provisional = body.typed.provisional;
    let reconciler = match &body.typed.psp {
        None => service.reconciler(),
        Some(psp) => {
            if service.connectors.get(psp).is_none() {
                return Err(ApiError::invalid(
                    "psp",
                    format!("no PSP named `{psp}` is configured"),
                ));
            }
            service.psp_reconciler(psp)?
        }
    };
    // A run outlives a client that hangs up: its row and postings are never left half done.
    let run = tokio::spawn(async move {
        reconciler
            .reconcile_day(date, &std::env::temp_dir(), provisional)
            .await
    });
    let report = run.await.map_err(|e| {
        ApiError(ferropay::Error::Internal(format!(
            "reconciliation task: {e}"
        )))
    })??;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// `GET /v1/reconciliation/settlement_files/{date}`: the PSP's settlement file of that UTC day,
/// streamed from a temporary file that is unlinked as soon as it is open.
#[utoipa::path(get, path = "/v1/reconciliation/settlement_files/{file}", tag = "reconciliation",
    params(("file" = String, Path, description = "The UTC day, `YYYY-MM-DD` (`.csv` may follow)")),
    responses(
        (status = 200, description = "The PSP's settlement file of that day", content_type = "text/csv", body = String),
        (status = 400, description = "Not a date", body = schemas::ErrorBody),
        (status = 502, description = "The PSP refused the file for good (its reason is in the message)", body = schemas::ErrorBody),
        (status = 503, description = "The PSP did not give the file", body = schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub async fn settlement_file(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(file): PathId,
) -> Result<Response, ApiError> {
    let date_text = file.strip_suffix(".csv").unwrap_or(&file);
    let date = parse_date(date_text).map_err(|message| ApiError::invalid("date", message))?;
    let path = std::env::temp_dir().join(format!(
        "ferropay-settlement-download-{}.csv",
        ferropay::ids::new_id("stl")
    ));
    let fetched = service
        .connectors
        .default_connector()
        .settlement_file(date, &path)
        .await;
    let opened = match fetched {
        Ok(_) => tokio::fs::File::open(&path)
            .await
            .map_err(|e| ferropay::Error::Internal(format!("the downloaded file: {e}"))),
        Err(PspError::Permanent(reason)) => Err(ferropay::Error::PspRejected(format!(
            "the settlement file of {date}: {reason}"
        ))),
        Err(PspError::Retryable(reason)) => Err(ferropay::Error::PspUnavailable {
            message: format!("fetching the settlement file of {date}: {reason}"),
            retry_after_s: 60,
        }),
    };
    let _ = tokio::fs::remove_file(&path).await;
    let file = opened.map_err(ApiError)?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(buffer), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    let disposition = format!("attachment; filename=\"settlement-{date}.csv\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}
