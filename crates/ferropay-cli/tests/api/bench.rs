//! `ferropay bench …` (the real binary) run tiny on SQLite and PostgreSQL: each completes, its
//! last line is JSON whose figures are sane — every payment or transfer accounted for, the
//! percentiles in order, the books verified by `ferropay ledger verify` afterwards. A smoke
//! test: nothing here is timed or compared with a speed.

use std::process::Command;

use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

/// Runs `ferropay bench ARGS --allow-debug-build` (tests build in debug); its exit code, its
/// stdout, and the JSON of stdout's last line.
async fn run_bench(args: Vec<String>) -> (i32, String, Value) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .arg("bench")
            .args(&args)
            .arg("--allow-debug-build")
            .env("FERROPAY_LOG", "warn")
            .env_remove("FERROPAY_BENCH_DATABASE_URL")
            .output()
            .expect("run ferropay bench")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the last line is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), stdout, json)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// p50 ≤ p99 ≤ p99.9 ≤ max, all above zero, over `count` samples.
fn assert_sane_latency(latency: &Value, count: u64) {
    assert_eq!(latency["count"], count, "{latency}");
    let p50 = latency["p50_us"].as_u64().unwrap();
    let p99 = latency["p99_us"].as_u64().unwrap();
    let p999 = latency["p999_us"].as_u64().unwrap();
    let max = latency["max_us"].as_u64().unwrap();
    assert!(
        0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{latency}"
    );
}

/// The setup every run prints: database and version, cores, build profile.
fn assert_setup(json: &Value, db: Db) {
    let (name, version_prefix) = match db {
        Db::Sqlite => ("sqlite", "3."),
        Db::Postgres => ("postgres", ""),
    };
    assert_eq!(json["database"], name);
    assert!(
        json["database_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty() && v.starts_with(version_prefix)),
        "{json}"
    );
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(json["profile"], "debug");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["ledger_verified"], true);
}

async fn verify_books(url: &str) -> Value {
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .args(["ledger", "verify", "--database-url", &url])
            .env("FERROPAY_LOG", "warn")
            .output()
            .expect("run ferropay ledger verify")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "ledger verify fails");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether the reference should have been measured: PostgreSQL, with pgbench installed.
fn pgbench_installed() -> bool {
    Command::new("pgbench").arg("--version").output().is_ok()
}

async fn payments_closed_loop_settles_every_payment(db: Db) {
    let Some(database) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, json) = run_bench(args(&[
        "payments",
        "--database-url",
        &database.url,
        "--concurrency",
        "4",
        "--count",
        "20",
        "--sellers",
        "3",
        "--pgbench-duration-s",
        "1",
    ]))
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("DEBUG BUILD"), "a debug run says so");
    assert_setup(&json, db);
    assert_eq!(json["bench"], "payments");
    assert_eq!(json["mode"], "closed");
    assert_eq!(json["concurrency"], 4);
    assert_eq!(json["count"], 20);
    assert_eq!(json["settled"], 20);
    assert_eq!(json["succeeded_in_db"], 20);
    assert_eq!(json["not_settled"], 0);
    assert!(json["settled_per_s"].as_f64().unwrap() > 0.0);
    assert_sane_latency(&json["post_payments_latency"], 20);
    assert_sane_latency(&json["settled_latency"], 20);
    // From the same start, a payment succeeds in the ledger after it was created.
    assert!(
        json["settled_latency"]["p50_us"].as_u64()
            >= json["post_payments_latency"]["p50_us"].as_u64()
    );
    match db {
        Db::Postgres if pgbench_installed() => {
            assert!(
                json["reference"]["pgbench_tps"].as_f64().unwrap() > 0.0,
                "{json}"
            );
            assert!(json["reference"]["ratio"].as_f64().unwrap() > 0.0);
            assert_eq!(json["reference"]["clients"], 4);
        }
        Db::Postgres => assert!(json["reference"]["error"].is_string()),
        Db::Sqlite => assert!(json["reference"]["skipped"].is_string()),
    }

    let report = verify_books(&database.url).await;
    assert_eq!(report["transactions"], 20, "one capture per payment");
    assert_eq!(report["wallets_match"], true);
}

