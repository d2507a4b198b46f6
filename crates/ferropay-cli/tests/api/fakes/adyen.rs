//! A fake Adyen, after its Checkout API v72 (`adyen/CheckoutService-v72.json`: paths, request
//! and response schemas, whose examples the objects here start from) and its standard
//! notification webhooks (`adyen/Webhooks-v1.json`): JSON requests with `X-API-Key` and
//! `Idempotency-Key` (a key still in flight is refused `422`, errorCode `704`), errors as a
//! `ServiceError` (`status`, `errorCode`, `message`, `errorType`), notifications as a
//! `NotificationRequest` of `NotificationRequestItem`s, each with its HMAC in
//! `additionalData.hmacSignature`, delivered until answered `[accepted]`.
//!
//! Paths: `POST /v72/paymentLinks`, `GET /v72/paymentLinks/{linkId}`,
//! `POST /v72/payments/{paymentPspReference}/refunds`; the Transfers API v4 (its own key):
//! `POST /btl/v4/transfers` (internal transfers, answered `received`, then booked or refused by
//! `balancePlatform.transfer.*` webhooks signed in `HmacSignature`), `GET /btl/v4/transfers`
//! (`balanceAccountId`, `reference`, `createdSince`, `createdUntil`), `GET
//! /btl/v4/transfers/{id}`; report downloads (their own key):
//! `GET /reports/download/MerchantAccount/{merchant}/{file}`, announced by `REPORT_AVAILABLE`. The link's page is `/payByLink/{id}`:
//! card 4111 1111 1111 1111 is authorised, holder name `DECLINED` is refused (the link stays
//! active). The Settlement details report is written by [`AdyenFake::settlement_report`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use super::{Faults, Outgoing, Webhooks, provider_json};

pub const API_KEY: &str = "AQE_fake_adyen_key";
pub const MERCHANT_ACCOUNT: &str = "FerropayMarketplaceECOM";
pub const HMAC_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
/// The Transfers API credential's key (its own role).
pub const TRANSFERS_API_KEY: &str = "AQE_fake_adyen_transfers_key";
/// The Balance Platform webhooks' HMAC key.
pub const BALANCE_PLATFORM_HMAC_KEY: &str =
    "9C0F5D3B2A1E4F6A8B7C6D5E4F3A2B1C0D9E8F7A6B5C4D3E2F1A0B9C8D7E6F5A";
/// The platform's balance account payouts leave from.
pub const PLATFORM_BALANCE_ACCOUNT: &str = "BA00000000000000000000001";
/// A seller balance account whose transfers Adyen refuses.
pub const BLOCKED_BALANCE_ACCOUNT: &str = "BA3227C223222B5BLOCKED01";
/// The report service credential's key.
pub const REPORT_API_KEY: &str = "AQE_fake_adyen_report_key";

/// Adyen's Visa test card.
pub const CARD_OK: &str = "4111111111111111";
/// The holder name that makes Adyen's test platform refuse a payment.
pub const HOLDER_DECLINED: &str = "DECLINED";

/// The fake's processing fees, in minor units: markup 1 %, scheme 0.2 %, interchange 0.3 %.
pub fn fees(gross: i64) -> (i64, i64, i64) {
    (gross / 100, gross / 500, gross * 3 / 1_000)
}

/// The chargeback fee Adyen books (commission on the chargeback line).
pub const CHARGEBACK_FEE: i64 = 750;

#[derive(Default)]
struct Books {
    links: BTreeMap<String, Value>,
    /// Payment PSP reference → (link id, amount, currency, refunded so far).
    payments: BTreeMap<String, (String, i64, String, i64)>,
    /// The report's records, in order: (type, psp reference, merchant reference, modification
    /// reference, currency, gross debit, gross credit, net debit, net credit, fees).
    records: Vec<Record>,
    keys: HashMap<String, (u16, Value)>,
    /// Balance Platform transfers, by id.
    transfers: BTreeMap<String, Value>,
    /// Reports by file name, as published.
    reports: BTreeMap<String, String>,
    /// The `reference` of every refund made.
    refund_references: Vec<String>,
}

