//! One module per part of the contract's HTTP API.

pub mod health;
pub mod metrics;
pub mod pages;
pub mod payments;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;
pub mod wallets;
pub mod webhooks;
