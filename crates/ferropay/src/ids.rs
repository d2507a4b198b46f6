//! Identifiers: a short prefix that says what a thing is, then a time-ordered UUIDv7 in hex
//! (`pay_01937c…`), so ids sort by creation time in any database and in logs.

use uuid::Uuid;

/// A new id such as `pay_0193…` for the given prefix (`pay`, `po`, `jtx`, `evt`, `key`, …).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}