#[derive(Clone, Debug)]
struct Record {
    kind: &'static str,
    psp_reference: String,
    merchant_reference: String,
    modification: String,
    currency: String,
    gross_debit: i64,
    gross_credit: i64,
    net_debit: i64,
    net_credit: i64,
    commission: i64,
    markup: i64,
    scheme: i64,
    interchange: i64,
}

pub struct AdyenFake {
    pub base_url: String,
    pub faults: Faults,
    pub webhooks: Webhooks,
    /// Answer this many idempotent requests `422 704` (the same key in flight).
    pub key_conflicts: AtomicU32,
    books: Mutex<Books>,
    sequence: AtomicU32,
}

fn checkout_example(name: &str) -> Value {
    provider_json("adyen/CheckoutService-v72.json")["components"]["examples"][name]["value"].clone()
}

fn notification_example(name: &str) -> Value {
    provider_json("adyen/Webhooks-v1.json")["components"]["examples"][name]["value"]
        ["notificationItems"][0]["NotificationRequestItem"]
        .clone()
}

/// A refusal as Adyen's `ServiceError`.
struct Refusal {
    status: u16,
    body: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            StatusCode::from_u16(self.status).unwrap(),
            axum::Json(self.body),
        )
            .into_response()
    }
}

fn service_error(status: u16, code: &str, message: &str, kind: &str) -> Refusal {
    let psp_reference = format!("{:016}", rand::random_range(0..10_000_000_000_000_000u64));
    Refusal {
        status,
        body: json!({"status": status, "errorCode": code, "message": message,
            "errorType": kind, "pspReference": psp_reference}),
    }
}

/// Minor units as the report writes them: `5.00`.
fn decimal(minor: i64) -> String {
    if minor == 0 {
        return String::new();
    }
    format!("{}.{:02}", minor / 100, minor % 100)
}

