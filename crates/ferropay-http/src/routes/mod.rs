//! One module per part of the contract's HTTP API.

pub mod health;
pub mod pages;
pub mod payments;
pub mod reconciliation;
pub mod wallets;
pub mod webhooks;
