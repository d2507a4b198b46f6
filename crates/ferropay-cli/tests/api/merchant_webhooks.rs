//! Webhooks to merchants, against a real receiver (an HTTP server in the test): every event
//! of a paid, refunded payment arrives once per endpoint, signed so that
//! `ferropay::webhooks::verify` accepts it; a 500 is retried and the delivery log shows it; a
//! roll keeps both secrets valid; an endpoint failing for the whole window (its failure start
//! moved 3 days back) is disabled with an event; redelivery sends again; private destinations
//! are refused unless allowed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

const TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
struct Received {
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answer 500 to this many requests first.
    fail_next: usize,
    always_fail: bool,
}

/// A merchant's webhook receiver on a random loopback port.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<ReceiverState>>);

impl Receiver {
    async fn start() -> (String, Self) {
        let receiver = Self::default();
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, receiver)
    }

    fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().received.clone()
    }

    /// Bodies answered 2xx, by event id: how often each arrived for good.
    fn accepted_by_id(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.received().iter().filter(|r| r.answered == 200) {
            *counts
                .entry(r.event()["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        counts
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut state = receiver.0.lock().unwrap();
    let answered = if state.always_fail || state.fail_next > 0 {
        state.fail_next = state.fail_next.saturating_sub(1);
        500
    } else {
        200
    };
    state.received.push(Received {
        signature: headers
            .get("Ferropay-Signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.to_vec(),
        answered,
    });
    AxumStatus::from_u16(answered).unwrap()
}

async fn register(app: &TestApp, url: &str, types: Value) -> Value {
    let response = app
        .http
        .post(format!("{}/v1/webhook_endpoints", app.base_url))
        .bearer_auth(&app.api_key)
        .json(&json!({"url": url, "event_types": types}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let endpoint: Value = response.json().await.unwrap();
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    endpoint
}

async fn deliveries(app: &TestApp, endpoint_id: &str) -> Vec<Value> {
    app.get_json(&format!(
        "/v1/webhook_endpoints/{endpoint_id}/deliveries?limit=100"
    ))
    .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn every_event_of_a_paid_refunded_payment_arrives_once_signed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (url, receiver) = Receiver::start().await;
    let (other_url, other) = Receiver::start().await;
    receiver.0.lock().unwrap().fail_next = 1; // the first delivery is answered 500
    let endpoint = register(&app, &url, json!(["*"])).await;
    let refunds_only = register(&app, &other_url, json!(["refund.succeeded"])).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    // The secret is shown once.
    let shown = app
        .get_json(&format!(
            "/v1/webhook_endpoints/{}",
            endpoint["id"].as_str().unwrap()
        ))
        .await;
    assert!(shown.get("secret").is_none());

    let payment = app.paid_payment("chk_hooks_1").await;
    let payment_id = payment["id"].as_str().unwrap();
    let refund: Value = app
        .post_keyed(
            &format!("/v1/payments/{payment_id}/refunds"),
            "hook-refund-1",
            &json!({"order_id": "ord_1"}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.wait_for_item(
        &format!("/v1/payments/{payment_id}/refunds"),
        refund["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;

    let events = app.get_json("/v1/events?limit=100").await["data"]
        .as_array()
        .unwrap()
        .clone();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"payment.succeeded") && types.contains(&"refund.succeeded"),
        "{types:?}"
    );
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "every delivery succeeded", || {
        let app = &app;
        let endpoint_id = endpoint_id.clone();
        let count = events.len();
        async move {
            let log = deliveries(app, &endpoint_id).await;
            log.len() == count && log.iter().all(|d| d["status"] == "succeeded")
        }
    })
    .await;
    // Every event exactly once (answered 200), each as /v1/events shows it, each signed.
    let accepted = receiver.accepted_by_id();
    for event in &events {
        assert_eq!(
            accepted.get(event["id"].as_str().unwrap()),
            Some(&1),
            "{event}"
        );
    }
    assert_eq!(accepted.len(), events.len());
    for received in receiver.received() {
        ferropay::webhooks::verify(&secret, &received.signature, &received.body, TOLERANCE)
            .expect("signed with the endpoint's secret");
        assert!(
            ferropay::webhooks::verify(
                "whsec_wrong",
                &received.signature,
                &received.body,
                TOLERANCE
            )
            .is_err()
        );
        let event = received.event();
        assert_eq!(
            &event,
            events.iter().find(|e| e["id"] == event["id"]).unwrap()
        );
    }
    // The 500 was retried, and the log records both attempts of that delivery.
    let log = deliveries(&app, &endpoint_id).await;
    let retried: Vec<&Value> = log
        .iter()
        .filter(|d| d["attempts"].as_array().unwrap().len() == 2)
        .collect();
    assert_eq!(retried.len(), 1, "{log:?}");
    let attempts = retried[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["error"], "the endpoint answered 500");
    assert_eq!(attempts[1]["status_code"], 200);
    assert!(attempts[1]["latency_ms"].as_i64().unwrap() >= 0);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("ferropay_merchant_webhook_attempts_total{result=\"failed\"} 1"),
        "{metrics}"
    );

    // The endpoint that wants refunds only got the refund, once.
    eventually(
        Duration::from_secs(10),
        "the refund reached the second endpoint",
        || {
            let other = other.clone();
            async move { !other.received().is_empty() }
        },
    )
    .await;
    let got: Vec<Value> = other.received().iter().map(Received::event).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "refund.succeeded");
    ferropay::webhooks::verify(
        refunds_only["secret"].as_str().unwrap(),
        &other.received()[0].signature,
        &other.received()[0].body,
        TOLERANCE,
    )
    .unwrap();

    // Redelivery sends a delivery again, and the log shows it.
    let first = log
        .iter()
        .find(|d| d["attempts"].as_array().unwrap().len() == 1)
        .unwrap();
    let redelivered = app
        .http
        .post(format!(
            "{}/v1/webhook_deliveries/{}/redeliver",
            app.base_url,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(redelivered.status(), StatusCode::ACCEPTED);
    let event_id = first["event_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "the redelivery arrived", || {
        let receiver = receiver.clone();
        let event_id = event_id.clone();
        async move { receiver.accepted_by_id().get(&event_id) == Some(&2) }
    })
    .await;
}

async fn a_rolled_secret_stays_valid_beside_the_new_one(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (url, receiver) = Receiver::start().await;
    let endpoint = register(&app, &url, json!(["payment.succeeded"])).await;
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let rolled: Value = app
        .http
        .post(format!(
            "{}/v1/webhook_endpoints/{}/roll_secret",
            app.base_url,
            endpoint["id"].as_str().unwrap()
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rolled["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rolled["previous_secret_expires_at"].is_string());
    app.paid_payment("chk_hooks_roll").await;
    eventually(Duration::from_secs(10), "the event arrived", || {
        let receiver = receiver.clone();
        async move { !receiver.received().is_empty() }
    })
    .await;
    let received = &receiver.received()[0];
    assert_eq!(received.signature.matches("v1=").count(), 2);
    for secret in [&old, &new] {
        ferropay::webhooks::verify(secret, &received.signature, &received.body, TOLERANCE)
            .expect("both secrets verify during the roll");
    }
}

async fn an_endpoint_failing_for_the_whole_window_is_disabled(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (url, receiver) = Receiver::start().await;
    receiver.0.lock().unwrap().always_fail = true;
    let endpoint = register(&app, &url, json!(["payment.succeeded"])).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    app.paid_payment("chk_hooks_down").await;
    eventually(Duration::from_secs(10), "a failed attempt", || {
        let receiver = receiver.clone();
        async move { receiver.received().len() >= 2 }
    })
    .await;
    assert_eq!(
        app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}"))
            .await["enabled"],
        true
    );
    // Three days pass: the failure streak started longer ago than the window.
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since_ms = failing_since_ms - $1 WHERE id = $2",
    )
    .bind(ferropay::webhooks::RETRY_WINDOW_MS + 1_000)
    .bind(&endpoint_id)
    .execute(app.service().store.pool())
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the endpoint disabled", || {
        let app = &app;
        let endpoint_id = endpoint_id.clone();
        async move {
            app.get_json(&format!("/v1/webhook_endpoints/{endpoint_id}"))
                .await["enabled"]
                == false
        }
    })
    .await;
    let shown = app
        .get_json(&format!("/v1/webhook_endpoints/{endpoint_id}"))
        .await;
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("72 hours")
    );
    let events = app
        .get_json(&format!(
            "/v1/events?type=webhook_endpoint.disabled&aggregate_id={endpoint_id}"
        ))
        .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(events["data"][0]["data"]["url"], url.as_str());
    let log = deliveries(&app, &endpoint_id).await;
    assert_eq!(log[0]["status"], "failed");
    // Nothing more is sent to it.
    let before = receiver.received().len();
    app.paid_payment("chk_hooks_down_2").await;
    let later = app.get_json("/v1/events?type=payment.succeeded").await;
    assert_eq!(later["data"].as_array().unwrap().len(), 2);
    eventually(
        Duration::from_secs(10),
        "the second event handed over",
        || async {
            app.count("SELECT COUNT(*) FROM outbox WHERE webhooks_dispatched_at_ms IS NULL")
                .await
                == 0
        },
    )
    .await;
    assert_eq!(deliveries(&app, &endpoint_id).await.len(), 1);
    assert_eq!(receiver.received().len(), before);
}

async fn private_destinations_are_refused_unless_allowed(db: Db) {
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            webhooks: ferropay::webhooks::WebhookConfig {
                allow_private_urls: false,
                ..test_webhook_config()
            },
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let (url, receiver) = Receiver::start().await;
    let refused = app
        .http
        .post(format!("{}/v1/webhook_endpoints", app.base_url))
        .bearer_auth(&app.api_key)
        .json(&json!({"url": url, "event_types": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["field"],
        "url"
    );
    // A name is checked where it resolves, at delivery: localhost reaches nothing.
    let by_name = url.replace("127.0.0.1", "localhost");
    let endpoint = register(&app, &by_name, json!(["*"])).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    app.paid_payment("chk_hooks_private").await;
    eventually(Duration::from_secs(10), "a refused attempt", || {
        let app = &app;
        let endpoint_id = endpoint_id.clone();
        async move {
            deliveries(app, &endpoint_id)
                .await
                .first()
                .is_some_and(|d| !d["attempts"].as_array().unwrap().is_empty())
        }
    })
    .await;
    let log = deliveries(&app, &endpoint_id).await;
    let attempt = &log[0]["attempts"][0];
    assert!(attempt["status_code"].is_null());
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("no public address"),
        "{attempt}"
    );
    assert!(receiver.received().is_empty());
}

/// Events written while no instance delivers wait in the outbox, and are delivered by whichever
/// instance comes: the handover is durable, not a process's memory.
async fn events_wait_for_any_instance_to_deliver_them(db: Db) {
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            jobs: ferropay::jobs::JobsConfig {
                concurrency: 0,
                ..test_jobs_config()
            },
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let (url, receiver) = Receiver::start().await;
    let endpoint = register(&app, &url, json!(["payment.succeeded"])).await;
    let payment = app.paid_payment("chk_hooks_later").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE webhooks_dispatched_at_ms IS NULL")
            .await,
        1,
        "no instance here hands events over"
    );
    assert!(receiver.received().is_empty());
    let sibling = app.spawn_sibling().await;
    eventually(Duration::from_secs(10), "the sibling delivered it", || {
        let receiver = receiver.clone();
        async move { !receiver.received().is_empty() }
    })
    .await;
    let received = &receiver.received()[0];
    assert_eq!(received.event()["aggregate_id"], payment["id"]);
    ferropay::webhooks::verify(
        endpoint["secret"].as_str().unwrap(),
        &received.signature,
        &received.body,
        TOLERANCE,
    )
    .unwrap();
    sibling.shutdown().await;
}

db_test!(
    events_wait_for_any_instance_to_deliver_them,
    every_event_of_a_paid_refunded_payment_arrives_once_signed,
    a_rolled_secret_stays_valid_beside_the_new_one,
    an_endpoint_failing_for_the_whole_window_is_disabled,
    private_destinations_are_refused_unless_allowed,
);