impl AdyenFake {
    pub async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Self {
            base_url: format!("http://{addr}"),
            faults: Faults::default(),
            webhooks: Webhooks::default(),
            key_conflicts: AtomicU32::new(0),
            books: Mutex::new(Books::default()),
            sequence: AtomicU32::new(1),
        });
        let router = axum::Router::new()
            .route("/v72/{*path}", any(api))
            .route(
                "/btl/v4/transfers",
                get(list_transfers).post(create_transfer),
            )
            .route("/btl/v4/transfers/{id}", get(get_transfer))
            .route(
                "/reports/download/MerchantAccount/{merchant}/{file}",
                get(download_report),
            )
            .route("/payByLink/{id}", get(page).post(submit))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    /// The Checkout API's base, as `FERROPAY_ADYEN_CHECKOUT_BASE` takes it.
    pub fn checkout_base(&self) -> String {
        format!("{}/v72", self.base_url)
    }

    /// The Transfers API's base, as `FERROPAY_ADYEN_TRANSFERS_BASE` takes it.
    pub fn transfers_base(&self) -> String {
        format!("{}/btl/v4", self.base_url)
    }

    /// Where reports are downloaded, as `FERROPAY_ADYEN_REPORT_BASE` takes it.
    pub fn report_base(&self) -> String {
        format!("{}/reports/download/MerchantAccount", self.base_url)
    }

    /// How many refunds were made with our `reference` (our refund id).
    pub fn refunds_for(&self, reference: &str) -> usize {
        let books = self.books.lock().unwrap();
        books
            .refund_references
            .iter()
            .filter(|r| *r == reference)
            .count()
    }

    /// The transfers made with `reference`.
    pub fn transfers_for(&self, reference: &str) -> Vec<Value> {
        let books = self.books.lock().unwrap();
        books
            .transfers
            .values()
            .filter(|t| t["reference"] == reference)
            .cloned()
            .collect()
    }

    /// Publishes a report under `name` and announces it (`REPORT_AVAILABLE`, its pspReference
    /// the file name, its reason the download URL).
    pub fn publish_report(&self, name: &str, text: String) {
        self.books
            .lock()
            .unwrap()
            .reports
            .insert(name.to_owned(), text);
        let url = format!("{}/{MERCHANT_ACCOUNT}/{name}", self.report_base());
        self.notify(
            "post-REPORT_AVAILABLE-report_available",
            json!({"pspReference": name, "merchantReference": "", "reason": url,
                   "eventCode": "REPORT_AVAILABLE", "success": "true"}),
        );
    }

    /// Sends a Balance Platform webhook about `transfer`, signed over its body in
    /// `HmacSignature`.
    fn notify_transfer(&self, event_type: &str, transfer: &Value) {
        let body = json!({"data": transfer, "environment": "test", "type": event_type,
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()})
        .to_string();
        let signature = sign_body(BALANCE_PLATFORM_HMAC_KEY, body.as_bytes());
        self.webhooks.send(
            &self.faults,
            Outgoing {
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("HmacSignature".into(), signature),
                ],
                body,
            },
        );
    }

    /// `POST /transfers`: an internal transfer from the platform's balance account, answered
    /// `received`; Adyen then books it (or refuses a blocked counterparty) and says so by
    /// webhook.
    fn create_transfer(&self, body: &Value) -> Result<(u16, Value), Refusal> {
        let invalid = |field: &str, detail: &str| Refusal {
            status: 422,
            body: json!({"type": "https://docs.adyen.com/errors/validation", "title":
                "Invalid transfer information provided", "status": 422, "detail": detail,
                "errorCode": "30_002", "invalidFields": [{"name": field, "message": detail}]}),
        };
        if body["balanceAccountId"] != PLATFORM_BALANCE_ACCOUNT {
            return Err(invalid("balanceAccountId", "Balance account not found"));
        }
        if body["category"] != "internal" {
            return Err(invalid("category", "Only internal transfers in this fake"));
        }
        let Some(destination) = body["counterparty"]["balanceAccountId"].as_str() else {
            return Err(invalid("counterparty", "Counterparty is required"));
        };
        let Some(amount) = body["amount"]["value"].as_i64().filter(|a| *a > 0) else {
            return Err(invalid("amount.value", "Amount must be positive"));
        };
        let id = format!("{:016X}", rand::random::<u64>());
        let transfer = json!({
            "id": id, "accountHolder": {"id": "AH00000000000000000000001"},
            "balanceAccount": {"id": PLATFORM_BALANCE_ACCOUNT},
            "amount": {"value": amount, "currency": body["amount"]["currency"]},
            "category": "internal", "direction": "outgoing",
            "counterparty": {"balanceAccountId": destination},
            "reference": body["reference"], "referenceForBeneficiary": body["referenceForBeneficiary"],
            "description": body["description"], "status": "received", "reason": "approved",
            "type": "internalTransfer",
            "creationDate": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339).unwrap(),
        });
        let mut ended = transfer.clone();
        if destination == BLOCKED_BALANCE_ACCOUNT {
            ended["status"] = json!("refused");
            ended["reason"] = json!("counterpartyAccountBlocked");
        } else {
            ended["status"] = json!("booked");
        }
        self.books
            .lock()
            .unwrap()
            .transfers
            .insert(id, ended.clone());
        self.notify_transfer("balancePlatform.transfer.created", &transfer);
        self.notify_transfer("balancePlatform.transfer.updated", &ended);
        Ok((202, transfer))
    }

    /// A fresh 16-character PSP reference.
    fn psp_reference(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::SeqCst);
        format!(
            "88{:014}",
            u64::from(n) * 7_919 + rand::random_range(0..7_000u64)
        )
    }

    /// Sends one notification item, signed, in a `NotificationRequest`.
    fn notify(&self, example: &str, fields: Value) {
        let mut item = notification_example(example);
        for (key, value) in fields.as_object().unwrap() {
            item[key] = value.clone();
        }
        item["merchantAccountCode"] = json!(MERCHANT_ACCOUNT);
        item["eventDate"] = json!(
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
        let mut additional = item["additionalData"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        additional.insert("hmacSignature".into(), json!(sign(HMAC_KEY, &item)));
        item["additionalData"] = Value::Object(additional);
        let body =
            json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]})
                .to_string();
        self.webhooks.send(
            &self.faults,
            Outgoing {
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            },
        );
    }

    pub fn link(&self, id: &str) -> Value {
        self.books.lock().unwrap().links[id].clone()
    }

    /// How many links carry our payment id as their reference.
    pub fn links_for(&self, payment_id: &str) -> usize {
        let books = self.books.lock().unwrap();
        books
            .links
            .values()
            .filter(|l| l["reference"] == payment_id)
            .count()
    }

    /// The PSP reference of the link's authorised payment.
    pub fn payment_of(&self, link_id: &str) -> Option<String> {
        let books = self.books.lock().unwrap();
        books
            .payments
            .iter()
            .find(|(_, (link, ..))| link == link_id)
            .map(|(psp, _)| psp.clone())
    }

    /// The link passes its expiry: `expired` (Adyen sends no notification for it).
    pub fn expire(&self, link_id: &str) {
        self.books.lock().unwrap().links.get_mut(link_id).unwrap()["status"] = json!("expired");
    }

    /// A chargeback on an authorised payment (`CHARGEBACK`); booked in the report.
    pub fn chargeback(&self, payment_psp: &str) -> String {
        let mut books = self.books.lock().unwrap();
        let (link, amount, currency, _) = books.payments[payment_psp].clone();
        let reference = books.links[&link]["reference"].clone();
        let id = self.psp_reference();
        books.records.push(Record {
            kind: "Chargeback",
            psp_reference: payment_psp.to_owned(),
            merchant_reference: reference.as_str().unwrap().to_owned(),
            modification: id.clone(),
            currency: currency.clone(),
            gross_debit: amount,
            gross_credit: 0,
            net_debit: amount + CHARGEBACK_FEE,
            net_credit: 0,
            commission: CHARGEBACK_FEE,
            markup: 0,
            scheme: 0,
            interchange: 0,
        });
        drop(books);
        self.notify(
            "post-CHARGEBACK-chargeback",
            json!({"pspReference": id, "originalReference": payment_psp, "merchantReference": reference,
                   "amount": {"value": amount, "currency": currency}, "eventCode": "CHARGEBACK",
                   "success": "true"}),
        );
        id
    }

    /// The chargeback `dispute` on an authorised payment is reversed (the merchant won):
    /// `CHARGEBACK_REVERSED`, its pspReference the dispute's (as Adyen's example has it), and a
    /// `ChargebackReversed` record in the report carrying the payment's references and its own
    /// modification reference. Answers that reference.
    pub fn chargeback_reversed(&self, payment_psp: &str, dispute: &str) -> String {
        let (reference, amount, currency, id) =
            self.dispute_record(payment_psp, "ChargebackReversed", |amount| {
                (0, amount, 0, amount, 0)
            });
        self.notify(
            "post-CHARGEBACK_REVERSED-chargeback_reversed",
            json!({"pspReference": dispute, "merchantReference": reference,
                   "amount": {"value": amount, "currency": currency},
                   "eventCode": "CHARGEBACK_REVERSED", "success": "true"}),
        );
        id
    }

    /// A second chargeback after a reversal: `SECOND_CHARGEBACK` on `dispute`, and a
    /// `SecondChargeback` record like the reversal's, debited with the chargeback fee.
    pub fn second_chargeback(&self, payment_psp: &str, dispute: &str) -> String {
        let (reference, amount, currency, id) =
            self.dispute_record(payment_psp, "SecondChargeback", |amount| {
                (amount, 0, amount + CHARGEBACK_FEE, 0, CHARGEBACK_FEE)
            });
        self.notify(
            "post-SECOND_CHARGEBACK-second_chargeback",
            json!({"pspReference": dispute, "merchantReference": reference,
                   "amount": {"value": amount, "currency": currency},
                   "eventCode": "SECOND_CHARGEBACK", "success": "true"}),
        );
        id
    }

    /// The merchant loses the chargeback `dispute` in pre-arbitration (`PREARBITRATION_LOST`);
    /// no funds move, so the report has no record of it.
    pub fn prearbitration_lost(&self, payment_psp: &str, dispute: &str) {
        let books = self.books.lock().unwrap();
        let (link, amount, currency, _) = books.payments[payment_psp].clone();
        let reference = books.links[&link]["reference"].clone();
        drop(books);
        self.notify(
            "post-PREARBITRATION_LOST-prearbitration_lost",
            json!({"pspReference": dispute, "merchantReference": reference,
                   "amount": {"value": amount, "currency": currency},
                   "eventCode": "PREARBITRATION_LOST", "success": "true"}),
        );
    }

    /// Books a record of `kind` about the payment's whole amount (`amounts`: gross debit, gross
    /// credit, net debit, net credit, commission); answers our reference, the amount, the
    /// currency and the record's own reference.
    fn dispute_record(
        &self,
        payment_psp: &str,
        kind: &'static str,
        amounts: impl Fn(i64) -> (i64, i64, i64, i64, i64),
    ) -> (Value, i64, String, String) {
        let mut books = self.books.lock().unwrap();
        let (link, amount, currency, _) = books.payments[payment_psp].clone();
        let reference = books.links[&link]["reference"].clone();
        let id = self.psp_reference();
        let (gross_debit, gross_credit, net_debit, net_credit, commission) = amounts(amount);
        books.records.push(Record {
            kind,
            psp_reference: payment_psp.to_owned(),
            merchant_reference: reference.as_str().unwrap().to_owned(),
            modification: id.clone(),
            currency: currency.clone(),
            gross_debit,
            gross_credit,
            net_debit,
            net_credit,
            commission,
            markup: 0,
            scheme: 0,
            interchange: 0,
        });
        (reference, amount, currency, id)
    }

    /// Closes the batch: its Settlement details report (`settlement_detail_report_batch_N.csv`)
    /// with a monthly Fee line and the MerchantPayout of what is left.
    pub fn settlement_report(&self, batch: u32, fee_minor: i64) -> String {
        // What the batch closes over: the records since the last report.
        let records = std::mem::take(&mut self.books.lock().unwrap().records);
        let mut out = String::from(
            "Company Account,Merchant Account,Psp Reference,Merchant Reference,Payment Method,\
Creation Date,TimeZone,Type,Modification Reference,Gross Currency,Gross Debit (GC),Gross Credit (GC),\
Exchange Rate,Net Currency,Net Debit (NC),Net Credit (NC),Commission (NC),Markup (NC),Scheme Fees (NC),\
Interchange (NC),Payment Method Variant,Modification Merchant Reference,Batch Number,Reserved4,\
Reserved5,Reserved6,Reserved7,Reserved8,Reserved9,Reserved10\n",
        );
        let when = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .unwrap();
        let mut balance = 0_i64;
        let mut currency = "USD".to_owned();
        for r in &records {
            balance += r.net_credit - r.net_debit;
            currency = r.currency.clone();
            out.push_str(&format!(
                "FerropayCompany,{MERCHANT_ACCOUNT},{},{},visa,{when},UTC,{},{},{},{},{},1,{},{},{},{},{},{},{},visaclassic,,{batch},,,,,,,\n",
                r.psp_reference, r.merchant_reference, r.kind, r.modification, r.currency,
                decimal(r.gross_debit), decimal(r.gross_credit), r.currency,
                decimal(r.net_debit), decimal(r.net_credit), decimal(r.commission),
                decimal(r.markup), decimal(r.scheme), decimal(r.interchange),
            ));
        }
        out.push_str(&format!(
            "FerropayCompany,{MERCHANT_ACCOUNT},,,,{when},UTC,Fee,Transaction Fees,{currency},,,,{currency},{},,,,,,,,{batch},,,,,,,\n",
            decimal(fee_minor)
        ));
        balance -= fee_minor;
        if balance <= 0 {
            // Nothing to pay out: the negative balance is carried to the next batch.
            return out;
        }
        out.push_str(&format!(
            "FerropayCompany,{MERCHANT_ACCOUNT},,,,{when},UTC,MerchantPayout,TX{batch:08}XT,{currency},,,,{currency},{},,,,,,,,{batch},,,,,,,\n",
            decimal(balance)
        ));
        out
    }

    fn create_link(&self, body: &Value) -> Result<(u16, Value), Refusal> {
        if body["merchantAccount"] != MERCHANT_ACCOUNT {
            return Err(service_error(
                403,
                "901",
                "Invalid Merchant Account",
                "security",
            ));
        }
        for required in ["reference", "amount"] {
            if body[required].is_null() {
                return Err(service_error(
                    422,
                    "130",
                    &format!("Required field '{required}' is not provided."),
                    "validation",
                ));
            }
        }
        if !body["amount"]["value"].is_i64() || !body["amount"]["currency"].is_string() {
            return Err(service_error(
                422,
                "100",
                "Structure Amount contains the following unknown fields or is invalid",
                "validation",
            ));
        }
        let id = format!("PL{:016X}", rand::random::<u64>());
        let mut link = checkout_example("post-paymentLinks-basic-201");
        let object = link.as_object_mut().unwrap();
        for drop in [
            "billingAddress",
            "deliveryAddress",
            "countryCode",
            "shopperEmail",
            "shopperLocale",
            "shopperReference",
        ] {
            object.remove(drop);
        }
        for (key, value) in [
            ("id", json!(id)),
            ("amount", body["amount"].clone()),
            ("merchantAccount", json!(MERCHANT_ACCOUNT)),
            ("reference", body["reference"].clone()),
            ("returnUrl", body["returnUrl"].clone()),
            ("description", body["description"].clone()),
            ("status", json!("active")),
            ("url", json!(format!("{}/payByLink/{id}", self.base_url))),
            ("expiresAt", json!("2099-01-01T00:00:00Z")),
        ] {
            object.insert(key.to_owned(), value);
        }
        self.books.lock().unwrap().links.insert(id, link.clone());
        Ok((201, link))
    }

    fn refund(&self, payment: &str, body: &Value) -> Result<(u16, Value), Refusal> {
        if body["merchantAccount"] != MERCHANT_ACCOUNT {
            return Err(service_error(
                403,
                "901",
                "Invalid Merchant Account",
                "security",
            ));
        }
        let amount = body["amount"]["value"]
            .as_i64()
            .ok_or_else(|| service_error(422, "137", "Invalid amount specified", "validation"))?;
        let mut books = self.books.lock().unwrap();
        let Some((link, captured, currency, refunded)) = books.payments.get(payment).cloned()
        else {
            return Err(service_error(
                422,
                "167",
                "Original pspReference required for this operation",
                "validation",
            ));
        };
        let id = self.psp_reference();
        let reference = body["reference"].clone();
        let mut answer = checkout_example("post-payments-paymentPspReference-refunds-refund-201");
        answer["merchantAccount"] = json!(MERCHANT_ACCOUNT);
        answer["paymentPspReference"] = json!(payment);
        answer["pspReference"] = json!(id);
        answer["reference"] = reference.clone();
        answer["amount"] = body["amount"].clone();
        // Accepted now ("received"); the outcome comes by REFUND notification.
        books
            .refund_references
            .push(reference.as_str().unwrap_or_default().to_owned());
        let succeeded = refunded + amount <= captured;
        if succeeded {
            books.payments.get_mut(payment).unwrap().3 += amount;
            let merchant = books.links[&link]["reference"].as_str().unwrap().to_owned();
            books.records.push(Record {
                kind: "Refunded",
                psp_reference: payment.to_owned(),
                merchant_reference: merchant,
                modification: id.clone(),
                currency: currency.clone(),
                gross_debit: amount,
                gross_credit: 0,
                net_debit: amount,
                net_credit: 0,
                commission: 0,
                markup: 0,
                scheme: 0,
                interchange: 0,
            });
        }
        drop(books);
        self.notify(
            "post-REFUND-refund",
            json!({"pspReference": id, "originalReference": payment, "merchantReference": reference,
                   "amount": body["amount"], "eventCode": "REFUND",
                   "success": if succeeded { "true" } else { "false" },
                   "reason": if succeeded { "" } else { "Insufficient balance on payment" }}),
        );
        Ok((201, answer))
    }

    /// The shopper pays the link (the page's form).
    fn pay(&self, link_id: &str, card: &str, holder: &str) -> Result<(), &'static str> {
        let mut books = self.books.lock().unwrap();
        let link = books.links.get(link_id).cloned().ok_or("Link not found")?;
        if link["status"] != "active" {
            return Err("This link is no longer active.");
        }
        let psp = self.psp_reference();
        let amount = link["amount"]["value"].as_i64().unwrap();
        let currency = link["amount"]["currency"].as_str().unwrap().to_owned();
        let refused = card.replace(' ', "") != CARD_OK || holder == HOLDER_DECLINED;
        if !refused {
            books.links.get_mut(link_id).unwrap()["status"] = json!("completed");
            books.payments.insert(
                psp.clone(),
                (link_id.to_owned(), amount, currency.clone(), 0),
            );
            let (markup, scheme, interchange) = fees(amount);
            books.records.push(Record {
                kind: "Settled",
                psp_reference: psp.clone(),
                merchant_reference: link["reference"].as_str().unwrap().to_owned(),
                modification: self.psp_reference(),
                currency: currency.clone(),
                gross_debit: 0,
                gross_credit: amount,
                net_debit: 0,
                net_credit: amount - markup - scheme - interchange,
                commission: 0,
                markup,
                scheme,
                interchange,
            });
        }
        drop(books);
        self.notify(
            "post-AUTHORISATION-authorisation",
            json!({"pspReference": psp, "merchantReference": link["reference"],
                   "amount": {"value": amount, "currency": currency}, "eventCode": "AUTHORISATION",
                   "paymentMethod": "visa", "success": if refused { "false" } else { "true" },
                   "reason": if refused { "Refused" } else { "" }}),
        );
        if refused { Err("Refused") } else { Ok(()) }
    }
}

