//! What every bench does before it measures: refuse a debug build (no figure is quoted from
//! one), pick the database (a fresh SQLite file by default, or the one given), and collect the
//! facts that make a figure comparable — database and version, cores, memory, and how busy the
//! machine was before and during the run (a shared machine must show in the figures).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ferropay::store::{Backend, Store};
use serde_json::{Value, json};
use sqlx::Row;

use crate::serve::redact_url;

/// Flags every bench takes.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// sqlite://PATH or postgres://… (default: a fresh SQLite file in a temporary folder, removed
    /// afterwards). The bench writes payments and journal transactions that cannot be removed
    /// (the journal is append-only): give it a scratch database, never a real one.
    #[arg(long, env = "FERROPAY_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Run on a debug build anyway (smoke tests do); every figure is then marked as not to quote.
    #[arg(long)]
    pub allow_debug_build: bool,
    /// PostgreSQL only: how long pgbench runs for the machine's reference, in seconds (0: none).
    #[arg(long, default_value_t = 10)]
    pub pgbench_duration_s: u64,
    /// PostgreSQL only: pgbench's scale factor (`pgbench -i -s N`).
    #[arg(long, default_value_t = 1)]
    pub pgbench_scale: u32,
    /// The pgbench program.
    #[arg(long, default_value = "pgbench")]
    pub pgbench: PathBuf,
}

/// A bench's title line, which says so loudly on a debug build.
/// The first lines of every bench's setup block: the build, the machine, the database.
pub fn setup_lines(
    profile: &str,
    machine: &Machine,
    database: &BenchDatabase,
    version: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "build",
            format!("{profile} (ferropay {})", env!("CARGO_PKG_VERSION")),
        ),
        ("machine", machine.describe()),
        (
            "database",
            format!(
                "{} {version} at {}",
                database.backend.name(),
                database.describe()
            ),
        ),
    ]
}

pub fn title(what: &str, profile: &str) -> String {
    if profile == "release" {
        format!("ferropay bench {what}")
    } else {
        format!(
            "ferropay bench {what} — {} BUILD: NOT FIGURES TO QUOTE",
            profile.to_uppercase()
        )
    }
}

/// `release` or `debug`; a debug build is refused unless `allow_debug_build`.
pub fn build_profile(allow_debug_build: bool) -> anyhow::Result<&'static str> {
    if !cfg!(debug_assertions) {
        return Ok("release");
    }
    anyhow::ensure!(
        allow_debug_build,
        "this is a debug build: its figures mean nothing. Build with `cargo build --release` and \
         run target/release/ferropay (or pass --allow-debug-build for a smoke run)"
    );
    eprintln!("WARNING: DEBUG BUILD. These figures must not be quoted anywhere.");
    Ok("debug")
}

/// The database a bench runs on. A fresh SQLite file's folder is removed when this is dropped.
pub struct BenchDatabase {
    pub url: String,
    pub backend: Backend,
    temp_dir: Option<PathBuf>,
}

