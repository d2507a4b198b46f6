//! `ferropay serve`: binds the API, opens (and migrates) the database, wires the PSP connector —
//! the in-process sandbox PSP with a generated key and webhook secret, or a PSP elsewhere —,
//! starts the job workers and the outbox relay, schedules the nightly reconciliation and the
//! payouts (each day once across instances), writes signed ledger checkpoints, and serves until
//! asked to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferropay::chain_keys::ChainKeys;
use ferropay::engine::EngineConfig;
use ferropay::jobs::JobsConfig;
use ferropay::jobs::scheduled::ScheduledRuns;
use ferropay::jobs::worker::Workers;
use ferropay::outbox::kafka::{KafkaConfig, KafkaPublisher};
use ferropay::outbox::nats::{NatsConfig, NatsPublisher};
use ferropay::outbox::relay::{Broker, Publish, Relay, RelayConfig};
use ferropay::payout::schedule::PayoutSchedule;
use ferropay::psp::Connector;
use ferropay::psp::adyen::AdyenConnector;
use ferropay::psp::config::PspSettings;
use ferropay::psp::registry::Connectors;
use ferropay::psp::sandbox::{NAME as SANDBOX, SandboxConnector};
use ferropay::psp::stripe::StripeConnector;
use ferropay::reconcile::schedule::{self, TimeOfDay};
use ferropay::retention::{RetentionPolicy, RetentionTask};
use ferropay::secret::Secret;
use ferropay::store::Store;
use ferropay::webhooks::WebhookConfig;
use ferropay::webhooks::dispatch::Dispatcher;
use ferropay::{Ferropay, FerropayConfig};
use sandbox_psp::{SandboxConfig, SandboxHandle};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long one PSP call may take before it counts as a passing failure, in ms.
pub const PSP_TIMEOUT_MS: u64 = 10_000;

/// How long a stopping server lets running jobs finish before it abandons them to their leases.
pub const JOBS_GRACE_MS: u64 = 5_000;

/// How often old idempotency keys, finished jobs and webhook event ids are purged.
pub const RETENTION_EVERY_MS: u64 = 3_600_000;

/// Everything `serve` needs to start.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub max_db_connections: u32,
    /// Where buyers and the PSP reach us; default `http://{bound listen address}`.
    pub public_url: Option<String>,
    pub psp: PspChoice,
    /// Stripe and Adyen beside the sandbox, and the routing rule (`--config ferropay.toml` and
    /// the environment).
    pub psps: PspSettings,
    pub platform_fee_bps: u32,
    /// Daily payouts to sellers, if any.
    pub payout_schedule: Option<PayoutSchedule>,
    /// A payment still pending this long after its creation is polled at the PSP.
    pub poll_after_ms: i64,
    /// Leases, retries and workers of the job queue; `concurrency: 0` runs no workers here.
    pub jobs: JobsConfig,
    /// When (UTC) to fetch and reconcile the previous day's settlement file; `None`: never.
    pub reconcile_at: Option<TimeOfDay>,
    /// A UTC day may be reconciled for good this long after it ended (the PSP's file is final
    /// then); before, only provisionally. Tests that reconcile the day they paid on: minus a day.
    pub reconcile_day_close_lag_ms: i64,
    /// Relay the outbox to NATS JetStream; `None`: not to NATS.
    pub nats: Option<NatsConfig>,
    /// Relay the outbox to Kafka (beside NATS or alone); `None`: not to Kafka. Neither: events
    /// stay in the outbox table.
    pub kafka: Option<KafkaConfig>,
    /// Purge old idempotency keys, finished jobs and webhook event ids every hour; `None`: never.
    pub retention: Option<RetentionPolicy>,
    /// The money engine's batching.
    pub engine: EngineConfig,
    /// Webhooks to merchants (delivered by this instance's workers when it runs any).
    pub webhooks: WebhookConfig,
    /// The ledger chain's keys (`crate::ledger_keys` finds them); `None`: an unkeyed chain.
    pub ledger_keys: Option<ChainKeys>,
    /// Append a signed checkpoint of the chain's head to this file (and the log) every
    /// `checkpoint_every_ms` while the head moves; `None`: no checkpoints. Needs `ledger_keys`.
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_every_ms: u64,
    /// Timeouts, connection and in-flight caps, per-API-key rate limits of the HTTP server.
    pub limits: ferropay_http::ServerLimits,
}

#[derive(Clone, Debug)]
pub enum PspChoice {
    /// Run the sandbox PSP in this process, on `listen`, wired to ourselves. [`start`] sets the
    /// webhook URL, and generates the key and webhook secret where `sandbox` leaves them empty.
    InProcessSandbox {
        listen: SocketAddr,
        sandbox: SandboxConfig,
    },
    /// A sandbox-compatible PSP that runs elsewhere (over HTTPS in production).
    Remote {
        url: String,
        api_key: Secret,
        webhook_secret: Secret,
        /// PEM certificates of a private CA that signs the PSP's certificate, beside the
        /// system's roots.
        root_ca_pem: Option<Vec<u8>>,
    },
}

