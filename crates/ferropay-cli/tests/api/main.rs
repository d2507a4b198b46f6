//! Black-box tests: each starts the real server and sandbox PSP on random ports, over a fresh
//! SQLite file or a fresh PostgreSQL database, and speaks HTTP to them as clients, buyers and
//! PSPs do. One binary, so that it links once.

mod helpers;

mod bad_bytes;
mod bad_input;
mod bench;
mod cards;
mod chain_keys;
mod cli_env;
mod closed_days;
mod connectors;
mod connectors_by_key;
mod connectors_crash;
mod connectors_disputes;
mod console;
mod crash;
mod demo;
mod disputes;
mod dlq;
mod engine;
mod events;
mod fakes;
mod fuzz_corpus;
mod idempotency;
mod instances;
mod jobs;
mod kafka_events;
mod late_capture;
mod ledger;
mod limits;
mod lists;
mod merchant_webhooks;
mod minimal_psp;
mod openapi;
mod outages;
mod payouts;
mod poller;
mod readme;
mod reconcile_chunks;
mod reconciliation;
mod refunds;
mod retention;
mod reverse_on_proof;
mod scheduled;
mod scopes;
mod shutdown;
mod webhooks;
