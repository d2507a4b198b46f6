//! The outbox relay's second broker: Kafka (or anything that speaks its protocol). Events go out
//! as the same JSON [`OutboxEvent`] envelope as to NATS, with the event's aggregate as the record
//! key, the outbox id in a `ferropay-outbox-id` header (what receivers dedupe by: Kafka keeps a
//! second copy that a relay sends after dying between publishing and marking), and the event's
//! type in `ferropay-topic`.
//!
//! Topics: one per aggregate, not one per event family and not one for all. A payment's events
//! and its refunds' events (`payment.*`, `refund.*`, keyed by the payment id) go to
//! `{prefix}payments`; a seller's payout events (`payout.*`, keyed by the seller id) go to
//! `{prefix}payouts`. Kafka orders records only within a partition of one topic, so a topic per
//! family (`refund`) would let a receiver see a refund before the payment it refunds; one topic
//! for everything would keep that order too, but would make fraud and analytics, which want
//! payments only, read and skip every payout. The key sends all of one payment's (one seller's)
//! events to one partition: in order. An event of another family goes to `{prefix}{family}`.
//! Records are partitioned as Java producers do (`murmur2_random`), so that any producer keying
//! by the same id lands on the same partition.
//!
//! The client is rdkafka, the Rust binding of librdkafka: the client the field runs in production
//! (Confluent's, under most non-Java clients), with a real idempotent producer
//! (`enable.idempotence`: a producer id and per-partition sequence numbers, so the broker drops
//! the producer's own retries and keeps order across them) and `acks=all`. The pure-Rust rskafka
//! was the other candidate, but it has no idempotent producer (it sends producer id -1). rdkafka's
//! `dynamic-linking` would take Debian's librdkafka, but Debian 12 has 2.0.2 and the crate asks
//! for the 2.12 it bundles, so librdkafka is built from the crate's bundled source (with zlib, no
//! TLS or SASL): once per target directory, then cached with the other dependencies (the C build
//! took 13½ minutes of wall time on the shared 2-core machine under a load of 6 to 10; the Rust
//! side adds little).
//!
//! A row is marked published only after the broker acknowledged its record (`acks=all`: every
//! in-sync replica has it). A round sends its whole batch before waiting, which the idempotent
//! producer keeps in order per partition.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::OnceCell;

use super::relay::{Broker, OutboxEvent, Publish, Published};

/// The header that carries the outbox id: receivers dedupe by it.
pub const OUTBOX_ID_HEADER: &str = "ferropay-outbox-id";
/// The header that carries the event's type (`payment.succeeded`).
pub const TOPIC_HEADER: &str = "ferropay-topic";

/// Where and how events are published.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// The bootstrap brokers, `host:9092,host2:9092`.
    pub brokers: String,
    /// Put before each topic's name (default `ferropay.`: `ferropay.payments`).
    pub topic_prefix: String,
    /// Partitions of a topic the relay creates; an existing topic is used as it is.
    pub partitions: i32,
    /// Replicas of each partition of a topic the relay creates. Production creates its topics
    /// itself (replication 3, `min.insync.replicas` 2); 1 suits a single broker.
    pub replication_factor: i32,
    /// How long one event may wait for the broker's acknowledgement, retries included, in ms
    /// (librdkafka's `message.timeout.ms`); then the round fails and the relay tries again later.
    pub delivery_timeout_ms: u64,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: "ferropay.".into(),
            partitions: 6,
            replication_factor: 1,
            delivery_timeout_ms: 30_000,
        }
    }

    /// The Kafka topic an event of `topic` (`refund.succeeded`) goes to (`ferropay.payments`).
    pub fn kafka_topic(&self, topic: &str) -> String {
        let family = topic.split('.').next().unwrap_or(topic);
        match family {
            // Keyed by the payment: a dispute's events stay in order with its payment's.
            "payment" | "refund" | "dispute" => format!("{}payments", self.topic_prefix),
            "payout" => format!("{}payouts", self.topic_prefix),
            other => format!("{}{other}", self.topic_prefix),
        }
    }

    /// The topics the relay makes sure of before it publishes.
    pub fn topics(&self) -> [String; 2] {
        [
            self.kafka_topic("payment.succeeded"),
            self.kafka_topic("payout.paid"),
        ]
    }

    fn producer(&self) -> Result<FutureProducer, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "ferropay-outbox-relay")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .map_err(|e| format!("Kafka producer for {}: {e}", self.brokers))
    }
}

pub struct KafkaPublisher {
    config: KafkaConfig,
    /// Replaced by a new one after a fatal error (an idempotent producer that lost track of its
    /// sequence numbers can send nothing more).
    producer: Mutex<Arc<FutureProducer>>,
    admin: AdminClient<DefaultClientContext>,
    topics_ready: OnceCell<()>,
}

