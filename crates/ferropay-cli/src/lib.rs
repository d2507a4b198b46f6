//! The `ferropay` binary's library half: assembling a running server from its settings (the API,
//! the webhooks, the pages, and the in-process sandbox PSP unless another PSP is configured).
//! `main.rs` parses the command line; black-box tests call [`serve::start`] directly. The
//! benchmarks (`ferropay bench …`) live here too, as they start that same server, and the
//! progress bar that long commands draw on a terminal.

pub mod banner;
pub mod bench;
pub mod demo;
pub mod ledger_keys;
pub mod progress;
pub mod serve;
