//! The console's payments: a list filtered by checkout, seller, buyer, status and creation
//! date, newest first (keyset on `(created_at_ms, id)`, each filter on an index: a seller's
//! payments are walked through their orders, `payment_orders_seller_created`), and one payment
//! with its orders, refunds, disputes, journal transactions and timeline: created, each job that
//! registered or polled it, each PSP webhook received, each event it caused (status changes,
//! refunds, disputes) with its deliveries to merchants' endpoints, each dispute opened.

use sqlx::Row;

use crate::dispute::list::{DisputeView, of_payment};
use crate::error::Result;
use crate::lists::{Param, Select};
use crate::money::{Currency, format_minor};
use crate::payin::model::{PaymentStatus, PaymentView};
use crate::payin::repo::load_view;
use crate::payin::{poll, register};
use crate::refund::{self, RefundView};
use crate::store::{Store, sql};

use super::ledger::{JournalTransaction, transactions_of_payment};
use super::{Cursor, Keyset, Paged};

/// The list's filters (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub checkout_id: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_id: Option<String>,
    pub status: Option<PaymentStatus>,
    pub created_gte_ms: Option<i64>,
    pub created_lt_ms: Option<i64>,
}

/// A payment as one line of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRow {
    pub id: String,
    pub checkout_id: String,
    pub buyer_id: String,
    pub status: String,
    pub currency: String,
    pub amount_minor: i64,
    pub psp_reference: Option<String>,
    pub created_at_ms: i64,
}

/// A page of payments, newest first, after `after`.
pub async fn list(
    store: &Store,
    filter: &PaymentFilter,
    after: Option<&Cursor>,
) -> Result<Paged<PaymentRow>> {
    let mut select = Select::new(store.backend());
    // A seller's payments are walked through the seller's orders (created with the payment).
    let (from, keyset) = match &filter.seller_id {
        Some(seller_id) => {
            select.condition("o.seller_id = ?", vec![Param::Text(seller_id.clone())]);
            (
                "SELECT p.id, p.checkout_id, p.buyer_id, p.status, p.currency, p.amount_minor, \
                 p.psp_reference, p.created_at_ms, o.payment_id FROM payment_orders o \
                 JOIN payments p ON p.id = o.payment_id",
                Keyset {
                    at: "o.created_at_ms",
                    id: "o.payment_id",
                },
            )
        }
        None => (
            "SELECT p.id, p.checkout_id, p.buyer_id, p.status, p.currency, p.amount_minor, \
             p.psp_reference, p.created_at_ms FROM payments p",
            Keyset {
                at: "p.created_at_ms",
                id: "p.id",
            },
        ),
    };
    select.text_eq("p.checkout_id", &filter.checkout_id);
    select.text_eq("p.buyer_id", &filter.buyer_id);
    if let Some(status) = filter.status {
        select.condition(
            "p.status = ?",
            vec![Param::Text(status.as_str().to_owned())],
        );
    }
    select.created_between(keyset.at, filter.created_gte_ms, filter.created_lt_ms);
    keyset.page(store, select, from, after).await?.read(|row| {
        Ok(PaymentRow {
            id: row.try_get("id")?,
            checkout_id: row.try_get("checkout_id")?,
            buyer_id: row.try_get("buyer_id")?,
            status: row.try_get("status")?,
            currency: row.try_get("currency")?,
            amount_minor: row.try_get("amount_minor")?,
            psp_reference: row.try_get("psp_reference")?,
            created_at_ms: row.try_get("created_at_ms")?,
        })
    })
}

/// What a line of a payment's timeline is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Created,
    Job,
    Webhook,
    Event,
    Delivery,
    Refund,
    Dispute,
    Journal,
}

impl Moment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Job => "job",
            Self::Webhook => "webhook",
            Self::Event => "event",
            Self::Delivery => "delivery",
            Self::Refund => "refund",
            Self::Dispute => "dispute",
            Self::Journal => "journal",
        }
    }
}

/// What a line of the timeline links to, when it has a page of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Dispute(String),
    JournalTransaction(String),
}

/// One line of a payment's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at_ms: i64,
    pub moment: Moment,
    pub title: String,
    pub detail: String,
    pub subject: Option<Subject>,
}

