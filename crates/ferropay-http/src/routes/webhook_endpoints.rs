//! Webhook endpoints for operators: register (`POST /v1/webhook_endpoints`, the secret shown
//! once), list, show, change, delete, roll the secret, read the delivery log, redeliver.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferropay::Ferropay;
use ferropay::webhooks::deliver::{self, DeliveryView};
use ferropay::webhooks::endpoints::{self, EndpointInput, EndpointUpdate, EndpointView};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams};
use crate::openapi::schemas;
use crate::routes::List;

/// Register an endpoint; the answer's `secret` is shown this once.
#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhook_endpoints",
    request_body = schemas::CreateWebhookEndpoint,
    responses(
        (status = 201, description = "The endpoint, with its signing secret", body = schemas::WebhookEndpoint),
        (status = 409, description = "Too many endpoints", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
    ))]
pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    body: JsonBody<EndpointInput>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let view = endpoints::create(&service.store, &service.config.webhooks, &body.typed).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every endpoint, oldest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhook_endpoints",
    responses((status = 200, description = "The endpoints", body = schemas::WebhookEndpointList)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
) -> Result<Json<List<EndpointView>>, ApiError> {
    Ok(Json(List::complete(endpoints::list(&service.store).await?)))
}

/// One endpoint (never its secret).
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The endpoint's id (`we_…`)")),
    responses((status = 200, description = "The endpoint", body = schemas::WebhookEndpoint)))]
pub async fn show(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(endpoint_id): PathId,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(endpoints::get(&service.store, &endpoint_id).await?))
}

/// Change an endpoint's URL, event types, description, or enable it again.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = schemas::UpdateWebhookEndpoint,
    responses(
        (status = 200, description = "The endpoint", body = schemas::WebhookEndpoint),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
    ))]
pub async fn update(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(endpoint_id): PathId,
    body: JsonBody<EndpointUpdate>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(
        endpoints::update(
            &service.store,
            &service.config.webhooks,
            &endpoint_id,
            &body.typed,
        )
        .await?,
    ))
}

/// Delete an endpoint: nothing more is delivered to it.
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "Deleted", body = schemas::Deleted)))]
pub async fn delete(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(endpoint_id): PathId,
) -> Result<Json<Value>, ApiError> {
    endpoints::delete(&service.store, &endpoint_id).await?;
    Ok(Json(json!({ "id": endpoint_id, "deleted": true })))
}

/// Make a new signing secret; the old one stays valid for 24 hours beside it (deliveries carry
/// a `v1` signature for each).
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/roll_secret", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The endpoint, with its new secret", body = schemas::WebhookEndpoint)))]
pub async fn roll_secret(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(endpoint_id): PathId,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(
        endpoints::roll_secret(&service.store, &endpoint_id).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last delivery of the previous page.
    starting_after: Option<String>,
}

/// The endpoint's delivery log, newest first: each delivery with each attempt's status code,
/// latency and error.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The endpoint's id"), DeliveryListQuery),
    responses((status = 200, description = "A page of deliveries", body = schemas::DeliveryList)))]
pub async fn deliveries(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(endpoint_id): PathId,
    QueryParams(query): QueryParams<DeliveryListQuery>,
) -> Result<Json<List<DeliveryView>>, ApiError> {
    let page =
        ferropay::lists::Page::parse(query.limit.as_deref(), query.starting_after.as_deref())?;
    let listed = deliver::deliveries(&service.store, &endpoint_id, &page).await?;
    Ok(Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}

/// Send a delivery again now.
#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/redeliver", tag = "webhook_endpoints",
    params(("id" = String, Path, description = "The delivery's id (`whd_…`)")),
    responses((status = 202, description = "Queued again", body = schemas::Delivery)))]
pub async fn redeliver(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(delivery_id): PathId,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(deliver::redeliver(&service.store, &delivery_id).await?),
    ))
}
