//! Pay-in: payment events (one checkout) and their payment orders (one per seller), created
//! through the API, registered at the PSP, and moved by the PSP's outcomes.
//!
//! - [`model`]: the statuses and the stored shapes;
//! - [`request`]: a new payment as the checkout asks for it, parsed and validated;
//! - [`state`]: the one transition function (pure);
//! - [`create`]: `POST /v1/payments`, with idempotency and recovery points;
//! - [`commands`]: a fresh request's two writes as money-engine commands (group commit);
//! - [`register`]: the PSP session's registration, as a job (run inline by `create`);
//! - [`apply`]: applying a PSP outcome in one database transaction;
//! - [`poll`]: the pending-payment poller, as a job;
//! - [`repo`]: reading payments back.

pub mod apply;
pub(crate) mod commands;
pub mod create;
pub mod model;
pub mod poll;
pub mod register;
pub mod repo;
pub mod request;
pub mod state;
