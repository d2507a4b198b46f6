//! The schema's versions, embedded in the binary and run on start under sqlx's migration lock.
//! Version 1 is portable SQL shared by both databases; later versions may differ per dialect.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::dialect::{
    APPEND_ONLY_POSTGRES, APPEND_ONLY_SQLITE, DISPUTES_POSTGRES, DISPUTES_SQLITE,
};
use super::{Backend, Store, StoreError};

const SCHEMA: &str = include_str!("../../migrations/0001_schema.sql");
const REFUNDS_PAYOUTS: &str = include_str!("../../migrations/0005_refunds_payouts.sql");
/// Version 3: the durable job queue and its dead letters (portable SQL).
const JOBS: &str = include_str!("../../migrations/0003_jobs.sql");
const RECONCILIATION: &str = include_str!("../../migrations/0004_reconciliation.sql");
/// Version 6: indexes that find done jobs and old webhook events by age (portable SQL).
const RETENTION: &str = include_str!("../../migrations/0006_retention.sql");
/// Version 7: refunds found by the PSP's refund id (portable SQL).
const REFUNDS_BY_PSP_ID: &str = include_str!("../../migrations/0007_refunds_by_psp_id.sql");
/// Version 8: each payment keeps the platform fee rate it was created with (portable SQL).
const PAYMENT_FEE_RATE: &str = include_str!("../../migrations/0008_payment_fee_rate.sql");
/// Version 9: API keys carry scopes; older keys keep every scope (portable SQL).
const API_KEY_SCOPES: &str = include_str!("../../migrations/0009_api_key_scopes.sql");
/// Version 10: the indexes that lists page through (portable SQL).
const LIST_INDEXES: &str = include_str!("../../migrations/0010_list_indexes.sql");
/// Version 11: webhooks to merchants: endpoints, deliveries, attempts (portable SQL).
const WEBHOOK_ENDPOINTS: &str = include_str!("../../migrations/0011_webhook_endpoints.sql");
/// Version 12: the Kafka relay's own record of what it published (portable SQL).
const OUTBOX_KAFKA: &str = include_str!("../../migrations/0012_outbox_kafka.sql");
/// Version 14: sellers' accounts at the PSPs and the PSP of each payout (per dialect folder,
/// the same SQL in both).
const CONNECTORS_POSTGRES: &str = include_str!("../../migrations/postgres/0014_connectors.sql");
const CONNECTORS_SQLITE: &str = include_str!("../../migrations/sqlite/0014_connectors.sql");
/// Version 15: the operator console's sessions and indexes, the analysts' views, and account
/// balances kept by a trigger on postings (portable SQL, then each dialect's trigger).
const CONSOLE_SQLITE: &str = concat!(
    include_str!("../../migrations/0015_console.sql"),
    include_str!("../../migrations/sqlite/0015_account_balances.sql")
);
const CONSOLE_POSTGRES: &str = concat!(
    include_str!("../../migrations/0015_console.sql"),
    include_str!("../../migrations/postgres/0015_account_balances.sql")
);
/// Version 17: the chain key id of each journal transaction, and scheduled runs held under a
/// lease (portable SQL).
const KEYED_CHAIN_SCHEDULED_RUNS: &str =
    include_str!("../../migrations/0017_keyed_chain_scheduled_runs.sql");

/// Version 19: the console's disputes (an index), the analysts' views after disputes
/// (`payment_funnel` with `disputed`, read from `disputed_days`, kept by a trigger on disputes),
/// and `settlement_days`, which `daily_settlement` reads, kept by a trigger on postings
/// (portable SQL, then each dialect's triggers).
const CONSOLE_DISPUTES_SQLITE: &str = concat!(
    include_str!("../../migrations/0019_console_disputes.sql"),
    include_str!("../../migrations/sqlite/0019_summaries.sql")
);
const CONSOLE_DISPUTES_POSTGRES: &str = concat!(
    include_str!("../../migrations/0019_console_disputes.sql"),
    include_str!("../../migrations/postgres/0019_summaries.sql")
);

/// Version 20: a posting's journal transaction checked once per statement on PostgreSQL, in
/// place of the foreign key's trigger per row; SQLite keeps its foreign key (why: the file).
const POSTINGS_CHECK_POSTGRES: &str =
    include_str!("../../migrations/postgres/0020_postings_transaction_check.sql");
const POSTINGS_CHECK_SQLITE: &str = "-- SQLite keeps the foreign key from postings to \
    journal_transactions (postgres/0020_postings_transaction_check.sql says why).\nSELECT 1;";

/// Version 21: `account_balances` and `settlement_days` kept by the money engine, a row per
/// account and per day and batch, in place of the triggers on postings (why: the files).
const SUMMARIES_BY_ENGINE_POSTGRES: &str =
    include_str!("../../migrations/postgres/0021_summaries_by_the_engine.sql");
const SUMMARIES_BY_ENGINE_SQLITE: &str =
    include_str!("../../migrations/sqlite/0021_summaries_by_the_engine.sql");

fn migrations(backend: Backend) -> Vec<Migration> {
    let (append_only, disputes, connectors, console, console_disputes, postings_check, summaries) =
        match backend {
            Backend::Sqlite => (
                APPEND_ONLY_SQLITE,
                DISPUTES_SQLITE,
                CONNECTORS_SQLITE,
                CONSOLE_SQLITE,
                CONSOLE_DISPUTES_SQLITE,
                POSTINGS_CHECK_SQLITE,
                SUMMARIES_BY_ENGINE_SQLITE,
            ),
            Backend::Postgres => (
                APPEND_ONLY_POSTGRES,
                DISPUTES_POSTGRES,
                CONNECTORS_POSTGRES,
                CONSOLE_POSTGRES,
                CONSOLE_DISPUTES_POSTGRES,
                POSTINGS_CHECK_POSTGRES,
                SUMMARIES_BY_ENGINE_POSTGRES,
            ),
        };
    vec![
        migration(1, "schema", SCHEMA),
        migration(2, "append only ledger", append_only),
        migration(3, "job queue", JOBS),
        migration(4, "reconciliation", RECONCILIATION),
        migration(5, "refunds and payouts", REFUNDS_PAYOUTS),
        migration(6, "retention", RETENTION),
        migration(7, "refunds by PSP id", REFUNDS_BY_PSP_ID),
        migration(8, "payment fee rate", PAYMENT_FEE_RATE),
        migration(9, "api key scopes", API_KEY_SCOPES),
        migration(10, "list indexes", LIST_INDEXES),
        migration(11, "webhook endpoints", WEBHOOK_ENDPOINTS),
        migration(12, "outbox kafka", OUTBOX_KAFKA),
        migration(13, "disputes", disputes),
        migration(14, "connectors", connectors),
        migration(15, "console and analyst views", console),
        migration(
            17,
            "keyed chain and scheduled runs",
            KEYED_CHAIN_SCHEDULED_RUNS,
        ),
        migration(19, "console disputes and settlement days", console_disputes),
        migration(
            20,
            "postings' transactions checked per statement",
            postings_check,
        ),
        migration(21, "ledger summaries kept by the engine", summaries),
    ]
}

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    let migrator = Migrator::with_migrations(migrations(store.backend()));
    migrator.run(store.pool()).await?;
    Ok(())
}
