//! Test: on PostgreSQL, every statement of a batch is planned as index probes over the batch's
//! own rows, whatever the tables hold (`Store::begin_batch`). Each statement is `EXPLAIN`ed in a
//! batch transaction against a `wallets` table large enough that a plain transaction reads it
//! whole (a hash join over all of it), which the test also shows, so that it can fail.
//! Runs when `FERROPAY_TEST_DATABASE_URL` is set (an admin URL); set and unreachable fails.

use sqlx::{AnyConnection, Connection, Executor, Row};

use super::load::LoadSql;
use super::write::WriteSql;
use crate::store::{Backend, Store, Tx};

/// Wallets seeded: enough that hashing a full read looks cheaper than a probe per batch row.
const SEEDED_WALLETS: i64 = 5_000;

/// A statement's plan, its parameters empty (`[]` for the JSON rows, 0 for a time).
async fn plan(tx: &mut Tx, sql: &str) -> String {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))).bind("[]");
    if sql.contains("$2") {
        query = query.bind(0_i64);
    }
    let rows = query
        .fetch_all(&mut **tx)
        .await
        .unwrap_or_else(|error| panic!("EXPLAIN {sql}: {error}"));
    rows.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The plan's nodes that read a whole table or hash one.
fn whole_table_reads(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter(|line| {
            ["Seq Scan", "Hash Join", "Merge Join"]
                .iter()
                .any(|node| line.contains(node))
        })
        .collect()
}

#[test]
fn a_batch_is_planned_as_probes_of_its_own_rows() {
    let Ok(admin_url) = std::env::var("FERROPAY_TEST_DATABASE_URL") else {
        eprintln!("FERROPAY_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let name = format!("ferropay_plans_{}", uuid::Uuid::now_v7().simple());
        let mut admin = AnyConnection::connect(&admin_url)
            .await
            .expect("FERROPAY_TEST_DATABASE_URL is set but PostgreSQL is unreachable");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        let base = admin_url.rsplit_once('/').expect("URL has a path").0;
        let store = Store::open(&format!("{base}/{name}"), 2)
            .await
            .expect("open the test database");
        sqlx::query(
            "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at_ms) \
             SELECT 'sel_' || g, 'USD', 0, 0 FROM generate_series(1, $1) AS g",
        )
        .bind(SEEDED_WALLETS)
        .execute(store.pool())
        .await
        .expect("seed the wallets");
        sqlx::query("ANALYZE wallets")
            .execute(store.pool())
            .await
            .expect("analyze");

        let load = LoadSql::new(Backend::Postgres);
        let write = WriteSql::new(Backend::Postgres);
        let statements: Vec<(&str, &str)> = load
            .statements()
            .into_iter()
            .chain(write.statements())
            .collect();
        let wallets_update = statements
            .iter()
            .find(|(name, _)| *name == "write wallets")
            .expect("the wallets' update")
            .1;

        // A plain transaction reads the whole table to update a batch's wallets.
        let mut plain = store.pool().begin().await.expect("begin");
        let plain_plan = plan(&mut plain, wallets_update).await;
        assert!(
            !whole_table_reads(&plain_plan).is_empty(),
            "without the batch's settings the planner is expected to read all {SEEDED_WALLETS} \
             wallets; if it no longer does, this test shows nothing:\n{plain_plan}"
        );
        plain.rollback().await.expect("rollback");

        // A batch's transaction probes the index for each of its rows, in every statement.
        let mut batch = store.begin_batch().await.expect("begin a batch");
        for (name, sql) in &statements {
            let plan = plan(&mut batch, sql).await;
            assert!(
                whole_table_reads(&plan).is_empty(),
                "{name} reads a whole table in a batch:\n{plan}"
            );
        }
        batch.rollback().await.expect("rollback");

        store.close().await;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .await
            .expect("drop the test database");
    });
}