impl KafkaPublisher {
    /// Makes the producer; it connects in the background (until then publishing fails and events
    /// wait in the outbox). Fails only on settings librdkafka refuses.
    pub fn connect(config: KafkaConfig) -> Result<Self, String> {
        let producer = config.producer()?;
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", "ferropay-outbox-relay-admin")
            .create()
            .map_err(|e| format!("Kafka admin client for {}: {e}", config.brokers))?;
        Ok(Self {
            config,
            producer: Mutex::new(Arc::new(producer)),
            admin,
            topics_ready: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Creates the topics unless they exist (an existing topic is used as it is).
    pub async fn ensure_topics(&self) -> Result<(), String> {
        self.topics_ready
            .get_or_try_init(|| async {
                let names = self.config.topics();
                let topics: Vec<NewTopic<'_>> = names
                    .iter()
                    .map(|name| {
                        NewTopic::new(
                            name,
                            self.config.partitions,
                            TopicReplication::Fixed(self.config.replication_factor),
                        )
                    })
                    .collect();
                let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
                let options = AdminOptions::new()
                    .request_timeout(Some(timeout))
                    .operation_timeout(Some(timeout));
                let results = self
                    .admin
                    .create_topics(&topics, &options)
                    .await
                    .map_err(|e| format!("creating topics {names:?}: {e}"))?;
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn current_producer(&self) -> Arc<FutureProducer> {
        Arc::clone(&self.producer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// After a fatal error the producer is useless: a new one takes its place (a new producer
    /// id; events not acknowledged are sent again by the next round).
    fn renew_if_fatal(&self, producer: &FutureProducer) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::warn!(%code, %reason, "Kafka producer failed for good; making a new one");
            match self.config.producer() {
                Ok(fresh) => {
                    *self.producer.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh)
                }
                Err(error) => tracing::warn!(%error, "no new Kafka producer"),
            }
        }
    }
}

impl Publish for KafkaPublisher {
    fn broker(&self) -> Broker {
        Broker::Kafka
    }

    fn publish<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> Pin<Box<dyn Future<Output = Published> + Send + 'a>> {
        Box::pin(async move {
            self.publish_all(std::slice::from_ref(event))
                .await
                .pop()
                .unwrap_or_else(|| Err("not sent".into()))
        })
    }

    /// Sends every event before waiting for any acknowledgement; stops sending at the first that
    /// librdkafka refuses to queue, so that no later event of the same key overtakes it.
    fn publish_all<'a>(
        &'a self,
        events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Vec<Published>> + Send + 'a>> {
        Box::pin(async move {
            if let Err(error) = self.ensure_topics().await {
                return vec![Err(error)];
            }
            let producer = self.current_producer();
            let mut pending = Vec::with_capacity(events.len());
            for event in events {
                let payload = match serde_json::to_vec(event) {
                    Ok(payload) => payload,
                    Err(error) => {
                        pending.push(Err(error.to_string()));
                        break;
                    }
                };
                let topic = self.config.kafka_topic(&event.topic);
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: OUTBOX_ID_HEADER,
                        value: Some(event.id.as_str()),
                    })
                    .insert(Header {
                        key: TOPIC_HEADER,
                        value: Some(event.topic.as_str()),
                    });
                let record = FutureRecord::to(&topic)
                    .key(event.aggregate_id.as_str())
                    .payload(&payload)
                    .headers(headers);
                match producer.send_result(record) {
                    Ok(delivery) => pending.push(Ok(delivery)),
                    Err((error, _)) => {
                        pending.push(Err(error.to_string()));
                        break;
                    }
                }
            }
            let mut outcomes = Vec::with_capacity(pending.len());
            for sent in pending {
                outcomes.push(match sent {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((error, _))) => Err(error.to_string()),
                        Err(_) => Err("the Kafka producer went away".to_owned()),
                    },
                    Err(error) => Err(error),
                });
            }
            if outcomes.iter().any(Result::is_err) {
                self.renew_if_fatal(&producer);
            }
            outcomes
        })
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} topics {}*",
            self.config.brokers, self.config.topic_prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaConfig;

    #[test]
    fn a_payment_its_refunds_and_disputes_share_a_topic_and_payouts_have_their_own() {
        let config = KafkaConfig::new("127.0.0.1:9092");
        assert_eq!(config.kafka_topic("payment.succeeded"), "ferropay.payments");
        assert_eq!(config.kafka_topic("refund.succeeded"), "ferropay.payments");
        assert_eq!(config.kafka_topic("payout.in_transit"), "ferropay.payouts");
        assert_eq!(config.kafka_topic("dispute.created"), "ferropay.payments");
        assert_eq!(config.kafka_topic("webhook.other"), "ferropay.webhook");
        assert_eq!(config.topics(), ["ferropay.payments", "ferropay.payouts"]);
    }
}
