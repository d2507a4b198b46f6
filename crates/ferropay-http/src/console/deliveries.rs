//! `GET /console/deliveries`: merchant webhook deliveries, newest first, by status and
//! endpoint, each with its attempts; `POST /console/deliveries/{id}/redeliver` sends one again
//! (`webhooks::deliver::redeliver`, as `POST /v1/webhook_deliveries/{id}/redeliver` does).

use crate::extract::PathId;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use ferropay::Ferropay;
use ferropay::console::deliveries::{self, DeliveryFilter};
use ferropay::console::{Cursor, filter_text};
use maud::{Markup, html};
use serde::Deserialize;

use crate::extract::QueryParams;

use super::auth::{Act, Session};
use super::error::{ConsoleError, ConsoleResult};
use super::layout::{self, badge, seg};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    endpoint_id: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    query: Result<QueryParams<ListQuery>, crate::error::ApiError>,
) -> ConsoleResult<Markup> {
    let QueryParams(query) = query.map_err(|e| ConsoleError::Domain(e.0))?;
    let status = filter_text("status", query.status.as_deref())?;
    if let Some(status) = &status
        && !["pending", "succeeded", "failed"].contains(&status.as_str())
    {
        return Err(
            ferropay::Error::invalid("status", "must be pending, succeeded or failed").into(),
        );
    }
    let endpoint_id = filter_text("endpoint_id", query.endpoint_id.as_deref())?;
    let after = filter_text("after", query.after.as_deref())?
        .map(|a| Cursor::parse(&a))
        .transpose()?;
    let filter = DeliveryFilter {
        status: status.clone(),
        endpoint_id: endpoint_id.clone(),
    };
    let page = deliveries::list(&service.store, &filter, after.as_ref()).await?;
    let body = html! {
        form.filters method="get" action="/console/deliveries" {
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in ["pending", "succeeded", "failed"] { option value=(s) selected[status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Endpoint id" input name="endpoint_id" value=[endpoint_id.as_deref()] size="30"; }
            button type="submit" { "Show" }
        }
        div.table-wrap {
            table #deliveries {
                thead { tr { th { "Delivery" } th { "Event" } th { "Endpoint" } th { "Status" } th { "Attempts" } th {} } }
                tbody {
                    @for row in &page.rows {
                        @let d = &row.delivery;
                        tr data-delivery=(d.id) {
                            td.mono { (d.id) br; span.hint { (d.created_at.replace('T', " ").replace('Z', "")) } }
                            td { (d.event_type) br; span.mono.hint { (d.event_id) } }
                            td { a href=(layout::link("/console/deliveries", &[("endpoint_id", &d.endpoint_id)])) { (row.url) } }
                            td { (badge(&d.status)) }
                            td {
                                @for a in &d.attempts {
                                    div.hint { (a.attempted_at.replace('T', " ").replace('Z', "")) " · "
                                        (a.status_code.map(|c| c.to_string()).unwrap_or_else(|| "no answer".into()))
                                        " · " (a.latency_ms) " ms"
                                        @if let Some(e) = &a.error { " · " (e) } }
                                }
                                @if d.attempts.is_empty() { span.hint { "not tried yet" } }
                            }
                            td {
                                form method="post" action={ "/console/deliveries/" (seg(&d.id)) "/redeliver" } {
                                    (layout::csrf(&session))
                                    button.secondary type="submit" { "Send again" }
                                }
                            }
                        }
                    }
                    @if page.rows.is_empty() { tr { td colspan="6" { "No delivery matches." } } }
                }
            }
        }
        (layout::pager("/console/deliveries", &[("status", status.as_deref().unwrap_or("")), ("endpoint_id", endpoint_id.as_deref().unwrap_or(""))], after.is_none(), page.next.as_deref()))
    };
    Ok(layout::page(
        "Webhook deliveries",
        "/console/deliveries",
        &session,
        body,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverForm {}

pub async fn redeliver(
    State(service): State<Ferropay>,
    PathId(delivery_id): PathId,
    act: Act<RedeliverForm>,
) -> ConsoleResult<Response> {
    let delivery = ferropay::webhooks::deliver::redeliver(&service.store, &delivery_id).await?;
    tracing::info!(%delivery_id, key_id = %act.session.operator.principal.key_id, "webhook redelivered from the console");
    Ok(Redirect::to(&layout::link(
        "/console/deliveries",
        &[("endpoint_id", &delivery.endpoint_id)],
    ))
    .into_response())
}
