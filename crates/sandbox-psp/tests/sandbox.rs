//! Black-box tests of the sandbox PSP: a real sandbox on a random loopback port, a webhook
//! receiver in the test that checks every signature and records what arrives, and HTTP between
//! them, as a merchant and a buyer would use it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use reqwest::redirect::Policy;
use sandbox_psp::{SandboxConfig, SandboxHandle};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

const API_KEY: &str = "sk_sandbox_test";
const SECRET: &str = "whsec_test_secret";
const FUTURE_EXP: &str = "12/49";
const CARD_OK: &str = "4242 4242 4242 4242";
const WAIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- the webhook receiver

#[derive(Default)]
struct HookLog {
    /// Events answered 2xx, in arrival order.
    events: Vec<Value>,
    /// Every POST that reached the receiver.
    attempts: u32,
    /// Answer 500 to this many more well-signed deliveries.
    fail_next: u32,
    /// What was wrong with badly signed or shaped deliveries.
    problems: Vec<String>,
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<HookLog>>);

impl Hooks {
    fn log(&self) -> std::sync::MutexGuard<'_, HookLog> {
        self.0.lock().unwrap()
    }

    /// Waits until `done` holds for the recorded events; panics after `WAIT`.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            {
                let log = self.log();
                assert!(
                    log.problems.is_empty(),
                    "bad deliveries: {:?}",
                    log.problems
                );
                if done(&log.events) {
                    return log.events.clone();
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "timed out waiting for {what}; got {:#?}",
                self.log().events
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the events about `token` until one has type `kind`; returns them all.
    async fn wait_for(&self, token: &str, kind: &str) -> Vec<Value> {
        let about = |events: &[Value]| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["data"]["token"] == token || e["data"]["id"] == token)
                .cloned()
                .collect()
        };
        let events = self
            .wait_until(&format!("{kind} for {token}"), |events| {
                about(events).iter().any(|e| e["type"] == kind)
            })
            .await;
        about(&events)
    }
}

/// Checks `Sandbox-Signature` as a merchant would: HMAC-SHA256 over "<t>.<raw body>".
fn check_delivery(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/json") {
        return Err(format!("content-type {content_type:?}"));
    }
    let header = headers
        .get("sandbox-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Sandbox-Signature")?;
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .ok_or_else(|| format!("malformed signature {header}"))?;
    let t_s: i64 = t.parse().map_err(|_| format!("bad t in {header}"))?;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now_s - t_s).abs() > 300 {
        return Err(format!("timestamp {t_s} is {}s off", now_s - t_s));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::decode(v1).map_err(|_| format!("v1 not hex in {header}"))?;
    mac.verify_slice(&expected)
        .map_err(|_| format!("signature does not verify: {header}"))?;
    serde_json::from_slice::<Value>(body).map_err(|e| format!("body not JSON: {e}"))?;
    Ok(())
}

