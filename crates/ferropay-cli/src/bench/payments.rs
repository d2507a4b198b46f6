//! `ferropay bench payments`: the whole pay-in flow at scale, against a real server started in
//! this process (`serve::start`, in-process sandbox PSP, random loopback ports). Each payment is
//! created with `POST /v1/payments` (two orders, two sellers), paid as the buyer would (the
//! hosted page's form posted with card 4242…), and counted settled when its capture shows in
//! the journal, which the sandbox's signed webhook puts there.
//!
//! Closed loop (`--concurrency C --count N`): C payments in flight, each starting the next once
//! it is settled. Open loop (`--rate R --duration-s S`): R·S payments started on schedule, one
//! every 1/R s, whether or not earlier ones have finished; every latency is measured from the
//! scheduled start, so a stall counts against every payment it delays (no coordinated omission).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgGroup, Args};
use ferropay::engine::{EngineConfig, EngineStats};
use ferropay::store::Backend;
use reqwest::StatusCode;
use sandbox_psp::SandboxConfig;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Semaphore;

use super::pgbench::{PgbenchMode, PgbenchPlan, Reference};
use super::report::{Latency, per_second, print_block, print_json_line};
use super::settlements::SettlementWatch;
use super::setup::{
    BenchDatabase, CommonArgs, Machine, build_profile, database_version, setup_lines, title,
};
use super::waits::WaitSampler;
use crate::serve::{self, PspChoice, Running, ServeConfig};

/// `N batches, mean M commands`: the engine's batches during the load.
fn describe_batches(before: &EngineStats, after: &EngineStats) -> String {
    let batches = after.batches - before.batches;
    let commands = after.commands - before.commands;
    format!(
        "{batches} engine batches, mean {:.1} commands",
        commands as f64 / batches.max(1) as f64
    )
}

/// The card that succeeds at once (CONTRACT.md, "Test cards").
const CARD_OK: &str = "4242 4242 4242 4242";
/// One HTTP request's bound, in seconds.
const REQUEST_TIMEOUT_S: u64 = 30;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("load").required(true).args(["rate", "concurrency"])))]
pub struct PaymentsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Open loop: payments started per second, on schedule.
    #[arg(long, requires = "duration_s", conflicts_with_all = ["concurrency", "count"],
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: Option<u64>,
    /// Open loop: for how long payments are started, in seconds.
    #[arg(long, requires = "rate", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_s: Option<u64>,
    /// Closed loop: payments in flight at once.
    #[arg(long, requires = "count", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: Option<u64>,
    /// Closed loop: payments in all.
    #[arg(long, requires = "concurrency", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: Option<u64>,
    /// Sellers the orders go to, in turn (each payment has two orders).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub sellers: u64,
    /// Database connections the server may open (as `serve --max-db-connections`).
    #[arg(long, default_value_t = 16)]
    pub max_db_connections: u32,
    /// Money-engine batches in flight at once (as `serve --engine-lanes`; 0: the database's
    /// default).
    #[arg(long, default_value_t = 0)]
    pub engine_lanes: usize,
    /// How long the engine waits to fill a batch, in µs (as `serve --engine-linger-us`).
    /// [default: 0 on SQLite, 500 on PostgreSQL]
    #[arg(long)]
    pub engine_linger_us: Option<u64>,
    /// Open loop: at most this many payments in flight; later ones start late (and their
    /// latency, measured from their schedule, shows it).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_in_flight: u64,
    /// How long a paid payment may take to reach the journal before it counts as not settled.
    #[arg(long, default_value_t = 30)]
    pub settle_timeout_s: u64,
    /// How often the settlement watcher polls the journal, in ms.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub poll_ms: u64,
    /// No payment starts after this long, in seconds, whatever is left to start.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_duration_s: u64,
}

enum Mode {
    Open { rate: u64, duration_s: u64 },
    Closed { concurrency: u64, count: u64 },
}

