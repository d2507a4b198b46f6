//! The `ferropay` command line (CONTRACT.md, "CLI"): `serve`, `sandbox-psp`, `api-key create`,
//! `ledger verify`, `reconcile`, `bench`. Every flag also reads `FERROPAY_<FLAG>`. Results go to stdout as JSON; logs
//! go to stderr (`FERROPAY_LOG` sets the level, `FERROPAY_LOG_FORMAT=json` makes them JSON).

mod bench;
mod reconcile;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferropay::reconcile::schedule::TimeOfDay;
use ferropay::secret::Secret;
use ferropay::store::{DEFAULT_DATABASE_URL, Store};
use ferropay_cli::serve::{self, PspChoice, ServeConfig};
use sandbox_psp::{Faults, SandboxConfig};

#[derive(Parser)]
#[command(name = "ferropay", version, about = "A marketplace payment service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the webhooks, the pages and the workers (and the sandbox PSP, unless
    /// --psp-url names another PSP).
    Serve(ServeArgs),
    /// Run the sandbox PSP alone.
    SandboxPsp(SandboxArgs),
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Check the books.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Reconcile a PSP settlement file against the books; list and resolve breaks.
    Reconcile(reconcile::ReconcileArgs),
    /// Benchmarks that print their setup and figures.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Args, Clone)]
pub(crate) struct DatabaseArgs {
    /// sqlite://PATH or postgres://…
    #[arg(long, env = "FERROPAY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub(crate) database_url: String,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "FERROPAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Most database connections this instance opens.
    #[arg(long, env = "FERROPAY_MAX_DB_CONNECTIONS", default_value_t = 16)]
    max_db_connections: u32,
    /// Where buyers and the PSP reach this instance (default: http://LISTEN).
    #[arg(long, env = "FERROPAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the in-process sandbox PSP listens.
    #[arg(
        long,
        env = "FERROPAY_SANDBOX_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    sandbox_listen: SocketAddr,
    /// Where buyers reach the in-process sandbox's hosted page (default: http://SANDBOX_LISTEN).
    #[arg(long, env = "FERROPAY_SANDBOX_PUBLIC_URL")]
    sandbox_public_url: Option<String>,
    /// The in-process sandbox's review delay for card 4000 0000 0000 0259, in seconds.
    #[arg(long, env = "FERROPAY_REVIEW_DELAY_S", default_value_t = 5)]
    review_delay_s: u64,
    /// A PSP that runs elsewhere (no in-process sandbox then).
    #[arg(long, env = "FERROPAY_PSP_URL", requires_all = ["psp_api_key", "psp_webhook_secret"])]
    psp_url: Option<String>,
    #[arg(long, env = "FERROPAY_PSP_API_KEY", hide_env_values = true)]
    psp_api_key: Option<String>,
    #[arg(long, env = "FERROPAY_PSP_WEBHOOK_SECRET", hide_env_values = true)]
    psp_webhook_secret: Option<String>,
    /// The platform's fee on each order, in basis points.
    #[arg(long, env = "FERROPAY_PLATFORM_FEE_BPS", default_value_t = 0)]
    platform_fee_bps: u32,
    /// When (HH:MM, UTC) to fetch the previous day's settlement file from the PSP and reconcile
    /// it, every day; `off` never does.
    #[arg(long, env = "FERROPAY_RECONCILE_AT", default_value = "02:00", value_parser = parse_reconcile_at)]
    reconcile_at: Reconcile,
}

/// `--reconcile-at`: a time of day, or off.
#[derive(Clone, Copy, Debug)]
struct Reconcile(Option<TimeOfDay>);

fn parse_reconcile_at(text: &str) -> Result<Reconcile, String> {
    if text == "off" {
        return Ok(Reconcile(None));
    }
    text.parse().map(|at| Reconcile(Some(at)))
}

