//! The outbox relay's broker in production: NATS JetStream. Events go to
//! `{subject_prefix}.{topic}` (`ferropay.payment.succeeded`) on a stream that holds
//! `{subject_prefix}.>` (created on first use if missing), as JSON [`OutboxEvent`]s, with the
//! outbox id as `Nats-Msg-Id` so that the stream stores each event once, and `Ferropay-Topic` and
//! `Ferropay-Aggregate-Id` headers for receivers that route without parsing. Several receivers
//! (notifications, analytics, fraud) each read every event through a durable consumer of their
//! own.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use tokio::sync::OnceCell;

use super::relay::{Broker, OutboxEvent, Publish, Published};

/// Where and how events are published.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// `nats://host:4222`.
    pub url: String,
    /// The JetStream stream (default `FERROPAY`).
    pub stream: String,
    /// The first token of every subject (default `ferropay`).
    pub subject_prefix: String,
    /// How long the stream remembers a message id to drop a second copy, in s. A relay that
    /// published an event but died before marking it sends it again within seconds.
    pub duplicate_window_s: u64,
    /// How long one publish may wait for the stream's acknowledgement, in ms.
    pub ack_timeout_ms: u64,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "FERROPAY".into(),
            subject_prefix: "ferropay".into(),
            duplicate_window_s: 900,
            ack_timeout_ms: 5_000,
        }
    }

    /// The subject an event of `topic` is published to.
    pub fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.subject_prefix)
    }
}

pub struct NatsPublisher {
    config: NatsConfig,
    jetstream: jetstream::Context,
    stream_ready: OnceCell<()>,
}

impl NatsPublisher {
    /// Starts connecting; a server that is not up yet is retried in the background (until then
    /// publishing fails and events wait in the outbox). Fails only on a URL it cannot use.
    pub async fn connect(config: NatsConfig) -> Result<Self, String> {
        let client = async_nats::ConnectOptions::new()
            .name("ferropay-outbox-relay")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_millis(config.ack_timeout_ms))
            .connect(config.url.as_str())
            .await
            .map_err(|e| format!("NATS at {}: {e}", config.url))?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(Duration::from_millis(config.ack_timeout_ms));
        Ok(Self {
            config,
            jetstream,
            stream_ready: OnceCell::new(),
        })
    }

    /// Creates the stream unless it exists (an existing stream is used as it is).
    async fn ensure_stream(&self) -> Result<(), String> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: self.config.stream.clone(),
                        subjects: vec![format!("{}.>", self.config.subject_prefix)],
                        duplicate_window: Duration::from_secs(self.config.duplicate_window_s),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("stream {}: {e}", self.config.stream))
            })
            .await
            .map(|_| ())
    }
}

impl Publish for NatsPublisher {
    fn broker(&self) -> Broker {
        Broker::Nats
    }

    fn publish<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> Pin<Box<dyn Future<Output = Published> + Send + 'a>> {
        Box::pin(async move {
            self.ensure_stream().await?;
            let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(&event.id)
                .header("Ferropay-Topic", event.topic.as_str())
                .header("Ferropay-Aggregate-Id", event.aggregate_id.as_str());
            self.jetstream
                .send_publish(self.config.subject(&event.topic), message)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("{} stream {}", self.config.url, self.config.stream)
    }
}
