//! The `ferropay` command line (CONTRACT.md, "CLI"): `serve`, `sandbox-psp`, `api-key create`,
//! `ledger verify`, `reconcile`, `dlq list`, `dlq replay`, `payout create`, `demo`, `bench`. Every flag
//! also reads `FERROPAY_<FLAG>`. Results go to stdout as JSON; logs go to stderr (`FERROPAY_LOG`
//! sets the level, `FERROPAY_LOG_FORMAT=json` makes them JSON).

mod reconcile;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferropay::chain_keys::ChainKeys;
use ferropay::clock::now_ms;
use ferropay::engine::EngineConfig;
use ferropay::jobs::{JobsConfig, RetryPolicy};
use ferropay::outbox::kafka::KafkaConfig;
use ferropay::outbox::nats::NatsConfig;
use ferropay::payout::schedule::PayoutSchedule;
use ferropay::reconcile::schedule::TimeOfDay;
use ferropay::retention::{RetentionPolicy, purge};
use ferropay::secret::Secret;
use ferropay::store::{DEFAULT_DATABASE_URL, Store};
use ferropay_cli::ledger_keys::{self, KeySource};
use ferropay_cli::serve::{self, PspChoice, ServeConfig};
use ferropay_http::ServerLimits;
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
    Serve(Box<ServeArgs>),
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
    /// The dead-letter queue: jobs that failed for good or too often.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Pay-outs to sellers.
    Payout {
        #[command(subcommand)]
        command: PayoutCommand,
    },
    /// Reconcile a PSP settlement file against the books; list and resolve breaks.
    Reconcile(reconcile::ReconcileArgs),
    /// Delete old idempotency keys, finished jobs and webhook event ids now (`serve` does it
    /// every hour); prints how many of each as JSON.
    Purge {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Seed the database with something to look at: payments with every test card, refunds, a
    /// payout and a reconciled day, made over HTTP against an in-process server and sandbox PSP
    /// on free ports. Prints what it made as JSON.
    Demo {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print the HTTP API's OpenAPI 3.1 description (as `GET /openapi.json` serves it);
    /// `ferropay openapi > docs/openapi.json` refreshes the committed copy.
    Openapi,
    /// Measure throughput and latency on this machine (BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: ferropay_cli::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum PayoutCommand {
    /// Pay a seller now: records the payout and moves it out of the seller's wallet; a running
    /// `ferropay serve` sends it to the payout provider. Prints the payout as JSON. Exit 1 when
    /// it would overdraw the wallet.
    Create {
        #[arg(long, env = "FERROPAY_SELLER_ID")]
        seller_id: String,
        #[arg(long, env = "FERROPAY_CURRENCY")]
        currency: String,
        /// Minor units; all that is available when absent.
        #[arg(long, env = "FERROPAY_AMOUNT")]
        amount: Option<i64>,
        /// Makes a retried command safe: the same key pays once (default: a fresh key).
        #[arg(long, env = "FERROPAY_IDEMPOTENCY_KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Args, Clone)]
pub(crate) struct DatabaseArgs {
    /// sqlite://PATH or postgres://…
    #[arg(long, env = "FERROPAY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub(crate) database_url: String,
    /// A file of the ledger chain's HMAC keys (KEY_ID:HEX lines, the last signs), created with
    /// one new key if missing. Default on SQLite: `ledger-keys` beside the database; on
    /// PostgreSQL: none (an unkeyed chain). Give every instance the same file.
    #[arg(long, env = "FERROPAY_LEDGER_KEYS_FILE")]
    pub(crate) ledger_keys_file: Option<std::path::PathBuf>,
    /// The ledger chain's keys themselves (KEY_ID:HEX,KEY_ID:HEX; the last signs), instead of a
    /// file.
    #[arg(long, env = "FERROPAY_LEDGER_KEYS", hide_env_values = true)]
    pub(crate) ledger_keys: Option<String>,
}

impl DatabaseArgs {
    pub(crate) fn key_source(&self) -> KeySource {
        KeySource {
            inline: self.ledger_keys.clone(),
            file: self.ledger_keys_file.clone(),
        }
    }

    /// Opens (and migrates) the database, with the ledger chain's keys.
    pub(crate) async fn open(&self, max_connections: u32) -> anyhow::Result<Store> {
        ledger_keys::open_store(&self.database_url, max_connections, &self.key_source()).await
    }
}

/// How long the rows that guard against retries are kept (`ferropay::retention`).
#[derive(Args, Clone, Debug)]
struct RetentionArgs {
    /// Hours an Idempotency-Key is remembered, at least 24 (the contract); the same key after
    /// that is a new request (a checkout in flight or paid still refuses a second payment).
    #[arg(long, env = "FERROPAY_IDEMPOTENCY_KEY_TTL_H", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(24..))]
    idempotency_key_ttl_h: u32,
    /// Days a finished job is kept (a dead one stays until it is replayed).
    #[arg(long, env = "FERROPAY_JOB_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..))]
    job_retention_days: u32,
    /// Days a webhook event id is remembered to drop duplicates.
    #[arg(long, env = "FERROPAY_WEBHOOK_EVENT_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    webhook_event_retention_days: u32,
}

impl RetentionArgs {
    fn policy(&self) -> RetentionPolicy {
        const HOUR_MS: i64 = 3_600_000;
        RetentionPolicy {
            idempotency_key_ttl_ms: i64::from(self.idempotency_key_ttl_h) * HOUR_MS,
            done_job_ttl_ms: i64::from(self.job_retention_days) * 24 * HOUR_MS,
            webhook_event_ttl_ms: i64::from(self.webhook_event_retention_days) * 24 * HOUR_MS,
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "FERROPAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Most database connections this instance's pool opens (requests, workers, relays); on
    /// PostgreSQL the money engine has one more of its own per lane (--engine-lanes).
    #[arg(long, env = "FERROPAY_MAX_DB_CONNECTIONS", default_value_t = 16)]
    max_db_connections: u32,
    /// The money engine's largest batch: commands written in one database transaction.
    #[arg(long, env = "FERROPAY_ENGINE_MAX_BATCH", default_value_t = EngineConfig::default().max_batch as u32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    engine_max_batch: u32,
    /// How long the money engine waits to fill a batch, in microseconds [default: 0 on SQLite,
    /// 500 on PostgreSQL].
    #[arg(long, env = "FERROPAY_ENGINE_LINGER_US",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    engine_linger_us: Option<u64>,
    /// Most commands waiting for the money engine; past it, requests get 503 with Retry-After.
    #[arg(long, env = "FERROPAY_ENGINE_QUEUE", default_value_t = EngineConfig::default().queue_capacity as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    engine_queue: u32,
    /// Money engine batches in flight at once (0: three on PostgreSQL, one on SQLite).
    #[arg(long, env = "FERROPAY_ENGINE_LANES", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=16))]
    engine_lanes: u32,
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
    /// The in-process sandbox disputes a payment made with card 4000 0000 0000 2685 this long
    /// after it succeeded, in seconds.
    #[arg(long, env = "FERROPAY_DISPUTE_DELAY_S", default_value_t = 10)]
    dispute_delay_s: u64,
    /// The in-process sandbox's API key, which its settlement files
    /// (GET /v1/settlements/YYYY-MM-DD.csv) need; default: a new one at each start, printed.
    #[arg(long, env = "FERROPAY_SANDBOX_API_KEY", hide_env_values = true)]
    sandbox_api_key: Option<String>,
    /// The merchant name the in-process sandbox's hosted page shows buyers.
    #[arg(long, env = "FERROPAY_SANDBOX_MERCHANT_NAME", default_value = sandbox_psp::DEFAULT_MERCHANT_NAME)]
    sandbox_merchant_name: String,
    /// Hold the in-process sandbox's webhooks this long (ms): the buyer is back before
    /// ferropay hears of the outcome, as with a slow PSP.
    #[arg(long, env = "FERROPAY_SANDBOX_WEBHOOK_LATENCY_MS", default_value_t = 0)]
    sandbox_webhook_latency_ms: u64,
    /// The PSP connectors (Stripe, Adyen) and the routing rule, as TOML (docs/connectors.md);
    /// the FERROPAY_STRIPE_* and FERROPAY_ADYEN_* variables override it.
    #[arg(long, env = "FERROPAY_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// A PSP that runs elsewhere (no in-process sandbox then).
    #[arg(long, env = "FERROPAY_PSP_URL", requires_all = ["psp_api_key", "psp_webhook_secret"])]
    psp_url: Option<String>,
    #[arg(long, env = "FERROPAY_PSP_API_KEY", hide_env_values = true)]
    psp_api_key: Option<String>,
    #[arg(long, env = "FERROPAY_PSP_WEBHOOK_SECRET", hide_env_values = true)]
    psp_webhook_secret: Option<String>,
    /// PEM certificates of a private CA that signs an `https://` PSP's certificate (the
    /// system's roots are trusted as well).
    #[arg(long, env = "FERROPAY_PSP_CA_FILE", requires = "psp_url")]
    psp_ca_file: Option<std::path::PathBuf>,
    /// The platform's fee on each order, in basis points.
    #[arg(long, env = "FERROPAY_PLATFORM_FEE_BPS", default_value_t = 0)]
    platform_fee_bps: u32,
    /// Pay sellers out daily at this UTC time (HH:MM); no scheduled payouts without it.
    #[arg(long, env = "FERROPAY_PAYOUT_AT")]
    payout_at: Option<String>,
    /// The least available balance (minor units) a scheduled payout pays out.
    #[arg(long, env = "FERROPAY_PAYOUT_MINIMUM_MINOR", default_value_t = 1)]
    payout_minimum_minor: i64,
    /// Poll the PSP about a payment still pending this many seconds after its creation (and
    /// again, less and less often, while it stays pending).
    #[arg(long, env = "FERROPAY_POLL_AFTER_S", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    poll_after_s: u32,
    /// Most jobs (PSP calls) this instance runs at once; 0 runs no workers here.
    #[arg(long, env = "FERROPAY_JOB_CONCURRENCY", default_value_t = 8)]
    job_concurrency: usize,
    /// A job, or a request holding its Idempotency-Key, still claimed after this many seconds
    /// is taken to have died (a crashed instance) and its work is taken over.
    #[arg(long, env = "FERROPAY_LEASE_S", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    lease_s: u32,
    /// A job that failed this many attempts moves to the dead-letter queue.
    #[arg(long, env = "FERROPAY_JOB_MAX_ATTEMPTS", default_value_t = RetryPolicy::default().max_attempts,
          value_parser = clap::value_parser!(u32).range(1..))]
    job_max_attempts: u32,
    /// ...and only once it is this old: within the window a passing failure (a PSP outage) is
    /// always retried, at most five minutes apart, so the service recovers by itself.
    #[arg(long, env = "FERROPAY_JOB_RETRY_WINDOW_S", default_value_t = 86_400)]
    job_retry_window_s: u64,
    /// When (HH:MM, UTC) to fetch the previous day's settlement file from the PSP and reconcile
    /// it, every day; `off` never does.
    #[arg(long, env = "FERROPAY_RECONCILE_AT", default_value = "02:00", value_parser = parse_reconcile_at)]
    reconcile_at: Reconcile,
    /// How long after a UTC day's end its settlement file is final at the PSP, in seconds: a
    /// run for a day before that is refused (400) unless provisional. Keep it below
    /// --reconcile-at. Negative values make a day count as closed before it ends (tests only).
    #[arg(long, env = "FERROPAY_RECONCILE_CLOSE_LAG_S", default_value_t = 0,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-86_400..=86_400))]
    reconcile_close_lag_s: i64,
    /// A connection idle this long (after it opened or after its last answer), or slower than
    /// this to send a request's headers, is closed, in ms.
    #[arg(long, env = "FERROPAY_HEADER_READ_TIMEOUT_MS", default_value_t = ServerLimits::default().header_read_timeout_ms,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    header_read_timeout_ms: u64,
    /// A request body not in within this long after its headers is answered 408, in ms.
    #[arg(long, env = "FERROPAY_BODY_READ_TIMEOUT_MS", default_value_t = ServerLimits::default().body_read_timeout_ms,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    body_read_timeout_ms: u64,
    /// Connections served at once; past it a connection is answered 503 (or /healthz) and
    /// closed. Keep it under the file-descriptor limit (`ulimit -n`) less the database pool.
    #[arg(long, env = "FERROPAY_MAX_CONNECTIONS", default_value_t = ServerLimits::default().max_connections,
          value_parser = parse_count)]
    max_connections: usize,
    /// API requests handled at once; past it 503 with Retry-After (/healthz, /metrics excepted).
    #[arg(long, env = "FERROPAY_MAX_IN_FLIGHT", default_value_t = ServerLimits::default().max_in_flight,
          value_parser = parse_count)]
    max_in_flight: usize,
    /// Requests per second one API key may make, sustained (429 with Retry-After past it);
    /// 0 for no limit.
    #[arg(long, env = "FERROPAY_RATE_LIMIT_PER_S", default_value_t = ServerLimits::default().rate_per_key_per_s)]
    rate_limit_per_s: u32,
    /// Requests one API key may make at once above its sustained rate.
    #[arg(long, env = "FERROPAY_RATE_LIMIT_BURST", default_value_t = ServerLimits::default().rate_burst_per_key)]
    rate_limit_burst: u32,
    /// Relay the outbox's events to NATS JetStream at this URL (nats://HOST:4222). Without it
    /// they stay in the outbox table.
    #[arg(long, env = "FERROPAY_NATS_URL")]
    nats_url: Option<String>,
    /// The JetStream stream the events go to (created if missing).
    #[arg(long, env = "FERROPAY_NATS_STREAM", default_value = "FERROPAY", value_parser = parse_stream_name)]
    nats_stream: String,
    /// The first token(s) of every event's subject: PREFIX.payment.succeeded, ….
    #[arg(long, env = "FERROPAY_NATS_SUBJECT_PREFIX", default_value = "ferropay", value_parser = parse_subject_prefix)]
    nats_subject_prefix: String,
    /// Relay the outbox's events to Kafka through these bootstrap brokers (HOST:PORT,…), beside
    /// NATS or alone. Without it (and without --nats-url) they stay in the outbox table.
    #[arg(long, env = "FERROPAY_KAFKA_BROKERS", value_parser = parse_kafka_brokers)]
    kafka_brokers: Option<String>,
    /// Put before each Kafka topic's name: PREFIXpayments, PREFIXpayouts.
    #[arg(long, env = "FERROPAY_KAFKA_TOPIC_PREFIX", default_value = "ferropay.", value_parser = parse_kafka_topic_prefix)]
    kafka_topic_prefix: String,
    /// Partitions of a Kafka topic the relay creates (an existing topic is used as it is).
    #[arg(long, env = "FERROPAY_KAFKA_PARTITIONS", default_value_t = 6,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    kafka_partitions: i32,
    /// Replicas of each partition of a Kafka topic the relay creates (production: create the
    /// topics yourself with 3 and min.insync.replicas=2).
    #[arg(long, env = "FERROPAY_KAFKA_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=32))]
    kafka_replication_factor: i32,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Append a signed checkpoint of the ledger chain's head to this file (JSON lines; also
    /// logged) while the head moves. Default on SQLite: `ledger-checkpoints.jsonl` beside the
    /// database; on PostgreSQL: none. Keep it (or ship the log) away from the database.
    #[arg(long, env = "FERROPAY_CHECKPOINT_FILE")]
    checkpoint_file: Option<std::path::PathBuf>,
    /// How often a checkpoint is written while the ledger grows, in seconds.
    #[arg(long, env = "FERROPAY_CHECKPOINT_EVERY_S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every_s: u64,
    /// Let webhook endpoints be loopback, private or link-local addresses (development only:
    /// otherwise anyone with an operator key could make ferropay call inside the network).
    #[arg(long, env = "FERROPAY_ALLOW_PRIVATE_WEBHOOK_URLS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_webhook_urls: bool,
}

