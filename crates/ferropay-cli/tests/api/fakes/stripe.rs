//! A fake Stripe, after Stripe's API reference and its OpenAPI fixtures (`stripe/fixtures3.json`,
//! one example of each object, which every object here starts from): form-encoded requests
//! with `Authorization: Bearer sk_…` and `Idempotency-Key` (a key reused with other parameters is
//! an `idempotency_error`), errors as `{"error": {"type", "code", "message", "param"}}`, lists as
//! `{"object": "list", "data", "has_more", "url"}`, events signed `Stripe-Signature:
//! t=…,v1=…`.
//!
//! Paths: `POST/GET /v1/checkout/sessions[/{id}]` (`expand[]=payment_intent`, filter
//! `payment_intent`), `POST /v1/checkout/sessions/{id}/expire`, `GET
//! /v1/payment_intents/search`, `POST/GET /v1/refunds[/{id}]`, `POST/GET /v1/transfers[/{id}]`,
//! `GET /v1/payouts` (`arrival_date[gte|lt]`), `GET /v1/balance_transactions` (`payout`,
//! `expand[]=data.source`), `GET /v1/refunds` (`payment_intent`, `limit`, `starting_after`),
//! `GET/POST /v1/disputes/{id}` (evidence, `submit`). The hosted page is `/c/pay/{session}`: test cards 4242… (paid),
//! 4000 0000 0000 0002 (declined: the session stays open), 4000 0027 6000 3184 (3-D Secure), and
//! SEPA test IBANs AT32… (asynchronous success) and AT86… (asynchronous failure).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use super::{Faults, Outgoing, Webhooks, now_s, provider_json, random_id};

pub const SECRET_KEY: &str = "sk_test_fake_51Ferropay";
pub const WEBHOOK_SECRET: &str = "whsec_fake_stripe";

/// Stripe's test card that pays.
pub const CARD_OK: &str = "4242424242424242";
/// Stripe's test card that is declined (`card_declined`).
pub const CARD_DECLINED: &str = "4000000000000002";
/// Stripe's test card that always asks for 3-D Secure.
pub const CARD_3DS: &str = "4000002760003184";
/// Stripe's SEPA Direct Debit test IBANs: settles later, or fails later.
pub const IBAN_ASYNC_OK: &str = "AT321904300235473204";
pub const IBAN_ASYNC_FAIL: &str = "AT861904300235473202";

/// Stripe's fee on a card charge in the fake: 2.9 % + 30 (rounded half up).
pub fn card_fee(amount: i64) -> i64 {
    (amount * 290 + 5_000) / 10_000 + 30
}

/// The dispute fee Stripe takes (15.00 in the account's currency).
pub const DISPUTE_FEE: i64 = 1_500;

#[derive(Default)]
struct Books {
    sessions: BTreeMap<String, Value>,
    intents: BTreeMap<String, Value>,
    charges: BTreeMap<String, Value>,
    refunds: BTreeMap<String, Value>,
    transfers: BTreeMap<String, Value>,
    disputes: BTreeMap<String, Value>,
    payouts: BTreeMap<String, Value>,
    /// Balance transactions in order; the payout that paid each out, once one has.
    balance: Vec<(Value, Option<String>)>,
    /// Idempotency-Key → (the request it was first used for, the answer).
    keys: HashMap<String, (String, u16, Value)>,
    /// Sessions whose hosted page passed 3-D Secure's challenge step.
    challenged: Vec<String>,
    /// Session → its `payment_intent_data[metadata]`, for the PaymentIntent made at payment.
    intent_metadata: HashMap<String, Value>,
    /// PaymentIntent → the test IBAN it pays with (SEPA).
    ibans: HashMap<String, String>,
}

/// The fake; shared by its handlers and the test.
pub struct StripeFake {
    pub base_url: String,
    pub faults: Faults,
    pub webhooks: Webhooks,
    books: Mutex<Books>,
}

/// A fixture object from Stripe's OpenAPI repository.
fn fixture(resource: &str) -> Value {
    provider_json("stripe/fixtures3.json")["resources"][resource].clone()
}

/// A refusal in Stripe's error shape; retryable ones say so in `Stripe-Should-Retry`.
struct Refusal {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error();
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert("stripe-should-retry", "true".parse().unwrap());
        }
        response
    }
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Refusal {
    let mut body = json!({"error": {"type": kind, "message": message}});
    if let Some(code) = code {
        body["error"]["code"] = json!(code);
    }
    if let Some(param) = param {
        body["error"]["param"] = json!(param);
    }
    Refusal { status, body }
}

