//! Bad input gets a clear error naming the field, and changes nothing; no input makes a panic.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

/// Posts `body` and expects 400 naming `field`.
async fn expect_400(app: &TestApp, body: String, field: &str) {
    let response = app
        .post_payment_raw(Some("bad-input-key"), body.clone())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "for {body}");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request", "{error}");
    assert_eq!(error["error"]["field"], field, "for {body}: {error}");
    assert!(error["error"]["message"].as_str().unwrap().len() > 5);
}

fn with(change: impl FnOnce(&mut Value)) -> String {
    let mut body = checkout("chk_bad");
    change(&mut body);
    body.to_string()
}

async fn each_bad_field_is_named_and_nothing_changes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    expect_400(&app, with(|b| b["currency"] = json!("XYZ")), "currency").await;
    expect_400(&app, with(|b| b["currency"] = json!("usd")), "currency").await;
    expect_400(
        &app,
        with(|b| b["orders"][0]["amount"] = json!(0)),
        "orders[0].amount",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["orders"][1]["amount"] = json!(-5)),
        "orders[1].amount",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["orders"][0]["amount"] = json!(15.5)),
        "orders[0].amount",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["orders"][0]["amount"] = json!("1500")),
        "orders[0].amount",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["orders"][0]["amount"] = json!(1e30)),
        "orders[0].amount",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["orders"][0]["amount"] = json!(1_000_000_000_001_i64)),
        "orders[0].amount",
    )
    .await;
    expect_400(
        &app,
        r#"{"checkout_id":"c","buyer":{"id":"b"},"currency":"USD","orders":[{"order_id":"o","seller_id":"s","amount":99999999999999999999999}]}"#.into(),
        "orders[0].amount",
    )
    .await;
    expect_400(&app, with(|b| b["orders"] = json!([])), "orders").await;
    expect_400(
        &app,
        with(|b| b["orders"][1]["order_id"] = json!("ord_1")),
        "orders[1].order_id",
    )
    .await;
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"order_id": format!("o{i}"), "seller_id": "s", "amount": 1}))
        .collect();
    expect_400(&app, with(|b| b["orders"] = json!(many)), "orders").await;
    expect_400(
        &app,
        with(|b| {
            b.as_object_mut()
                .unwrap()
                .remove("currency")
                .map(drop)
                .unwrap()
        }),
        "currency",
    )
    .await;
    expect_400(
        &app,
        with(|b| {
            b["orders"][0]
                .as_object_mut()
                .unwrap()
                .remove("seller_id")
                .map(drop)
                .unwrap()
        }),
        "orders[0].seller_id",
    )
    .await;
    expect_400(&app, with(|b| b["surprise"] = json!(1)), "surprise").await;
    expect_400(&app, with(|b| b["checkout_id"] = json!("")), "checkout_id").await;
    expect_400(
        &app,
        with(|b| b["buyer"]["email"] = json!("not-an-email")),
        "buyer.email",
    )
    .await;
    expect_400(
        &app,
        with(|b| b["return_url"] = json!("ftp://x")),
        "return_url",
    )
    .await;
    expect_400(&app, "{\"checkout_id\": ".into(), "body").await;
    expect_400(&app, "[1, 2]".into(), "body").await;
    expect_400(&app, "".into(), "body").await;

    // No Idempotency-Key, or an empty or too long one.
    let response = app
        .post_payment_raw(None, checkout("chk_nokey").to_string())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], "Idempotency-Key");
    let long_key = "k".repeat(256);
    let response = app.post_payment(&long_key, &checkout("chk_longkey")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A body over the limit.
    let huge = format!(r#"{{"checkout_id": "{}"}}"#, "x".repeat(70 * 1024));
    let response = app.post_payment_raw(Some("huge"), huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");

    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM idempotency_keys").await, 0);
    // The key a bad request used is still free for a good one.
    let good = app
        .post_payment("bad-input-key", &checkout("chk_good"))
        .await;
    assert_eq!(good.status(), StatusCode::CREATED);
}

async fn api_keys_are_required(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = format!("{}/v1/payments", app.base_url);
    let none = app
        .http
        .post(&url)
        .header("Idempotency-Key", "k")
        .json(&checkout("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("sk_not_a_key")
        .header("Idempotency-Key", "k")
        .json(&checkout("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    let get = app.http.get(format!("{url}/pay_x")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::UNAUTHORIZED);
    let wallet = app
        .http
        .get(format!("{}/v1/sellers/s/wallet", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(wallet.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);

    // The scheme's name is case-insensitive (RFC 7235): `bearer` is `Bearer`.
    let lower = app
        .http
        .get(format!("{}/v1/sellers/s/wallet", app.base_url))
        .header("Authorization", format!("bearer {}", app.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), StatusCode::OK);
    let basic = app
        .http
        .get(format!("{}/v1/sellers/s/wallet", app.base_url))
        .header("Authorization", format!("Basic {}", app.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
}

async fn unknown_payments_are_404(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let response = app
        .http
        .get(format!("{}/v1/payments/pay_nope", app.base_url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    let page = app
        .http
        .get(format!("{}/payments/pay_nope/status", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let health = app
        .http
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // A route asked with a method it does not take: 405 in the same error shape.
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/payments"),
        (reqwest::Method::PUT, "/v1/payments/pay_nope"),
        (reqwest::Method::GET, "/webhooks/psp/sandbox"),
    ] {
        let response = app
            .http
            .request(method.clone(), format!("{}{path}", app.base_url))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(response.headers().contains_key("allow"), "{method} {path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
        assert_eq!(error["error"]["type"], "invalid_request");
    }
}

db_test!(
    each_bad_field_is_named_and_nothing_changes,
    api_keys_are_required,
    unknown_payments_are_404,
);
