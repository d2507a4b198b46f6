//! `ferropay bench console`: how fast the operator console's pages load on a database of a
//! million payments. Seeds `--payments` payments with their orders, captures, webhooks and
//! events, and breaks, dead jobs and webhook deliveries beside them
//! (`ferropay::console::bench_data`), starts the real server, signs in through the login form
//! and loads each page `--samples` times, one request at a time, pages interleaved (so a busy
//! moment of the shared machine hits all alike), each detail page on a different row each time.
//! Prints p50 and p99 per page against the 100 ms target, and, as the reference measured in the
//! same run and the same way, `GET /healthz` (one database round trip through the same server)
//! and `GET /v1/payments/{id}` (the API's read of one payment).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ferropay::console::bench_data;
use ferropay::store::Store;
use serde_json::json;

use super::report::{Latency, print_block, print_json_line};
use super::setup::{
    BenchDatabase, CommonArgs, Machine, build_profile, database_version, setup_lines, title,
};
use crate::progress;
use crate::serve::{self, PspChoice, ServeConfig};

/// The goal: a page loads in under 100 ms at p99.
const TARGET_P99_MS: u64 = 100;

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Payments seeded.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1_000..=20_000_000))]
    pub payments: i64,
    /// Loads of each page.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub samples: u32,
}

/// A page the bench loads: its label, and the path of sample `n`.
struct PageKind {
    label: &'static str,
    path: Box<dyn Fn(i64) -> String + Send + Sync>,
    reference: bool,
}

fn pages(payments: i64) -> Vec<PageKind> {
    // Sample n looks at a row spread over the whole seed (a prime stride).
    let pick = move |n: i64| (n * 104_729 + 17) % payments;
    let captured = move |n: i64| {
        let i = pick(n);
        i - i % 100 + (i % 70)
    };
    let page = |label, reference, path: Box<dyn Fn(i64) -> String + Send + Sync>| PageKind {
        label,
        path,
        reference,
    };
    vec![
        page("overview", false, Box::new(|_| "/console".into())),
        page("payments", false, Box::new(|_| "/console/payments".into())),
        page(
            "payments ?status=failed",
            false,
            Box::new(|_| "/console/payments?status=failed".into()),
        ),
        page(
            "payments ?seller_id",
            false,
            Box::new(move |n| {
                format!(
                    "/console/payments?seller_id={}",
                    bench_data::seller_id(pick(n))
                )
            }),
        ),
        page(
            "payments ?buyer_id",
            false,
            Box::new(move |n| {
                format!(
                    "/console/payments?buyer_id={}",
                    bench_data::buyer_id(pick(n))
                )
            }),
        ),
        page(
            "payments, a later page",
            false,
            Box::new(move |n| {
                let i = pick(n);
                format!(
                    "/console/payments?after={}~{}",
                    // The cursor of payment i (its time is start + i * step; any time works).
                    ferropay::clock::now_ms() - (payments - i) * 1_000,
                    bench_data::payment_id(i)
                )
            }),
        ),
        page(
            "payment page (timeline)",
            false,
            Box::new(move |n| format!("/console/payments/{}", bench_data::payment_id(captured(n)))),
        ),
        page("sellers", false, Box::new(|_| "/console/sellers".into())),
        page(
            "seller page",
            false,
            Box::new(move |n| format!("/console/sellers/{}", bench_data::seller_id(pick(n)))),
        ),
        page(
            "ledger (trial balance)",
            false,
            Box::new(|_| "/console/ledger".into()),
        ),
        page(
            "ledger ?q=seller:",
            false,
            Box::new(move |n| {
                format!(
                    "/console/ledger?q=seller:{}",
                    bench_data::seller_id(pick(n))
                )
            }),
        ),
        page(
            "daily settlement (7 days)",
            false,
            Box::new(|_| "/console/ledger/settlement".into()),
        ),
        page(
            "journal transaction",
            false,
            Box::new(move |n| {
                format!(
                    "/console/ledger/transactions/{}",
                    bench_data::capture_id(captured(n)).unwrap_or_default()
                )
            }),
        ),
        page(
            "reconciliation",
            false,
            Box::new(|_| "/console/reconciliation".into()),
        ),
        page(
            "reconciliation ?kind&status=open",
            false,
            Box::new(|_| "/console/reconciliation?kind=amount_mismatch&status=open".into()),
        ),
        page(
            "break page",
            false,
            Box::new(|n| {
                format!(
                    "/console/reconciliation/breaks/{}",
                    bench_data::break_id(n % bench_data::BREAKS)
                )
            }),
        ),
        page(
            "dead letters",
            false,
            Box::new(|_| "/console/dead-letters".into()),
        ),
        page(
            "dead job page",
            false,
            Box::new(|n| {
                format!(
                    "/console/dead-letters/{}",
                    bench_data::dead_job_id(n % bench_data::DEAD_JOBS)
                )
            }),
        ),
        page("disputes", false, Box::new(|_| "/console/disputes".into())),
        page(
            "disputes ?status=needs_response",
            false,
            Box::new(|_| "/console/disputes?status=needs_response".into()),
        ),
        page(
            "disputes ?seller_id",
            false,
            Box::new(move |n| {
                format!(
                    "/console/disputes?seller_id={}",
                    bench_data::seller_id(pick(n))
                )
            }),
        ),
        page(
            "dispute page",
            false,
            Box::new(move |n| {
                let i = pick(n);
                format!(
                    "/console/disputes/{}",
                    bench_data::dispute_id(i - i % 100).unwrap_or_default()
                )
            }),
        ),
        page(
            "webhook deliveries",
            false,
            Box::new(|_| "/console/deliveries".into()),
        ),
        page(
            "webhook deliveries ?status=failed",
            false,
            Box::new(|_| "/console/deliveries?status=failed".into()),
        ),
        page(
            "reference: GET /healthz",
            true,
            Box::new(|_| "/healthz".into()),
        ),
        page(
            "reference: GET /v1/payments/{id}",
            true,
            Box::new(move |n| format!("/v1/payments/{}", bench_data::payment_id(pick(n)))),
        ),
    ]
}

