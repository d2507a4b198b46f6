//! Hostile bytes at the edge: a NUL in a path, a query, a JSON string or a signed webhook's
//! field, invalid UTF-8 in a path, a key given twice in a JSON object, an explicit `null` amount,
//! a body that is not JSON, and a declared body too large. Each is a 4xx in the JSON error shape
//! naming the field, on both databases, and changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db_test;
use crate::helpers::*;

/// Expects `response` to be `status` in the error shape naming `field`.
async fn expect_refused(response: reqwest::Response, status: StatusCode, field: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {content_type}"
    );
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], field, "{what}: {error}");
    assert!(
        error["error"]["message"].as_str().unwrap().len() > 5,
        "{what}: {error}"
    );
}

impl TestApp {
    async fn get_raw(&self, path: &str, authorized: bool) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.base_url));
        let request = if authorized {
            request.bearer_auth(&self.api_key)
        } else {
            request
        };
        request.send().await.unwrap()
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", format!("bytes-{}", uuid::Uuid::now_v7()))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.send().await.unwrap()
    }
}

async fn bad_bytes_in_paths_and_queries_are_400_naming_the_parameter(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // A NUL, also where no API key is asked for (the buyer's page, the PSP's webhook).
    for (path, authorized, field) in [
        ("/payments/%00/status", false, "id"),
        ("/payments/pay%00x/status", false, "id"),
        ("/v1/payments/%00", true, "id"),
        ("/v1/sellers/s%00/wallet", true, "seller_id"),
        ("/v1/payments?status=%00", true, "status"),
        ("/v1/payments?%00=1", true, "query"),
        ("/v1/reconciliation/breaks?status=%00", true, "status"),
        ("/v1/reconciliation/breaks?limit=1&limit=2", true, "limit"),
        ("/v1/reconciliation/settlement_files/%00", true, "file"),
        // Invalid UTF-8 once percent-decoded.
        ("/v1/payments/%FF", true, "id"),
        ("/payments/%C3%28/status", false, "id"),
        ("/v1/webhook_endpoints/%FE%FF", true, "id"),
        // A control character other than NUL.
        ("/v1/payments/pay%01", true, "id"),
    ] {
        let response = app.get_raw(path, authorized).await;
        expect_refused(response, StatusCode::BAD_REQUEST, field, path).await;
    }
    let webhook = app
        .http
        .post(format!("{}/webhooks/psp/%00", app.base_url))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_refused(webhook, StatusCode::BAD_REQUEST, "psp", "webhook path").await;
    // Still served after all that.
    assert_eq!(
        app.get_raw("/healthz", false).await.status(),
        StatusCode::OK
    );
}

async fn bad_json_is_refused_naming_the_field_and_moves_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let paid = app.paid_payment("chk_bytes_paid").await;
    let paid_id = paid["id"].as_str().unwrap();
    let refunds = format!("/v1/payments/{paid_id}/refunds");
    let json = Some("application/json");

    // A NUL inside a JSON string, where it is, and in a key.
    let mut body = checkout("chk_bytes_nul");
    body["orders"][1]["seller_id"] = json!("sel\u{0}ler");
    let response = app.post_raw("/v1/payments", json, &body.to_string()).await;
    expect_refused(
        response,
        StatusCode::BAD_REQUEST,
        "orders[1].seller_id",
        "NUL",
    )
    .await;
    let response = app
        .post_raw("/v1/payments", json, r#"{"checkout_id\u0000": "x"}"#)
        .await;
    expect_refused(response, StatusCode::BAD_REQUEST, "body", "NUL in a key").await;

    // A key given twice: the last would win, so neither does.
    let response = app
        .post_raw(
            &refunds,
            json,
            r#"{"order_id": "ord_1", "amount": 100, "amount": 1500}"#,
        )
        .await;
    expect_refused(
        response,
        StatusCode::BAD_REQUEST,
        "amount",
        "duplicate amount",
    )
    .await;
    let doubled = r#"{"checkout_id": "chk_bytes_dup", "buyer": {"id": "b", "id": "c"}, "currency": "USD", "orders": [{"order_id": "o", "seller_id": "s", "amount": 1}]}"#;
    let response = app.post_raw("/v1/payments", json, doubled).await;
    expect_refused(
        response,
        StatusCode::BAD_REQUEST,
        "buyer.id",
        "duplicate nested",
    )
    .await;

    // `null` is not "the rest": only leaving the amount out is.
    let response = app
        .post_raw(&refunds, json, r#"{"order_id": "ord_1", "amount": null}"#)
        .await;
    expect_refused(response, StatusCode::BAD_REQUEST, "amount", "refund null").await;
    let response = app
        .post_raw(
            "/v1/sellers/seller_a/payouts",
            json,
            r#"{"currency": "USD", "amount": null}"#,
        )
        .await;
    expect_refused(response, StatusCode::BAD_REQUEST, "amount", "payout null").await;

    // Not declared as JSON: 415 naming the header.
    let valid = r#"{"order_id": "ord_1", "amount": 100}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = app.post_raw(&refunds, content_type, valid).await;
        expect_refused(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            &format!("{content_type:?}"),
        )
        .await;
    }
    // A JSON media type with parameters is JSON.
    let response = app
        .post_raw(&refunds, Some("application/json; charset=utf-8"), valid)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // Nothing but that one refund of 100 was made; the seller's wallet moved only by it.
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    let refunded: i64 = app
        .count("SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds")
        .await;
    assert_eq!(refunded, 100);
    assert!(app.verify_ledger().await.ok());
}

async fn a_signed_webhook_with_a_nul_is_400_and_stored_nowhere(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_bytes_hook").await;
    for (field, value) in [("id", "evt_\u{0}1"), ("reference", "pay\u{0}x")] {
        let mut event: Value =
            serde_json::from_str(&payment_event("evt_bytes", "payment.succeeded", &payment))
                .unwrap();
        if field == "id" {
            event["id"] = json!(value);
        } else {
            event["data"]["reference"] = json!(value);
        }
        let response = app
            .send_webhook(&event.to_string(), WEBHOOK_SECRET, now_s())
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(if field == "id" {
                    "`id`"
                } else {
                    "`data.reference`"
                }),
            "{error}"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_events").await, 0);
    assert_eq!(
        app.get_payment(payment["id"].as_str().unwrap()).await["status"],
        "requires_payment"
    );
}

/// A declared `Content-Length` over the limit is answered 413 before the body is sent: the
/// client waits for the answer without writing a byte of it.
async fn a_declared_oversize_body_is_refused_before_it_is_read(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let address = app.base_url.trim_start_matches("http://").to_owned();
    for path in ["/v1/payments", "/webhooks/psp/sandbox"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Idempotency-Key: huge\r\nContent-Type: application/json\r\n\
             Content-Length: 50000000\r\n\r\n",
            app.api_key
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buffer[..n]);
                if String::from_utf8_lossy(&answer).contains("payload_too_large") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "{path}: no answer without the body");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains("payload_too_large"), "{path}: {text}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
}

db_test!(
    bad_bytes_in_paths_and_queries_are_400_naming_the_parameter,
    bad_json_is_refused_naming_the_field_and_moves_nothing,
    a_signed_webhook_with_a_nul_is_400_and_stored_nowhere,
    a_declared_oversize_body_is_refused_before_it_is_read,
);
