//! `ferropay bench relay`: how many outbox events per second the relay moves to a real broker.
//! Seeds `--events` events (`payment.succeeded` and `refund.succeeded` in turn, over
//! `--aggregates` payments, written by `outbox::enqueue` as the use cases write them), then runs
//! the relay's rounds (`relay_once`, `--batch` events each: read, publish, wait for the broker's
//! acknowledgements, mark) until none is left. Reports events per second and the time of one
//! round, then checks that every event is marked and that the broker holds them all (Kafka: the
//! distinct outbox ids read back from the topics; NATS: the stream's message count). Topics or
//! stream are the run's own.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ferropay::outbox::{
    self,
    kafka::{KafkaConfig, KafkaPublisher, OUTBOX_ID_HEADER},
    nats::{NatsConfig, NatsPublisher},
    relay::{Publish, RelayConfig, relay_once},
};
use ferropay::store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use sqlx::Row;

use super::report::{Latency, per_second, print_block, print_json_line};
use super::setup::{
    BenchDatabase, CommonArgs, Machine, build_profile, database_version, setup_lines, title,
};

/// Events seeded per transaction.
const SEED_CHUNK: u64 = 1_000;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("broker").required(true).args(["kafka_brokers", "nats_url"]))]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Relay to Kafka through these bootstrap brokers (HOST:PORT,…).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Relay to NATS JetStream at this URL instead.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Events seeded and relayed.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
    pub events: u64,
    /// Payments the events are about (keys), each in turn.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub aggregates: u64,
    /// Events per relay round (`serve` uses 200).
    #[arg(long, default_value_t = RelayConfig::default().batch, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Stop after this long, in seconds, whatever is left.
    #[arg(long, default_value_t = 300)]
    pub max_duration_s: u64,
}

enum Target {
    Kafka(KafkaPublisher),
    Nats(Box<NatsPublisher>, NatsConfig),
}

impl Target {
    fn publisher(&self) -> &dyn Publish {
        match self {
            Target::Kafka(publisher) => publisher,
            Target::Nats(publisher, _) => publisher.as_ref(),
        }
    }

    /// How many events the broker holds in the run's topics or stream.
    async fn stored(&self) -> anyhow::Result<u64> {
        match self {
            Target::Kafka(publisher) => {
                let config = publisher.config().clone();
                tokio::task::spawn_blocking(move || kafka_stored(&config))
                    .await
                    .context("counting Kafka records")?
            }
            Target::Nats(_, config) => {
                let client = async_nats::connect(config.url.as_str()).await?;
                let js = async_nats::jetstream::new(client);
                let mut stream = js.get_stream(&config.stream).await?;
                Ok(stream.info().await?.state.messages)
            }
        }
    }
}

/// The distinct outbox ids in the run's topics, read from the start of every partition until
/// 5 s pass without a record. (Read, not taken from the high watermarks: tansu reports those
/// short of the last record.)
fn kafka_stored(config: &KafkaConfig) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}count", config.topic_prefix))
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    for topic in config.topics() {
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut ids = HashSet::new();
    while let Some(message) = consumer.poll(Duration::from_secs(5)) {
        let message = message?;
        let id = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == OUTBOX_ID_HEADER)
                .and_then(|h| h.value)
                .map(<[u8]>::to_vec)
        });
        ids.insert(id);
    }
    Ok(ids.len() as u64)
}

