//! `ferropay bench ledger`: balanced journal transactions through the money engine, the path
//! every capture, refund and payout takes — `--concurrency` independent callers in a closed
//! loop, each submitting ONE transfer (`engine::Post`) and awaiting its commit, never batched by
//! the caller: the engine batches what arrives. Each transfer debits `psp_receivable:bench` and
//! credits one seller account: the next of `--accounts` in turn, or always the same one with
//! `--hot`. Reports transfers per second, the latency of one transfer (submit to answer, which
//! comes after its batch's commit), the batch sizes the engine made, and pgbench's figures
//! from the same run; then checks the books (`ledger verify`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ferropay::engine::{Engine, EngineConfig, Post};
use ferropay::ledger::{self, NewJournalTransaction, Posting, accounts};
use ferropay::money::Currency;
use ferropay::store::{Backend, Store};
use serde_json::json;
use sqlx::Row;

use super::pgbench::{PgbenchMode, PgbenchPlan, Reference};
use super::report::{Latency, per_second, print_block, print_json_line};
use super::setup::{
    BenchDatabase, CommonArgs, Machine, build_profile, database_version, setup_lines, title,
};
use super::waits::WaitSampler;

/// Each transfer's amount, in minor units of [`CURRENCY`].
const TRANSFER_MINOR: i64 = 100;
const CURRENCY: &str = "USD";
/// The journal `kind` of the bench's transfers, so that they are told apart from real ones.
const KIND: &str = "bench_transfer";

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Seller accounts the transfers credit, each in turn.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
    /// Credit one and the same seller account every time (a hot wallet).
    #[arg(long, conflicts_with = "accounts")]
    pub hot: bool,
    /// Callers in flight at once, each awaiting its own transfer's commit.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// The engine's largest batch (as `serve --engine-max-batch`).
    #[arg(long, default_value_t = EngineConfig::default().max_batch)]
    pub max_batch: usize,
    /// How long the engine waits to fill a batch, in µs (as `serve --engine-linger-us`).
    /// [default: 0 on SQLite, 500 on PostgreSQL]
    #[arg(long)]
    pub linger_us: Option<u64>,
    /// Batches in flight at once (as `serve --engine-lanes`; 0: the database's default).
    #[arg(long, default_value_t = 0)]
    pub lanes: usize,
    /// Transfers in all.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,
    /// Workers start no transfer after this long, in seconds, whatever is left of --count.
    #[arg(long, default_value_t = 300)]
    pub max_duration_s: u64,
}

/// What the workers did.
#[derive(Default)]
struct Tally {
    latency: Latency,
    failed: u64,
    first_error: Option<String>,
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    let profile = build_profile(args.common.allow_debug_build)?;
    let mut machine = Machine::observe();
    let database = BenchDatabase::prepare(args.common.database_url.as_deref())?;
    // The engine needs one connection; the rest are for the checks afterwards.
    // Keyed as `serve` would be on this database: the chain's HMAC is part of what is measured.
    let keys = crate::ledger_keys::resolve(&Default::default(), &database.url)?;
    let store = Store::open(&database.url, 4)
        .await
        .with_context(|| format!("opening {}", database.describe()))?;
    let store = match keys {
        Some(keys) => store.with_chain_keys(keys),
        None => store,
    };
    let engine_config = EngineConfig {
        max_batch: args.max_batch,
        linger_us: args.linger_us,
        queue_capacity: (args.concurrency as usize).max(EngineConfig::default().queue_capacity),
        lanes: args.lanes,
    };
    let engine = Engine::start(store.clone(), engine_config.clone())?;
    let version = database_version(&store).await?;
    let accounts_used = if args.hot { 1 } else { args.accounts };
    let run_id = format!("{:08x}", rand::random::<u32>());

    print_block(
        &title(
            &format!(
                "ledger — {}",
                if args.hot {
                    "one hot account"
                } else {
                    "many accounts"
                }
            ),
            profile,
        ),
        &[
            setup_lines(profile, &machine, &database, &version),
            vec![
            (
                "load",
                format!(
                    "{} transfers, concurrency {}, {} seller account(s) credited in turn, {} {} each",
                    args.count, args.concurrency, accounts_used, TRANSFER_MINOR, CURRENCY
                ),
            ),
            (
                "transfer",
                "one engine::Post per caller: 2 postings, hash chain, wallet, awaited to its commit"
                    .into(),
            ),
            (
                "engine",
                format!(
                    "max batch {}, linger {} µs, lanes {} (0: the database's default)",
                    engine_config.max_batch,
                    engine_config.linger_us_on(store.backend()),
                    engine_config.lanes
                ),
            ),
            ],
        ]
        .concat(),
    );