/// Adyen's answer to an API key it does not take.
fn unauthorized() -> Refusal {
    service_error(
        401,
        "000",
        "HTTP Status Response - Unauthorized",
        "security",
    )
}

async fn api(
    State(fake): State<Arc<AdyenFake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return unauthorized().into_response();
    }
    match fake.faults.take_api_fault() {
        Some(429) => {
            return service_error(429, "429", "Too many requests", "validation").into_response();
        }
        Some(_) => {
            return service_error(500, "905", "Payment details are not supported", "internal")
                .into_response();
        }
        None => {}
    }
    let path: Vec<&str> = uri.path().trim_start_matches("/v72/").split('/').collect();
    if method == Method::GET {
        return match path.as_slice() {
            ["paymentLinks", id] => match fake.books.lock().unwrap().links.get(*id) {
                Some(link) => axum::Json(link.clone()).into_response(),
                None => service_error(422, "14_012", "Payment link not found", "validation")
                    .into_response(),
            },
            _ => service_error(404, "000", "Not found", "validation").into_response(),
        };
    }
    let Ok(json_body) = serde_json::from_slice::<Value>(&body) else {
        return service_error(400, "702", "Unexpected input", "validation").into_response();
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &key {
        if fake
            .key_conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return service_error(
                422,
                "704",
                "request already processed or in progress",
                "validation",
            )
            .into_response();
        }
        if let Some((status, answer)) = fake.books.lock().unwrap().keys.get(key) {
            return (
                StatusCode::from_u16(*status).unwrap(),
                axum::Json(answer.clone()),
            )
                .into_response();
        }
    }
    if super::take(&fake.faults.unauthorized_before_effect) {
        return unauthorized().into_response();
    }
    let result = match path.as_slice() {
        ["paymentLinks"] => fake.create_link(&json_body),
        ["payments", psp, "refunds"] => fake.refund(psp, &json_body),
        _ => Err(service_error(404, "000", "Not found", "validation")),
    };
    match result {
        Ok((status, answer)) => {
            if let Some(key) = key {
                fake.books
                    .lock()
                    .unwrap()
                    .keys
                    .insert(key, (status, answer.clone()));
            }
            fake.faults.accepted(uri.path());
            if super::take(&fake.faults.unauthorized_after_effect) {
                return unauthorized().into_response();
            }
            (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn page(State(fake): State<Arc<AdyenFake>>, Path(id): Path<String>) -> Response {
    if !fake.books.lock().unwrap().links.contains_key(&id) {
        return (StatusCode::NOT_FOUND, "Link not found").into_response();
    }
    Html(format!(
        "<html><body><form method=post action=\"/payByLink/{id}\"><input name=card_number>\
         <input name=holder_name><button>Pay</button></form></body></html>"
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct PayForm {
    card_number: String,
    #[serde(default)]
    holder_name: String,
}

async fn submit(
    State(fake): State<Arc<AdyenFake>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<PayForm>,
) -> Response {
    match fake.pay(&id, &form.card_number, &form.holder_name) {
        Ok(()) => match fake.link(&id)["returnUrl"].as_str() {
            Some(url) => Redirect::to(url).into_response(),
            None => Html("<p>Paid</p>").into_response(),
        },
        Err(reason) => (StatusCode::OK, Html(format!("<p>{reason}</p>"))).into_response(),
    }
}

/// The Transfers API's own key, its faults, its idempotency.
fn transfers_authorized(headers: &HeaderMap) -> bool {
    headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(TRANSFERS_API_KEY)
}

async fn create_transfer(
    State(fake): State<Arc<AdyenFake>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !transfers_authorized(&headers) {
        return unauthorized().into_response();
    }
    if let Some(status) = fake.faults.take_api_fault() {
        return service_error(status, "000", "Try again later", "internal").into_response();
    }
    let Ok(json_body) = serde_json::from_slice::<Value>(&body) else {
        return service_error(400, "702", "Unexpected input", "validation").into_response();
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("transfers:{k}"));
    if let Some(key) = &key
        && let Some((status, answer)) = fake.books.lock().unwrap().keys.get(key)
    {
        return (
            StatusCode::from_u16(*status).unwrap(),
            axum::Json(answer.clone()),
        )
            .into_response();
    }
    if super::take(&fake.faults.unauthorized_before_effect) {
        return unauthorized().into_response();
    }
    match fake.create_transfer(&json_body) {
        Ok((status, answer)) => {
            if let Some(key) = key {
                fake.books
                    .lock()
                    .unwrap()
                    .keys
                    .insert(key, (status, answer.clone()));
            }
            fake.faults.accepted(uri.path());
            if super::take(&fake.faults.unauthorized_after_effect) {
                return unauthorized().into_response();
            }
            (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /transfers`: by `balanceAccountId` (required here), `reference`, and the creation window
/// `createdSince`/`createdUntil` (both required, as at Adyen).
async fn list_transfers(
    State(fake): State<Arc<AdyenFake>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !transfers_authorized(&headers) {
        return unauthorized().into_response();
    }
    for required in ["balanceAccountId", "createdSince", "createdUntil"] {
        if !query.contains_key(required) {
            return service_error(
                422,
                "30_001",
                &format!("Missing query parameter {required}"),
                "validation",
            )
            .into_response();
        }
    }
    let rfc = |name: &str| {
        time::OffsetDateTime::parse(&query[name], &time::format_description::well_known::Rfc3339)
    };
    let (Ok(since), Ok(until)) = (rfc("createdSince"), rfc("createdUntil")) else {
        return service_error(422, "30_001", "Invalid date", "validation").into_response();
    };
    let books = fake.books.lock().unwrap();
    let data: Vec<Value> = books
        .transfers
        .values()
        .filter(|t| t["balanceAccount"]["id"] == query["balanceAccountId"].as_str())
        .filter(|t| {
            query
                .get("reference")
                .is_none_or(|r| t["reference"] == r.as_str())
        })
        .filter(|t| {
            let at = time::OffsetDateTime::parse(
                t["creationDate"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            at >= since && at <= until
        })
        .cloned()
        .collect();
    axum::Json(json!({"data": data, "_links": {}})).into_response()
}

async fn get_transfer(
    State(fake): State<Arc<AdyenFake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !transfers_authorized(&headers) {
        return unauthorized().into_response();
    }
    match fake.books.lock().unwrap().transfers.get(&id) {
        Some(transfer) => axum::Json(transfer.clone()).into_response(),
        None => service_error(404, "30_404", "Transfer not found", "validation").into_response(),
    }
}

/// A published report, with the report credential's key.
async fn download_report(
    State(fake): State<Arc<AdyenFake>>,
    Path((merchant, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(REPORT_API_KEY) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    if let Some(status) = fake.faults.take_api_fault() {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    match fake.books.lock().unwrap().reports.get(&file) {
        Some(text) if merchant == MERCHANT_ACCOUNT => (
            [(axum::http::header::CONTENT_TYPE, "text/csv")],
            text.clone(),
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

/// Base64(HMAC-SHA256(hex key, body)): the Balance Platform webhooks' `HmacSignature`, computed
/// here on its own.
pub fn sign_body(hex_key: &str, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let key = hex::decode(hex_key).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Adyen's HMAC of an item, computed here on its own (not with ferropay's code, which it checks).
pub fn sign(hex_key: &str, item: &Value) -> String {
    use base64::Engine;
    use hmac::Mac;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let payload = [
        text(&item["pspReference"]),
        text(&item["originalReference"]),
        text(&item["merchantAccountCode"]),
        text(&item["merchantReference"]),
        text(&item["amount"]["value"]),
        text(&item["amount"]["currency"]),
        text(&item["eventCode"]),
        text(&item["success"]),
    ]
    .join(":");
    let key = hex::decode(hex_key).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(payload.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
