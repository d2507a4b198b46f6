//! ferropay: the payment system of a marketplace, as a library.
//!
//! This crate owns the domain and its use cases: money, pay-in (payment events, orders and their
//! state machine), refunds and payouts, the double-entry ledger, the sellers' wallets, PSP
//! connectors, idempotency, the durable job queue, the outbox, reconciliation against the PSP's
//! settlement files, and storage on SQLite or PostgreSQL. It knows nothing of HTTP;
//! `ferropay-http` maps requests onto [`Ferropay`]'s methods.

pub mod api_keys;
pub mod background;
pub mod backlog;
pub mod chain_keys;
pub mod clock;
pub mod console;
pub mod dispute;
pub mod engine;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub mod ledger;
pub mod lists;
pub mod money;
pub mod outbox;
pub mod payin;
pub mod payout;
pub mod psp;
pub mod reconcile;
pub mod refund;
pub mod retention;
pub mod secret;
pub mod sellers;
pub mod service;
pub mod store;
pub mod wallet;
pub mod webhooks;

pub use error::{Error, Result};
pub use service::{Ferropay, FerropayConfig};
