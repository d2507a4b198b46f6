//! Where SQLite and PostgreSQL truly differ: which one a URL names, how a row is locked for the
//! rest of a transaction, and how the ledger is made append-only (triggers differ in syntax).

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::BadUrl(url.to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Invariant I2: the journal refuses UPDATE and DELETE. SQLite raises from a trigger.
pub const APPEND_ONLY_SQLITE: &str =
    include_str!("../../migrations/sqlite/0002_append_only_ledger.sql");
/// Invariant I2 on PostgreSQL: a trigger function that raises.
pub const APPEND_ONLY_POSTGRES: &str =
    include_str!("../../migrations/postgres/0002_append_only_ledger.sql");

/// Version 13: disputes, and late captures refunded as duplicates (the same SQL on both today,
/// kept per dialect like version 2).
pub const DISPUTES_SQLITE: &str = include_str!("../../migrations/sqlite/0013_disputes.sql");
pub const DISPUTES_POSTGRES: &str = include_str!("../../migrations/postgres/0013_disputes.sql");
