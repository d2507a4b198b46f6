//! The machine's own reference on PostgreSQL, measured in the same run: pgbench's TPC-B-like
//! transactions per second at the bench's concurrency, in a scratch database created beside
//! the bench's and dropped afterwards (`pgbench -i -s SCALE`, then `pgbench -c C -j C -T S -n`).
//! A pgbench that is missing or fails is reported, not fatal: the bench's own figures stand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

/// What to run.
pub struct PgbenchPlan {
    pub program: PathBuf,
    pub clients: u32,
    pub scale: u32,
    pub duration_s: u64,
    pub mode: PgbenchMode,
}

/// Which of pgbench's built-in scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgbenchMode {
    /// The default TPC-B-like transaction (three updates, a select, an insert).
    TpcB,
    /// `-N -M prepared`: the simple-update transaction (no updates of the two small tables,
    /// which would serialize it), prepared statements: PostgreSQL's commit rate at this
    /// concurrency, the fairest yardstick for a ledger of single-row commits.
    SimpleUpdatePrepared,
}

impl PgbenchMode {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::TpcB => &[],
            Self::SimpleUpdatePrepared => &["-N", "-M", "prepared"],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::TpcB => "TPC-B-like",
            Self::SimpleUpdatePrepared => "-N -M prepared",
        }
    }
}

/// PostgreSQL's default `max_connections` is 100: pgbench runs with at most this many clients
/// (the bench says when it capped them).
pub const MAX_PGBENCH_CLIENTS: u32 = 80;

/// What pgbench measured.
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub version: String,
}

/// The reference as the report shows it: the figures, or why there are none.
pub enum Reference {
    Measured(PgbenchPlan, PgbenchResult),
    Skipped(String),
    Failed(String),
}

impl Reference {
    /// Runs the plan against a scratch database on the server `database_url` names, unless the
    /// duration is 0.
    pub async fn measure(database_url: &str, plan: PgbenchPlan) -> Self {
        if plan.duration_s == 0 {
            return Self::Skipped("--pgbench-duration-s 0".into());
        }
        let plan = PgbenchPlan {
            clients: plan.clients.clamp(1, MAX_PGBENCH_CLIENTS),
            ..plan
        };
        println!(
            "measuring the machine's reference: pgbench {m} -c {c} -j {c} -T {t} (scale {s})…",
            m = plan.mode.label(),
            c = plan.clients,
            t = plan.duration_s,
            s = plan.scale
        );
        match run_in_scratch_database(database_url, &plan).await {
            Ok(result) => Self::Measured(plan, result),
            Err(error) => {
                eprintln!("WARNING: no pgbench reference: {error:#}");
                Self::Failed(format!("{error:#}"))
            }
        }
    }

    pub fn tps(&self) -> Option<f64> {
        match self {
            Self::Measured(_, result) => Some(result.tps),
            _ => None,
        }
    }

    /// Ours ÷ pgbench's, both in transactions per second.
    pub fn ratio(&self, ours_per_s: f64) -> Option<f64> {
        self.tps()
            .filter(|tps| *tps > 0.0)
            .map(|tps| (ours_per_s / tps * 1000.0).round() / 1000.0)
    }

    pub fn json(&self, ours_per_s: f64) -> Value {
        match self {
            Self::Measured(plan, result) => json!({
                "pgbench_tps": (result.tps * 10.0).round() / 10.0,
                "pgbench_latency_avg_ms": result.latency_avg_ms,
                "pgbench_version": result.version,
                "pgbench_mode": plan.mode.label(),
                "clients": plan.clients,
                "scale": plan.scale,
                "duration_s": plan.duration_s,
                "ratio": self.ratio(ours_per_s),
            }),
            Self::Skipped(why) => json!({"skipped": why}),
            Self::Failed(why) => json!({"error": why}),
        }
    }

    /// The line for people.
    pub fn describe(&self, ours_per_s: f64, ours_unit: &str) -> String {
        match self {
            Self::Measured(plan, result) => format!(
                "pgbench {m} {:.1} tps (-c {c} -j {c} -T {t}, scale {s}); ours {ours_per_s:.1} {ours_unit} = {:.3} × pgbench",
                result.tps,
                self.ratio(ours_per_s).unwrap_or(0.0),
                m = plan.mode.label(),
                c = plan.clients,
                t = plan.duration_s,
                s = plan.scale,
            ),
            Self::Skipped(why) => format!("none ({why})"),
            Self::Failed(why) => format!("NONE: pgbench failed: {why}"),
        }
    }
}

async fn run_in_scratch_database(
    database_url: &str,
    plan: &PgbenchPlan,
) -> anyhow::Result<PgbenchResult> {
    let suffix: u64 = rand::random();
    let name = format!("ferropay_pgbench_{suffix:016x}");
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(database_url)
        .await
        .context("connecting to create pgbench's scratch database")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    let scratch_url = with_database(database_url, &name)?;
    let program = plan.program.clone();
    let (clients, scale, duration_s, mode) = (plan.clients, plan.scale, plan.duration_s, plan.mode);
    let measured = tokio::task::spawn_blocking(move || {
        run_pgbench(&program, &scratch_url, clients, scale, duration_s, mode)
    })
    .await
    .context("the pgbench task")
    .and_then(|result| result);
    // Dropped whatever happened, so that a failed run leaves nothing behind.
    let dropped = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
    let _ = admin.close().await;
    if let Err(error) = dropped {
        eprintln!("WARNING: could not drop pgbench's scratch database {name}: {error}");
    }
    measured
}

fn run_pgbench(
    program: &Path,
    url: &str,
    clients: u32,
    scale: u32,
    duration_s: u64,
    mode: PgbenchMode,
) -> anyhow::Result<PgbenchResult> {
    let version = command_output(Command::new(program).arg("--version"))?
        .trim()
        .to_owned();
    command_output(
        Command::new(program)
            .args(["-i", "-q", "-s", &scale.to_string()])
            .arg(url),
    )
    .context("pgbench -i")?;
    let clients = clients.max(1).to_string();
    let output = command_output(
        Command::new(program)
            .args(["-n", "-c", &clients, "-j", &clients])
            .args(mode.args())
            .args(["-T", &duration_s.to_string()])
            .arg(url),
    )
    .context("pgbench")?;
    let tps = parse_tps(&output)
        .with_context(|| format!("no `tps = ` in pgbench's output:\n{output}"))?;
    Ok(PgbenchResult {
        tps,
        latency_avg_ms: parse_after(&output, "latency average = "),
        version,
    })
}

/// Runs a command; its stdout, or an error with its stderr.
fn command_output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    anyhow::ensure!(
        output.status.success(),
        "{:?} exited with {}: {}",
        command.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// pgbench prints `tps = 1234.567890 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    parse_after(output, "tps = ")
}

fn parse_after(output: &str, prefix: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        line.trim()
            .strip_prefix(prefix)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The same server URL naming another database: `postgres://u@h:5432/a?x=1` → `…/name?x=1`.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base
        .find("://")
        .map(|i| i + 3)
        .with_context(|| "the database URL has no `://`".to_owned())?;
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@db/app?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@db/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db:5432", "x").unwrap(),
            "postgres://db:5432/x"
        );
        assert!(with_database("nonsense", "x").is_err());
    }

    #[test]
    fn tps_and_latency_are_read_from_pgbench_output() {
        let output = "number of clients: 4\nlatency average = 14.299 ms\n\
                      initial connection time = 49.583 ms\n\
                      tps = 279.739583 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(279.739583));
        assert_eq!(parse_after(output, "latency average = "), Some(14.299));
        assert_eq!(parse_tps("no figures"), None);
    }
}
