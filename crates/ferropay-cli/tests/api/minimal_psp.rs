//! A PSP that answers exactly what CONTRACT.md promises and nothing more — a session as
//! `{token, url, status}` — works with `serve --psp-url`: the payment registers, the buyer is
//! sent to the PSP's page, and once the PSP says the session succeeded (here found by the
//! poller) the payment is captured for its own amount and the books balance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

/// The PSP's state: whether the buyer has paid yet.
#[derive(Clone, Default)]
struct Minimal {
    paid: Arc<AtomicBool>,
    base_url: Arc<std::sync::OnceLock<String>>,
}

async fn register(State(psp): State<Minimal>) -> (StatusCode, Json<Value>) {
    let url = format!("{}/pay/tok_min_1", psp.base_url.get().unwrap());
    (
        StatusCode::CREATED,
        Json(json!({"token": "tok_min_1", "url": url, "status": "open"})),
    )
}

async fn status(State(psp): State<Minimal>, Path(token): Path<String>) -> Json<Value> {
    let url = format!("{}/pay/{token}", psp.base_url.get().unwrap());
    let status = if psp.paid.load(Ordering::SeqCst) {
        "succeeded"
    } else {
        "open"
    };
    Json(json!({"token": token, "url": url, "status": status}))
}

async fn a_psp_that_says_only_what_the_contract_says_works(db: Db) {
    let psp = Minimal::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    psp.base_url.set(base_url.clone()).unwrap();
    let router = axum::Router::new()
        .route("/v1/payment_sessions", post(register))
        .route("/v1/payment_sessions/{token}", get(status))
        .with_state(psp.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            psp_url: Some(base_url.clone()),
            poll_after_ms: 200,
            ..AppOptions::default()
        },
    )
    .await
    else {
        server.abort();
        return;
    };
    let created = app
        .post_payment("key-minimal", &checkout("chk_minimal"))
        .await;
    assert_eq!(created.status(), 201);
    let payment: Value = created.json().await.unwrap();
    assert_eq!(payment["redirect_url"], format!("{base_url}/pay/tok_min_1"));
    assert_eq!(payment["status"], "requires_payment", "{payment:#}");

    psp.paid.store(true, Ordering::SeqCst);
    let id = payment["id"].as_str().unwrap();
    eventually(
        Duration::from_secs(20),
        "the poller captures it",
        || async { app.get_payment(id).await["status"] == "succeeded" },
    )
    .await;
    assert_eq!(app.account_sum("seller:seller_a", "USD").await, -1500);
    assert_eq!(app.account_sum("seller:seller_b", "USD").await, -250);
    assert!(app.verify_ledger().await.ok());
    server.abort();
}

db_test!(a_psp_that_says_only_what_the_contract_says_works);