async fn receive(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut log = hooks.log();
    log.attempts += 1;
    if let Err(problem) = check_delivery(&headers, &body) {
        log.problems.push(problem);
        return StatusCode::BAD_REQUEST;
    }
    if log.fail_next > 0 {
        log.fail_next -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    log.events.push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

// ---------------------------------------------------------------- the harness

struct Harness {
    sandbox: SandboxHandle,
    hooks: Hooks,
    /// Never follows redirects, so the 303s can be read.
    client: reqwest::Client,
}

async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> Harness {
    let hooks = Hooks::default();
    let hook_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    let receiver = Router::new()
        .route("/hook", post(receive))
        .with_state(hooks.clone());
    tokio::spawn(async move { axum::serve(hook_listener, receiver).await });

    let mut config = SandboxConfig {
        api_key: API_KEY.to_owned(),
        webhook_url: hook_url,
        webhook_secret: SECRET.to_owned(),
        webhook_retry_base_ms: 20,
        webhook_retry_max_ms: 200,
        settle_delay_ms: 20,
        ..SandboxConfig::default()
    };
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = sandbox_psp::spawn(listener, config).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Harness {
        sandbox,
        hooks,
        client,
    }
}

fn session_body(reference: &str) -> Value {
    json!({
        "amount": 1750,
        "currency": "USD",
        "reference": reference,
        "return_url": "https://shop.example/thanks",
    })
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url)
    }

    async fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// A new open session for `reference`; returns its JSON.
    async fn new_session(&self, reference: &str) -> Value {
        let key = format!("key-{reference}");
        let response = self
            .post_json("/v1/payment_sessions", Some(&key), &session_body(reference))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    async fn session(&self, token: &str) -> Value {
        let (status, body) = self
            .get_json(&format!("/v1/payment_sessions/{token}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn pay_with(&self, token: &str, card: &str, exp: &str, cvc: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/pay/{token}")))
            .form(&[
                ("card_number", card),
                ("exp", exp),
                ("cvc", cvc),
                ("name", "Ada Buyer"),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn pay(&self, token: &str, card: &str) -> reqwest::Response {
        self.pay_with(token, card, FUTURE_EXP, "123").await
    }

    async fn answer_challenge(&self, token: &str, code: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/pay/{token}/challenge")))
            .form(&[("code", code)])
            .send()
            .await
            .unwrap()
    }
}

fn location(response: &reqwest::Response) -> &str {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers()["location"].to_str().unwrap()
}

fn token_of(session: &Value) -> String {
    session["token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- sessions over the API

#[tokio::test]
async fn session_create_is_idempotent_and_authenticated() {
    let h = start(|_| {}).await;
    let body = session_body("pay_1");

    let first = h.post_json("/v1/payment_sessions", Some("k1"), &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let created: Value = first.json().await.unwrap();
    let token = token_of(&created);
    assert!(token.starts_with("tok_"));
    assert_eq!(created["url"], h.url(&format!("/pay/{token}")));
    assert_eq!(created["status"], "open");
    assert_eq!(created["amount"], 1750);
    assert_eq!(created["currency"], "USD");
    assert_eq!(created["reference"], "pay_1");
    assert_eq!(created["return_url"], "https://shop.example/thanks");
    assert!(
        created["psp_reference"]
            .as_str()
            .unwrap()
            .starts_with("psp_")
    );
    assert!(created["created"].as_i64().unwrap() > 1_700_000_000);
    assert!(created["expires_at"].as_i64().unwrap() > created["created"].as_i64().unwrap());
    assert_eq!(created["failure_code"], Value::Null);

    // The same key and body, keys in another order: the same session, replayed.
    let reordered = json!({
        "return_url": "https://shop.example/thanks", "reference": "pay_1",
        "currency": "USD", "amount": 1750,
    });
    let replay = h
        .post_json("/v1/payment_sessions", Some("k1"), &reordered)
        .await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), created);

    // The same key with another body.
    let other = json!({"amount": 1751, "currency": "USD", "reference": "pay_1",
        "return_url": "https://shop.example/thanks"});
    let reused = h
        .post_json("/v1/payment_sessions", Some("k1"), &other)
        .await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = reused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");

    // No key, a wrong key.
    let anonymous = h
        .client
        .post(h.url("/v1/payment_sessions"))
        .header("Idempotency-Key", "k2")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let error: Value = anonymous.json().await.unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    let wrong = h
        .client
        .get(h.url(&format!("/v1/payment_sessions/{token}")))
        .bearer_auth("sk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // No Idempotency-Key.
    let keyless = h.post_json("/v1/payment_sessions", None, &body).await;
    assert_eq!(keyless.status(), StatusCode::BAD_REQUEST);

    // Bad fields are named.
    for (field, bad) in [
        ("amount", json!(0)),
        ("amount", json!(12.5)),
        ("currency", json!("usd")),
        ("reference", json!("")),
        ("return_url", json!("javascript:alert(1)")),
    ] {
        let mut body = session_body("pay_bad");
        body[field] = bad;
        let response = h.post_json("/v1/payment_sessions", Some("k3"), &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request");
        assert_eq!(error["error"]["code"], "invalid_field");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    let malformed = h
        .client
        .post(h.url("/v1/payment_sessions"))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", "k4")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    // Read back, by token and by merchant reference.
    assert_eq!(h.session(&token).await, created);
    let (status, _) = h.get_json("/v1/payment_sessions/tok_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, listed) = h.get_json("/v1/payment_sessions?reference=pay_1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"], json!([created]));
    let (_, none) = h.get_json("/v1/payment_sessions?reference=pay_none").await;
    assert_eq!(none["data"], json!([]));
    h.sandbox.shutdown();
}

// ---------------------------------------------------------------- the hosted page

#[tokio::test]
async fn hosted_page_shows_an_escaped_form() {
    let h = start(|_| {}).await;
    let session = h.new_session("pay_<script>alert(1)</script>").await;
    let token = token_of(&session);

    let page = h
        .client
        .get(h.url(&format!("/pay/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"));
    for field in ["card_number", "exp", "cvc", "name"] {
        assert!(html.contains(&format!("name=\"{field}\"")), "{field}");
    }
    assert!(html.contains("17.50 USD"));
    assert!(html.contains("pay_&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(
        html.contains("4000 0025 0000 3155"),
        "the test cards are listed"
    );

    let missing = h.client.get(h.url("/pay/tok_nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    h.sandbox.shutdown();
}

#[tokio::test]
async fn a_refused_form_comes_back_with_everything_typed_and_says_where() {
    let h = start(|config| config.merchant_name = "Acme <Outdoor>".to_owned()).await;
    let token = token_of(&h.new_session("pay_kept").await);
    let empty = h
        .client
        .get(h.url(&format!("/pay/{token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        empty.contains("Acme &lt;Outdoor&gt;"),
        "the merchant's name"
    );
    assert!(
        !empty.contains("placeholder=\"4242"),
        "no test card as a placeholder"
    );
    for field in ["card_number", "exp", "cvc", "name"] {
        assert!(
            empty.contains(&format!("<label for=\"{field}\">")),
            "{field} has its label"
        );
    }

    let refused = h.pay_with(&token, CARD_OK, "13/49", "987").await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    for kept in [
        r#"value="4242 4242 4242 4242""#,
        r#"value="13/49""#,
        r#"value="987""#,
        r#"value="Ada Buyer""#,
    ] {
        assert!(html.contains(kept), "{kept} kept: {html}");
    }
    assert!(
        html.contains(r#"id="exp" name="exp" value="13/49""#)
            && html.contains(r#"aria-describedby="exp-error" aria-invalid="true" autofocus"#),
        "the wrong field is marked and focused: {html}"
    );
    assert!(html.contains(r#"<p class="field-error" id="exp-error">The expiry month"#));

    for (path, content_type) in [
        ("/favicon.ico", "image/x-icon"),
        ("/assets/hosted-page.js", "text/javascript; charset=utf-8"),
    ] {
        let response = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type);
    }
    h.sandbox.shutdown();
}

#[tokio::test]
async fn bad_fields_and_unknown_cards_show_the_form_again() {
    let h = start(|_| {}).await;
    let token = token_of(&h.new_session("pay_fields").await);

    for (card, exp, cvc, says) in [
        ("4242", FUTURE_EXP, "123", "card number"),
        (CARD_OK, "13/49", "123", "month"),
        (CARD_OK, "01/20", "123", "expired"),
        (CARD_OK, "1249", "123", "MM/YY"),
        (CARD_OK, FUTURE_EXP, "12345", "CVC"),
        (CARD_OK, FUTURE_EXP, "12a", "CVC"),
        (
            "4111 1111 1111 1111",
            FUTURE_EXP,
            "123",
            "not a sandbox test card",
        ),
    ] {
        let response = h.pay_with(&token, card, exp, cvc).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{card} {exp} {cvc}"
        );
        let html = response.text().await.unwrap();
        assert!(html.contains(says), "{says}: {html}");
        assert!(html.contains("name=\"card_number\""));
    }
    assert_eq!(h.session(&token).await["status"], "open");
    h.sandbox.shutdown();
}

#[tokio::test]
async fn each_test_card_reaches_its_end_status() {
    let h = start(|_| {}).await;
    for (card, status, failure_code, kind) in [
        (
            "4242424242424242",
            "succeeded",
            Value::Null,
            "payment.succeeded",
        ),
        (
            "4000 0000 0000 0002",
            "failed",
            json!("card_declined"),
            "payment.failed",
        ),
        (
            "4000000000009995",
            "failed",
            json!("insufficient_funds"),
            "payment.failed",
        ),
    ] {
        let reference = format!("pay_{}", card.replace(' ', ""));
        let session = h.new_session(&reference).await;
        let token = token_of(&session);
        let response = h.pay(&token, card).await;
        assert_eq!(
            location(&response),
            format!("https://shop.example/thanks?payment={reference}&status={status}")
        );
        let now = h.session(&token).await;
        assert_eq!(now["status"], status);
        assert_eq!(now["failure_code"], failure_code);

        let events = h.hooks.wait_for(&token, kind).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        let event = &events[0];
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert!(event["created"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(
            event["data"],
            json!({
                "token": token, "reference": reference,
                "psp_reference": session["psp_reference"], "amount": 1750, "currency": "USD",
                "status": status, "failure_code": failure_code,
            })
        );

        // The session is closed now: a second attempt changes nothing.
        let again = h.pay(&token, CARD_OK).await;
        assert_eq!(again.status(), StatusCode::CONFLICT);
        assert!(again.text().await.unwrap().contains(status));
        assert_eq!(h.session(&token).await["status"], status);
    }
    h.sandbox.shutdown();
}

#[tokio::test]
async fn three_d_secure_passes_and_fails() {
    let h = start(|_| {}).await;
    for (code, status, failure_code) in [
        ("123456", "succeeded", Value::Null),
        ("000000", "failed", json!("authentication_failed")),
    ] {
        let reference = format!("pay_3ds_{code}");
        let token = token_of(&h.new_session(&reference).await);
        let challenge = h.pay(&token, "4000 0025 0000 3155").await;
        assert_eq!(challenge.status(), StatusCode::OK);
        let html = challenge.text().await.unwrap();
        assert!(html.contains("name=\"code\""));
        assert!(html.contains(&format!("action=\"/pay/{token}/challenge\"")));
        assert_eq!(h.session(&token).await["status"], "open");

        let not_six = h.answer_challenge(&token, "12345").await;
        assert_eq!(not_six.status(), StatusCode::BAD_REQUEST);
        assert!(not_six.text().await.unwrap().contains("name=\"code\""));

        let answered = h.answer_challenge(&token, code).await;
        assert_eq!(
            location(&answered),
            format!("https://shop.example/thanks?payment={reference}&status={status}")
        );
        let now = h.session(&token).await;
        assert_eq!(now["status"], status);
        assert_eq!(now["failure_code"], failure_code);
        let kind = format!("payment.{status}");
        let events = h.hooks.wait_for(&token, &kind).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["data"]["failure_code"], failure_code);

        let late = h.answer_challenge(&token, "654321").await;
        assert_eq!(late.status(), StatusCode::CONFLICT);
    }
    h.sandbox.shutdown();
}

#[tokio::test]
async fn review_holds_the_payment_then_succeeds() {
    let h = start(|config| config.review_delay_ms = 200).await;
    let token = token_of(&h.new_session("pay_review").await);
    let response = h.pay(&token, "4000 0000 0000 0259").await;
    assert_eq!(
        location(&response),
        "https://shop.example/thanks?payment=pay_review&status=processing"
    );
    assert_eq!(h.session(&token).await["status"], "processing");
    let first = h.hooks.wait_for(&token, "payment.processing").await;
    assert_eq!(first[0]["type"], "payment.processing", "{first:#?}");

    let events = h.hooks.wait_for(&token, "payment.succeeded").await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["payment.processing", "payment.succeeded"]);
    assert!(events[0]["created"].as_i64() <= events[1]["created"].as_i64());
    assert_ne!(events[0]["id"], events[1]["id"]);
    assert_eq!(h.session(&token).await["status"], "succeeded");
    h.sandbox.shutdown();
}

#[tokio::test]
async fn processing_error_keeps_the_session_open_for_another_card() {
    let h = start(|_| {}).await;
    let token = token_of(&h.new_session("pay_retry").await);
    let failed = h.pay(&token, "4000 0000 0000 0119").await;
    assert_eq!(failed.status(), StatusCode::OK, "the page is shown again");
    let html = failed.text().await.unwrap();
    assert!(html.contains("processing_error"));
    assert!(
        html.contains("name=\"card_number\""),
        "the buyer can try again"
    );
    assert_eq!(h.session(&token).await["status"], "open");

    let paid = h.pay(&token, CARD_OK).await;
    assert_eq!(
        location(&paid),
        "https://shop.example/thanks?payment=pay_retry&status=succeeded"
    );
    let events = h.hooks.wait_for(&token, "payment.succeeded").await;
    assert_eq!(
        events.len(),
        1,
        "no webhook for the failed attempt: {events:#?}"
    );
    h.sandbox.shutdown();
}

#[tokio::test]
async fn open_sessions_expire() {
    let h = start(|config| config.session_ttl_ms = 200).await;
    let token = token_of(&h.new_session("pay_expiring").await);
    let paid_token = token_of(&h.new_session("pay_in_time").await);
    let _ = h.pay(&paid_token, CARD_OK).await;

    let events = h.hooks.wait_for(&token, "payment.expired").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["status"], "expired");
    assert_eq!(h.session(&token).await["status"], "expired");
    let late = h.pay(&token, CARD_OK).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert!(late.text().await.unwrap().contains("expired"));

    // A paid session does not expire.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.session(&paid_token).await["status"], "succeeded");
    let paid_events = h.hooks.wait_for(&paid_token, "payment.succeeded").await;
    assert_eq!(paid_events.len(), 1);
    h.sandbox.shutdown();
}

// ---------------------------------------------------------------- webhook delivery

#[tokio::test]
async fn webhooks_are_retried_until_accepted() {
    let h = start(|_| {}).await;
    h.hooks.log().fail_next = 2;
    let token = token_of(&h.new_session("pay_retried").await);
    let _ = h.pay(&token, CARD_OK).await;
    let events = h.hooks.wait_for(&token, "payment.succeeded").await;
    assert_eq!(events.len(), 1);
    assert_eq!(h.hooks.log().attempts, 3, "two 500s, then accepted");
    h.sandbox.shutdown();
}

#[tokio::test]
async fn duplicated_webhooks_keep_their_id() {
    let h = start(|config| config.faults.webhook_duplicate_rate = 1.0).await;
    let token = token_of(&h.new_session("pay_twice").await);
    let _ = h.pay(&token, CARD_OK).await;
    let events = h
        .hooks
        .wait_until("a duplicate", |events| events.len() >= 2)
        .await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], events[1], "the same event, byte for byte");
    assert_eq!(events[0]["data"]["token"], token.as_str());
    h.sandbox.shutdown();
}

#[tokio::test]
async fn dropped_and_reordered_webhooks_still_arrive() {
    let h = start(|config| {
        config.faults.webhook_drop_rate = 1.0;
        config.faults.webhook_reorder = true;
    })
    .await;
    let mut tokens = Vec::new();
    for n in 0..4 {
        let token = token_of(&h.new_session(&format!("pay_reorder_{n}")).await);
        let _ = h.pay(&token, CARD_OK).await;
        tokens.push(token);
    }
    let events = h
        .hooks
        .wait_until("four events", |events| events.len() >= 4)
        .await;
    for token in &tokens {
        assert_eq!(
            events
                .iter()
                .filter(|e| e["data"]["token"] == token.as_str())
                .count(),
            1
        );
    }
    assert_eq!(
        h.hooks.log().attempts,
        4,
        "first attempts were dropped, not sent"
    );
    h.sandbox.shutdown();
}

// ---------------------------------------------------------------- refunds and payouts

#[tokio::test]
async fn refunds_and_payouts_settle_by_webhook() {
    let h = start(|_| {}).await;
    let session = h.new_session("pay_refunded").await;
    let token = token_of(&session);
    let _ = h.pay(&token, CARD_OK).await;

    let refund_body = json!({"payment_token": token, "amount": 1000, "currency": "USD",
        "reference": "ref_1"});
    let created = h.post_json("/v1/refunds", Some("r1"), &refund_body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let refund: Value = created.json().await.unwrap();
    let refund_id = refund["id"].as_str().unwrap().to_owned();
    assert!(refund_id.starts_with("re_"));
    assert_eq!(refund["status"], "pending");
    let replay = h.post_json("/v1/refunds", Some("r1"), &refund_body).await;
    assert_eq!(
        replay.json::<Value>().await.unwrap()["id"],
        refund_id.as_str()
    );

    let events = h.hooks.wait_for(&refund_id, "refund.succeeded").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["psp_reference"], session["psp_reference"]);
    assert_eq!(events[0]["data"]["reference"], "ref_1");
    let (_, settled) = h.get_json(&format!("/v1/refunds/{refund_id}")).await;
    assert_eq!(settled["status"], "succeeded");

    // 1000 of 1750 refunded: 800 more is too much. Named by PSP reference this time.
    let too_much = json!({"psp_reference": session["psp_reference"], "amount": 800,
        "currency": "USD", "reference": "ref_2"});
    let created = h.post_json("/v1/refunds", Some("r2"), &too_much).await;
    let refund_id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = h.hooks.wait_for(&refund_id, "refund.failed").await;
    assert_eq!(
        events[0]["data"]["failure_code"],
        "amount_exceeds_refundable"
    );

    let wrong_currency = json!({"payment_token": token, "amount": 1, "currency": "EUR",
        "reference": "ref_3"});
    let refused = h
        .post_json("/v1/refunds", Some("r3"), &wrong_currency)
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    for (destination, kind, failure_code) in [
        ("seller_a", "payout.paid", Value::Null),
        ("closed_seller_b", "payout.failed", json!("account_closed")),
    ] {
        let body = json!({"amount": 500, "currency": "USD", "destination": destination,
            "reference": format!("payout_{destination}")});
        let created = h.post_json("/v1/payouts", Some(destination), &body).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let payout: Value = created.json().await.unwrap();
        assert_eq!(payout["status"], "pending");
        let payout_id = payout["id"].as_str().unwrap().to_owned();
        assert!(payout_id.starts_with("po_"));
        let events = h.hooks.wait_for(&payout_id, kind).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["data"]["failure_code"], failure_code);
        assert_eq!(events[0]["data"]["amount"], 500);
    }
    h.sandbox.shutdown();
}

// ---------------------------------------------------------------- API faults

#[tokio::test]
async fn api_faults_fail_or_drop_and_a_keyed_retry_recovers() {
    // Every call fails: as a 500, or as a connection cut before any answer.
    let h = start(|config| config.faults.error_rate = 1.0).await;
    let (mut answered_500, mut cut) = (0, 0);
    for n in 0..40 {
        let sent = h
            .client
            .post(h.url("/v1/payment_sessions"))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", format!("f{n}"))
            .json(&session_body(&format!("pay_f{n}")))
            .send()
            .await;
        match sent {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
                answered_500 += 1;
            }
            Err(_) => cut += 1,
        }
    }
    assert!(
        answered_500 > 0 && cut > 0,
        "500s {answered_500}, cut {cut}"
    );
    h.sandbox.shutdown();

    // Half the calls fail; retrying with the same key registers each payment exactly once.
    let h = start(|config| {
        config.faults.error_rate = 0.5;
        config.faults.latency_ms = 20;
    })
    .await;
    // At least six payments, and on until a fault was met (at a rate of one half, six calls all
    // going through happens one run in 64: keep going rather than flake).
    let mut faults_seen = 0;
    for n in 0..40 {
        if n >= 6 && faults_seen > 0 {
            break;
        }
        let reference = format!("pay_r{n}");
        let mut tries = 0;
        let token = loop {
            tries += 1;
            assert!(tries < 60, "never got through");
            let started = Instant::now();
            let sent = h
                .client
                .post(h.url("/v1/payment_sessions"))
                .bearer_auth(API_KEY)
                .header("Idempotency-Key", format!("key-{reference}"))
                .json(&session_body(&reference))
                .send()
                .await;
            assert!(
                started.elapsed() >= Duration::from_millis(20),
                "latency added"
            );
            match sent {
                Ok(response) if response.status() == StatusCode::CREATED => {
                    break token_of(&response.json().await.unwrap());
                }
                _ => faults_seen += 1,
            }
        };
        let mut list_tries = 0;
        let listed = loop {
            list_tries += 1;
            assert!(list_tries < 60, "never listed");
            let response = h
                .client
                .get(h.url(&format!("/v1/payment_sessions?reference={reference}")))
                .bearer_auth(API_KEY)
                .send()
                .await;
            if let Ok(response) = response
                && response.status() == StatusCode::OK
            {
                break response.json::<Value>().await.unwrap();
            }
        };
        let data = listed["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "one session per key: {listed}");
        assert_eq!(data[0]["token"], token.as_str());
    }
    assert!(faults_seen > 0);
    h.sandbox.shutdown();
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = start(|_| {}).await;
    let _ = h.new_session("pay_before_shutdown").await;
    let url = h.url("/v1/payment_sessions");
    h.sandbox.shutdown();
    let started = Instant::now();
    loop {
        let fresh = reqwest::Client::new();
        if fresh.get(&url).bearer_auth(API_KEY).send().await.is_err() {
            break;
        }
        assert!(started.elapsed() < WAIT, "still serving after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- settlement files

/// Today's UTC date as `YYYY-MM-DD` (civil-from-days, as in the sandbox's clock).
fn today() -> String {
    let days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

impl Harness {
    /// Today's settlement file as (header, rows of fields).
    async fn settlement(&self) -> (String, Vec<Vec<String>>) {
        let response = self
            .client
            .get(self.url(&format!("/v1/settlements/{}.csv", today())))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = response.text().await.unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap().to_owned();
        let rows = lines
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect();
        (header, rows)
    }
}

fn amount(row: &[String], column: usize) -> i64 {
    row[column].parse().unwrap()
}

#[tokio::test]
async fn settlement_files_list_the_day_with_fees_and_the_payout() {
    let h = start(|_| {}).await;
    let paid = h.new_session("pay_settled").await;
    let _ = h.pay(&token_of(&paid), CARD_OK).await;
    let charged_back = h.new_session("pay_charged_back").await;
    let _ = h.pay(&token_of(&charged_back), CARD_OK).await;
    let declined = h.new_session("pay_declined").await;
    let _ = h.pay(&token_of(&declined), "4000 0000 0000 0002").await;
    let refund = json!({"payment_token": token_of(&paid), "amount": 1000, "currency": "USD",
        "reference": "ref_settled"});
    let refund: Value = h
        .post_json("/v1/refunds", Some("r-settled"), &refund)
        .await
        .json()
        .await
        .unwrap();
    h.hooks
        .wait_for(refund["id"].as_str().unwrap(), "refund.succeeded")
        .await;
    let chargeback = h
        .post_json(
            "/v1/test/chargebacks",
            None,
            &json!({"psp_reference": charged_back["psp_reference"], "amount": 700}),
        )
        .await;
    assert_eq!(chargeback.status(), StatusCode::CREATED);

    let (header, rows) = h.settlement().await;
    assert_eq!(header, sandbox_psp::SETTLEMENT_HEADER);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let kinds: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "payment",
            "payment",
            "refund",
            "chargeback",
            "payout_to_bank"
        ]
    );
    // 1750 at 2.9 % + 30: 50.75 rounds to 51, so the fee is 81.
    let payment = rows.iter().find(|r| r[1] == "pay_settled").unwrap();
    assert_eq!(payment[0], paid["psp_reference"].as_str().unwrap());
    assert_eq!((amount(payment, 5), amount(payment, 6)), (1750, 81));
    assert!(payment[3].starts_with(&today()));
    // A refund line names the PSP's refund and, as the contract says, the payment's id.
    assert_eq!(rows[2][2], "refund");
    assert_eq!(rows[2][1], "pay_settled");
    assert!(rows[2][0].starts_with("re_"), "{:?}", rows[2]);
    assert_eq!((amount(&rows[2], 5), amount(&rows[2], 6)), (-1000, 0));
    assert_eq!((amount(&rows[3], 5), amount(&rows[3], 6)), (-700, 1500));
    for row in &rows {
        assert_eq!(amount(row, 5) - amount(row, 6), amount(row, 7), "{row:?}");
        assert_eq!(row[4], "USD");
        assert_eq!(row[8], format!("stl_{}", today().replace('-', "")));
    }
    // The payout takes the day's net to the bank: the nets sum to zero.
    let payout = &rows[4];
    assert_eq!(amount(payout, 7), -(1669 + 1669 - 1000 - 2200));
    assert_eq!(rows.iter().map(|r| amount(r, 7)).sum::<i64>(), 0);

    // Wrong on purpose: each discrepancy kind.
    let faults = h
        .post_json(
            "/v1/test/settlement_faults",
            None,
            &json!({
                "missing": ["pay_charged_back"],
                "duplicated": [paid["psp_reference"]],
                "amount_changed": ["ref_settled"],
                "unknown_lines": 1,
            }),
        )
        .await;
    assert_eq!(faults.status(), StatusCode::OK);
    let faults: Value = faults.json().await.unwrap();
    let unknown = faults["unknown_lines"][0]["merchant_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, rows) = h.settlement().await;
    let references: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        references,
        [
            "pay_settled",
            "pay_settled",
            "pay_settled",
            unknown.as_str(),
            ""
        ],
        "the charged-back payment and its chargeback are missing"
    );
    // `amount_changed` named the refund by its own reference: only the refund line changed.
    assert_eq!(rows[2][2], "refund");
    assert_eq!(amount(&rows[2], 5), -900);
    assert_eq!(amount(&rows[0], 5), 1750);
    assert_eq!(rows.iter().map(|r| amount(r, 7)).sum::<i64>(), 0);
    let changed = h
        .post_json(
            "/v1/test/settlement_faults",
            None,
            &json!({"currency_changed": ["pay_settled"]}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let (_, rows) = h.settlement().await;
    let settled = rows.iter().find(|r| r[1] == "pay_settled").unwrap();
    assert_eq!(settled[4], "EUR");
    assert_eq!(rows.iter().filter(|r| r[2] == "payout_to_bank").count(), 2);

    let cleared = h
        .client
        .delete(h.url("/v1/test/settlement_faults"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(h.settlement().await.1.len(), 5);

    // Bad input and no key.
    let (status, body) = h.get_json("/v1/settlements/2025-02-30.csv").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let bad = h
        .post_json("/v1/test/settlement_faults", None, &json!({"missing": "x"}))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let not_succeeded = h
        .post_json(
            "/v1/test/chargebacks",
            None,
            &json!({"payment_token": token_of(&declined)}),
        )
        .await;
    assert_eq!(not_succeeded.status(), StatusCode::BAD_REQUEST);
    let anonymous = h
        .client
        .get(h.url(&format!("/v1/settlements/{}.csv", today())))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    h.sandbox.shutdown();
}

// ---------------------------------------------------------------- disputes and test switches

#[tokio::test]
async fn a_disputed_card_is_charged_back_then_won_with_its_lines_and_webhooks() {
    let h = start(|c| c.dispute_delay_ms = 50).await;
    let session = h.new_session("pay_disputed").await;
    let token = token_of(&session);
    h.pay(&token, "4000 0000 0000 2685").await;
    let created = h
        .hooks
        .wait_until("dispute.created", |events| {
            events.iter().any(|e| e["type"] == "dispute.created")
        })
        .await;
    let dispute = created
        .iter()
        .find(|e| e["type"] == "dispute.created")
        .unwrap()["data"]
        .clone();
    assert_eq!(dispute["reference"], "pay_disputed");
    assert_eq!(dispute["payment_token"], token.as_str());
    assert_eq!(dispute["amount"], 1750);
    assert_eq!(dispute["reason"], "fraudulent");
    assert_eq!(dispute["status"], "needs_response");
    let id = dispute["id"].as_str().unwrap();

    // Evidence: under review; a body without text is refused.
    let evidence = h
        .post_json(
            &format!("/v1/disputes/{id}/evidence"),
            Some("ev-1"),
            &json!({"text": "signed for"}),
        )
        .await;
    assert_eq!(evidence.status(), StatusCode::OK);
    let evidence: Value = evidence.json().await.unwrap();
    assert_eq!(evidence["status"], "under_review");
    assert_eq!(evidence["evidence_submitted"], true);
    let no_text = h
        .post_json(
            &format!("/v1/disputes/{id}/evidence"),
            Some("ev-2"),
            &json!({}),
        )
        .await;
    assert_eq!(no_text.status(), StatusCode::BAD_REQUEST);

    let won = h
        .post_json(
            &format!("/v1/test/disputes/{id}/decide"),
            None,
            &json!({"outcome": "won"}),
        )
        .await;
    assert_eq!(won.status(), StatusCode::OK);
    h.hooks.wait_for(id, "dispute.won").await;
    let again = h
        .post_json(
            &format!("/v1/test/disputes/{id}/decide"),
            None,
            &json!({"outcome": "lost"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "decided once");
    let (status, shown) = h.get_json(&format!("/v1/disputes/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["status"], "won");

    // The day: the payment, its chargeback (with the fee), the reversal (without), the payout.
    let (_, rows) = h.settlement().await;
    let kinds: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "payment",
            "chargeback",
            "chargeback_reversal",
            "payout_to_bank"
        ],
        "{rows:?}"
    );
    let chargeback = &rows[1];
    assert_eq!(chargeback[0], id);
    assert_eq!(chargeback[1], "pay_disputed");
    assert_eq!(
        (amount(chargeback, 5), amount(chargeback, 6)),
        (-1750, 1500)
    );
    let reversal = &rows[2];
    assert_eq!(reversal[0], id);
    assert_eq!((amount(reversal, 5), amount(reversal, 6)), (1750, 0));
    let nets: i64 = rows.iter().map(|r| amount(r, 7)).sum();
    assert_eq!(nets, 0);
    h.sandbox.shutdown();
}

#[tokio::test]
async fn an_outage_refuses_the_api_and_a_lie_after_the_effect_is_found_by_key() {
    let h = start(|_| {}).await;
    let session = h.new_session("pay_switches").await;
    let token = token_of(&session);
    h.pay(&token, CARD_OK).await;

    let down = h
        .post_json("/v1/test/outage", None, &json!({"down": true}))
        .await;
    assert_eq!(down.status(), StatusCode::OK);
    let (status, _) = h.get_json(&format!("/v1/payment_sessions/{token}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, outage) = h.get_json("/v1/test/outage").await;
    assert_eq!(outage, json!({"down": true, "refused_calls": 1}));
    h.post_json("/v1/test/outage", None, &json!({"down": false}))
        .await;
    assert_eq!(h.session(&token).await["status"], "succeeded");

    // Nothing made under this key yet.
    let (status, none) = h.get_json("/v1/payouts?idempotency_key=pout_1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none, json!({"data": []}));
    h.post_json(
        "/v1/test/unauthorized_after_effect",
        None,
        &json!({"count": 1}),
    )
    .await;
    let payout =
        json!({"amount": 500, "currency": "USD", "destination": "seller_a", "reference": "pout_1"});
    let lied = h.post_json("/v1/payouts", Some("pout_1"), &payout).await;
    assert_eq!(lied.status(), StatusCode::UNAUTHORIZED);
    // It was made all the same: found by its key, and it settles.
    let (_, found) = h.get_json("/v1/payouts?idempotency_key=pout_1").await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["reference"], "pout_1");
    let id = found["data"][0]["id"].as_str().unwrap().to_owned();
    h.hooks.wait_for(&id, "payout.paid").await;
    // Once only: the retry replays the same payout.
    let retried = h.post_json("/v1/payouts", Some("pout_1"), &payout).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["id"], id.as_str());
    h.sandbox.shutdown();
}
