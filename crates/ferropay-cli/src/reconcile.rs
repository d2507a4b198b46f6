//! `ferropay reconcile`: reconcile a settlement file (`--file CSV`, the contract), list breaks
//! (`reconcile breaks [--open]`, JSON lines) and resolve one (`reconcile resolve ID --reason …`).
//! The report is one JSON object on stdout; a terminal also gets a progress bar on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use ferropay::psp::sandbox::SandboxConnector;
use ferropay::reconcile::days;
use ferropay::reconcile::schedule::parse_date;
use ferropay::reconcile::{BreakFilter, Reconciler, RunOptions};
use ferropay::secret::Secret;
use ferropay_cli::progress;
use ferropay_cli::serve::PSP_TIMEOUT_MS;

use crate::DatabaseArgs;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    command: Option<ReconcileCommand>,
    /// The settlement file (CSV with the contract's header).
    #[arg(long, env = "FERROPAY_FILE", required = true)]
    file: Option<PathBuf>,
    /// The settlement day (YYYY-MM-DD) whose captures must all be in the file. Default: the
    /// days the file's payment and refund lines fall on.
    /// Only a closed UTC day is accepted (not today, a later day, or a day before the first
    /// payment) unless --provisional.
    #[arg(long, env = "FERROPAY_DATE")]
    date: Option<String>,
    /// Read and match only: post nothing, heal nothing, store no break or run (for a day that
    /// has not closed, whose file is still partial).
    #[arg(long, env = "FERROPAY_PROVISIONAL", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    provisional: bool,
    #[command(flatten)]
    database: DatabaseArgs,
    /// The PSP to ask about payments the file has and the ledger lacks (auto-heal). Without
    /// it, such lines stay open `missing_in_ledger` breaks.
    #[arg(long, env = "FERROPAY_PSP_URL", requires = "psp_api_key")]
    psp_url: Option<String>,
    #[arg(long, env = "FERROPAY_PSP_API_KEY", hide_env_values = true)]
    psp_api_key: Option<String>,
    /// PEM certificates of a private CA that signs an `https://` PSP's certificate.
    #[arg(long, env = "FERROPAY_PSP_CA_FILE", requires = "psp_url")]
    psp_ca_file: Option<PathBuf>,
    /// The PSP's name in ledger accounts (`psp_receivable:NAME`).
    #[arg(long, env = "FERROPAY_PSP", default_value = "sandbox")]
    psp: String,
    /// The platform's fee on each order in basis points, for payments captured by auto-heal
    /// that were created before each payment kept its own rate (newer ones use theirs).
    #[arg(long, env = "FERROPAY_PLATFORM_FEE_BPS", default_value_t = 0)]
    platform_fee_bps: u32,
}

#[derive(Subcommand)]
enum ReconcileCommand {
    /// List breaks as JSON lines, oldest first.
    Breaks {
        /// Only the open ones.
        #[arg(long, env = "FERROPAY_OPEN", action = clap::ArgAction::SetTrue,
              value_parser = clap::builder::BoolishValueParser::new())]
        open: bool,
        /// At most this many (1 to 1000).
        #[arg(long, env = "FERROPAY_LIMIT", default_value_t = 1_000)]
        limit: u32,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Mark an open break resolved, saying why.
    Resolve {
        /// The break's id (`brk_…`).
        id: String,
        #[arg(long, env = "FERROPAY_REASON")]
        reason: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ReconcileCommand::Breaks {
            open,
            limit,
            database,
        }) => {
            let reconciler = offline(&database).await?;
            let filter = if open {
                BreakFilter::Open
            } else {
                BreakFilter::All
            };
            match reconciler.breaks(filter, limit).await {
                Ok(breaks) => {
                    for one in breaks {
                        println!("{}", serde_json::to_string(&one)?);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            }
        }
        Some(ReconcileCommand::Resolve {
            id,
            reason,
            database,
        }) => {
            let reconciler = offline(&database).await?;
            match reconciler.resolve(&id, &reason).await {
                Ok(resolved) => {
                    println!("{}", serde_json::to_string(&resolved)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            }
        }
        None => {
            let file = args.file.context("--file is required")?;
            let date = args
                .date
                .as_deref()
                .map(parse_date)
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--date")?;
            let mut reconciler = offline(&args.database).await?;
            if let (Some(date), false) = (date, args.provisional)
                && let Err(error) = days::check_closed_now(&reconciler.store, date, 0).await
            {
                return refused(error);
            }
            reconciler.psp = args.psp;
            reconciler.platform_fee_bps = args.platform_fee_bps;
            if let (Some(url), Some(key)) = (args.psp_url, args.psp_api_key) {
                let root_ca_pem = args
                    .psp_ca_file
                    .as_ref()
                    .map(|path| {
                        std::fs::read(path)
                            .with_context(|| format!("--psp-ca-file {}", path.display()))
                    })
                    .transpose()?;
                reconciler.connector = Some(Arc::new(
                    SandboxConnector::new(
                        &url,
                        Secret::new(key),
                        Secret::new(String::new()),
                        PSP_TIMEOUT_MS,
                        root_ca_pem.as_deref(),
                    )
                    .map_err(anyhow::Error::msg)?,
                ));
            }
            let total_bytes = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            let bar = progress::bytes_bar(total_bytes, "reconciling");
            let report = reconciler
                .reconcile_file(
                    &file,
                    &RunOptions {
                        date,
                        provisional: args.provisional,
                        ..RunOptions::default()
                    },
                    &|done| {
                        if let Some(bar) = &bar {
                            bar.set_position(done.bytes);
                            bar.set_message(format!("{} lines", done.lines));
                        }
                    },
                )
                .await?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reconciliation over the database alone (no PSP to ask).
async fn offline(database: &DatabaseArgs) -> anyhow::Result<Reconciler> {
    let store = database.open(4).await?;
    Ok(Reconciler {
        engine: ferropay::engine::Engine::start(store.clone(), Default::default())?,
        store,
        psp: ferropay::psp::sandbox::NAME.to_owned(),
        connector: None,
        platform_fee_bps: 0,
        day_close_lag_ms: 0,
    })
}

/// A request refused for what it asked (no such break, resolved already, bad reason): exit 1.
fn refused(error: ferropay::Error) -> anyhow::Result<ExitCode> {
    match error {
        ferropay::Error::Database(_) | ferropay::Error::Internal(_) => Err(error.into()),
        refused => {
            eprintln!("ferropay: {refused}");
            Ok(ExitCode::from(1))
        }
    }
}
