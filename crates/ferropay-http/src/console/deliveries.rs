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

use super::auth::{Act, Session};
use super::error::ConsoleResult;
use super::layout::{self, badge, seg};
use super::list::{Col, ListQuery, choice, one_of, pager, table};

/// A delivery's statuses.
const STATUSES: [&str; 3] = ["pending", "succeeded", "failed"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    status: Option<String>,
    endpoint_id: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Markup> {
    let filter = DeliveryFilter {
        status: one_of("status", query.status.as_deref(), &STATUSES)?,
        endpoint_id: filter_text("endpoint_id", query.endpoint_id.as_deref())?,
    };
    let after = Cursor::from_param(query.after.as_deref())?;
    let page = deliveries::list(&service.store, &filter, after.as_ref()).await?;
    let columns = [
        Col::Text("Delivery"),
        Col::Text("Event"),
        Col::Text("Endpoint"),
        Col::Text("Status"),
        Col::Text("Attempts"),
        Col::Text(""),
    ];
    let body = html! {
        form.filters method="get" action="/console/deliveries" {
            (choice("Status", "status", &STATUSES, filter.status.as_deref()))
            label { "Endpoint id" input name="endpoint_id" value=[filter.endpoint_id.as_deref()] size="30"; }
            button type="submit" { "Show" }
        }
        (table("deliveries", &columns, &page.rows, |row| {
            let d = &row.delivery;
            html! {
                tr data-delivery=(d.id) {
                    td.mono { (d.id) br; span.hint { (layout::shown(&d.created_at)) } }
                    td { (d.event_type) br; span.mono.hint { (d.event_id) } }
                    td { a href=(layout::link("/console/deliveries", &[("endpoint_id", &d.endpoint_id)])) { (row.url) } }
                    td { (badge(&d.status)) }
                    td {
                        @for a in &d.attempts {
                            div.hint { (layout::shown(&a.attempted_at)) " · "
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
        }, "No delivery matches."))
        (pager("/console/deliveries", &[("status", filter.status.as_deref().unwrap_or("")), ("endpoint_id", filter.endpoint_id.as_deref().unwrap_or(""))], after.is_none(), page.next.as_deref()))
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
