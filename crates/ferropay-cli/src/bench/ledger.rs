//! `ferropay bench ledger`: balanced journal transactions through the code the webhook path
//! posts captures with — `ferropay::ledger::post` inside a `Store::begin_write()` transaction,
//! hash chain and seller wallets included — from `--concurrency` workers in a closed loop. Each
//! transfer debits `psp_receivable:bench` and credits one seller account: the next of
//! `--accounts` in turn, or always the same one with `--hot`. Reports transfers per second and
//! the latency of one transfer (begin to commit), then checks the books (`ledger verify`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ferropay::ledger::{self, NewJournalTransaction, Posting, accounts};
use ferropay::store::{Backend, Store};
use serde_json::json;
use sqlx::Row;

use super::pgbench::{PgbenchPlan, Reference};
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
    /// Transfers in flight at once (workers, each with its own connection).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
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
    let store = Store::open(&database.url, args.concurrency + 1)
        .await
        .with_context(|| format!("opening {}", database.describe()))?;
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
                "ledger::post in Store::begin_write(): 2 postings, hash chain, wallet upsert"
                    .into(),
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
                    clients: args.concurrency,
                    scale: args.common.pgbench_scale,
                    duration_s: args.common.pgbench_duration_s,
                },
            )
            .await
        }
        Backend::Sqlite => Reference::Skipped("SQLite: pgbench is PostgreSQL's".into()),
    };

    warm_pool(&store, args.concurrency).await?;
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
        let (store, next, run_id) = (store.clone(), next.clone(), run_id.clone());
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
                match transfer(&store, &run_id, i, &seller).await {
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
    println!("{}", tally.latency.line("one transfer (begin → commit)"));
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

/// One balanced transfer, as a capture is posted: in its own write transaction.
async fn transfer(store: &Store, run_id: &str, i: u64, seller_id: &str) -> anyhow::Result<()> {
    let mut tx = store.begin_write().await?;
    let outcome = ledger::post(
        store,
        &mut tx,
        &NewJournalTransaction {
            source_ref: format!("bench:{run_id}:{i}"),
            kind: KIND,
            payment_id: None,
            postings: vec![
                Posting::new(accounts::psp_receivable("bench"), CURRENCY, TRANSFER_MINOR),
                Posting::new(accounts::seller(seller_id), CURRENCY, -TRANSFER_MINOR),
            ],
        },
    )
    .await?;
    tx.commit().await?;
    anyhow::ensure!(
        matches!(outcome, ledger::PostOutcome::Posted { .. }),
        "transfer {i} was already posted"
    );
    Ok(())
}

/// Opens the workers' connections before the clock starts, so that connecting is not timed.
async fn warm_pool(store: &Store, connections: u32) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for _ in 0..connections {
        held.push(store.pool().acquire().await?);
    }
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
