//! `ferropay bench …`: benchmarks that print their setup (machine, database, counts) and their
//! figures. One file per benchmark.

mod reconcile;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Reconcile a generated settlement file against as many seeded payments: lines per
    /// second and peak resident memory.
    Reconcile(reconcile::Args),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Reconcile(args) => reconcile::run(args).await,
    }
}