    let pgbench = |mode| PgbenchPlan {
        program: args.common.pgbench.clone(),
        clients: args.concurrency,
        scale: args.common.pgbench_scale,
        duration_s: args.common.pgbench_duration_s,
        mode,
    };
    let (reference, reference_simple) = match database.backend {
        Backend::Postgres => (
            Reference::measure(&database.url, pgbench(PgbenchMode::TpcB)).await,
            Reference::measure(&database.url, pgbench(PgbenchMode::SimpleUpdatePrepared)).await,
        ),
        Backend::Sqlite => (
            Reference::Skipped("SQLite: pgbench is PostgreSQL's".into()),
            Reference::Skipped("SQLite: pgbench is PostgreSQL's".into()),
        ),
    };
    let usd = Currency::parse(CURRENCY)?;
    let stats_before = engine.stats();
    let sampler = match database.backend {
        Backend::Postgres => WaitSampler::start(&database.url).await,
        Backend::Sqlite => None,
    };
    machine.load_starts();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_duration_s);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (engine, next, run_id) = (engine.clone(), next.clone(), run_id.clone());
        let (count, hot, accounts) = (args.count, args.hot, args.accounts);
        workers.spawn(async move {
            let mut tally = Tally::default();
            // Bounded by --count and by the deadline.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= deadline {
                    break;
                }
                let seller = if hot {
                    "bench_hot".to_owned()
                } else {
                    format!("bench_{}", i % u64::from(accounts))
                };
                let began = Instant::now();
                match transfer(&engine, &run_id, i, &seller, usd).await {
                    Ok(()) => tally.latency.record(began.elapsed()),
                    Err(error) => {
                        tally.failed += 1;
                        tally
                            .first_error
                            .get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(worker) = workers.join_next().await {
        let worker = worker.context("a bench worker")?;
        tally.latency.merge(&worker.latency);
        tally.failed += worker.failed;
        if tally.first_error.is_none() {
            tally.first_error = worker.first_error;
        }
    }
    let elapsed = started.elapsed();
    machine.load_ends();
    let stats = engine.stats();
    let batches = stats.batches - stats_before.batches;
    let mean_batch = if batches == 0 {
        0.0
    } else {
        (stats.commands - stats_before.commands) as f64 / batches as f64
    };
    let waits = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let posted = tally.latency.count();
    let per_s = per_second(posted, elapsed);

    // The books afterwards (not timed): every transfer is in the journal once, and verify holds.
    let in_journal = count_posted(&store, &run_id).await?;
    let verify_started = Instant::now();
    let verify = ferropay::ledger::verify::verify(&store).await?;
    let verify_elapsed = verify_started.elapsed();
    store.close().await;

    println!();
    print_block(
        "results",
        &[
            (
                "transfers",
                format!(
                    "{posted} posted, {} failed, {in_journal} found in the journal, in {:.2} s",
                    tally.failed,
                    elapsed.as_secs_f64()
                ),
            ),
            ("throughput", format!("{per_s:.1} transfers/s")),
            ("cpu", machine.describe_load()),
            ("reference", reference.describe(per_s, "transfers/s")),
            (
                "reference -N",
                reference_simple.describe(per_s, "transfers/s"),
            ),
            (
                "batches",
                format!(
                    "{batches} batches, mean {mean_batch:.1} transfers, largest {} (since start: {})",
                    stats.max_batch,
                    stats.describe_sizes()
                ),
            ),
            ("batch phases", stats.describe_phases(&stats_before)),
            (
                "books",
                format!(
                    "ledger verify {} ({} transactions, {:.2} s)",
                    if verify.ok() { "passes" } else { "FAILS" },
                    verify.transactions,
                    verify_elapsed.as_secs_f64()
                ),
            ),
        ],
    );
    println!(
        "{}",
        tally
            .latency
            .line("one transfer (submit → committed answer)")
    );
    if let Some(waits) = &waits {
        println!("  {:<14} {}", "postgres waits", waits.describe());
    }
    if let Some(error) = &tally.first_error {
        println!("  first error    {error}");
    }
    if machine.was_shared() {
        println!(
            "  NOTE: the machine was busy before this run (see load_1m_before): its figures are from a shared machine."
        );
    }
    let ok = tally.failed == 0 && posted == args.count && in_journal == posted && verify.ok();
    print_json_line(&json!({
        "bench": "ledger",
        "mode": if args.hot { "hot_account" } else { "many_accounts" },
        "profile": profile,
        "database": database.backend.name(),
        "database_version": version,
        "machine": machine.json(),
        "concurrency": args.concurrency,
        "count": args.count,
        "accounts": accounts_used,
        "transfers": posted,
        "failed": tally.failed,
        "in_journal": in_journal,
        "elapsed_s": elapsed.as_secs_f64(),
        "transfers_per_s": per_s,
        "transfer_latency": tally.latency.json(),
        "reference": reference.json(per_s),
        "reference_simple_update": reference_simple.json(per_s),
        "batches": batches,
        "mean_batch": mean_batch,
        "max_batch": stats.max_batch,
        "postgres_waits": waits.as_ref().map(|w| w.json()),
        "ledger_verified": verify.ok(),
        "ok": ok,
    }));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One balanced transfer, submitted alone and awaited to its commit.
async fn transfer(
    engine: &Engine,
    run_id: &str,
    i: u64,
    seller_id: &str,
    usd: Currency,
) -> anyhow::Result<()> {
    let outcome = engine
        .submit(Post(NewJournalTransaction {
            source_ref: format!("bench:{run_id}:{i}"),
            kind: KIND,
            payment_id: None,
            postings: vec![
                Posting::minor(accounts::psp_receivable("bench"), TRANSFER_MINOR, usd),
                Posting::minor(accounts::seller(seller_id), -TRANSFER_MINOR, usd),
            ],
        }))
        .await?;
    anyhow::ensure!(
        matches!(outcome, ledger::PostOutcome::Posted { .. }),
        "transfer {i} was already posted"
    );
    Ok(())
}

async fn count_posted(store: &Store, run_id: &str) -> anyhow::Result<u64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM journal_transactions WHERE kind = $1 AND source_ref LIKE $2",
    )
    .bind(KIND)
    .bind(format!("bench:{run_id}:%"))
    .fetch_one(store.pool())
    .await?;
    Ok(u64::try_from(row.try_get::<i64, _>(0)?)?)
}