async fn payments_open_loop_settles_every_payment(db: Db) {
    let Some(database) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, json) = run_bench(args(&[
        "payments",
        "--database-url",
        &database.url,
        "--rate",
        "20",
        "--duration-s",
        "1",
        "--pgbench-duration-s",
        "0",
    ]))
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert_setup(&json, db);
    assert_eq!(json["mode"], "open");
    assert_eq!(json["rate"], 20);
    assert_eq!(json["count"], 20);
    assert_eq!(json["settled"], 20);
    assert_eq!(json["succeeded_in_db"], 20);
    assert_sane_latency(&json["post_payments_latency"], 20);
    assert_sane_latency(&json["settled_latency"], 20);
    // Twenty payments one every 50 ms: the last starts 0.95 s after the first.
    assert!(json["elapsed_s"].as_f64().unwrap() >= 0.95, "{json}");
    assert_eq!(verify_books(&database.url).await["transactions"], 20);
}

async fn ledger_bench_posts_every_transfer_to_many_accounts(db: Db) {
    let Some(database) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, json) = run_bench(args(&[
        "ledger",
        "--database-url",
        &database.url,
        "--accounts",
        "5",
        "--concurrency",
        "4",
        "--count",
        "40",
        "--pgbench-duration-s",
        "0",
    ]))
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert_setup(&json, db);
    assert_eq!(json["bench"], "ledger");
    assert_eq!(json["mode"], "many_accounts");
    assert_eq!(json["transfers"], 40);
    assert_eq!(json["in_journal"], 40);
    assert_eq!(json["failed"], 0);
    assert!(json["transfers_per_s"].as_f64().unwrap() > 0.0);
    assert_sane_latency(&json["transfer_latency"], 40);

    let report = verify_books(&database.url).await;
    assert_eq!(report["transactions"], 40);
    assert_eq!(report["totals_by_currency"]["USD"], 0);
    // Five accounts in turn: eight transfers of 100 each.
    let app_store = ferropay::store::Store::open(&database.url, 1)
        .await
        .unwrap();
    for k in 0..5 {
        let balances = ferropay::wallet::balances(&app_store, &format!("bench_{k}"))
            .await
            .unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!(balances[0].amount, 800, "seller bench_{k}");
    }
    app_store.close().await;
}

async fn ledger_bench_posts_every_transfer_to_one_hot_account(db: Db) {
    let Some(database) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, json) = run_bench(args(&[
        "ledger",
        "--database-url",
        &database.url,
        "--hot",
        "--concurrency",
        "4",
        "--count",
        "30",
        "--pgbench-duration-s",
        "0",
    ]))
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert_setup(&json, db);
    assert_eq!(json["mode"], "hot_account");
    assert_eq!(json["accounts"], 1);
    assert_eq!(json["transfers"], 30);
    assert_eq!(verify_books(&database.url).await["transactions"], 30);
    let app_store = ferropay::store::Store::open(&database.url, 1)
        .await
        .unwrap();
    let balances = ferropay::wallet::balances(&app_store, "bench_hot")
        .await
        .unwrap();
    assert_eq!(balances[0].amount, 3000);
    app_store.close().await;
}

