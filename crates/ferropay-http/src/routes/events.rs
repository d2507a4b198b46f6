//! `GET /v1/events`: every event of the outbox, oldest first after a cursor, so that a merchant
//! whose webhook endpoint was down can replay what it missed.

use axum::Json;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::events::Event;

use crate::error::ApiError;
use crate::extract::{ApiKey, QueryParams};
use crate::openapi::schemas;
use crate::routes::List;
use crate::routes::lists::EventListQuery;

/// Events, oldest first, after `starting_after`.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventListQuery),
    responses((status = 200, description = "A page of events", body = schemas::EventList)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    QueryParams(query): QueryParams<EventListQuery>,
) -> Result<Json<List<Event>>, ApiError> {
    let (filter, page) = query.parse()?;
    let listed = ferropay::events::list(&service.store, &filter, &page).await?;
    Ok(Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}