/// `--kafka-brokers`: HOST:PORT pairs, comma-separated.
fn parse_kafka_brokers(text: &str) -> Result<String, String> {
    let ok = text.split(',').all(|broker| {
        broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|port| port > 0)
        })
    });
    ok.then(|| text.to_owned())
        .ok_or_else(|| "HOST:PORT pairs separated by commas, e.g. 127.0.0.1:9092".to_owned())
}

/// `--kafka-topic-prefix`: characters Kafka allows in a topic name, short enough for the suffix.
fn parse_kafka_topic_prefix(text: &str) -> Result<String, String> {
    let ok = text.len() <= 200
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    ok.then(|| text.to_owned())
        .ok_or_else(|| "at most 200 letters, digits, '.', '_' or '-'".to_owned())
}

/// A JetStream stream name: letters, digits, `_` and `-`.
fn parse_stream_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| text.to_owned())
        .ok_or_else(|| "1 to 64 letters, digits, '_' or '-'".to_owned())
}

/// Subject tokens (letters, digits, `_`, `-`) joined by dots; no wildcards.
fn parse_subject_prefix(text: &str) -> Result<String, String> {
    let ok = text.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    ok.then(|| text.to_owned())
        .ok_or_else(|| "dot-separated tokens of letters, digits, '_' or '-'".to_owned())
}

