//! The console's merchant webhook deliveries: every delivery newest first, filtered by status
//! and endpoint (keyset on `(created_at_ms, id)` over `webhook_deliveries_created` and
//! `webhook_deliveries_endpoint`), each with its endpoint's URL and its attempts.
//! Redelivering is `webhooks::deliver::redeliver`, as the API's redeliver does.

use sqlx::Row;

use crate::error::Result;
use crate::lists::Select;
use crate::store::Store;
use crate::webhooks::deliver::{DeliveryView, delivery_of};

use super::{Cursor, Keyset, Paged};

/// Deliveries newest first (`webhook_deliveries_created`).
const NEWEST: Keyset = Keyset {
    at: "d.created_at_ms",
    id: "d.id",
};

/// A delivery with where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub url: String,
    pub delivery: DeliveryView,
}

#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    pub endpoint_id: Option<String>,
}

pub async fn list(
    store: &Store,
    filter: &DeliveryFilter,
    after: Option<&Cursor>,
) -> Result<Paged<DeliveryRow>> {
    let mut select = Select::new(store.backend());
    select.text_eq("d.status", &filter.status);
    select.text_eq("d.endpoint_id", &filter.endpoint_id);
    let page = NEWEST
        .page(
            store,
            select,
            "SELECT d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.created_at_ms, \
             e.url FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id",
            after,
        )
        .await?;
    let mut rows = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        rows.push(DeliveryRow {
            url: row.try_get("url")?,
            delivery: delivery_of(store, row).await?,
        });
    }
    Ok(Paged {
        rows,
        next: page.next,
    })
}