impl Mode {
    fn of(args: &PaymentsArgs) -> anyhow::Result<Self> {
        match (args.rate, args.duration_s, args.concurrency, args.count) {
            (Some(rate), Some(duration_s), None, None) => {
                anyhow::ensure!(
                    rate * duration_s <= 10_000_000,
                    "--rate × --duration-s is at most 10,000,000 payments"
                );
                anyhow::ensure!(
                    duration_s < args.max_duration_s,
                    "--duration-s must be below --max-duration-s ({} s), which bounds the whole load",
                    args.max_duration_s
                );
                Ok(Self::Open { rate, duration_s })
            }
            (None, None, Some(concurrency), Some(count)) => Ok(Self::Closed { concurrency, count }),
            _ => anyhow::bail!("give either --rate and --duration-s, or --concurrency and --count"),
        }
    }

    fn count(&self) -> u64 {
        match self {
            Self::Open { rate, duration_s } => rate * duration_s,
            Self::Closed { count, .. } => *count,
        }
    }
}

/// One payment's timings, all from its scheduled start.
struct Sample {
    /// When its request actually left: the load generator's own lag.
    start_lag: Duration,
    /// `POST /v1/payments` answered 201.
    created: Duration,
    /// The buyer's form post answered 303.
    paid: Duration,
    /// The capture was seen in the journal.
    settled: Duration,
    settled_at: Instant,
}

enum Failure {
    Create(String),
    Pay(String),
    NotSettled,
}

/// Every payment's outcome, folded in as it ends (memory does not grow with the count).
struct Tally {
    start_lag: Latency,
    created: Latency,
    paid: Latency,
    settled: Latency,
    last_settled_at: Instant,
    create_failed: u64,
    pay_failed: u64,
    not_settled: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new(started: Instant) -> Self {
        Self {
            start_lag: Latency::default(),
            created: Latency::default(),
            paid: Latency::default(),
            settled: Latency::default(),
            last_settled_at: started,
            create_failed: 0,
            pay_failed: 0,
            not_settled: 0,
            first_error: None,
        }
    }

    fn add(&mut self, outcome: Result<Sample, Failure>) {
        match outcome {
            Ok(sample) => {
                self.start_lag.record(sample.start_lag);
                self.created.record(sample.created);
                self.paid.record(sample.paid);
                self.settled.record(sample.settled);
                self.last_settled_at = self.last_settled_at.max(sample.settled_at);
            }
            Err(Failure::Create(why)) => {
                self.create_failed += 1;
                self.first_error.get_or_insert(why);
            }
            Err(Failure::Pay(why)) => {
                self.pay_failed += 1;
                self.first_error.get_or_insert(why);
            }
            Err(Failure::NotSettled) => self.not_settled += 1,
        }
    }
}

/// Everything one payment needs.
struct Flow {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    run_id: String,
    sellers: u64,
    watch: SettlementWatch,
    settle_timeout: Duration,
}