fn missing(param: &str) -> Refusal {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
        Some(param),
    )
}

fn no_such(what: &str, id: &str) -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {what}: '{id}'"),
        Some("id"),
    )
}

type Form = Vec<(String, String)>;

fn param<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `metadata[key]=value` pairs as an object.
fn metadata(form: &Form, prefix: &str) -> Value {
    let mut object = serde_json::Map::new();
    for (key, value) in form {
        if let Some(name) = key
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
        {
            object.insert(name.to_owned(), json!(value));
        }
    }
    Value::Object(object)
}

fn list(url: &str, data: Vec<Value>) -> Value {
    json!({"object": "list", "data": data, "has_more": false, "url": url})
}

impl StripeFake {
    /// Starts the fake on a loopback port. Set `webhooks.url` once ferropay runs.
    pub async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Self {
            base_url: format!("http://{addr}"),
            faults: Faults::default(),
            webhooks: Webhooks::default(),
            books: Mutex::new(Books::default()),
        });
        let router = axum::Router::new()
            .route("/v1/{*path}", any(api))
            .route("/c/pay/{id}", get(page).post(submit))
            .route("/c/pay/{id}/3ds", axum::routing::post(challenge))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    /// Emits an event about `object` (Stripe's `event` object), signed with the endpoint's
    /// secret.
    fn emit(&self, event_type: &str, object: Value) {
        let mut event = fixture("event");
        event["id"] = json!(random_id("evt_"));
        event["type"] = json!(event_type);
        event["created"] = json!(now_s());
        event["api_version"] = json!("2024-06-20");
        event["data"] = json!({"object": object});
        let body = event.to_string();
        let header = sign(WEBHOOK_SECRET, now_s(), &body);
        self.webhooks.send(
            &self.faults,
            Outgoing {
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Stripe-Signature".into(), header),
                ],
                body,
            },
        );
    }

    /// The session as the API shows it.
    pub fn session(&self, id: &str) -> Value {
        self.books.lock().unwrap().sessions[id].clone()
    }

    /// How many sessions carry our payment id.
    pub fn sessions_for(&self, payment_id: &str) -> usize {
        let books = self.books.lock().unwrap();
        books
            .sessions
            .values()
            .filter(|s| s["client_reference_id"] == payment_id)
            .count()
    }

    /// How many refunds carry our refund id in their metadata.
    pub fn refunds_for(&self, refund_id: &str) -> usize {
        let books = self.books.lock().unwrap();
        books
            .refunds
            .values()
            .filter(|r| r["metadata"]["ferropay_refund_id"] == refund_id)
            .count()
    }

    /// How many transfers carry our payout id as their `transfer_group`.
    pub fn transfers_for(&self, payout_id: &str) -> usize {
        let books = self.books.lock().unwrap();
        books
            .transfers
            .values()
            .filter(|t| t["transfer_group"] == payout_id)
            .count()
    }

    /// The dispute as the API shows it.
    pub fn dispute_object(&self, id: &str) -> Value {
        self.books.lock().unwrap().disputes[id].clone()
    }

    /// Settles an asynchronous payment (SEPA) now, as Stripe does days later.
    pub fn settle_async(&self, session_id: &str) {
        let mut books = self.books.lock().unwrap();
        let session = books.sessions[session_id].clone();
        let intent_id = session["payment_intent"].as_str().unwrap().to_owned();
        let fail = books.ibans.get(&intent_id).map(String::as_str) == Some(IBAN_ASYNC_FAIL);
        if fail {
            let intent = books.intents.get_mut(&intent_id).unwrap();
            intent["status"] = json!("requires_payment_method");
            intent["last_payment_error"] =
                json!({"code": "payment_method_not_available", "type": "card_error"});
            drop(books);
            self.emit("checkout.session.async_payment_failed", session);
        } else {
            Self::capture(&mut books, &intent_id);
            let session = books.sessions.get_mut(session_id).unwrap();
            session["payment_status"] = json!("paid");
            let session = session.clone();
            drop(books);
            self.emit("checkout.session.async_payment_succeeded", session);
        }
    }

    /// Opens a dispute on the payment intent's charge (`charge.dispute.created`); the disputed
    /// sum and Stripe's dispute fee leave the balance.
    pub fn dispute(&self, intent_id: &str) -> Value {
        let mut books = self.books.lock().unwrap();
        let intent = books.intents[intent_id].clone();
        let charge = intent["latest_charge"].as_str().unwrap().to_owned();
        let amount = intent["amount"].as_i64().unwrap();
        let mut dispute = fixture("dispute");
        let id = random_id("du_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("currency", intent["currency"].clone()),
            ("charge", json!(charge)),
            ("payment_intent", json!(intent_id)),
            ("reason", json!("fraudulent")),
            ("status", json!("needs_response")),
            ("created", json!(now_s())),
        ] {
            dispute[key] = value;
        }
        books.disputes.insert(id.clone(), dispute.clone());
        Self::book(
            &mut books,
            -amount,
            DISPUTE_FEE,
            &intent["currency"],
            "adjustment",
            "dispute",
            &dispute,
        );
        drop(books);
        // Stripe says it twice: the dispute opened, and the funds withdrawn.
        self.emit("charge.dispute.created", dispute.clone());
        self.emit("charge.dispute.funds_withdrawn", dispute.clone());
        dispute
    }

    /// A charge ferropay never asked for (made in the Dashboard, say): no metadata of ours.
    pub fn foreign_charge(&self, amount: i64) -> String {
        let mut books = self.books.lock().unwrap();
        let mut intent = fixture("payment_intent");
        let id = random_id("pi_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("currency", json!("usd")),
            ("metadata", json!({})),
            ("status", json!("processing")),
        ] {
            intent[key] = value;
        }
        books.intents.insert(id.clone(), intent);
        Self::capture(&mut books, &id);
        id
    }

    /// Pays the available balance out to the bank, arriving at `arrival_s`: a payout and its
    /// balance transaction; every earlier balance transaction is now paid out by it.
    pub fn payout(&self, arrival_s: i64) -> Value {
        let mut books = self.books.lock().unwrap();
        let id = random_id("po_");
        let open: Vec<usize> = (0..books.balance.len())
            .filter(|&i| books.balance[i].1.is_none())
            .collect();
        let net: i64 = open
            .iter()
            .map(|&i| books.balance[i].0["net"].as_i64().unwrap())
            .sum();
        let currency = open
            .first()
            .map_or(json!("usd"), |&i| books.balance[i].0["currency"].clone());
        let mut payout = fixture("payout");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(net)),
            ("currency", currency.clone()),
            ("arrival_date", json!(arrival_s)),
            ("created", json!(now_s())),
            ("status", json!("paid")),
            ("automatic", json!(true)),
        ] {
            payout[key] = value;
        }
        for i in open {
            books.balance[i].1 = Some(id.clone());
        }
        let txn = Self::book(&mut books, -net, 0, &currency, "payout", "payout", &payout);
        let last = books.balance.len() - 1;
        books.balance[last].1 = Some(id.clone());
        payout["balance_transaction"] = json!(txn);
        books.payouts.insert(id, payout.clone());
        payout
    }

    /// Adds a balance transaction; answers its id.
    fn book(
        books: &mut Books,
        amount: i64,
        fee: i64,
        currency: &Value,
        kind: &str,
        category: &str,
        source: &Value,
    ) -> String {
        let mut txn = fixture("balance_transaction");
        let id = random_id("txn_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("fee", json!(fee)),
            ("net", json!(amount - fee)),
            ("currency", currency.clone()),
            ("type", json!(kind)),
            ("reporting_category", json!(category)),
            ("source", source["id"].clone()),
            ("created", json!(now_s())),
            ("status", json!("available")),
            ("fee_details", json!([])),
        ] {
            txn[key] = value;
        }
        books.balance.push((txn, None));
        id
    }

    /// A PaymentIntent for the session, in `status`.
    fn intent_for(books: &mut Books, session_id: &str, method: &str, status: &str) -> String {
        let session = books.sessions[session_id].clone();
        if let Some(id) = session["payment_intent"].as_str() {
            books.intents.get_mut(id).unwrap()["status"] = json!(status);
            return id.to_owned();
        }
        let mut intent = fixture("payment_intent");
        let id = random_id("pi_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", session["amount_total"].clone()),
            ("currency", session["currency"].clone()),
            ("status", json!(status)),
            (
                "metadata",
                books
                    .intent_metadata
                    .get(session_id)
                    .cloned()
                    .unwrap_or(json!({})),
            ),
            ("payment_method_types", json!([method])),
            ("latest_charge", Value::Null),
            ("created", json!(now_s())),
        ] {
            intent[key] = value;
        }
        books.intents.insert(id.clone(), intent);
        books.sessions.get_mut(session_id).unwrap()["payment_intent"] = json!(id);
        id
    }

    /// The intent's money is taken: a charge with its balance transaction.
    fn capture(books: &mut Books, intent_id: &str) {
        let intent = books.intents[intent_id].clone();
        let amount = intent["amount"].as_i64().unwrap();
        let mut charge = fixture("charge");
        let id = random_id("ch_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("amount_captured", json!(amount)),
            ("amount_refunded", json!(0)),
            ("currency", intent["currency"].clone()),
            ("payment_intent", json!(intent_id)),
            ("metadata", intent["metadata"].clone()),
            ("status", json!("succeeded")),
            ("paid", json!(true)),
            ("captured", json!(true)),
            ("refunded", json!(false)),
        ] {
            charge[key] = value;
        }
        let fee = card_fee(amount);
        let txn = Self::book(
            books,
            amount,
            fee,
            &intent["currency"],
            "charge",
            "charge",
            &charge,
        );
        charge["balance_transaction"] = json!(txn);
        books.charges.insert(id.clone(), charge);
        let intent = books.intents.get_mut(intent_id).unwrap();
        intent["status"] = json!("succeeded");
        intent["latest_charge"] = json!(id);
        intent["amount_received"] = json!(amount);
    }

    /// The buyer pays the session with a card or an IBAN (the hosted page's form).
    fn pay(
        &self,
        session_id: &str,
        card: Option<&str>,
        iban: Option<&str>,
    ) -> Result<&'static str, &'static str> {
        let mut books = self.books.lock().unwrap();
        let session = books.sessions[session_id].clone();
        if session["status"] != "open" {
            return Err("This Checkout Session is no longer active.");
        }
        let card = card.map(|c| c.replace(' ', ""));
        match (card.as_deref(), iban) {
            (Some(CARD_3DS), _) if !books.challenged.contains(&session_id.to_owned()) => {
                Self::intent_for(&mut books, session_id, "card", "requires_action");
                Ok("3ds")
            }
            (Some(CARD_OK | CARD_3DS), _) => {
                let intent = Self::intent_for(&mut books, session_id, "card", "processing");
                Self::capture(&mut books, &intent);
                let session = books.sessions.get_mut(session_id).unwrap();
                session["status"] = json!("complete");
                session["payment_status"] = json!("paid");
                let session = session.clone();
                drop(books);
                self.emit("checkout.session.completed", session);
                Ok("paid")
            }
            (Some(CARD_DECLINED), _) => {
                let intent =
                    Self::intent_for(&mut books, session_id, "card", "requires_payment_method");
                let object = books.intents.get_mut(&intent).unwrap();
                object["last_payment_error"] = json!({"type": "card_error", "code": "card_declined",
                    "decline_code": "generic_decline", "message": "Your card was declined."});
                let object = object.clone();
                drop(books);
                // The session stays open: the buyer may try another card.
                self.emit("payment_intent.payment_failed", object);
                Err("Your card was declined.")
            }
            (None, Some(iban @ (IBAN_ASYNC_OK | IBAN_ASYNC_FAIL))) => {
                let intent = Self::intent_for(&mut books, session_id, "sepa_debit", "processing");
                books.ibans.insert(intent.clone(), iban.to_owned());
                let session = books.sessions.get_mut(session_id).unwrap();
                session["status"] = json!("complete");
                session["payment_status"] = json!("unpaid");
                let session = session.clone();
                drop(books);
                self.emit("checkout.session.completed", session);
                Ok("processing")
            }
            _ => Err("Your card number is incorrect."),
        }
    }

    /// Expires an open session now (`POST /v1/checkout/sessions/{id}/expire`).
    fn expire(&self, session_id: &str) -> Result<Value, Refusal> {
        let mut books = self.books.lock().unwrap();
        let session = books
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| no_such("checkout.session", session_id))?;
        if session["status"] != "open" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Only Checkout Sessions with a status in [\"open\"] can be expired.",
                None,
            ));
        }
        session["status"] = json!("expired");
        let session = session.clone();
        drop(books);
        self.emit("checkout.session.expired", session.clone());
        Ok(session)
    }

    /// `POST /v1/disputes/{id}`: evidence (`evidence[…]`), sent to the bank with `submit=true`
    /// (`under_review`); a dispute no longer awaiting a response takes none.
    fn update_dispute(&self, id: &str, form: &Form) -> Result<Value, Refusal> {
        let mut books = self.books.lock().unwrap();
        let dispute = books
            .disputes
            .get_mut(id)
            .ok_or_else(|| no_such("dispute", id))?;
        let status = dispute["status"].as_str().unwrap_or_default();
        if !matches!(status, "needs_response" | "warning_needs_response") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("This dispute is already {status} and can no longer be updated."),
                None,
            ));
        }
        if let Some(text) = param(form, "evidence[uncategorized_text]") {
            dispute["evidence"]["uncategorized_text"] = json!(text);
        }
        if param(form, "submit") == Some("true") {
            dispute["status"] = json!("under_review");
            let count = dispute["evidence_details"]["submission_count"]
                .as_i64()
                .unwrap_or(0);
            dispute["evidence_details"]["submission_count"] = json!(count + 1);
        }
        let dispute = dispute.clone();
        drop(books);
        self.emit("charge.dispute.updated", dispute.clone());
        Ok(dispute)
    }

    /// The bank decides a dispute (`charge.dispute.closed`); a won one gives the disputed sum
    /// back to the balance (`dispute_reversal`).
    pub fn close_dispute(&self, id: &str, won: bool) {
        let mut books = self.books.lock().unwrap();
        let dispute = books.disputes.get_mut(id).unwrap();
        dispute["status"] = json!(if won { "won" } else { "lost" });
        let dispute = dispute.clone();
        if won {
            Self::book(
                &mut books,
                dispute["amount"].as_i64().unwrap(),
                0,
                &dispute["currency"],
                "adjustment",
                "dispute_reversal",
                &dispute,
            );
        }
        drop(books);
        self.emit("charge.dispute.closed", dispute);
    }

    fn create_session(&self, form: &Form) -> Result<Value, Refusal> {
        for required in [
            "mode",
            "success_url",
            "line_items[0][price_data][currency]",
            "line_items[0][price_data][unit_amount]",
            "line_items[0][quantity]",
        ] {
            if param(form, required).is_none() {
                return Err(missing(required));
            }
        }
        let unit: i64 = param(form, "line_items[0][price_data][unit_amount]")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| missing("line_items[0][price_data][unit_amount]"))?;
        let quantity: i64 = param(form, "line_items[0][quantity]")
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        let currency = param(form, "line_items[0][price_data][currency]").unwrap();
        if currency != currency.to_ascii_lowercase() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_string"),
                "Invalid currency: must be a lowercase ISO code.",
                Some("line_items[0][price_data][currency]"),
            ));
        }
        let id = random_id("cs_test_");
        let mut session = fixture("checkout.session");
        for (key, value) in [
            ("id", json!(id)),
            ("object", json!("checkout.session")),
            ("mode", json!(param(form, "mode"))),
            ("status", json!("open")),
            ("payment_status", json!("unpaid")),
            ("amount_total", json!(unit * quantity)),
            ("amount_subtotal", json!(unit * quantity)),
            ("currency", json!(currency)),
            (
                "client_reference_id",
                json!(param(form, "client_reference_id")),
            ),
            ("metadata", metadata(form, "metadata")),
            ("success_url", json!(param(form, "success_url"))),
            ("cancel_url", json!(param(form, "cancel_url"))),
            ("payment_intent", Value::Null),
            ("url", json!(format!("{}/c/pay/{id}", self.base_url))),
            ("created", json!(now_s())),
            ("expires_at", json!(now_s() + 86_400)),
            ("livemode", json!(false)),
        ] {
            session[key] = value;
        }
        let mut books = self.books.lock().unwrap();
        // Kept for the PaymentIntent made at payment (Stripe copies payment_intent_data).
        books
            .intent_metadata
            .insert(id.clone(), metadata(form, "payment_intent_data[metadata]"));
        books.sessions.insert(id, session.clone());
        Ok(session)
    }

    fn create_refund(&self, form: &Form) -> Result<Value, Refusal> {
        let intent_id = param(form, "payment_intent").ok_or_else(|| missing("payment_intent"))?;
        let mut books = self.books.lock().unwrap();
        let intent = books
            .intents
            .get(intent_id)
            .cloned()
            .ok_or_else(|| no_such("payment_intent", intent_id))?;
        let charge_id = intent["latest_charge"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(charge) = books.charges.get(&charge_id).cloned() else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("charge_not_refundable"),
                "This PaymentIntent does not have a successful charge to refund.",
                Some("payment_intent"),
            ));
        };
        let left = charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap();
        let amount = match param(form, "amount") {
            Some(a) => a.parse::<i64>().map_err(|_| missing("amount"))?,
            None => left,
        };
        if amount > left || amount <= 0 {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("amount_too_large"),
                &format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
                ),
                Some("amount"),
            ));
        }
        let mut refund = fixture("refund");
        let id = random_id("re_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("currency", charge["currency"].clone()),
            ("charge", json!(charge_id)),
            ("payment_intent", json!(intent_id)),
            ("metadata", metadata(form, "metadata")),
            ("status", json!("succeeded")),
            ("created", json!(now_s())),
        ] {
            refund[key] = value;
        }
        let txn = Self::book(
            &mut books,
            -amount,
            0,
            &charge["currency"],
            "refund",
            "refund",
            &refund,
        );
        refund["balance_transaction"] = json!(txn);
        let charge = books.charges.get_mut(&charge_id).unwrap();
        charge["amount_refunded"] = json!(charge["amount_refunded"].as_i64().unwrap() + amount);
        charge["refunded"] = json!(charge["amount_refunded"] == charge["amount"]);
        let charge = charge.clone();
        books.refunds.insert(id, refund.clone());
        drop(books);
        // Card refunds succeed at once; Stripe tells both objects.
        self.emit("refund.created", refund.clone());
        self.emit("charge.refunded", charge);
        Ok(refund)
    }

    fn create_transfer(&self, form: &Form) -> Result<Value, Refusal> {
        let amount: i64 = param(form, "amount")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| missing("amount"))?;
        let currency = param(form, "currency").ok_or_else(|| missing("currency"))?;
        let destination = param(form, "destination").ok_or_else(|| missing("destination"))?;
        if !destination.starts_with("acct_") || destination == "acct_missing" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such destination: '{destination}'"),
                Some("destination"),
            ));
        }
        let mut books = self.books.lock().unwrap();
        let mut transfer = fixture("transfer");
        let id = random_id("tr_");
        for (key, value) in [
            ("id", json!(id)),
            ("amount", json!(amount)),
            ("currency", json!(currency)),
            ("destination", json!(destination)),
            ("transfer_group", json!(param(form, "transfer_group"))),
            ("metadata", metadata(form, "metadata")),
            ("reversed", json!(false)),
            ("amount_reversed", json!(0)),
            ("created", json!(now_s())),
        ] {
            transfer[key] = value;
        }
        let txn = Self::book(
            &mut books,
            -amount,
            0,
            &json!(currency),
            "transfer",
            "transfer",
            &transfer,
        );
        transfer["balance_transaction"] = json!(txn);
        books.transfers.insert(id, transfer.clone());
        drop(books);
        self.emit("transfer.created", transfer.clone());
        Ok(transfer)
    }

    /// One GET of the API.
    fn read(&self, path: &[&str], query: &Form) -> Result<Value, Refusal> {
        let books = self.books.lock().unwrap();
        let expand = |what: &str| query.iter().any(|(k, v)| k == "expand[]" && v == what);
        let with_intent = |mut session: Value, books: &Books| {
            if let Some(id) = session["payment_intent"].as_str() {
                session["payment_intent"] = books.intents[id].clone();
            }
            session
        };
        match path {
            ["checkout", "sessions", id] => {
                let session = books
                    .sessions
                    .get(*id)
                    .cloned()
                    .ok_or_else(|| no_such("checkout.session", id))?;
                Ok(if expand("payment_intent") {
                    with_intent(session, &books)
                } else {
                    session
                })
            }
            ["checkout", "sessions"] => {
                let intent = param(query, "payment_intent");
                let data = books
                    .sessions
                    .values()
                    .filter(|s| intent.is_none_or(|i| s["payment_intent"] == i))
                    .map(|s| {
                        if expand("data.payment_intent") {
                            with_intent(s.clone(), &books)
                        } else {
                            s.clone()
                        }
                    })
                    .collect();
                Ok(list("/v1/checkout/sessions", data))
            }
            ["payment_intents", "search"] => {
                // Only the one form ferropay sends: metadata['key']:'value'.
                let query_text = param(query, "query").ok_or_else(|| missing("query"))?;
                let (key, value) = query_text
                    .strip_prefix("metadata['")
                    .and_then(|rest| rest.split_once("']:'"))
                    .and_then(|(key, rest)| Some((key, rest.strip_suffix('\'')?)))
                    .ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            None,
                            "Invalid search query.",
                            Some("query"),
                        )
                    })?;
                let data: Vec<Value> = books
                    .intents
                    .values()
                    .filter(|i| i["metadata"][key] == value)
                    .cloned()
                    .collect();
                Ok(
                    json!({"object": "search_result", "data": data, "has_more": false, "url": "/v1/payment_intents/search"}),
                )
            }
            ["refunds", id] => books
                .refunds
                .get(*id)
                .cloned()
                .ok_or_else(|| no_such("refund", id)),
            ["refunds"] => {
                // Newest first, `limit` (10 by default) at a time, after `starting_after`.
                let intent = param(query, "payment_intent");
                let limit: usize = param(query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(10);
                let mut all: Vec<&Value> = books
                    .refunds
                    .values()
                    .filter(|r| intent.is_none_or(|i| r["payment_intent"] == i))
                    .collect();
                all.sort_by_key(|r| std::cmp::Reverse(r["created"].as_i64()));
                let start = match param(query, "starting_after") {
                    Some(after) => all
                        .iter()
                        .position(|r| r["id"] == after)
                        .map_or(0, |i| i + 1),
                    None => 0,
                };
                let page: Vec<Value> = all
                    .iter()
                    .skip(start)
                    .take(limit)
                    .map(|r| (*r).clone())
                    .collect();
                let has_more = start + page.len() < all.len();
                let mut answer = list("/v1/refunds", page);
                answer["has_more"] = json!(has_more);
                Ok(answer)
            }
            ["disputes", id] => books
                .disputes
                .get(*id)
                .cloned()
                .ok_or_else(|| no_such("dispute", id)),
            ["transfers"] => {
                let group = param(query, "transfer_group");
                let data = books
                    .transfers
                    .values()
                    .filter(|t| group.is_none_or(|g| t["transfer_group"] == g))
                    .cloned()
                    .collect();
                Ok(list("/v1/transfers", data))
            }
            ["transfers", id] => books
                .transfers
                .get(*id)
                .cloned()
                .ok_or_else(|| no_such("transfer", id)),
            ["payouts"] => {
                let bound = |name: &str| param(query, name).and_then(|v| v.parse::<i64>().ok());
                let (gte, lt) = (bound("arrival_date[gte]"), bound("arrival_date[lt]"));
                let data = books
                    .payouts
                    .values()
                    .filter(|p| {
                        let at = p["arrival_date"].as_i64().unwrap();
                        gte.is_none_or(|g| at >= g) && lt.is_none_or(|l| at < l)
                    })
                    .cloned()
                    .collect();
                Ok(list("/v1/payouts", data))
            }
            ["balance_transactions"] => {
                let payout = param(query, "payout");
                let data = books
                    .balance
                    .iter()
                    .filter(|(_, paid_by)| payout.is_none() || paid_by.as_deref() == payout)
                    .map(|(txn, _)| {
                        let mut txn = txn.clone();
                        if expand("data.source") {
                            let id = txn["source"].as_str().unwrap_or_default().to_owned();
                            let source = [
                                &books.charges,
                                &books.refunds,
                                &books.disputes,
                                &books.transfers,
                                &books.payouts,
                            ]
                            .into_iter()
                            .find_map(|objects| objects.get(&id).cloned());
                            if let Some(source) = source {
                                txn["source"] = source;
                            }
                        }
                        txn
                    })
                    .collect();
                Ok(list("/v1/balance_transactions", data))
            }
            _ => Err(error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                "Unrecognized request URL.",
                None,
            )),
        }
    }
}