#[derive(Args)]
struct SandboxArgs {
    #[arg(long, env = "FERROPAY_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Where webhooks go, e.g. http://127.0.0.1:8080/webhooks/psp/sandbox
    #[arg(long, env = "FERROPAY_WEBHOOK_URL")]
    webhook_url: String,
    #[arg(long, env = "FERROPAY_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// The key clients must send as Bearer (none: no check).
    #[arg(
        long,
        env = "FERROPAY_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    api_key: String,
    /// Base URL of the hosted page (default: http://LISTEN).
    #[arg(long, env = "FERROPAY_PUBLIC_URL")]
    public_url: Option<String>,
    #[arg(long, env = "FERROPAY_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Share of API calls that fail (0.0 to 1.0): 500 before or after the effect, or dropped.
    #[arg(long, env = "FERROPAY_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, env = "FERROPAY_WEBHOOK_DUPLICATE_RATE", default_value_t = 0.0)]
    webhook_duplicate_rate: f64,
    #[arg(long, env = "FERROPAY_WEBHOOK_DROP_RATE", default_value_t = 0.0)]
    webhook_drop_rate: f64,
    #[arg(long, env = "FERROPAY_WEBHOOK_REORDER", default_value_t = false)]
    webhook_reorder: bool,
    #[arg(long, env = "FERROPAY_REVIEW_DELAY_S", default_value_t = 5)]
    review_delay_s: u64,
    /// How long a session stays open before it expires, in seconds.
    #[arg(long, env = "FERROPAY_SESSION_TTL_S", default_value_t = 3600)]
    session_ttl_s: u64,
    /// The PSP's fee on each payment in settlement files, in basis points (290 = 2.9 %).
    #[arg(long, env = "FERROPAY_SETTLEMENT_FEE_BPS", default_value_t = 290)]
    settlement_fee_bps: u32,
    /// The fixed part of that fee, in minor units of the payment's currency.
    #[arg(
        long,
        env = "FERROPAY_SETTLEMENT_FEE_FIXED_MINOR",
        default_value_t = 30
    )]
    settlement_fee_fixed_minor: i64,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key; prints {"id", "name", "secret"} once. Only its hash is stored.
    Create {
        #[arg(long, default_value = "default")]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check that the ledger balances, wallets equal their accounts and the hash chain is
    /// intact. Exit 0 when all hold, 1 when any does not.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ferropay: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ferropay: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve_command(args).await,
        Command::SandboxPsp(args) => sandbox_command(args).await,
        Command::ApiKey {
            command: ApiKeyCommand::Create { name, database },
        } => {
            let store = Store::open(&database.database_url, 1).await?;
            let key = ferropay::api_keys::create(&store, &name).await?;
            println!("{}", serde_json::to_string(&key)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile(args) => reconcile::run(args).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Ledger {
            command: LedgerCommand::Verify { database },
        } => {
            let store = Store::open(&database.database_url, 2).await?;
            let report = ferropay::ledger::verify::verify(&store).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

async fn serve_command(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let psp = match (args.psp_url, args.psp_api_key, args.psp_webhook_secret) {
        (Some(url), Some(api_key), Some(webhook_secret)) => PspChoice::Remote {
            url,
            api_key: Secret::new(api_key),
            webhook_secret: Secret::new(webhook_secret),
        },
        _ => PspChoice::InProcessSandbox {
            listen: args.sandbox_listen,
            sandbox: SandboxConfig {
                public_url: args.sandbox_public_url,
                review_delay_ms: args.review_delay_s.saturating_mul(1000),
                ..SandboxConfig::default()
            },
        },
    };
    let running = serve::start(ServeConfig {
        listen: args.listen,
        database_url: args.database.database_url,
        max_db_connections: args.max_db_connections,
        public_url: args.public_url,
        psp,
        platform_fee_bps: args.platform_fee_bps,
        reconcile_at: args.reconcile_at.0,
    })
    .await?;
    eprintln!(
        "ferropay is serving on {} (API, webhooks, status pages); create a key with `ferropay api-key create`",
        running.public_url
    );
    if let Some(sandbox) = &running.sandbox {
        eprintln!("sandbox PSP (hosted payment page) on {}", sandbox.base_url);
    }
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result.context("waiting for Ctrl-C")?;
            eprintln!("ferropay: stopping");
            running.shutdown().await;
        }
        result = wait_forever() => result?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_forever() -> anyhow::Result<()> {
    std::future::pending::<()>().await;
    Ok(())
}

async fn sandbox_command(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    for (name, rate) in [
        ("--error-rate", args.error_rate),
        ("--webhook-duplicate-rate", args.webhook_duplicate_rate),
        ("--webhook-drop-rate", args.webhook_drop_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1"
        );
    }
    anyhow::ensure!(
        args.settlement_fee_bps <= 10_000 && args.settlement_fee_fixed_minor >= 0,
        "--settlement-fee-bps must be 0 to 10000 and --settlement-fee-fixed-minor at least 0"
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = sandbox_psp::spawn(
        listener,
        SandboxConfig {
            api_key: args.api_key,
            webhook_url: args.webhook_url,
            webhook_secret: args.webhook_secret,
            public_url: args.public_url,
            review_delay_ms: args.review_delay_s.saturating_mul(1000),
            session_ttl_ms: args.session_ttl_s.saturating_mul(1000),
            settlement_fee_bps: args.settlement_fee_bps,
            settlement_fee_fixed_minor: args.settlement_fee_fixed_minor,
            faults: Faults {
                latency_ms: args.latency_ms,
                error_rate: args.error_rate,
                webhook_duplicate_rate: args.webhook_duplicate_rate,
                webhook_drop_rate: args.webhook_drop_rate,
                webhook_reorder: args.webhook_reorder,
            },
            ..SandboxConfig::default()
        },
    )
    .await?;
    eprintln!("sandbox PSP serving on {}", handle.base_url);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown();
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FERROPAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FERROPAY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
