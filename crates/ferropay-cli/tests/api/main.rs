//! Black-box tests: each starts the real server and sandbox PSP on random ports, over a fresh
//! SQLite file or a fresh PostgreSQL database, and speaks HTTP to them as clients, buyers and
//! PSPs do. One binary, so that it links once.

mod helpers;

mod bad_input;
mod bench;
mod cards;
mod cli_env;
mod crash;
mod dlq;
mod events;
mod idempotency;
mod instances;
mod jobs;
mod kafka_events;
mod ledger;
mod minimal_psp;
mod payouts;
mod poller;
mod reconcile_chunks;
mod reconciliation;
mod refunds;
mod retention;
mod shutdown;
mod webhooks;