pub async fn run(args: PaymentsArgs) -> anyhow::Result<ExitCode> {
    let profile = build_profile(args.common.allow_debug_build)?;
    let mode = Mode::of(&args)?;
    let mut machine = Machine::observe();
    let database = BenchDatabase::prepare(args.common.database_url.as_deref())?;
    let engine = EngineConfig {
        lanes: args.engine_lanes,
        linger_us: args.engine_linger_us,
        ..EngineConfig::default()
    };
    let running = start_server(&database.url, args.max_db_connections, engine.clone()).await?;
    let store = running.service.store.clone();
    let version = database_version(&store).await?;
    let api_key = ferropay::api_keys::create(&store, "bench").await?.secret;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let count = mode.count();
    let (mode_name, load_line, db_clients) = match mode {
        Mode::Open { rate, duration_s } => (
            "open",
            format!(
                "open loop: {rate} payments/s offered for {duration_s} s = {count} payments (at most {} in flight)",
                args.max_in_flight
            ),
            args.max_db_connections,
        ),
        Mode::Closed { concurrency, count } => (
            "closed",
            format!("closed loop: {count} payments, {concurrency} in flight at once"),
            u32::try_from(concurrency).unwrap_or(u32::MAX),
        ),
    };
    print_block(
        &title(&format!("payments — {mode_name} loop"), profile),
        &[
            setup_lines(profile, &machine, &database, &version),
            vec![
            (
                "server",
                format!(
                    "in-process on {} (sandbox PSP on {}), {} database connections (and on PostgreSQL one more per engine lane), engine lanes {} (0: the database's default), linger {} µs, logs at warn unless FERROPAY_LOG",
                    running.public_url,
                    running
                        .sandbox
                        .as_ref()
                        .map_or("?".into(), |s| s.base_url.clone()),
                    args.max_db_connections,
                    engine.lanes,
                    engine.linger_us_on(store.backend())
                ),
            ),
            ("load", load_line),
            (
                "payment",
                format!(
                    "POST /v1/payments (2 orders over {} sellers) → POST hosted form (card 4242…) → capture in the journal",
                    args.sellers
                ),
            ),
            ],
        ]
        .concat(),
    );

    let reference = match database.backend {
        Backend::Postgres => {
            Reference::measure(
                &database.url,
                PgbenchPlan {
                    program: args.common.pgbench.clone(),
                    clients: db_clients,
                    scale: args.common.pgbench_scale,
                    duration_s: args.common.pgbench_duration_s,
                    mode: PgbenchMode::TpcB,
                },
            )
            .await
        }
        Backend::Sqlite => Reference::Skipped("SQLite: pgbench is PostgreSQL's".into()),
    };

    let settle_timeout = Duration::from_secs(args.settle_timeout_s);
    let load_budget = Duration::from_secs(args.max_duration_s);
    // The watcher outlives every payment: the load, then a payment's own bounds.
    let watch_budget =
        load_budget + settle_timeout + Duration::from_secs(3 * REQUEST_TIMEOUT_S + 10);
    let flow = Arc::new(Flow {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_S))
            .build()?,
        base_url: running.public_url.clone(),
        api_key,
        run_id: run_id.clone(),
        sellers: args.sellers,
        watch: SettlementWatch::start(&database.url, args.poll_ms, watch_budget).await?,
        settle_timeout,
    });
    let sampler = match database.backend {
        Backend::Postgres => WaitSampler::start(&database.url).await,
        Backend::Sqlite => None,
    };

    let engine_before = running.service.engine.stats();
    machine.load_starts();
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::new(started)));
    match mode {
        Mode::Closed { concurrency, count } => {
            closed_loop(&flow, &tally, concurrency, count, started + load_budget).await?
        }
        Mode::Open { rate, .. } => {
            let bound = OpenBound {
                max_in_flight: args.max_in_flight,
                deadline: started + load_budget,
            };
            open_loop(&flow, &tally, rate, count, bound, started).await?
        }
    }
    machine.load_ends();
    let engine_after = running.service.engine.stats();
    let waits = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let Ok(tally) = Arc::try_unwrap(tally) else {
        anyhow::bail!("a payment task outlived the run");
    };
    let Tally {
        start_lag,
        created,
        paid,
        settled,
        last_settled_at,
        create_failed,
        pay_failed,
        not_settled,
        first_error,
    } = tally
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let settled_count = settled.count();
    // Payments that --max-duration-s kept from starting.
    let not_started =
        count.saturating_sub(settled_count + create_failed + pay_failed + not_settled);
    let elapsed = last_settled_at - started;
    let per_s = per_second(settled_count, elapsed);

    let Ok(flow) = Arc::try_unwrap(flow) else {
        anyhow::bail!("a payment task outlived the run");
    };
    let watch_stats = flow.watch.finish().await;
    drop(flow.http);

    // The books afterwards (not timed).
    let succeeded_in_db = count_succeeded(&running, &run_id).await?;
    let verify = running.service.verify_ledger().await?;
    if tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .is_err()
    {
        eprintln!("WARNING: the server did not stop within 10 s");
    }

    println!();
    print_block(
        "results",
        &[
            (
                "payments",
                format!(
                    "{settled_count} of {count} settled in {:.2} s; {create_failed} create failed, {pay_failed} pay failed, {not_settled} not settled within {} s, {not_started} not started within --max-duration-s",
                    elapsed.as_secs_f64(),
                    args.settle_timeout_s
                ),
            ),
            ("throughput", format!("{per_s:.1} payments settled/s")),
            ("cpu", machine.describe_load()),
            ("reference", reference.describe(per_s, "payments/s")),
            (
                "books",
                format!(
                    "{succeeded_in_db} of the run's payments succeeded in the database; ledger verify {} ({} transactions)",
                    if verify.ok() { "passes" } else { "FAILS" },
                    verify.transactions
                ),
            ),
            ("settlement", watch_stats.describe(args.poll_ms)),
            ("batches", describe_batches(&engine_before, &engine_after)),
            ("batch phases", engine_after.describe_phases(&engine_before)),
        ],
    );
    println!("latencies, each from the payment's scheduled start:");
    println!("{}", created.line("POST /v1/payments answered 201"));
    println!("{}", paid.line("buyer's form post answered 303"));
    println!("{}", settled.line("succeeded in the ledger"));
    if matches!(mode, Mode::Open { .. }) {
        println!("{}", start_lag.line("(the generator's own start lag)"));
    }
    if let Some(waits) = &waits {
        println!("  {:<14} {}", "postgres waits", waits.describe());
    }
    if let Some(error) = &first_error {
        println!("  first error    {error}");
    }
    if machine.was_shared() {
        println!(
            "  NOTE: the machine was busy before this run (see load_1m_before): its figures are from a shared machine."
        );
    }
    let ok = settled_count == count && succeeded_in_db == count && verify.ok();
    let mut result = json!({
        "bench": "payments",
        "mode": mode_name,
        "profile": profile,
        "database": database.backend.name(),
        "database_version": version,
        "machine": machine.json(),
        "count": count,
        "settled": settled_count,
        "create_failed": create_failed,
        "pay_failed": pay_failed,
        "not_settled": not_settled,
        "not_started": not_started,
        "succeeded_in_db": succeeded_in_db,
        "elapsed_s": elapsed.as_secs_f64(),
        "settled_per_s": per_s,
        "post_payments_latency": created.json(),
        "paid_latency": paid.json(),
        "settled_latency": settled.json(),
        "start_lag": start_lag.json(),
        "settlement_watch": watch_stats.json(args.poll_ms),
        "reference": reference.json(per_s),
        "postgres_waits": waits.as_ref().map(|w| w.json()),
        "max_db_connections": args.max_db_connections,
        "sellers": args.sellers,
        "ledger_verified": verify.ok(),
        "ok": ok,
    });
    match mode {
        Mode::Open { rate, duration_s } => {
            result["rate"] = json!(rate);
            result["duration_s"] = json!(duration_s);
            result["max_in_flight"] = json!(args.max_in_flight);
        }
        Mode::Closed { concurrency, .. } => result["concurrency"] = json!(concurrency),
    }
    print_json_line(&result);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn start_server(
    database_url: &str,
    max_db_connections: u32,
    engine: EngineConfig,
) -> anyhow::Result<Running> {
    serve::start(ServeConfig {
        webhooks: Default::default(),
        listen: "127.0.0.1:0".parse()?,
        database_url: database_url.to_owned(),
        max_db_connections,
        public_url: None,
        psp: PspChoice::InProcessSandbox {
            listen: "127.0.0.1:0".parse()?,
            sandbox: SandboxConfig::default(),
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
        engine,
        // Keyed as `serve` would be on this database: the chain's HMAC is part of what is
        // measured.
        ledger_keys: crate::ledger_keys::resolve(&Default::default(), database_url)?,
        checkpoint_file: None,
        checkpoint_every_ms: 0,
        // The benchmark measures the engine under the load it offers, not the server shedding
        // it: no rate limit, caps above any load it offers.
        limits: ferropay_http::ServerLimits {
            rate_per_key_per_s: 0,
            max_in_flight: 1 << 20,
            max_connections: 1 << 20,
            ..ferropay_http::ServerLimits::default()
        },
    })
    .await
}

/// `concurrency` workers, each running payments one after another until `count` are started
/// or the deadline passes.
async fn closed_loop(
    flow: &Arc<Flow>,
    tally: &Arc<Mutex<Tally>>,
    concurrency: u64,
    count: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (flow, tally, next) = (flow.clone(), tally.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= deadline {
                    break;
                }
                let outcome = flow.one_payment(i, Instant::now()).await;
                lock(&tally).add(outcome);
            }
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker.context("a bench worker")?;
    }
    Ok(())
}

