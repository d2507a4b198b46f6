//! Events leave through the outbox to NATS JetStream (a real server: `FERROPAY_TEST_NATS_URL`,
//! e.g. `nats://127.0.0.1:4222`; unset skips, set and unreachable fails). Each receiver with a
//! durable consumer of its own reads every event once, in order; an event published again (a
//! relay that died before marking it) is not stored twice; a broker that cannot be reached
//! leaves events waiting in the outbox, and they go out once it can be.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use ferropay::outbox::nats::{NatsConfig, NatsPublisher};
use ferropay::outbox::relay::relay_once;
use futures_util::StreamExt;
use serde_json::Value;
use sqlx::Row;

use crate::db_test;
use crate::helpers::*;

/// A stream and subject prefix of this test's own, so that tests running at once do not meet.
fn test_nats_config() -> Option<NatsConfig> {
    let Ok(url) = std::env::var("FERROPAY_TEST_NATS_URL") else {
        eprintln!("FERROPAY_TEST_NATS_URL is not set: skipping the NATS test");
        return None;
    };
    let tag = uuid::Uuid::now_v7().simple().to_string();
    Some(NatsConfig {
        stream: format!("FERROPAY_T_{tag}"),
        subject_prefix: format!("fpt{tag}"),
        ..NatsConfig::new(url)
    })
}

/// Every message a durable consumer named `name` has waiting (none left after 1 s), acked.
async fn drain(stream: &jetstream::stream::Stream, name: &str) -> Vec<jetstream::Message> {
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("create consumer");
    let mut taken = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(50)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        let before = taken.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            message.ack().await.expect("ack");
            taken.push(message);
        }
        if taken.len() == before {
            return taken;
        }
    }
}

async fn outbox_rows(app: &TestApp) -> Vec<(String, String, bool)> {
    sqlx::query(
        "SELECT id, topic, \
                CAST(CASE WHEN published_at_ms IS NULL THEN 0 ELSE 1 END AS BIGINT) AS published \
         FROM outbox ORDER BY created_at_ms, id",
    )
    .fetch_all(app.service().store.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let published: i64 = row.get("published");
        (row.get("id"), row.get("topic"), published == 1)
    })
    .collect()
}

async fn every_receiver_gets_each_event_once_in_order(db: Db) {
    let Some(nats) = test_nats_config() else {
        return;
    };
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            nats: Some(nats.clone()),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let client = async_nats::connect(nats.url.as_str())
        .await
        .expect("FERROPAY_TEST_NATS_URL is set but NATS is unreachable");
    let js = jetstream::new(client);

    let paid = app.paid_payment("chk_events_paid").await;
    let declined = app.create_payment("chk_events_declined").await;
    app.pay(&declined, CARD_DECLINED).await;
    app.wait_for_status(declined["id"].as_str().unwrap(), "failed")
        .await;
    eventually(
        Duration::from_secs(10),
        "the relay publishes both events",
        || async {
            let rows = outbox_rows(&app).await;
            rows.len() == 2 && rows.iter().all(|(_, _, published)| *published)
        },
    )
    .await;
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "ferropay_outbox_lag_seconds 0"),
        "a relay runs and nothing waits: {metrics}"
    );
    let rows = outbox_rows(&app).await;
    assert_eq!(
        rows.iter()
            .map(|(_, topic, _)| topic.as_str())
            .collect::<Vec<_>>(),
        ["payment.succeeded", "payment.failed"]
    );

    let mut stream = js
        .get_stream(&nats.stream)
        .await
        .expect("the relay made the stream");
    for receiver in ["notifications", "analytics"] {
        let messages = drain(&stream, receiver).await;
        let seen: Vec<(String, String, String)> = messages
            .iter()
            .map(|m| {
                let event: Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.to_string()),
                    event["id"].as_str().map(str::to_owned),
                    "{event:#}"
                );
                (
                    m.subject.to_string(),
                    event["id"].as_str().unwrap().to_owned(),
                    event["aggregate_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    nats.subject("payment.succeeded"),
                    rows[0].0.clone(),
                    paid["id"].as_str().unwrap().to_owned()
                ),
                (
                    nats.subject("payment.failed"),
                    rows[1].0.clone(),
                    declined["id"].as_str().unwrap().to_owned()
                ),
            ],
            "{receiver}"
        );
        let first: Value = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(first["data"]["status"], "succeeded");
        assert_eq!(first["data"]["amount"], 1750);
    }

    // The relay died after publishing, before marking: it publishes again, the stream keeps one.
    sqlx::query("UPDATE outbox SET published_at_ms = NULL")
        .execute(app.service().store.pool())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the relay publishes the events again",
        || async {
            outbox_rows(&app)
                .await
                .iter()
                .all(|(_, _, published)| *published)
        },
    )
    .await;
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    assert!(drain(&stream, "notifications").await.is_empty());

    js.delete_stream(&nats.stream).await.unwrap();
}

/// No relay runs in this app: `relay_once` is driven by hand, first at an address where no NATS
/// listens, then at the real one.
async fn events_wait_in_the_outbox_while_the_broker_is_unreachable(db: Db) {
    let Some(nats) = test_nats_config() else {
        return;
    };
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let paid = app.paid_payment("chk_events_outage").await;
    let store = &app.service().store;
    let unreachable = NatsPublisher::connect(NatsConfig {
        ack_timeout_ms: 300,
        ..NatsConfig::new(format!("nats://{}", parked_addr()))
    })
    .await
    .expect("a NATS client starts even when the server is down");
    for _ in 0..2 {
        assert!(relay_once(store, &unreachable, 100).await.is_err());
    }
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].2, "nothing was acknowledged, nothing is marked");

    let reachable = NatsPublisher::connect(nats.clone()).await.unwrap();
    assert_eq!(relay_once(store, &reachable, 100).await.unwrap(), 1);
    assert!(outbox_rows(&app).await[0].2);
    assert_eq!(relay_once(store, &reachable, 100).await.unwrap(), 0);

    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(&nats.stream).await.unwrap();
    let messages = drain(&stream, "analytics").await;
    assert_eq!(messages.len(), 1);
    let event: Value = serde_json::from_slice(&messages[0].payload).unwrap();
    assert_eq!(event["aggregate_id"], paid["id"]);
    assert_eq!(event["topic"], "payment.succeeded");
    js.delete_stream(&nats.stream).await.unwrap();
}

db_test!(
    every_receiver_gets_each_event_once_in_order,
    events_wait_in_the_outbox_while_the_broker_is_unreachable,
);
