//! Test: on PostgreSQL, no statement of a batch reads a whole table or hashes one, and each
//! read of the seeded tables (wallets, jobs, refunds: thousands of rows each, analyzed) is an
//! index lookup by the batch's own rows (`Store::begin_batch`). Each statement is `EXPLAIN`ed
//! in a batch transaction; a plain transaction hashes a full read of the wallets, which the
//! test also shows, so that it can fail. (On a near-empty table the planner may read a whole
//! index of a few rows instead: cheap, and what statistics of a grown table turn into probes.)
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

/// The seeded tables: each has thousands of rows and statistics, as a live database's do.
const SEEDED_TABLES: [&str; 3] = ["wallets", "jobs", "refunds"];

/// The plan's reads of a seeded table that are not looked up by the batch's rows: a scan
/// whose index (or bitmap recheck) condition names neither a batch row (`x.…`, `x_2.…`) nor
/// a parameter (`$0`, the batch's ids).
fn unkeyed_reads(plan: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    let mut unkeyed = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let scans_seeded = line.contains("Scan")
            && SEEDED_TABLES.iter().any(|table| {
                line.contains(&format!(" on {table} ")) || line.ends_with(&format!(" on {table}"))
            });
        if !scans_seeded {
            continue;
        }
        // The node's own lines run to the next node (`->`).
        let keyed = lines[at + 1..]
            .iter()
            .take_while(|detail| !detail.contains("->"))
            .any(|detail| {
                (detail.contains("Index Cond:") || detail.contains("Recheck Cond:"))
                    && (detail.contains("x.") || detail.contains("x_") || detail.contains('$'))
            });
        if !keyed {
            unkeyed.push((*line).to_owned());
        }
    }
    unkeyed
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
        let mut seeding = store.pool().acquire().await.expect("a connection");
        for sql in [
            // Refunds name payments and orders; the seed needs neither, so its session skips
            // the foreign keys' triggers.
            "SET session_replication_role = replica",
            "INSERT INTO jobs (id, kind, idempotency_key, payload, status, attempts, due_at_ms, \
             created_at_ms, updated_at_ms) SELECT 'job_' || g, 'poll', 'pay_' || g, '{}', \
             'queued', 0, g, 0, 0 FROM generate_series(1, 5000) AS g",
            "INSERT INTO refunds (id, payment_id, payment_order_id, seller_id, currency, \
             amount_minor, platform_fee_minor, status, created_at_ms, updated_at_ms) \
             SELECT 're_' || g, 'pay_' || g, 'po_' || g, 'sel_' || (g % 1000), 'USD', 100, 0, \
             CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'succeeded' END, 0, 0 \
             FROM generate_series(1, 5000) AS g",
            "SET session_replication_role = origin",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *seeding)
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"));
        }
        drop(seeding);
        sqlx::query("ANALYZE")
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
            let unkeyed = unkeyed_reads(&plan);
            assert!(
                unkeyed.is_empty(),
                "{name} reads {unkeyed:?} by something other than the batch's rows:\n{plan}"
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

#[test]
fn a_read_by_status_alone_is_told_from_a_read_by_the_batch() {
    // Both seen in `auto_explain` of real batches: the queue's jobs read whole by their status
    // index, then the same update looking each job up by its key.
    let by_status = "Update on jobs\n\
        \x20 ->  Nested Loop\n\
        \x20       ->  Bitmap Heap Scan on jobs\n\
        \x20             Recheck Cond: (status = ANY ('{queued,running}'::text[]))\n\
        \x20             ->  Bitmap Index Scan on jobs_due\n\
        \x20       ->  Function Scan on json_to_recordset x";
    let by_key = "Update on jobs\n\
        \x20 ->  Nested Loop\n\
        \x20       ->  Function Scan on json_to_recordset x\n\
        \x20       ->  Index Scan using jobs_kind_idempotency_key_key on jobs\n\
        \x20             Index Cond: ((kind = x.k) AND (idempotency_key = x.key))\n\
        \x20             Filter: (status = 'queued'::text)";
    assert_eq!(unkeyed_reads(by_status).len(), 1);
    assert!(unkeyed_reads(by_key).is_empty());
    assert!(whole_table_reads(by_key).is_empty());
    assert_eq!(
        whole_table_reads("Hash Join\n  ->  Seq Scan on wallets").len(),
        2
    );
}
