//! Events leave through the outbox to Kafka (a real broker speaking the Kafka protocol:
//! `FERROPAY_TEST_KAFKA_BROKERS`, e.g. `127.0.0.1:9092`; unset skips, set and unreachable fails).
//! Each consumer group reads every event of a paid, refunded payment once after deduplication by
//! the outbox id, in order per payment; a relay that died between publishing and marking
//! publishes again and the receivers' deduplication keeps each event once; a broker that cannot
//! be reached leaves events waiting in the outbox, and they go out once it can be; the NATS
//! relay's marks do not hold the Kafka relay back, and both run at once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ferropay::outbox::kafka::{KafkaConfig, KafkaPublisher, OUTBOX_ID_HEADER, TOPIC_HEADER};
use ferropay::outbox::relay::relay_once;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};
use sqlx::Row;

use crate::db_test;
use crate::helpers::*;

/// Topics of this test's own, so that tests running at once do not meet.
fn test_kafka_config() -> Option<KafkaConfig> {
    let Ok(brokers) = std::env::var("FERROPAY_TEST_KAFKA_BROKERS") else {
        eprintln!("FERROPAY_TEST_KAFKA_BROKERS is not set: skipping the Kafka test");
        return None;
    };
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a Kafka client");
    probe
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("FERROPAY_TEST_KAFKA_BROKERS is set but Kafka is unreachable");
    let tag = uuid::Uuid::now_v7().simple().to_string();
    Some(KafkaConfig {
        topic_prefix: format!("fpt{tag}."),
        partitions: 3,
        delivery_timeout_ms: 10_000,
        ..KafkaConfig::new(brokers)
    })
}

/// One record as a receiver sees it.
#[derive(Clone, Debug)]
struct Received {
    kafka_topic: String,
    key: String,
    outbox_id_header: String,
    topic_header: String,
    event: Value,
}

impl Received {
    fn outbox_id(&self) -> &str {
        self.event["id"].as_str().unwrap()
    }
}

/// A receiver: a consumer in a group of its own, reading both topics from the start.
struct Receiver {
    consumer: StreamConsumer,
    /// Every record received, duplicates included, in arrival order.
    raw: Vec<Received>,
}

impl Receiver {
    fn join(config: &KafkaConfig, group: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", format!("{}{group}", config.topic_prefix))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .create()
            .expect("a Kafka consumer");
        let topics = config.topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).expect("subscribe");
        Self {
            consumer,
            raw: Vec::new(),
        }
    }

    /// Receives until `done` holds for what was received, for at most 30 s.
    async fn receive_until(&mut self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.raw) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not within 30 s: {what}; got {:#?}",
                self.raw
            );
            let Ok(message) = tokio::time::timeout(left, self.consumer.recv()).await else {
                continue;
            };
            let message = message.expect("a record");
            let header = |name: &str| -> String {
                message
                    .headers()
                    .and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == name)
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default()
            };
            self.raw.push(Received {
                kafka_topic: message.topic().to_owned(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                outbox_id_header: header(OUTBOX_ID_HEADER),
                topic_header: header(TOPIC_HEADER),
                event: serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("a JSON event"),
            });
        }
    }

    /// What a receiver that dedupes by the outbox id keeps: the first copy of each event.
    fn deduped(&self) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.raw
            .iter()
            .filter(|r| seen.insert(r.outbox_id_header.clone()))
            .cloned()
            .collect()
    }
}

/// The outbox, oldest first: id, topic, aggregate, and whether each broker has it marked.
struct Row_ {
    id: String,
    topic: String,
    aggregate_id: String,
    kafka: bool,
    nats: bool,
}

async fn outbox_rows(app: &TestApp) -> Vec<Row_> {
    sqlx::query(
        "SELECT id, topic, aggregate_id, \
           CAST(CASE WHEN kafka_published_at_ms IS NULL THEN 0 ELSE 1 END AS BIGINT) AS kafka, \
           CAST(CASE WHEN published_at_ms IS NULL THEN 0 ELSE 1 END AS BIGINT) AS nats \
         FROM outbox ORDER BY created_at_ms, id",
    )
    .fetch_all(app.service().store.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| Row_ {
        id: row.get("id"),
        topic: row.get("topic"),
        aggregate_id: row.get("aggregate_id"),
        kafka: row.get::<i64, _>("kafka") == 1,
        nats: row.get::<i64, _>("nats") == 1,
    })
    .collect()
}