/// Everything the payment's page shows.
#[derive(Clone, Debug)]
pub struct PaymentDetail {
    pub payment: PaymentView,
    pub refunds: Vec<RefundView>,
    /// Oldest first.
    pub disputes: Vec<DisputeView>,
    pub transactions: Vec<JournalTransaction>,
    /// Oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// A payment's page; `NotFound` for no such payment.
pub async fn detail(store: &Store, payment_id: &str) -> Result<PaymentDetail> {
    let payment = load_view(store, payment_id).await?;
    let refunds = refund::list(store, payment_id).await?;
    let disputes = of_payment(store, payment_id).await?;
    let transactions = transactions_of_payment(store, payment_id).await?;
    let created_at_ms: i64 = sqlx::query("SELECT created_at_ms FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(store.pool())
        .await?
        .try_get("created_at_ms")?;

    let mut timeline = vec![TimelineEntry {
        at_ms: created_at_ms,
        moment: Moment::Created,
        title: "created".into(),
        detail: format!(
            "{} orders, {}",
            payment.orders.len(),
            amount(payment.amount, &payment.currency)
        ),
        subject: None,
    }];
    timeline.extend(jobs(store, payment_id).await?);
    timeline.extend(webhooks(store, payment_id).await?);
    let mut aggregates = vec![payment_id.to_owned()];
    aggregates.extend(refunds.iter().map(|r| r.id.clone()));
    timeline.extend(events(store, &aggregates).await?);
    for refund in &refunds {
        timeline.push(TimelineEntry {
            at_ms: crate::lists::parse_time_ms("created_at", &refund.created_at).unwrap_or(0),
            moment: Moment::Refund,
            title: format!("refund {}", refund.id),
            detail: format!(
                "{} of order {}: {}",
                amount(refund.amount, &refund.currency),
                refund.order_id,
                refund.status
            ),
            subject: None,
        });
    }
    for dispute in &disputes {
        timeline.push(TimelineEntry {
            at_ms: crate::lists::parse_time_ms("created_at", &dispute.created_at).unwrap_or(0),
            moment: Moment::Dispute,
            title: format!("dispute {} opened", dispute.id),
            detail: format!(
                "{} disputed ({}): {}",
                amount(dispute.amount, &dispute.currency),
                dispute.reason,
                dispute.status
            ),
            subject: Some(Subject::Dispute(dispute.id.clone())),
        });
    }
    for transaction in &transactions {
        timeline.push(TimelineEntry {
            at_ms: transaction.created_at_ms,
            moment: Moment::Journal,
            title: format!("journal: {}", transaction.kind),
            detail: format!("{} (#{})", transaction.source_ref, transaction.seq),
            subject: Some(Subject::JournalTransaction(transaction.id.clone())),
        });
    }
    // A stable sort keeps, at equal times, the order above (cause before effect).
    timeline.sort_by_key(|entry| entry.at_ms);
    Ok(PaymentDetail {
        payment,
        refunds,
        disputes,
        transactions,
        timeline,
    })
}

/// The jobs that registered the payment's PSP session and polled it.
async fn jobs(store: &Store, payment_id: &str) -> Result<Vec<TimelineEntry>> {
    let rows = sqlx::query(
        "SELECT kind, status, attempts, last_error, created_at_ms, updated_at_ms FROM jobs \
         WHERE kind IN ($1, $2) AND idempotency_key = $3 ORDER BY created_at_ms, id",
    )
    .bind(register::KIND)
    .bind(poll::KIND)
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let last_error: Option<String> = row.try_get("last_error")?;
            let status: String = row.try_get("status")?;
            let attempts: i64 = row.try_get("attempts")?;
            let what = if kind == register::KIND {
                "registered at the PSP"
            } else if attempts == 0 && status == crate::jobs::status::DONE {
                "poll cancelled: the webhook came first"
            } else {
                "polled at the PSP"
            };
            Ok(TimelineEntry {
                at_ms: row.try_get("updated_at_ms")?,
                moment: Moment::Job,
                title: what.to_owned(),
                detail: format!(
                    "job {kind}: {status}, {attempts} attempts{}",
                    last_error
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ),
                subject: None,
            })
        })
        .collect()
}

/// The PSP's webhooks about the payment (the sandbox names it by our id, its reference).
async fn webhooks(store: &Store, payment_id: &str) -> Result<Vec<TimelineEntry>> {
    let rows = sqlx::query(
        "SELECT psp, event_id, event_type, received_at_ms FROM webhook_events \
         WHERE reference = $1 ORDER BY received_at_ms",
    )
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TimelineEntry {
                at_ms: row.try_get("received_at_ms")?,
                moment: Moment::Webhook,
                title: format!(
                    "webhook received: {}",
                    row.try_get::<String, _>("event_type")?
                ),
                detail: format!(
                    "{} event {}, applied",
                    row.try_get::<String, _>("psp")?,
                    row.try_get::<String, _>("event_id")?
                ),
                subject: None,
            })
        })
        .collect()
}

/// The events of the payment and its refunds (each a status change), and their deliveries.
async fn events(store: &Store, aggregate_ids: &[String]) -> Result<Vec<TimelineEntry>> {
    let mut statement = String::from(
        "SELECT o.id, o.topic, o.created_at_ms, d.status AS delivery_status, d.attempts, \
           d.updated_at_ms AS delivered_at_ms, e.url \
         FROM outbox o LEFT JOIN webhook_deliveries d ON d.event_id = o.id \
         LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE o.aggregate_id IN (",
    );
    for i in 1..=aggregate_ids.len() {
        if i > 1 {
            statement.push_str(", ");
        }
        sql::push_param(&mut statement, store.backend(), i);
    }
    statement.push_str(") ORDER BY o.created_at_ms, o.id");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
    for id in aggregate_ids {
        query = query.bind(id.clone());
    }
    let rows = query.fetch_all(store.pool()).await?;
    let mut entries = Vec::new();
    let mut last_event: Option<String> = None;
    for row in &rows {
        let id: String = row.try_get("id")?;
        let topic: String = row.try_get("topic")?;
        if last_event.as_deref() != Some(id.as_str()) {
            entries.push(TimelineEntry {
                at_ms: row.try_get("created_at_ms")?,
                moment: Moment::Event,
                title: format!("event {topic}"),
                detail: id.clone(),
                subject: None,
            });
            last_event = Some(id.clone());
        }
        if let Some(status) = row.try_get::<Option<String>, _>("delivery_status")? {
            entries.push(TimelineEntry {
                at_ms: row.try_get("delivered_at_ms")?,
                moment: Moment::Delivery,
                title: format!("{topic} delivered: {status}"),
                detail: format!(
                    "to {} after {} attempts",
                    row.try_get::<Option<String>, _>("url")?.unwrap_or_default(),
                    row.try_get::<i64, _>("attempts")?
                ),
                subject: None,
            });
        }
    }
    Ok(entries)
}

/// An amount in its currency's units (`12.34 USD`).
fn amount(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(parsed) => format_minor(amount_minor, parsed),
        Err(_) => format!("{amount_minor} {currency}"),
    }
}
