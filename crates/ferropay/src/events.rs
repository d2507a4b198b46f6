//! The outbox as merchants read it: every event ferropay wrote (`payment.succeeded`,
//! `refund.failed`, `webhook_endpoint.disabled`, …) in one shape, [`Event`], listed oldest first
//! after a cursor (`GET /v1/events`) and pushed to merchants' webhook endpoints
//! ([`crate::webhooks`]).
//!
//! The cursor is an event's position `(created_at_ms, id)`. An event's time is taken inside
//! the transaction that writes it, so one whose transaction commits late may land just behind a
//! cursor that a reader already passed; a reader catching up after an outage should start a
//! little before where it stopped (events carry ids to dedupe by). Webhook deliveries do not
//! depend on this: each event is marked once it has been handed to the endpoints.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::rfc3339_from_ms;
use crate::error::Result;
use crate::lists::{Listed, Order, Page, Param, Select, cursor, page_of};
use crate::store::Store;

/// One event, as `GET /v1/events` lists it and as a webhook endpoint receives it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Event {
    /// The outbox id (`obx_…`); receivers dedupe by it.
    pub id: String,
    /// `payment.succeeded`, `refund.failed`, …
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payment, refund, payout or endpoint the event is about.
    pub aggregate_id: String,
    /// RFC 3339, when the change committed.
    pub created_at: String,
    /// The event's own fields.
    pub data: serde_json::Value,
}

/// Filters of `GET /v1/events`.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
}

pub(crate) const SELECT_EVENT: &str =
    "SELECT id, topic, aggregate_id, payload, created_at_ms FROM outbox";

pub(crate) fn event_of(row: &AnyRow) -> Result<Event> {
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        id: row.try_get("id")?,
        event_type: row.try_get("topic")?,
        aggregate_id: row.try_get("aggregate_id")?,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        // Written by `outbox::enqueue` from a JSON value; anything else is kept as text.
        data: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
    })
}

/// `GET /v1/events`: oldest first, after the cursor.
pub async fn list(store: &Store, filter: &EventFilter, page: &Page) -> Result<Listed<Event>> {
    let cursor = cursor(store, "outbox", page.starting_after.as_deref()).await?;
    let mut select = Select::new(store.backend());
    select.text_eq("topic", &filter.event_type);
    select.text_eq("aggregate_id", &filter.aggregate_id);
    select.after("", Order::OldestFirst, cursor);
    let rows = select
        .fetch(store, SELECT_EVENT, "", Order::OldestFirst, page.limit)
        .await?;
    let data = rows.iter().map(event_of).collect::<Result<Vec<_>>>()?;
    Ok(page_of(data, page.limit))
}

/// One event by id.
pub async fn get(store: &Store, event_id: &str) -> Result<Option<Event>> {
    let mut select = Select::new(store.backend());
    select.condition("id = ?", vec![Param::Text(event_id.to_owned())]);
    let rows = select
        .fetch(store, SELECT_EVENT, "", Order::OldestFirst, 1)
        .await?;
    rows.first().map(event_of).transpose()
}