/// Stripe's answer to a key it does not take.
fn unauthorized() -> Refusal {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        None,
        "Invalid API Key provided: sk_test_****",
        None,
    )
}

/// Every `/v1/…` request: the key, the injected faults, then the route; POSTs are idempotent on
/// their `Idempotency-Key`.
async fn api(
    State(fake): State<Arc<StripeFake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    if !authorized {
        return unauthorized().into_response();
    }
    match fake.faults.take_api_fault() {
        Some(429) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                None,
            ).into_response();
        }
        Some(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "Sorry, something went wrong. We've already been notified of the problem.",
                None,
            )
            .into_response();
        }
        None => {}
    }
    let path: Vec<&str> = uri.path().trim_start_matches("/v1/").split('/').collect();
    if method == Method::GET {
        let query: Form = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        return match fake.read(&path, &query) {
            Ok(object) => axum::Json(object).into_response(),
            Err(refusal) => refusal.into_response(),
        };
    }
    if method != Method::POST {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            "Unrecognized request URL.",
            None,
        )
        .into_response();
    }
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form && !body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "Invalid request: the body must be application/x-www-form-urlencoded.",
            None,
        )
        .into_response();
    }
    let form: Form = form_urlencoded::parse(&body).into_owned().collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = format!("{} {}", uri.path(), String::from_utf8_lossy(&body));
    if let Some(key) = &key {
        let books = fake.books.lock().unwrap();
        if let Some((first, status, answer)) = books.keys.get(key) {
            if *first != request {
                return error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    &format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                    None,
                ).into_response();
            }
            let mut response = (
                StatusCode::from_u16(*status).unwrap(),
                axum::Json(answer.clone()),
            )
                .into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", "true".parse().unwrap());
            return response;
        }
    }
    if super::take(&fake.faults.unauthorized_before_effect) {
        return unauthorized().into_response();
    }
    let result = match path.as_slice() {
        ["disputes", id] => fake.update_dispute(id, &form),
        ["checkout", "sessions"] => fake.create_session(&form),
        ["checkout", "sessions", id, "expire"] => fake.expire(id),
        ["refunds"] => fake.create_refund(&form),
        ["transfers"] => fake.create_transfer(&form),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            "Unrecognized request URL.",
            None,
        )),
    };
    match result {
        Ok(object) => {
            if let Some(key) = key {
                fake.books
                    .lock()
                    .unwrap()
                    .keys
                    .insert(key, (request, 200, object.clone()));
            }
            fake.faults.accepted(uri.path());
            if super::take(&fake.faults.unauthorized_after_effect) {
                return unauthorized().into_response();
            }
            axum::Json(object).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The hosted page.
async fn page(State(fake): State<Arc<StripeFake>>, Path(id): Path<String>) -> Response {
    if !fake.books.lock().unwrap().sessions.contains_key(&id) {
        return (StatusCode::NOT_FOUND, "Something went wrong").into_response();
    }
    Html(format!(
        "<html><body><h1>Pay</h1><form method=post action=\"/c/pay/{id}\">\
         <input name=card_number><input name=iban><button>Pay</button></form></body></html>"
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct PayForm {
    card_number: Option<String>,
    iban: Option<String>,
}

/// The page's form: paid or processing → back to the success URL; 3-D Secure → the challenge;
/// declined → the page again with the reason (the session stays open).
async fn submit(
    State(fake): State<Arc<StripeFake>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<PayForm>,
) -> Response {
    if !fake.books.lock().unwrap().sessions.contains_key(&id) {
        return (StatusCode::NOT_FOUND, "Something went wrong").into_response();
    }
    let card = form.card_number.filter(|c| !c.is_empty());
    let iban = form.iban.filter(|i| !i.is_empty());
    match fake.pay(&id, card.as_deref(), iban.as_deref()) {
        Ok("3ds") => Redirect::to(&format!("/c/pay/{id}/3ds")).into_response(),
        Ok(_) => Redirect::to(fake.session(&id)["success_url"].as_str().unwrap()).into_response(),
        Err(reason) => (
            StatusCode::PAYMENT_REQUIRED,
            Html(format!("<p>{reason}</p>")),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct ChallengeForm {
    /// `complete` or `fail`, as Stripe's test 3-D Secure page offers.
    outcome: String,
}

async fn challenge(
    State(fake): State<Arc<StripeFake>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ChallengeForm>,
) -> Response {
    if form.outcome == "complete" {
        fake.books.lock().unwrap().challenged.push(id.clone());
        return match fake.pay(&id, Some(CARD_3DS), None) {
            Ok(_) => {
                Redirect::to(fake.session(&id)["success_url"].as_str().unwrap()).into_response()
            }
            Err(reason) => (StatusCode::PAYMENT_REQUIRED, reason).into_response(),
        };
    }
    let mut books = fake.books.lock().unwrap();
    let intent = StripeFake::intent_for(&mut books, &id, "card", "requires_payment_method");
    let object = books.intents.get_mut(&intent).unwrap();
    object["last_payment_error"] =
        json!({"type": "card_error", "code": "payment_intent_authentication_failure"});
    let object = object.clone();
    drop(books);
    fake.emit("payment_intent.payment_failed", object);
    (
        StatusCode::PAYMENT_REQUIRED,
        Html("<p>Authentication failed.</p>"),
    )
        .into_response()
}

/// `Stripe-Signature` for `body` at `t`: `t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`, computed
/// here on its own (not with ferropay's code, which it checks).
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}
