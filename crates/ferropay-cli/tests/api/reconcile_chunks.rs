//! Reconciliation across chunk borders, on both databases: a line repeated in the very next
//! chunk (read while the previous chunk is still being written) and one repeated chunks later
//! are both `duplicate_line`, and a second run of the same file finds the same breaks, stores no
//! new one and records each reference as matched by its own run. Chunks of two lines make every
//! border count; the matcher writes its matches optimistically and must fall back to judging
//! with what earlier chunks and runs stored whenever a reference was read before.

use std::io::Write;

use ferropay::reconcile::bench_data::{bench_payment, seed_captured};
use ferropay::reconcile::{BreakKind, Reconciler, RunOptions};
use ferropay::store::Store;
use sqlx::Row;

use crate::db_test;
use crate::helpers::*;

async fn duplicates_are_found_across_chunks_and_again_on_a_second_run(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store = Store::open(&test_db.url, 4).await.unwrap();
    let engine = ferropay::engine::Engine::start(store.clone(), Default::default()).unwrap();
    seed_captured(&store, &engine, "sandbox", "t", 5, &|_| {})
        .await
        .unwrap();

    // Chunks of two: [p0 p1] [p2 p3] [p3 p4] [p0 payout].
    let dir = std::env::temp_dir().join(format!("ferropay-chunks-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settlement.csv");
    let mut out = std::fs::File::create(&file).unwrap();
    writeln!(out, "{}", ferropay::reconcile::line::COLUMNS.join(",")).unwrap();
    let now = ferropay::clock::rfc3339_from_ms(ferropay::clock::now_ms());
    let mut net_total = 0;
    for i in [0, 1, 2, 3, 3, 4, 0] {
        let p = bench_payment("t", i);
        net_total += p.amount_minor;
        writeln!(
            out,
            "{},{},payment,{now},USD,{},0,{},b",
            p.psp_reference, p.id, p.amount_minor, p.amount_minor
        )
        .unwrap();
    }
    writeln!(
        out,
        "po_t,,payout_to_bank,{now},USD,{},0,{},b",
        -net_total, -net_total
    )
    .unwrap();
    drop(out);

    let reconciler = Reconciler {
        store: store.clone(),
        engine: engine.clone(),
        psp: "sandbox".into(),
        connector: None,
        platform_fee_bps: 0,
        day_close_lag_ms: 0,
    };
    let options = RunOptions {
        chunk_lines: 2,
        ..RunOptions::default()
    };
    let (p0, p3) = (bench_payment("t", 0), bench_payment("t", 3));
    for run in 1..=2 {
        let report = reconciler
            .reconcile_file(&file, &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.lines, 8, "run {run}");
        assert_eq!(report.matched, 6, "run {run}: {report:#?}");
        assert_eq!(report.breaks_found, 2, "run {run}: {report:#?}");
        let duplicated: Vec<(Option<&str>, Option<u64>)> = report
            .breaks
            .iter()
            .filter(|b| b.kind == BreakKind::DuplicateLine)
            .map(|b| (b.merchant_reference.as_deref(), b.line_no))
            .collect();
        assert_eq!(
            duplicated,
            [
                (Some(p3.id.as_str()), Some(5)),
                (Some(p0.id.as_str()), Some(7))
            ],
            "run {run}"
        );
        assert_eq!(report.breaks_new, if run == 1 { 2 } else { 0 }, "run {run}");

        // Five captures and the payout, each recorded once, as last matched by this run.
        let rows = sqlx::query(
            "SELECT COUNT(*) AS n, \
                    CAST(SUM(CASE WHEN last_run_id = $1 THEN 1 ELSE 0 END) AS BIGINT) AS this_run \
             FROM reconciliation_matches",
        )
        .bind(&report.run_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(rows.get::<i64, _>("n"), 6, "run {run}");
        assert_eq!(rows.get::<i64, _>("this_run"), 6, "run {run}");
    }
    let report = ferropay::ledger::verify::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    // Five captures and one payout, posted once over two runs; no fees in this file.
    assert_eq!(report.transactions, 6);
    store.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

db_test!(duplicates_are_found_across_chunks_and_again_on_a_second_run);
