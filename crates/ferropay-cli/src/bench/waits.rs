//! Where the time goes, on PostgreSQL: while a bench runs, `pg_stat_activity` is sampled every
//! [`SAMPLE_EVERY_MS`] for what each of the database's busy backends is doing — running, waiting
//! for a lock (which one), for the WAL to reach the disk, or for its client's next statement
//! inside an open transaction. The shares show a serialization point or a commit-bound run
//! without guessing. One query per sample on its own connection: it costs the run little.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const SAMPLE_EVERY_MS: u64 = 50;

/// Most samples taken, whatever the run's length (an hour at 50 ms).
const MAX_SAMPLES: u64 = 72_000;

/// A sampler running beside a bench; [`WaitSampler::finish`] stops it and gives the shares.
pub struct WaitSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<WaitShares>,
}

/// How often backends were seen in each state, out of all backend observations.
#[derive(Default)]
pub struct WaitShares {
    samples: u64,
    observations: u64,
    by_state: BTreeMap<String, u64>,
}

impl WaitSampler {
    /// Starts sampling the database `database_url` names; `None` if it cannot connect (the
    /// bench goes on without it).
    pub async fn start(database_url: &str) -> Option<Self> {
        let connection = match AnyConnection::connect(database_url).await {
            Ok(connection) => connection,
            Err(error) => {
                eprintln!("WARNING: no wait-event sampling: {error}");
                return None;
            }
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sample(connection, stopped));
        Some(Self { stop, task })
    }

    pub async fn finish(self) -> WaitShares {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn sample(mut connection: AnyConnection, mut stopped: watch::Receiver<bool>) -> WaitShares {
    let mut shares = WaitShares::default();
    let mut tick = tokio::time::interval(Duration::from_millis(SAMPLE_EVERY_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while shares.samples < MAX_SAMPLES {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        // Busy backends of this database, but this one: `idle in transaction` is a backend that
        // holds its transaction open while the client works or the network carries a reply.
        let rows = sqlx::query(
            "SELECT state, COALESCE(wait_event_type, '') AS wait_type, \
                    COALESCE(wait_event, '') AS wait_event \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend' AND state IS NOT NULL AND state <> 'idle'",
        )
        .fetch_all(&mut connection)
        .await;
        let Ok(rows) = rows else { break };
        shares.samples += 1;
        for row in rows {
            let state: String = row.try_get("state").unwrap_or_default();
            let wait_type: String = row.try_get("wait_type").unwrap_or_default();
            let wait_event: String = row.try_get("wait_event").unwrap_or_default();
            let key = match (state.as_str(), wait_type.as_str()) {
                ("active", "") => "running (CPU)".to_owned(),
                ("idle in transaction", _) => "in transaction, waiting for the client".to_owned(),
                (_, "") => state,
                (_, _) => format!("{wait_type}:{wait_event}"),
            };
            shares.observations += 1;
            *shares.by_state.entry(key).or_default() += 1;
        }
    }
    let _ = connection.close().await;
    shares
}

impl WaitShares {
    /// The states by share, largest first.
    fn ranked(&self) -> Vec<(&str, f64)> {
        let mut ranked: Vec<(&str, f64)> = self
            .by_state
            .iter()
            .map(|(state, n)| (state.as_str(), *n as f64 / self.observations.max(1) as f64))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
    }

    /// Average busy backends per sample, and each state's share of them.
    pub fn json(&self) -> Value {
        let shares: serde_json::Map<String, Value> = self
            .ranked()
            .into_iter()
            .map(|(state, share)| (state.to_owned(), json!((share * 1000.0).round() / 1000.0)))
            .collect();
        json!({
            "samples": self.samples,
            "sample_every_ms": SAMPLE_EVERY_MS,
            "busy_backends_avg": (self.observations as f64 / self.samples.max(1) as f64 * 100.0).round() / 100.0,
            "shares": shares,
        })
    }

    pub fn describe(&self) -> String {
        if self.samples == 0 {
            return "no samples".into();
        }
        let top: Vec<String> = self
            .ranked()
            .into_iter()
            .take(5)
            .map(|(state, share)| format!("{state} {:.0}%", share * 100.0))
            .collect();
        format!(
            "{:.1} busy backends on average; {}",
            self.observations as f64 / self.samples as f64,
            top.join(", ")
        )
    }
}
