//! `ferropay bench`: how fast ferropay goes on this machine, measured against a real server and
//! a real database, with the machine's own reference beside it. One file per benchmark; the
//! setup, reference and report helpers are shared. BENCHMARKS.md says how to run and read them.

mod console;
mod ledger;
mod payments;
mod pgbench;
mod reconcile;
mod relay;
mod report;
mod settlements;
mod setup;
mod waits;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The whole pay-in flow: create, pay on the hosted page, settle by webhook in the ledger.
    Payments(payments::PaymentsArgs),
    /// The operator console's pages on a seeded database of a million payments: p50/p99 page
    /// load, against `GET /healthz` and `GET /v1/payments/{id}` measured in the same run.
    Console(console::ConsoleArgs),
    /// Balanced journal transactions through `ledger::post`, to many accounts or one hot one.
    Ledger(ledger::LedgerArgs),
    /// Reconcile a generated settlement file against as many seeded payments: lines per
    /// second and peak resident memory.
    Reconcile(reconcile::Args),
    /// Outbox events relayed to a real broker (Kafka or NATS JetStream): events per second.
    Relay(relay::RelayArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Payments(args) => payments::run(args).await,
        BenchCommand::Console(args) => console::run(args).await,
        BenchCommand::Ledger(args) => ledger::run(args).await,
        BenchCommand::Reconcile(args) => reconcile::run(args).await,
        BenchCommand::Relay(args) => relay::run(args).await,
    }
}