/// A cap of 1 to a million.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if (1..=1_000_000).contains(&count) => Ok(count),
        _ => Err(format!("`{text}` is not a whole number from 1 to 1000000")),
    }
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
    /// The merchant name the hosted page shows buyers.
    #[arg(long, env = "FERROPAY_MERCHANT_NAME", default_value = sandbox_psp::DEFAULT_MERCHANT_NAME)]
    merchant_name: String,
    #[arg(long, env = "FERROPAY_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Hold every webhook this long (ms) before its first attempt.
    #[arg(long, env = "FERROPAY_WEBHOOK_LATENCY_MS", default_value_t = 0)]
    webhook_latency_ms: u64,
    /// Share of API calls that fail (0.0 to 1.0): 500 before or after the effect, or dropped.
    #[arg(long, env = "FERROPAY_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, env = "FERROPAY_WEBHOOK_DUPLICATE_RATE", default_value_t = 0.0)]
    webhook_duplicate_rate: f64,
    #[arg(long, env = "FERROPAY_WEBHOOK_DROP_RATE", default_value_t = 0.0)]
    webhook_drop_rate: f64,
    /// Deliver some webhooks out of order (`true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`).
    #[arg(long, env = "FERROPAY_WEBHOOK_REORDER", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    webhook_reorder: bool,
    #[arg(long, env = "FERROPAY_REVIEW_DELAY_S", default_value_t = 5)]
    review_delay_s: u64,
    /// Card 4000 0000 0000 2685's payments are disputed this long after they succeed, in
    /// seconds.
    #[arg(long, env = "FERROPAY_DISPUTE_DELAY_S", default_value_t = 10)]
    dispute_delay_s: u64,
    /// How long a session stays open before it expires, in seconds.
    #[arg(long, env = "FERROPAY_SESSION_TTL_S", default_value_t = 3600)]
    session_ttl_s: u64,
    /// First webhook retry delay; it doubles on each retry.
    #[arg(long, env = "FERROPAY_WEBHOOK_RETRY_BASE_MS", default_value_t = 500)]
    webhook_retry_base_ms: u64,
    /// Cap on one webhook retry delay.
    #[arg(long, env = "FERROPAY_WEBHOOK_RETRY_MAX_MS", default_value_t = 60_000)]
    webhook_retry_max_ms: u64,
    /// A webhook is given up (lost) after this many delivery attempts.
    #[arg(long, env = "FERROPAY_WEBHOOK_MAX_ATTEMPTS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    webhook_max_attempts: u32,
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
    /// Create a key; prints {"id", "name", "scopes", "secret"} once. Only its hash is stored.
    Create {
        #[arg(long, env = "FERROPAY_NAME", default_value = "default")]
        name: String,
        /// What the key may do: payments, payouts, operator, read_only (repeat the flag or
        /// separate with commas). Default: payments, payouts and operator (full access).
        #[arg(long = "scope", env = "FERROPAY_SCOPE", value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<ferropay::api_keys::Scope>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print every key (never its secret) as JSON lines, oldest first, revoked ones too.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key: every instance refuses it from its next request on. Prints the key;
    /// exit 1 when there is no such key.
    Revoke {
        /// The key's id (`key_…`), as `api-key list` prints it.
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_scope(text: &str) -> Result<ferropay::api_keys::Scope, String> {
    ferropay::api_keys::Scope::parse(text.trim()).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print the dead jobs as JSON lines (oldest death first), each with its last error.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Put a dead job back on the queue, due now, with its attempts reset. Exit 1 when there is
    /// no such job or it is not dead.
    Replay {
        /// The job's id, as `dlq list` prints it.
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check that the ledger balances, wallets equal their accounts and the hash chain is
    /// intact (each transaction's HMAC under the key it names). Exit 0 when all hold, 1 when
    /// any does not.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// A file of signed checkpoints (JSON lines, as `serve` and `ledger checkpoint` write
        /// them): each must be signed with one of the keys, and the ledger must still extend it.
        #[arg(long, env = "FERROPAY_VERIFY_CHECKPOINT")]
        checkpoint: Option<std::path::PathBuf>,
        /// Accept unkeyed transactions up to this sequence (a ledger written before it had
        /// keys); any later unkeyed one is a break.
        #[arg(long, default_value_t = 0)]
        unkeyed_through: i64,
    },
    /// Sign the chain's head now and append the checkpoint to a file (default: the one `serve`
    /// writes); prints it as JSON.
    Checkpoint {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long, env = "FERROPAY_CHECKPOINT_FILE")]
        checkpoint_file: Option<std::path::PathBuf>,
    },
    /// Add a new key to the chain's keys file: it signs from the next start on; the older keys
    /// stay to verify what they signed. Prints the new key's id.
    RotateKey {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Where checkpoints go when no file is named: beside a SQLite database; none on PostgreSQL.
fn default_checkpoint_file(database_url: &str) -> Option<std::path::PathBuf> {
    ledger_keys::default_keys_file(database_url)
        .map(|keys| keys.with_file_name("ledger-checkpoints.jsonl"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A bench logs warnings only, unless FERROPAY_LOG says otherwise: a line per request would
    // flood the terminal and be part of what is measured.
    let bench = matches!(cli.command, Command::Bench { .. });
    init_logging(if bench {
        "warn,sqlx=error"
    } else {
        "info,sqlx=warn"
    });
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
        Command::Serve(args) => serve_command(*args).await,
        Command::SandboxPsp(args) => sandbox_command(args).await,
        Command::ApiKey { command } => api_key_command(command).await,
        Command::Reconcile(args) => reconcile::run(args).await,
        Command::Openapi => {
            print!("{}", ferropay_http::openapi::spec_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { database } => {
            let made = ferropay_cli::demo::run(ferropay_cli::demo::DemoConfig {
                database_url: database.database_url,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&made)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command } => ferropay_cli::bench::run(command).await,
        Command::Ledger {
            command:
                LedgerCommand::Checkpoint {
                    database,
                    checkpoint_file,
                },
        } => {
            let path = checkpoint_file
                .or_else(|| default_checkpoint_file(&database.database_url))
                .context("name the checkpoint file (--checkpoint-file)")?;
            let store = database.open(1).await?;
            let checkpoint = ferropay::ledger::checkpoint::take(&store).await?;
            ferropay::ledger::checkpoint::append(&path, &checkpoint)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("{}", serde_json::to_string(&checkpoint)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::RotateKey { database },
        } => {
            let source = database.key_source();
            anyhow::ensure!(
                source.inline.is_none(),
                "keys given in FERROPAY_LEDGER_KEYS are rotated where they are kept"
            );
            let path = ledger_keys::keys_file(&source, &database.database_url)
                .context("name the keys file (--ledger-keys-file)")?;
            let (keys, _) = ChainKeys::load_or_create(&path).map_err(anyhow::Error::msg)?;
            let rotated = keys.rotated();
            rotated.save(&path).map_err(anyhow::Error::msg)?;
            println!(
                "{}",
                serde_json::json!({"key_id": rotated.current().id(), "file": path})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command:
                LedgerCommand::Verify {
                    database,
                    checkpoint,
                    unkeyed_through,
                },
        } => {
            let checkpoints = match &checkpoint {
                Some(path) => {
                    ferropay::ledger::checkpoint::read_file(path).map_err(anyhow::Error::msg)?
                }
                None => Vec::new(),
            };
            let store = database.open(2).await?;
            let options = ferropay::ledger::verify::VerifyOptions {
                checkpoints,
                unkeyed_through_seq: unkeyed_through,
            };
            let report = ferropay::ledger::verify::verify_with(&store, &options).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Payout {
            command:
                PayoutCommand::Create {
                    seller_id,
                    currency,
                    amount,
                    idempotency_key,
                    database,
                },
        } => {
            let store = database.open(2).await?;
            let engine = ferropay::engine::Engine::start(store.clone(), EngineConfig::default())?;
            let key = idempotency_key.unwrap_or_else(|| ferropay::ids::new_id("cli"));
            let scope = ferropay::idempotency::KeyScope {
                api_key_id: "system:cli".into(),
                key,
            };
            let input = ferropay::payout::PayoutInput { currency, amount };
            let fingerprint = ferropay::idempotency::fingerprint(&serde_json::json!({
                "seller_id": seller_id, "currency": input.currency, "amount": input.amount,
            }));
            let lease_ms = ferropay::jobs::JobsConfig::default().lease_ms;
            match ferropay::payout::create(
                &store,
                &engine,
                lease_ms,
                &scope,
                &seller_id,
                &input,
                &fingerprint,
            )
            .await
            {
                Ok(outcome) => {
                    println!("{}", outcome.body);
                    Ok(ExitCode::SUCCESS)
                }
                Err(
                    error @ (ferropay::Error::Invalid { .. } | ferropay::Error::Conflict { .. }),
                ) => {
                    println!("{}", error.to_body());
                    Ok(ExitCode::from(1))
                }
                Err(error) => Err(error.into()),
            }
        }
        Command::Purge {
            database,
            retention,
        } => {
            let store = database.open(1).await?;
            let purged = purge(&store, &retention.policy(), now_ms()).await?;
            println!("{}", serde_json::to_string(&purged)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq {
            command: DlqCommand::List { database },
        } => {
            let store = database.open(1).await?;
            let mut out = std::io::stdout().lock();
            for job in ferropay::jobs::dlq::list(&store).await? {
                writeln!(out, "{}", serde_json::to_string(&job)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq {
            command: DlqCommand::Replay { id, database },
        } => {
            let store = database.open(1).await?;
            match ferropay::jobs::dlq::replay(&store, &id).await {
                Ok(replayed) => {
                    println!("{}", serde_json::to_string(&replayed)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error @ (ferropay::Error::NotFound(_) | ferropay::Error::Conflict { .. })) => {
                    eprintln!("ferropay: {error}");
                    Ok(ExitCode::from(1))
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}

async fn api_key_command(command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    use ferropay::api_keys::{self, Scope};
    match command {
        ApiKeyCommand::Create {
            name,
            scopes,
            database,
        } => {
            let store = database.open(1).await?;
            let scopes = if scopes.is_empty() {
                Scope::FULL.to_vec()
            } else {
                scopes
            };
            let key = api_keys::create_scoped(&store, &name, &scopes).await?;
            println!("{}", serde_json::to_string(&key)?);
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::List { database } => {
            let store = database.open(1).await?;
            let mut out = std::io::stdout().lock();
            for key in api_keys::list(&store).await? {
                writeln!(out, "{}", serde_json::to_string(&key)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::Revoke { id, database } => {
            let store = database.open(1).await?;
            match api_keys::revoke(&store, &id).await {
                Ok(key) => {
                    println!("{}", serde_json::to_string(&key)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error @ ferropay::Error::NotFound(_)) => {
                    eprintln!("ferropay: {error}");
                    Ok(ExitCode::from(1))
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}

async fn serve_command(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let root_ca_pem = args
        .psp_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).with_context(|| format!("--psp-ca-file {}", path.display()))
        })
        .transpose()?;
    let psp = match (args.psp_url, args.psp_api_key, args.psp_webhook_secret) {
        (Some(url), Some(api_key), Some(webhook_secret)) => PspChoice::Remote {
            url,
            api_key: Secret::new(api_key),
            webhook_secret: Secret::new(webhook_secret),
            root_ca_pem,
        },
        _ => PspChoice::InProcessSandbox {
            listen: args.sandbox_listen,
            sandbox: SandboxConfig {
                api_key: args.sandbox_api_key.unwrap_or_default(),
                public_url: args.sandbox_public_url,
                merchant_name: args.sandbox_merchant_name,
                review_delay_ms: args.review_delay_s.saturating_mul(1000),
                dispute_delay_ms: args.dispute_delay_s.saturating_mul(1000),
                faults: Faults {
                    webhook_latency_ms: args.sandbox_webhook_latency_ms,
                    ..Faults::default()
                },
                ..SandboxConfig::default()
            },
        },
    };
    let payout_schedule = args
        .payout_at
        .as_deref()
        .map(|at| {
            Ok::<_, anyhow::Error>(PayoutSchedule {
                at_minute_of_day: PayoutSchedule::parse_time(at)?,
                minimum_minor: args.payout_minimum_minor,
            })
        })
        .transpose()?;
    let psps =
        ferropay::psp::config::load(args.config.as_deref(), &|name| std::env::var(name).ok())
            .map_err(anyhow::Error::msg)?;
    let ledger_keys =
        ledger_keys::resolve(&args.database.key_source(), &args.database.database_url)?;
    if ledger_keys.is_none() {
        tracing::warn!(
            "the ledger's hash chain is unkeyed: set FERROPAY_LEDGER_KEYS_FILE (the same file on \
             every instance) so that someone with the database cannot rewrite it"
        );
    }
    let checkpoint_file = match &ledger_keys {
        Some(_) => args
            .checkpoint_file
            .or_else(|| default_checkpoint_file(&args.database.database_url)),
        None => None,
    };
    let database_url = args.database.database_url;
    let running = serve::start(ServeConfig {
        ledger_keys,
        checkpoint_file,
        checkpoint_every_ms: args.checkpoint_every_s.saturating_mul(1000),
        listen: args.listen,
        database_url: database_url.clone(),
        max_db_connections: args.max_db_connections,
        public_url: args.public_url,
        psp,
        psps,
        platform_fee_bps: args.platform_fee_bps,
        payout_schedule,
        poll_after_ms: i64::from(args.poll_after_s) * 1000,
        jobs: JobsConfig {
            lease_ms: i64::from(args.lease_s) * 1000,
            concurrency: args.job_concurrency,
            retry: RetryPolicy {
                max_attempts: args.job_max_attempts,
                retry_window_ms: args.job_retry_window_s.saturating_mul(1_000),
                ..RetryPolicy::default()
            },
            ..JobsConfig::default()
        },
        reconcile_at: args.reconcile_at.0,
        reconcile_day_close_lag_ms: args.reconcile_close_lag_s.saturating_mul(1_000),
        limits: ServerLimits {
            header_read_timeout_ms: args.header_read_timeout_ms,
            body_read_timeout_ms: args.body_read_timeout_ms,
            max_connections: args.max_connections,
            max_in_flight: args.max_in_flight,
            rate_per_key_per_s: args.rate_limit_per_s,
            rate_burst_per_key: args.rate_limit_burst,
        },
        retention: Some(args.retention.policy()),
        webhooks: ferropay::webhooks::WebhookConfig {
            allow_private_urls: args.allow_private_webhook_urls,
            ..Default::default()
        },
        nats: args.nats_url.map(|url| NatsConfig {
            stream: args.nats_stream,
            subject_prefix: args.nats_subject_prefix,
            ..NatsConfig::new(url)
        }),
        engine: EngineConfig {
            max_batch: args.engine_max_batch as usize,
            linger_us: args.engine_linger_us,
            queue_capacity: args.engine_queue as usize,
            lanes: args.engine_lanes as usize,
        },
        kafka: args.kafka_brokers.map(|brokers| KafkaConfig {
            topic_prefix: args.kafka_topic_prefix,
            partitions: args.kafka_partitions,
            replication_factor: args.kafka_replication_factor,
            ..KafkaConfig::new(brokers)
        }),
    })
    .await?;
    let today = ferropay::clock::rfc3339_from_ms(now_ms());
    let command = ferropay_cli::banner::command_name();
    let banner = ferropay_cli::banner::Banner {
        command: &command,
        public_url: &running.public_url,
        database_url: &database_url,
        sandbox: running
            .sandbox
            .as_ref()
            .zip(running.sandbox_api_key.as_ref())
            .map(|(sandbox, key)| (sandbox.base_url.as_str(), key.expose())),
        today: today.get(..10).unwrap_or(&today),
    };
    eprintln!("{}", banner.render());
    let signal = stop_signal().await?;
    tracing::info!(
        signal,
        "stopping: no new requests, running jobs finish or give back their lease"
    );
    eprintln!("ferropay: {signal}, stopping");
    running.shutdown().await;
    eprintln!("ferropay: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, the signal a service manager or an orchestrator stops a
/// process with, and names the one that came.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result.context("listening for Ctrl-C")?;
                Ok("SIGINT")
            }
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for Ctrl-C")?;
        Ok("Ctrl-C")
    }
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
            merchant_name: args.merchant_name,
            review_delay_ms: args.review_delay_s.saturating_mul(1000),
            dispute_delay_ms: args.dispute_delay_s.saturating_mul(1000),
            session_ttl_ms: args.session_ttl_s.saturating_mul(1000),
            webhook_retry_base_ms: args.webhook_retry_base_ms,
            webhook_retry_max_ms: args.webhook_retry_max_ms,
            webhook_max_attempts: args.webhook_max_attempts,
            settlement_fee_bps: args.settlement_fee_bps,
            settlement_fee_fixed_minor: args.settlement_fee_fixed_minor,
            faults: Faults {
                latency_ms: args.latency_ms,
                error_rate: args.error_rate,
                webhook_duplicate_rate: args.webhook_duplicate_rate,
                webhook_drop_rate: args.webhook_drop_rate,
                webhook_reorder: args.webhook_reorder,
                webhook_latency_ms: args.webhook_latency_ms,
            },
            ..SandboxConfig::default()
        },
    )
    .await?;
    eprintln!("sandbox PSP serving on {}", handle.base_url);
    let signal = stop_signal().await?;
    eprintln!("sandbox PSP: {signal}, stopping");
    handle.shutdown();
    Ok(ExitCode::SUCCESS)
}

fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("FERROPAY_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FERROPAY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