pub async fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let profile = build_profile(args.common.allow_debug_build)?;
    let mut machine = Machine::observe();
    let database = BenchDatabase::prepare(args.common.database_url.as_deref())?;
    let store = Store::open(&database.url, 4)
        .await
        .with_context(|| format!("opening {}", database.describe()))?;
    let version = database_version(&store).await?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let (target, broker_line) = match (&args.kafka_brokers, &args.nats_url) {
        (Some(brokers), _) => {
            let config = KafkaConfig {
                topic_prefix: format!("ferropay-bench-{run_id}."),
                ..KafkaConfig::new(brokers.clone())
            };
            let line = format!(
                "Kafka at {brokers}, topics {}, {} partitions, idempotent producer, acks=all",
                config.topics().join(" "),
                config.partitions
            );
            let publisher = KafkaPublisher::connect(config).map_err(anyhow::Error::msg)?;
            (Target::Kafka(publisher), line)
        }
        (None, Some(url)) => {
            let config = NatsConfig {
                stream: format!("FERROPAY_BENCH_{run_id}"),
                subject_prefix: format!("ferropaybench{run_id}"),
                ..NatsConfig::new(url.clone())
            };
            let line = format!(
                "NATS JetStream at {url}, stream {}, one acknowledgement awaited per event",
                config.stream
            );
            let publisher = NatsPublisher::connect(config.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            (Target::Nats(Box::new(publisher), config), line)
        }
        (None, None) => anyhow::bail!("give --kafka-brokers or --nats-url"),
    };

    print_block(
        &title("relay", profile),
        &[
            setup_lines(profile, &machine, &database, &version),
            vec![
                ("broker", broker_line),
                (
                    "load",
                    format!(
                        "{} events over {} payments, {} per round (read, publish, await acks, mark)",
                        args.events, args.aggregates, args.batch
                    ),
                ),
            ],
        ]
        .concat(),
    );

    // Not timed: whatever the outbox already holds (a given database), one warm-up event that
    // connects and makes the topics or stream, then the seeded events.
    seed(&store, &run_id, "warmup", 1, 1).await?;
    drain(
        &store,
        target.publisher(),
        args.batch,
        Duration::from_secs(60),
        None,
    )
    .await
    .map_err(|(_, error)| error.context("the warm-up event"))?;
    let seed_started = Instant::now();
    seed(&store, &run_id, "bench", args.events, args.aggregates).await?;
    let seed_elapsed = seed_started.elapsed();

    machine.load_starts();
    let started = Instant::now();
    let mut rounds = Latency::default();
    let relayed = drain(
        &store,
        target.publisher(),
        args.batch,
        Duration::from_secs(args.max_duration_s),
        Some(&mut rounds),
    )
    .await;
    let elapsed = started.elapsed();
    machine.load_ends();
    let (relayed, error) = match relayed {
        Ok(relayed) => (relayed, None),
        Err((relayed, error)) => (relayed, Some(format!("{error:#}"))),
    };
    let per_s = per_second(relayed, elapsed);
    let unmarked = unmarked(&store, target.publisher()).await?;
    let stored = target.stored().await.unwrap_or_else(|error| {
        eprintln!("counting what the broker holds: {error:#}");
        0
    });
    store.close().await;

    println!();
    print_block(
        "results",
        &[
            (
                "seeded",
                format!(
                    "{} events in {:.2} s (not timed)",
                    args.events,
                    seed_elapsed.as_secs_f64()
                ),
            ),
            (
                "relayed",
                format!(
                    "{relayed} events in {} rounds, {:.2} s; {unmarked} left unmarked",
                    rounds.count(),
                    elapsed.as_secs_f64()
                ),
            ),
            ("throughput", format!("{per_s:.1} events/s")),
            (
                "broker",
                format!("holds {stored} events (the seeded ones and the warm-up)",),
            ),
            ("cpu", machine.describe_load()),
        ],
    );
    println!("{}", rounds.line("one round"));
    if let Some(error) = &error {
        println!("  first error    {error}");
    }
    if machine.was_shared() {
        println!(
            "  NOTE: the machine was busy before this run (see load_1m_before): its figures are from a shared machine."
        );
    }
    let ok = error.is_none() && relayed == args.events && unmarked == 0 && stored == relayed + 1;
    print_json_line(&json!({
        "bench": "relay",
        "broker": target.publisher().broker().name(),
        "profile": profile,
        "database": database.backend.name(),
        "database_version": version,
        "machine": machine.json(),
        "events": args.events,
        "aggregates": args.aggregates,
        "batch": args.batch,
        "relayed": relayed,
        "unmarked": unmarked,
        "broker_holds": stored,
        "elapsed_s": elapsed.as_secs_f64(),
        "events_per_s": per_s,
        "round_latency": rounds.json(),
        "ok": ok,
    }));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `count` events about `aggregates` payments, as the use cases write them.
async fn seed(
    store: &Store,
    run_id: &str,
    label: &str,
    count: u64,
    aggregates: u64,
) -> anyhow::Result<()> {
    let mut written = 0;
    while written < count {
        let mut tx = store.begin_write().await?;
        let chunk_end = (written + SEED_CHUNK).min(count);
        for i in written..chunk_end {
            let payment_id = format!("pay_{label}_{run_id}_{}", i % aggregates);
            let (topic, data) = if i % 2 == 0 {
                (
                    "payment.succeeded",
                    json!({"payment_id": payment_id, "checkout_id": format!("chk_{i}"),
                           "status": "succeeded", "amount": 1750, "currency": "USD",
                           "failure_code": null}),
                )
            } else {
                (
                    "refund.succeeded",
                    json!({"refund_id": format!("re_{label}_{i}"), "amount": 500,
                           "currency": "USD", "payment_status": "partially_refunded"}),
                )
            };
            let now_ms = ferropay::clock::now_ms();
            outbox::enqueue(&mut tx, topic, &payment_id, &data, now_ms).await?;
        }
        tx.commit().await?;
        written = chunk_end;
    }
    Ok(())
}

/// Relay rounds until one finds nothing; each round's time goes to `rounds`. Answers how many
/// events went out, or that many and the error that stopped it.
async fn drain(
    store: &Store,
    publisher: &dyn Publish,
    batch: u32,
    limit: Duration,
    mut rounds: Option<&mut Latency>,
) -> Result<u64, (u64, anyhow::Error)> {
    let deadline = Instant::now() + limit;
    let mut relayed = 0_u64;
    loop {
        if Instant::now() >= deadline {
            return Err((relayed, anyhow::anyhow!("not done within {limit:?}")));
        }
        let began = Instant::now();
        match relay_once(store, publisher, batch).await {
            Ok(0) => return Ok(relayed),
            Ok(count) => {
                relayed += count as u64;
                if let Some(rounds) = rounds.as_deref_mut() {
                    rounds.record(began.elapsed());
                }
            }
            Err(error) => return Err((relayed, error.into())),
        }
    }
}

/// Events this broker has not acknowledged.
async fn unmarked(store: &Store, publisher: &dyn Publish) -> anyhow::Result<u64> {
    let statement = format!(
        "SELECT COUNT(*) FROM outbox WHERE {} IS NULL",
        publisher.broker().published_column()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(statement))
        .fetch_one(store.pool())
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>(0)?)?)
}