/// A running ferropay.
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub service: Ferropay,
    /// The in-process sandbox, if one runs.
    pub sandbox: Option<SandboxHandle>,
    /// The in-process sandbox's API key (its settlement files need it), if one runs.
    pub sandbox_api_key: Option<Secret>,
    workers: Option<Workers>,
    dispatcher: Option<Dispatcher>,
    relays: Vec<Relay>,
    retention: Option<RetentionTask>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    payout_schedule: Option<JoinHandle<()>>,
    nightly: Vec<JoinHandle<()>>,
    /// Tells the schedules to stop: a run in progress is marked interrupted for another
    /// instance.
    schedule_stop: watch::Sender<bool>,
    checkpoints: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops serving (requests in flight finish), stops the workers (running jobs get a grace
    /// period), stops the sandbox, closes the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        // The schedules mark a run in progress interrupted (another instance, or the next
        // start, runs it again), within the jobs' grace period.
        let _ = self.schedule_stop.send(true);
        let grace = Duration::from_millis(JOBS_GRACE_MS);
        for schedule in self.nightly.into_iter().chain(self.payout_schedule) {
            let abort = schedule.abort_handle();
            if tokio::time::timeout(grace, schedule).await.is_err() {
                abort.abort();
            }
        }
        let _ = self.server.await;
        if let Some(dispatcher) = self.dispatcher {
            dispatcher
                .shutdown(Duration::from_millis(JOBS_GRACE_MS))
                .await;
        }
        if let Some(workers) = self.workers {
            workers.shutdown(Duration::from_millis(JOBS_GRACE_MS)).await;
        }
        for relay in self.relays {
            relay.shutdown(Duration::from_millis(JOBS_GRACE_MS)).await;
        }
        if let Some(retention) = self.retention {
            retention
                .shutdown(Duration::from_millis(JOBS_GRACE_MS))
                .await;
        }
        if let Some(sandbox) = self.sandbox {
            sandbox.shutdown();
        }
        if let Some(checkpoints) = self.checkpoints {
            checkpoints.abort();
        }
        self.service.store.close().await;
    }

    /// Serves until the task is stopped from outside (SIGTERM or Ctrl-C in `main`).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("server task")??;
        Ok(())
    }
}

pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    let listener = ferropay_http::server::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();

    let store = Store::open(&config.database_url, config.max_db_connections)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&config.database_url)))?;
    let store = match config.ledger_keys {
        Some(keys) => {
            tracing::info!(key_id = keys.current().id(), "ledger chain keyed");
            store.with_chain_keys(keys)
        }
        None => store,
    };
    let checkpoints = match (&config.checkpoint_file, store.chain_keys()) {
        (Some(path), Some(_)) => Some(ferropay::ledger::checkpoint::spawn_writer(
            store.clone(),
            path.clone(),
            config.checkpoint_every_ms.max(1),
        )),
        (Some(_), None) => anyhow::bail!("ledger checkpoints need the chain keys"),
        (None, _) => None,
    };

    let (connector, sandbox, sandbox_api_key) = match config.psp {
        PspChoice::InProcessSandbox {
            listen,
            sandbox: mut sandbox_config,
        } => {
            // Generated unless the caller chose them (tests do, to sign their own webhooks).
            if sandbox_config.api_key.is_empty() {
                sandbox_config.api_key = format!("psk_{}", random_hex());
            }
            if sandbox_config.webhook_secret.is_empty() {
                sandbox_config.webhook_secret = format!("whsec_{}", random_hex());
            }
            let api_key = sandbox_config.api_key.clone();
            let webhook_secret = sandbox_config.webhook_secret.clone();
            sandbox_config.webhook_url = format!("{public_url}/webhooks/psp/{SANDBOX}");
            let sandbox_listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the sandbox PSP on {listen}"))?;
            let handle = sandbox_psp::spawn(sandbox_listener, sandbox_config).await?;
            tracing::info!(url = %handle.base_url, "sandbox PSP running in-process");
            let connector = SandboxConnector::new(
                &handle.base_url,
                Secret::new(api_key.clone()),
                Secret::new(webhook_secret),
                PSP_TIMEOUT_MS,
                None,
            )
            .map_err(anyhow::Error::msg)?;
            let api_key = Secret::new(api_key);
            (connector, Some(handle), Some(api_key))
        }
        PspChoice::Remote {
            url,
            api_key,
            webhook_secret,
            root_ca_pem,
        } => (
            SandboxConnector::new(
                &url,
                api_key,
                webhook_secret,
                PSP_TIMEOUT_MS,
                root_ca_pem.as_deref(),
            )
            .map_err(anyhow::Error::msg)?,
            None,
            None,
        ),
    };

    let mut all: Vec<Arc<dyn Connector>> = vec![Arc::new(connector)];
    if let Some(stripe) = config.psps.stripe.clone() {
        all.push(Arc::new(
            StripeConnector::new(stripe).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(adyen) = config.psps.adyen.clone() {
        all.push(Arc::new(
            AdyenConnector::new(adyen).map_err(anyhow::Error::msg)?,
        ));
    }
    let connectors = Connectors::new(all, &config.psps.routing).map_err(anyhow::Error::msg)?;
    tracing::info!(psps = ?connectors.names(), default = connectors.default_connector().name(), "PSP connectors");
    let service = Ferropay::new(
        store,
        connectors,
        FerropayConfig {
            public_url: public_url.clone(),
            platform_fee_bps: config.platform_fee_bps,
            poll_after_ms: config.poll_after_ms,
            jobs: config.jobs.clone(),
            outbox_relays: [
                config.nats.as_ref().map(|_| Broker::Nats),
                config.kafka.as_ref().map(|_| Broker::Kafka),
            ]
            .into_iter()
            .flatten()
            .collect(),
            engine: config.engine.clone(),
            webhooks: config.webhooks.clone(),
            reconcile_day_close_lag_ms: config.reconcile_day_close_lag_ms,
            ..FerropayConfig::default()
        },
    )?;
    let workers = (config.jobs.concurrency > 0).then(|| {
        Workers::spawn(
            service.store.clone(),
            service.job_registry(),
            config.jobs.clone(),
        )
    });
    // The outbox → webhook deliveries, beside the workers that deliver them.
    let dispatcher = (config.jobs.concurrency > 0)
        .then(|| Dispatcher::spawn(service.store.clone(), config.webhooks.clone()));
    // One relay per broker, each with its own record of what it published.
    let mut publishers: Vec<Arc<dyn Publish>> = Vec::new();
    if let Some(nats) = config.nats {
        let publisher = NatsPublisher::connect(nats)
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
        publishers.push(Arc::new(publisher));
    }
    if let Some(kafka) = config.kafka {
        publishers.push(Arc::new(
            KafkaPublisher::connect(kafka).map_err(|error| anyhow::anyhow!(error))?,
        ));
    }
    let relays = publishers
        .into_iter()
        .map(|publisher| Relay::spawn(service.store.clone(), publisher, RelayConfig::default()))
        .collect();
    let retention = config.retention.map(|policy| {
        RetentionTask::spawn(
            service.store.clone(),
            policy,
            Duration::from_millis(RETENTION_EVERY_MS),
        )
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(ferropay_http::serve(
        listener,
        service.clone(),
        config.limits.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // The schedules run each day once across instances, under a lease as long as the jobs'
    // (`--lease-s`), and look for runs to take over twice per lease.
    let (schedule_stop, schedule_stopped) = watch::channel(false);
    let scheduled_runs = ScheduledRuns::new(service.store.clone(), config.jobs.lease_ms);
    let check_ms = u64::try_from(config.jobs.lease_ms / 2).unwrap_or(1).max(1);
    let payout_schedule = config.payout_schedule.map(|schedule| {
        ferropay::payout::schedule::spawn(
            service.clone(),
            schedule,
            scheduled_runs.clone(),
            check_ms,
            schedule_stopped.clone(),
        )
    });
    tracing::info!(%addr, %public_url, database = service.store.backend().name(), "ferropay serving");
    // One nightly run per PSP that gives its settlement by day.
    let nightly: Vec<JoinHandle<()>> = match config.reconcile_at {
        None => Vec::new(),
        Some(at) => service
            .connectors
            .all()
            .filter(|connector| connector.settles_by_day())
            .filter_map(|connector| service.psp_reconciler(connector.name()).ok())
            .map(|reconciler| {
                tokio::spawn(schedule::run_nightly(
                    reconciler,
                    at,
                    std::env::temp_dir(),
                    scheduled_runs.clone(),
                    check_ms,
                    schedule_stopped.clone(),
                ))
            })
            .collect(),
    };
    Ok(Running {
        addr,
        public_url,
        service,
        sandbox,
        sandbox_api_key,
        workers,
        dispatcher,
        relays,
        retention,
        stop,
        server,
        payout_schedule,
        nightly,
        schedule_stop,
        checkpoints,
    })
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A database URL fit for a log: any password is hidden.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_do_not_reach_logs() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/pay"),
            "postgres://app:***@db:5432/pay"
        );
        assert_eq!(redact_url("postgres://app@db/pay"), "postgres://app@db/pay");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