/// `bench relay` to each broker the environment names (Kafka: `FERROPAY_TEST_KAFKA_BROKERS`,
/// NATS: `FERROPAY_TEST_NATS_URL`): every event relayed, marked, and held by the broker once.
async fn relay_bench_moves_every_event_to_the_broker(db: Db) {
    let brokers: Vec<(&str, String)> = [
        ("--kafka-brokers", "FERROPAY_TEST_KAFKA_BROKERS"),
        ("--nats-url", "FERROPAY_TEST_NATS_URL"),
    ]
    .into_iter()
    .filter_map(|(flag, var)| Some((flag, std::env::var(var).ok()?)))
    .collect();
    for (flag, address) in brokers {
        let Some(database) = TestDb::create(db).await else {
            return;
        };
        let (code, stdout, json) = run_bench(args(&[
            "relay",
            flag,
            &address,
            "--database-url",
            &database.url,
            "--events",
            "300",
            "--aggregates",
            "20",
            "--batch",
            "50",
        ]))
        .await;
        assert_eq!(code, 0, "{stdout}");
        assert_eq!(json["bench"], "relay");
        assert_eq!(json["ok"], true, "{json}");
        assert_eq!(json["relayed"], 300, "{json}");
        assert_eq!(json["unmarked"], 0, "{json}");
        assert_eq!(
            json["broker_holds"], 301,
            "the events and the warm-up: {json}"
        );
        assert!(json["events_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(json["round_latency"]["count"], 6, "300 events, 50 a round");
        assert!(stdout.contains("events/s"), "{stdout}");
    }
}

async fn console_bench_loads_every_page(db: Db) {
    let Some(database) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, json) = run_bench(args(&[
        "console",
        "--database-url",
        &database.url,
        "--payments",
        "2000",
        "--samples",
        "3",
    ]))
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(json["bench"], "console");
    assert_eq!(json["profile"], "debug");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["failures"].as_array().unwrap().len(), 0);
    let pages = json["pages"].as_array().unwrap();
    assert!(pages.len() >= 15, "{json}");
    for page in pages {
        assert_sane_latency(&page["latency"], 3);
    }
    assert!(pages.iter().any(|p| p["reference"] == true));
    // The seed is what it says: 2000 payments, 70 of each 100 captured.
    let store = ferropay::store::Store::open(&database.url, 1)
        .await
        .unwrap();
    assert_eq!(
        count_on(&store, "SELECT COUNT(*) FROM payments").await,
        2000
    );
    assert_eq!(
        count_on(
            &store,
            "SELECT COUNT(*) FROM journal_transactions WHERE kind = 'capture'"
        )
        .await,
        1400
    );
    store.close().await;
}

db_test!(
    console_bench_loads_every_page,
    relay_bench_moves_every_event_to_the_broker,
    payments_closed_loop_settles_every_payment,
    payments_open_loop_settles_every_payment,
    ledger_bench_posts_every_transfer_to_many_accounts,
    ledger_bench_posts_every_transfer_to_one_hot_account,
);

#[tokio::test]
async fn a_bench_with_a_fresh_sqlite_file_leaves_nothing_behind() {
    let (code, stdout, json) =
        run_bench(args(&["ledger", "--count", "10", "--accounts", "2"])).await;
    assert_eq!(code, 0, "{stdout}");
    assert_setup(&json, Db::Sqlite);
    let line = stdout
        .lines()
        .find(|l| l.contains("(fresh, removed afterwards)"))
        .expect("the setup names the fresh file");
    let path = line
        .split("sqlite://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(!std::path::Path::new(path).exists(), "{path} was removed");
}

#[tokio::test]
async fn a_debug_build_is_refused_unless_asked_for_and_bad_flags_are_named() {
    let run = |list: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_ferropay"))
                .args(list)
                .output()
                .unwrap()
        })
    };
    if cfg!(debug_assertions) {
        // The binary is built with the same profile as this test.
        let output = run(&["bench", "ledger", "--count", "1"]).await.unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("debug build"));
    }
    let output = run(&["bench", "payments", "--rate", "10"]).await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--duration-s"));
    let output = run(&[
        "bench",
        "payments",
        "--rate",
        "10",
        "--duration-s",
        "1",
        "--count",
        "5",
    ])
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "open and closed loop at once"
    );
    let output = run(&["bench", "ledger", "--concurrency", "0"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--concurrency"));
}