pub async fn run(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let profile = build_profile(args.common.allow_debug_build)?;
    let mut machine = Machine::observe();
    let database = BenchDatabase::prepare(args.common.database_url.as_deref())?;
    let store = Store::open(&database.url, 4)
        .await
        .with_context(|| format!("opening {}", database.describe()))?;
    let version = database_version(&store).await?;
    print_block(
        &title("console", profile),
        &[
            setup_lines(profile, &machine, &database, &version),
            vec![
                (
                    "data",
                    format!(
                        "{} payments over {} days, {} sellers, {} buyers, 1 in 100 disputed; {} breaks, {} dead jobs, {} webhook deliveries; ANALYZE after seeding (PostgreSQL: VACUUM ANALYZE)",
                        args.payments,
                        bench_data::SPREAD_DAYS,
                        bench_data::SELLERS,
                        bench_data::BUYERS,
                        bench_data::BREAKS,
                        bench_data::DEAD_JOBS,
                        bench_data::DELIVERIES
                    ),
                ),
                (
                    "load",
                    format!(
                        "each page {} times, one request at a time, pages interleaved, signed in through /console/login",
                        args.samples
                    ),
                ),
            ],
        ]
        .concat(),
    );

    let seeding = Instant::now();
    let bar = progress::count_bar(args.payments as u64, "seeding payments");
    bench_data::seed(&store, args.payments, ferropay::clock::now_ms(), &|done| {
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
        }
    })
    .await
    .context("seeding")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seed_s = seeding.elapsed().as_secs_f64();
    let key = ferropay::api_keys::create_scoped(
        &store,
        "bench console",
        &[ferropay::api_keys::Scope::Operator],
    )
    .await?
    .secret;
    store.close().await;

    let running = serve::start(ServeConfig {
        webhooks: Default::default(),
        listen: "127.0.0.1:0".parse()?,
        database_url: database.url.clone(),
        max_db_connections: 8,
        public_url: None,
        psp: PspChoice::InProcessSandbox {
            listen: "127.0.0.1:0".parse()?,
            sandbox: Default::default(),
        },
        psps: Default::default(),
        platform_fee_bps: 0,
        payout_schedule: None,
        poll_after_ms: ferropay::service::DEFAULT_POLL_AFTER_MS,
        jobs: ferropay::jobs::JobsConfig::default(),
        reconcile_at: None,
        reconcile_day_close_lag_ms: 0,
        nats: None,
        kafka: None,
        retention: None,
        engine: ferropay::engine::EngineConfig::default(),
        ledger_keys: crate::ledger_keys::resolve(&Default::default(), &database.url)?,
        checkpoint_file: None,
        checkpoint_every_ms: 0,
        // Pages are measured one at a time: the limits' defaults never bind.
        limits: ferropay_http::ServerLimits::default(),
    })
    .await?;
    let base = running.public_url.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let session = sign_in(&http, &base, &key).await?;

    let kinds = pages(args.payments);
    let mut latencies: Vec<Latency> = kinds.iter().map(|_| Latency::default()).collect();
    let mut failures: Vec<String> = Vec::new();
    // One round of every page first, unmeasured: the server's and the database's caches warm.
    for kind in &kinds {
        let _ = get(&http, &base, &(kind.path)(0), &session, &key).await;
    }
    machine.load_starts();
    let started = Instant::now();
    for n in 0..i64::from(args.samples) {
        for (kind, latency) in kinds.iter().zip(latencies.iter_mut()) {
            let path = (kind.path)(n + 1);
            let begun = Instant::now();
            match get(&http, &base, &path, &session, &key).await {
                Ok(()) => latency.record(begun.elapsed()),
                Err(error) => {
                    if failures.len() < 10 {
                        failures.push(format!("{path}: {error}"));
                    }
                }
            }
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    machine.load_ends();
    let _ = tokio::time::timeout(Duration::from_secs(10), running.shutdown()).await;

    println!();
    println!("figures (one request at a time; {load_s:.1} s of load)");
    for (kind, latency) in kinds.iter().zip(&latencies) {
        println!("{}", latency.line(kind.label));
    }
    let console_p99_us = kinds
        .iter()
        .zip(&latencies)
        .filter(|(kind, _)| !kind.reference)
        .map(|(_, latency)| latency.json()["p99_us"].as_u64().unwrap_or(u64::MAX))
        .max()
        .unwrap_or(0);
    let met = failures.is_empty() && console_p99_us < TARGET_P99_MS * 1_000;
    println!(
        "  target         every page p99 < {TARGET_P99_MS} ms: {} (slowest page p99 {:.2} ms)",
        if met { "met" } else { "NOT met" },
        console_p99_us as f64 / 1000.0
    );
    println!("  machine        {}", machine.describe_load());
    println!("  seeding        {seed_s:.1} s");
    for failure in &failures {
        println!("  failed         {failure}");
    }
    if machine.was_shared() {
        println!(
            "  NOTE: the machine was busy before this run (see load_1m_before): its figures are from a shared machine."
        );
    }
    print_json_line(&json!({
        "bench": "console",
        "profile": profile,
        "database": database.backend.name(),
        "database_version": version,
        "machine": machine.json(),
        "payments": args.payments,
        "samples": args.samples,
        "seed_s": (seed_s * 10.0).round() / 10.0,
        "pages": kinds.iter().zip(&latencies).map(|(kind, latency)| json!({
            "page": kind.label,
            "reference": kind.reference,
            "latency": latency.json(),
        })).collect::<Vec<_>>(),
        "target_p99_ms": TARGET_P99_MS,
        "slowest_page_p99_us": console_p99_us,
        "target_met": met,
        "failures": failures,
        "ok": failures.is_empty(),
    }));
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Signs in as a browser does: the form's double-submit cookie, then the key; the session
/// cookie's `name=value`.
async fn sign_in(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let form = http.get(format!("{base}/console/login")).send().await?;
    let login_cookie =
        cookie_pair(&form, "ferropay_console_login").context("the sign-in form set no cookie")?;
    let nonce = login_cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let answer = http
        .post(format!("{base}/console/login"))
        .header("Cookie", &login_cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("csrf", &nonce)
                .append_pair("key", key)
                .finish(),
        )
        .send()
        .await?;
    anyhow::ensure!(
        answer.status() == reqwest::StatusCode::SEE_OTHER,
        "signing in answered {}",
        answer.status()
    );
    cookie_pair(&answer, "ferropay_console").context("signing in set no session cookie")
}

fn cookie_pair(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// One page load, read to its end; anything but 200 is a failure.
async fn get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    session: &str,
    key: &str,
) -> anyhow::Result<()> {
    let response = http
        .get(format!("{base}{path}"))
        .header("Cookie", session)
        .bearer_auth(key)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    Ok(())
}