/// Pays `checkout_id` and refunds both its orders in full; answers the payment.
async fn paid_and_refunded(app: &TestApp, checkout_id: &str) -> Value {
    let payment = app.paid_payment(checkout_id).await;
    let path = format!("/v1/payments/{}/refunds", payment["id"].as_str().unwrap());
    for order in ["ord_1", "ord_2"] {
        let response = app
            .post_keyed(
                &path,
                &format!("{checkout_id}-{order}"),
                &json!({"order_id": order}),
            )
            .await;
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let refund: Value = response.json().await.unwrap();
        app.wait_for_item(&path, refund["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    assert_eq!(
        app.get_payment(payment["id"].as_str().unwrap()).await["status"],
        "refunded"
    );
    payment
}

/// The event ids of `aggregate_id`, in the order given.
fn ids_of<'a>(events: impl Iterator<Item = (&'a str, &'a str)>, aggregate_id: &str) -> Vec<String> {
    events
        .filter(|(_, aggregate)| *aggregate == aggregate_id)
        .map(|(id, _)| id.to_owned())
        .collect()
}

async fn every_group_gets_each_event_once_in_order_per_payment(db: Db) {
    let Some(kafka) = test_kafka_config() else {
        return;
    };
    // With a NATS server at hand, both relays run at once, each with its own marks.
    let nats = std::env::var("FERROPAY_TEST_NATS_URL").ok().map(|url| {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        ferropay::outbox::nats::NatsConfig {
            stream: format!("FERROPAY_K_{tag}"),
            subject_prefix: format!("fpk{tag}"),
            ..ferropay::outbox::nats::NatsConfig::new(url)
        }
    });
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            kafka: Some(kafka.clone()),
            nats: nats.clone(),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };

    let first = paid_and_refunded(&app, "chk_kafka_1").await;
    let second = paid_and_refunded(&app, "chk_kafka_2").await;
    let declined = app.create_payment("chk_kafka_declined").await;
    app.pay(&declined, CARD_DECLINED).await;
    app.wait_for_status(declined["id"].as_str().unwrap(), "failed")
        .await;
    eventually(
        Duration::from_secs(20),
        "the relays publish every event",
        || async {
            outbox_rows(&app)
                .await
                .iter()
                .all(|row| row.kafka && (nats.is_none() || row.nats))
        },
    )
    .await;
    let rows = outbox_rows(&app).await;
    let payment_ids: Vec<&str> = [&first, &second, &declined]
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // A paid, fully refunded payment: paid, then per order a pending and a succeeded refund.
    for payment_id in &payment_ids[..2] {
        let topics: Vec<&str> = rows
            .iter()
            .filter(|row| row.aggregate_id == *payment_id)
            .map(|row| row.topic.as_str())
            .collect();
        assert_eq!(
            topics,
            [
                "payment.succeeded",
                "refund.pending",
                "refund.succeeded",
                "refund.pending",
                "refund.succeeded"
            ]
        );
    }
    assert_eq!(rows.len(), 11);

    let mut receivers: Vec<Receiver> = ["notifications", "analytics"]
        .iter()
        .map(|group| Receiver::join(&kafka, group))
        .collect();
    let all_ids: HashSet<String> = rows.iter().map(|row| row.id.clone()).collect();
    for receiver in &mut receivers {
        receiver
            .receive_until("every event", |raw| {
                all_ids
                    .iter()
                    .all(|id| raw.iter().any(|r| &r.outbox_id_header == id))
            })
            .await;
        let deduped = receiver.deduped();
        assert_eq!(deduped.len(), rows.len(), "nothing but the outbox's events");
        for record in &deduped {
            let row = rows
                .iter()
                .find(|row| row.id == record.outbox_id())
                .expect("an outbox event");
            assert_eq!(record.outbox_id_header, row.id);
            assert_eq!(record.key, row.aggregate_id, "keyed by the payment");
            assert_eq!(record.topic_header, row.topic);
            assert_eq!(record.event["topic"], row.topic.as_str());
            assert_eq!(record.event["aggregate_id"], row.aggregate_id.as_str());
            assert_eq!(record.kafka_topic, kafka.kafka_topic(&row.topic));
            assert_eq!(
                record.kafka_topic,
                format!("{}payments", kafka.topic_prefix)
            );
        }
        for payment_id in &payment_ids {
            assert_eq!(
                ids_of(
                    deduped
                        .iter()
                        .map(|r| (r.outbox_id(), r.event["aggregate_id"].as_str().unwrap())),
                    payment_id
                ),
                ids_of(
                    rows.iter()
                        .map(|row| (row.id.as_str(), row.aggregate_id.as_str())),
                    payment_id
                ),
                "{payment_id}'s events in the order they happened"
            );
        }
        let paid = deduped
            .iter()
            .find(|r| r.event["topic"] == "payment.succeeded")
            .unwrap();
        assert_eq!(paid.event["data"]["status"], "succeeded");
        assert_eq!(paid.event["data"]["amount"], 1750);
        let refunded = deduped
            .iter()
            .filter(|r| r.event["topic"] == "refund.succeeded")
            .map(|r| r.event["data"]["amount"].as_i64().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(refunded.iter().sum::<i64>(), 2 * 1750, "{refunded:?}");
    }

    // The relay died after publishing, before marking: it publishes everything again, Kafka
    // keeps the second copies, and each receiver's deduplication keeps one of each.
    sqlx::query("UPDATE outbox SET kafka_published_at_ms = NULL")
        .execute(app.service().store.pool())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the relay publishes the events again",
        || async { outbox_rows(&app).await.iter().all(|row| row.kafka) },
    )
    .await;
    for receiver in &mut receivers {
        let before = receiver.deduped();
        receiver
            .receive_until("every event a second time", |raw| {
                let mut copies: HashMap<&str, usize> = HashMap::new();
                for r in raw {
                    *copies.entry(r.outbox_id_header.as_str()).or_default() += 1;
                }
                all_ids.iter().all(|id| copies.get(id.as_str()) == Some(&2))
            })
            .await;
        assert_eq!(receiver.raw.len(), 2 * rows.len());
        let after = receiver.deduped();
        assert_eq!(
            after.iter().map(Received::outbox_id).collect::<Vec<_>>(),
            before.iter().map(Received::outbox_id).collect::<Vec<_>>(),
            "deduplication keeps each event once"
        );
    }

    if let Some(nats) = nats {
        let client = async_nats::connect(nats.url.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(&nats.stream).await.unwrap();
        assert_eq!(
            stream.info().await.unwrap().state.messages,
            rows.len() as u64,
            "NATS got every event too, once"
        );
        js.delete_stream(&nats.stream).await.unwrap();
    }
}

/// No relay runs in this app: `relay_once` is driven by hand, first at an address where no broker
/// listens, then at the real one. The NATS relay had marked every event already: Kafka's relay
/// publishes them all the same.
async fn events_wait_in_the_outbox_while_kafka_is_unreachable(db: Db) {
    let Some(kafka) = test_kafka_config() else {
        return;
    };
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let paid = app.paid_payment("chk_kafka_outage").await;
    let store = &app.service().store;
    sqlx::query("UPDATE outbox SET published_at_ms = 1")
        .execute(store.pool())
        .await
        .unwrap();

    let unreachable = KafkaPublisher::connect(KafkaConfig {
        delivery_timeout_ms: 500,
        ..KafkaConfig::new(parked_addr().to_string())
    })
    .expect("a Kafka producer starts even when no broker is up");
    for _ in 0..2 {
        assert!(relay_once(store, &unreachable, 100).await.is_err());
    }
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].kafka,
        "nothing was acknowledged, nothing is marked"
    );

    let reachable = KafkaPublisher::connect(kafka.clone()).unwrap();
    assert_eq!(relay_once(store, &reachable, 100).await.unwrap(), 1);
    assert!(outbox_rows(&app).await[0].kafka);
    assert_eq!(relay_once(store, &reachable, 100).await.unwrap(), 0);

    let mut receiver = Receiver::join(&kafka, "fraud");
    receiver
        .receive_until("the event", |raw| !raw.is_empty())
        .await;
    let event = &receiver.raw[0].event;
    assert_eq!(event["aggregate_id"], paid["id"]);
    assert_eq!(event["topic"], "payment.succeeded");
    assert_eq!(event["id"].as_str(), Some(rows[0].id.as_str()));
}

db_test!(
    every_group_gets_each_event_once_in_order_per_payment,
    events_wait_in_the_outbox_while_kafka_is_unreachable,
);

#[test]
fn serve_refuses_kafka_flags_it_cannot_use() {
    for (flag, value, says) in [
        ("--kafka-brokers", "127.0.0.1", "HOST:PORT"),
        ("--kafka-brokers", "127.0.0.1:9092,", "HOST:PORT"),
        ("--kafka-brokers", "127.0.0.1:0", "HOST:PORT"),
        ("--kafka-topic-prefix", "ferro pay", "letters, digits"),
        ("--kafka-partitions", "0", "--kafka-partitions"),
    ] {
        let (code, stdout, stderr) = run_cli(&["serve", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stdout}{stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
    }
}