impl BenchDatabase {
    /// The given database, or a fresh SQLite file in a new temporary folder.
    pub fn prepare(given: Option<&str>) -> anyhow::Result<Self> {
        let (url, temp_dir) = match given {
            Some(url) => (url.to_owned(), None),
            None => {
                let suffix: u64 = rand::random();
                let dir = std::env::temp_dir().join(format!("ferropay-bench-{suffix:016x}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (
                    format!("sqlite://{}", dir.join("ferropay.db").display()),
                    Some(dir),
                )
            }
        };
        let backend = Backend::from_url(&url)?;
        Ok(Self {
            url,
            backend,
            temp_dir,
        })
    }

    /// The URL fit for output: any password hidden; a fresh file is said to be one.
    pub fn describe(&self) -> String {
        match &self.temp_dir {
            Some(_) => format!("{} (fresh, removed afterwards)", self.url),
            None => redact_url(&self.url),
        }
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `SELECT sqlite_version()` or `SHOW server_version`.
pub async fn database_version(store: &Store) -> anyhow::Result<String> {
    let row = sqlx::query(store.pick("SELECT sqlite_version()", "SHOW server_version"))
        .fetch_one(store.pool())
        .await
        .context("reading the database's version")?;
    Ok(row.try_get::<String, _>(0)?)
}

/// The machine, and how busy it was: read before the run and again after it.
pub struct Machine {
    pub cores: usize,
    pub memory_gib: Option<f64>,
    pub cpu_model: Option<String>,
    /// The 1-minute load average before the bench started: other work on a shared machine.
    pub load_1m_before: Option<f64>,
    cpu_from: Option<(CpuTicks, Instant)>,
    measured: Option<CpuShares>,
}

/// How busy the cores were while the load ran.
#[derive(Clone, Copy)]
struct CpuShares {
    /// Share of all cores' time that was busy (this process, the database server, and
    /// anything else on the machine).
    busy: f64,
    /// Share of all cores' time this process used (the load generator and the server).
    this_process: f64,
    seconds: f64,
}

impl Machine {
    pub fn observe() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: read_meminfo_total_kib().map(|kib| kib as f64 / (1024.0 * 1024.0)),
            cpu_model: read_cpu_model(),
            load_1m_before: read_load_1m(),
            cpu_from: None,
            measured: None,
        }
    }

    /// Marks the start of the timed load.
    pub fn load_starts(&mut self) {
        self.cpu_from = CpuTicks::read().map(|ticks| (ticks, Instant::now()));
    }

    /// Marks its end: how busy the cores were in between.
    pub fn load_ends(&mut self) {
        if let (Some((from, at)), Some(to)) = (self.cpu_from.take(), CpuTicks::read()) {
            self.measured = from
                .shares_until(&to)
                .map(|(busy, this_process)| CpuShares {
                    busy,
                    this_process,
                    seconds: at.elapsed().as_secs_f64(),
                });
        }
    }

    /// `CPU 97% busy during the load, 61% of it this process` for people.
    pub fn describe_load(&self) -> String {
        match self.measured {
            Some(shares) => format!(
                "all cores {:.0}% busy during the load, this process {:.0}% of all cores (the rest: the database server and anything else)",
                shares.busy * 100.0,
                shares.this_process * 100.0
            ),
            None => "not measured (no /proc)".into(),
        }
    }

    /// The machine's facts, and how busy it was before and during the load.
    pub fn json(&self) -> Value {
        json!({
            "cores": self.cores,
            "memory_gib": self.memory_gib.map(|g| (g * 10.0).round() / 10.0),
            "cpu_model": self.cpu_model,
            "load_1m_before": self.load_1m_before,
            "load_1m_after": read_load_1m(),
            "cpu_busy_share": self.measured.map(|s| round3(s.busy)),
            "cpu_this_process_share": self.measured.map(|s| round3(s.this_process)),
            "cpu_measured_s": self.measured.map(|s| round3(s.seconds)),
        })
    }

    /// `2 cores (available_parallelism), 23.5 GiB, AMD EPYC; 1-min load 0.12 before the run`.
    pub fn describe(&self) -> String {
        format!(
            "{} cores (available_parallelism), {} GiB, {}; 1-min load {} before the run",
            self.cores,
            self.memory_gib.map_or("?".into(), |g| format!("{g:.1}")),
            self.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.load_1m_before
                .map_or("?".into(), |l| format!("{l:.2}")),
        )
    }

    /// Whether the machine was already busy before the bench: then its figures must say so.
    pub fn was_shared(&self) -> bool {
        self.load_1m_before
            .is_some_and(|load| load > 0.25 * self.cores as f64)
    }
}

/// CPU time from `/proc/stat` (all cores) and `/proc/self/stat` (this process), in clock ticks.
struct CpuTicks {
    machine_total: u64,
    machine_idle: u64,
    process: u64,
}

impl CpuTicks {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
        let machine_total = fields.iter().take(8).sum();
        let machine_idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may hold spaces: count fields after its closing parenthesis.
        let after_name: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let process =
            after_name.get(11)?.parse::<u64>().ok()? + after_name.get(12)?.parse::<u64>().ok()?;
        Some(Self {
            machine_total,
            machine_idle,
            process,
        })
    }

    /// (busy share, this process's share) of all cores' time between `self` and `after`.
    fn shares_until(&self, after: &CpuTicks) -> Option<(f64, f64)> {
        let total = after.machine_total.saturating_sub(self.machine_total);
        if total == 0 {
            return None;
        }
        let idle = after.machine_idle.saturating_sub(self.machine_idle);
        let busy = total.saturating_sub(idle) as f64 / total as f64;
        let ours = after.process.saturating_sub(self.process) as f64 / total as f64;
        Some((busy, ours.min(1.0)))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn read_load_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_meminfo_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn read_cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string(Path::new("/proc/cpuinfo")).ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}
