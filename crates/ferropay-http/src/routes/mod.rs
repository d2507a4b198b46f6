//! One module per part of the contract's HTTP API, and the envelope every list answers in.

pub mod api_keys;
pub mod disputes;
pub mod events;
pub mod health;
pub mod lists;
pub mod metrics;
pub mod pages;
pub mod payments;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;
pub mod sellers;
pub mod wallets;
pub mod webhook_endpoints;
pub mod webhooks;

use serde::Serialize;

/// A page of a list: `{"data": [...], "has_more": bool}`. With `has_more`, the next page is
/// asked for with `starting_after` set to the last item's id.
#[derive(Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> List<T> {
    /// A list that is whole in one page.
    pub fn complete(data: Vec<T>) -> Self {
        Self {
            data,
            has_more: false,
        }
    }
}
