//! Reconciliation across chunk borders, on a real SQLite file: a line repeated in the very next
//! chunk (whose matches may not be committed yet when the next chunk is read) and one repeated
//! chunks later are both `duplicate_line`, and a second run of the file finds the same.

use std::io::Write;

use super::bench_data::{bench_payment, seed_captured};
use super::{BreakKind, Reconciler, RunOptions};
use crate::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_found_across_chunks_and_again_on_a_second_run() {
    let dir = std::env::temp_dir().join(format!("ferropay-unit-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&format!("sqlite://{}/t.db", dir.display()), 4)
        .await
        .unwrap();
    seed_captured(&store, "sandbox", "t", 5, &|_| {})
        .await
        .unwrap();

    // Chunks of two: [p0 p1] [p2 p3] [p3 p4] [p0 payout].
    let file = dir.join("settlement.csv");
    let mut out = std::fs::File::create(&file).unwrap();
    writeln!(out, "{}", super::line::COLUMNS.join(",")).unwrap();
    let now = crate::clock::rfc3339_from_ms(crate::clock::now_ms());
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
        psp: "sandbox".into(),
        connector: None,
        platform_fee_bps: 0,
    };
    let options = RunOptions {
        chunk_lines: 2,
        ..RunOptions::default()
    };
    for run in 1..=2 {
        let report = reconciler
            .reconcile_file(&file, &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.lines, 8, "run {run}");
        assert_eq!(report.matched, 6, "run {run}: {report:#?}");
        assert_eq!(report.breaks_found, 2, "run {run}: {report:#?}");
        let duplicated: Vec<Option<&str>> = report
            .breaks
            .iter()
            .filter(|b| b.kind == BreakKind::DuplicateLine)
            .map(|b| b.merchant_reference.as_deref())
            .collect();
        let (p0, p3) = (bench_payment("t", 0), bench_payment("t", 3));
        assert_eq!(duplicated, [Some(p3.id.as_str()), Some(p0.id.as_str())]);
        assert_eq!(report.breaks_new, if run == 1 { 2 } else { 0 });
    }
    let report = crate::ledger::verify::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    // Five captures and one payout; no fees in this file.
    assert_eq!(report.transactions, 6);
    store.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}
