//! `ferropay bench reconcile --lines N [--database-url URL]`: seeds N-1 captured payments in
//! bulk, writes their settlement file (N-1 payment lines and one payout to the bank), reconciles
//! it as `ferropay reconcile --file` does, and prints the setup and the figures as one JSON
//! object: lines per second, and peak resident memory (VmHWM from /proc/self/status) of the
//! whole process and of the reconciliation alone (the peak is reset before it where Linux allows).
//! Without `--database-url` it uses a fresh SQLite file in a temporary folder, removed after.
//! A terminal shows progress bars on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::progress;
use anyhow::Context;
use ferropay::reconcile::bench_data::{database_version, seed_captured, write_settlement_file};
use ferropay::reconcile::{Reconciler, RunOptions};
use ferropay::store::Store;
use serde_json::json;

/// The goals of issue 5, printed beside the figures.
const TARGET_LINES_PER_S: u64 = 100_000;
const TARGET_PEAK_MIB: f64 = 200.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Lines in the settlement file (one of them the payout to the bank).
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// sqlite://PATH or postgres://… (best an empty database; default: a temporary SQLite file).
    #[arg(long, env = "FERROPAY_DATABASE_URL")]
    database_url: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.lines >= 2, "--lines must be at least 2");
    let payments = args.lines - 1;
    let scratch =
        std::env::temp_dir().join(format!("ferropay-bench-reconcile-{}", uuid_like_tag()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", scratch.display()));
    let result = bench(&database_url, payments, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    database_url: &str,
    payments: u64,
    scratch: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let store = Store::open(database_url, 4).await?;
    let database = database_version(&store).await?;
    let psp = ferropay::psp::sandbox::NAME;
    let tag = uuid_like_tag();

    let seed_started = Instant::now();
    let bar = progress::count_bar(payments, "seeding payments");
    let engine = ferropay::engine::Engine::start(store.clone(), Default::default())?;
    seed_captured(&store, &engine, psp, &tag, payments, &|done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seed_s = seed_started.elapsed().as_secs_f64();

    let file: PathBuf = scratch.join("settlement.csv");
    let file_bytes = write_settlement_file(&file, &tag, payments)?;
    let peak_after_seed_mib = peak_rss_mib();
    let peak_reset = reset_peak_rss();

    let reconciler = Reconciler {
        store: store.clone(),
        engine,
        psp: psp.to_owned(),
        connector: None,
        platform_fee_bps: 0,
        day_close_lag_ms: 0,
    };
    let bar = progress::bytes_bar(file_bytes, "reconciling");
    let started = Instant::now();
    let report = reconciler
        .reconcile_file(&file, &RunOptions::default(), &|done| {
            if let Some(bar) = &bar {
                bar.set_position(done.bytes);
            }
        })
        .await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let peak_reconcile_mib = if peak_reset { peak_rss_mib() } else { None };
    let lines_per_s = (report.lines as f64 / elapsed_s.max(1e-9)) as u64;
    anyhow::ensure!(
        report.matched == report.lines && report.breaks_found == 0,
        "the seeded file did not reconcile cleanly: {} of {} lines matched, {} breaks",
        report.matched,
        report.lines,
        report.breaks_found
    );
    store.close().await;

    Ok(json!({
        "benchmark": "reconcile",
        "setup": {
            "machine": {
                "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "cpu": cpu_model(),
                "os": std::env::consts::OS,
            },
            "build": if cfg!(debug_assertions) { "debug" } else { "release" },
            "database": database,
            "database_url": crate::serve::redact_url(database_url),
            "lines": report.lines,
            "payments_seeded": payments,
            "file_bytes": file_bytes,
            "chunk_lines": ferropay::reconcile::CHUNK_LINES,
            "seed_s": round2(seed_s),
        },
        "figures": {
            "reconcile_s": round2(elapsed_s),
            "lines_per_s": lines_per_s,
            "matched": report.matched,
            "breaks": report.breaks_found,
            "peak_rss_mib_process": peak_after_seed_mib
                .into_iter()
                .chain(peak_reconcile_mib)
                .reduce(f64::max),
            "peak_rss_mib_after_seeding": peak_after_seed_mib,
            "peak_rss_mib_reconcile": peak_reconcile_mib,
        },
        "targets": {
            "lines_per_s": TARGET_LINES_PER_S,
            "lines_per_s_met": lines_per_s >= TARGET_LINES_PER_S,
            "peak_rss_mib": TARGET_PEAK_MIB,
            "peak_rss_mib_met": peak_reconcile_mib
                .or(peak_rss_mib())
                .is_some_and(|mib| mib < TARGET_PEAK_MIB),
        },
    }))
}

/// A short tag that keeps one run's seeded ids apart from another's.
fn uuid_like_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// VmHWM (peak resident set) in MiB, on Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round2(kib / 1024.0))
}

/// Resets VmHWM to the current resident set (Linux 4.0+: "5" to /proc/self/clear_refs).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