/// Starts payment `i` at `started + i/rate`, each in its own task; the schedule does not wait
/// for earlier payments, unless `max_in_flight` of them are still running.
async fn open_loop(
    flow: &Arc<Flow>,
    tally: &Arc<Mutex<Tally>>,
    rate: u64,
    count: u64,
    bound: OpenBound,
    started: Instant,
) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(usize::try_from(bound.max_in_flight)?));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let scheduled = started + Duration::from_nanos(i * 1_000_000_000 / rate);
        if scheduled.max(Instant::now()) >= bound.deadline {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        // At the bound, the schedule waits here; the payments it delays still count their
        // latency from their scheduled start.
        let permit = in_flight.clone().acquire_owned().await?;
        let (flow, tally) = (flow.clone(), tally.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let outcome = flow.one_payment(i, scheduled).await;
            lock(&tally).add(outcome);
        });
        // Reap the finished ones as we go, so that the set holds only what is in flight.
        while let Some(finished) = tasks.try_join_next() {
            finished.context("a payment task")?;
        }
    }
    while let Some(finished) = tasks.join_next().await {
        finished.context("a payment task")?;
    }
    Ok(())
}

/// What holds the open loop back: payments in flight, and the time it may take to start them.
struct OpenBound {
    max_in_flight: u64,
    deadline: Instant,
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    // A panic cannot leave a tally half-added in a way that matters: take it as it is.
    tally
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Flow {
    /// Creates payment `i`, pays it, and waits for its capture; times from `scheduled`.
    async fn one_payment(&self, i: u64, scheduled: Instant) -> Result<Sample, Failure> {
        let start_lag = scheduled.elapsed();
        let body = json!({
            "checkout_id": format!("chk_{}_{i}", self.run_id),
            "buyer": {"id": format!("buyer_{}", i % 10_000)},
            "currency": "USD",
            "orders": [
                {"order_id": "ord_1", "seller_id": format!("bench_s{}", (2 * i) % self.sellers), "amount": 1500},
                {"order_id": "ord_2", "seller_id": format!("bench_s{}", (2 * i + 1) % self.sellers), "amount": 250}
            ]
        });
        let response = self
            .http
            .post(format!("{}/v1/payments", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", format!("bench-{}-{i}", self.run_id))
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure::Create(format!("POST /v1/payments: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Create(format!("POST /v1/payments answered {status}: {e}")))?;
        let created = scheduled.elapsed();
        if status != StatusCode::CREATED {
            return Err(Failure::Create(format!(
                "POST /v1/payments answered {status}: {text}"
            )));
        }
        let payment: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::Create(format!("POST /v1/payments answered {e}: {text}")))?;
        let (Some(payment_id), Some(redirect_url)) =
            (payment["id"].as_str(), payment["redirect_url"].as_str())
        else {
            return Err(Failure::Create(format!(
                "POST /v1/payments answered without id or redirect_url: {text}"
            )));
        };

        // Registered before the buyer pays, so the capture cannot be missed.
        let settled_signal = self.watch.expect(payment_id);
        let paid = self
            .http
            .post(redirect_url)
            .form(&[
                ("card_number", CARD_OK),
                ("exp", "12/39"),
                ("cvc", "123"),
                ("name", "Bench"),
            ])
            .send()
            .await;
        match paid {
            Ok(response) if response.status() == StatusCode::SEE_OTHER => {}
            Ok(response) => {
                self.watch.forget(payment_id);
                return Err(Failure::Pay(format!(
                    "the hosted form answered {}",
                    response.status()
                )));
            }
            Err(error) => {
                self.watch.forget(payment_id);
                return Err(Failure::Pay(format!("the hosted form: {error}")));
            }
        }
        let paid = scheduled.elapsed();
        match tokio::time::timeout(self.settle_timeout, settled_signal).await {
            Ok(Ok(settled_at)) => Ok(Sample {
                start_lag,
                created,
                paid,
                settled: settled_at.saturating_duration_since(scheduled),
                settled_at,
            }),
            _ => {
                self.watch.forget(payment_id);
                Err(Failure::NotSettled)
            }
        }
    }
}

/// The run's payments that the database holds as succeeded.
async fn count_succeeded(running: &Running, run_id: &str) -> anyhow::Result<u64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM payments WHERE checkout_id LIKE $1 AND status = 'succeeded'",
    )
    .bind(format!("chk_{run_id}_%"))
    .fetch_one(running.service.store.pool())
    .await?;
    Ok(u64::try_from(row.try_get::<i64, _>(0)?)?)
}
