//! Black-box tests: each starts the real server and sandbox PSP on random ports, over a fresh
//! SQLite file or a fresh PostgreSQL database, and speaks HTTP to them as clients, buyers and
//! PSPs do. One binary, so that it links once.

mod helpers;

mod bad_input;
mod cards;
mod idempotency;
mod ledger;
mod reconciliation;
mod webhooks;
