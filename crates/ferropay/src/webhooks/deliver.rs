//! Delivering one event to one endpoint: a job on the durable queue (kind
//! [`super::DELIVER_KIND`], any instance runs it, a crash runs it again). Each attempt POSTs the
//! event as JSON, signed (`Ferropay-Signature`), within the timeout, to the address the guard
//! allows, and is written to the endpoint's delivery log. A 2xx answer ends the delivery; any
//! other outcome is tried again after an exponential backoff with full jitter, for as long as
//! the retry window (3 days) lasts from the delivery's creation. An endpoint that has failed
//! every attempt for a whole window is disabled, and a `webhook_endpoint.disabled` event says so.
//!
//! At least once: a worker that dies after the POST and before writing its outcome sends the
//! event again; receivers dedupe by the event's `id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row;

use super::endpoints::{Endpoint, endpoint_of};
use super::guard::{GuardedResolver, is_public, literal_ip};
use super::signature::{HEADER, sign};
use super::{DELIVER_KIND, WebhookConfig};
use crate::clock::{now_ms, now_s, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::events;
use crate::ids::new_id;
use crate::jobs::{ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::lists::{Listed, Page, page_of};
use crate::store::Store;

/// The job handler of [`DELIVER_KIND`].
pub struct DeliverHandler {
    store: Store,
    config: WebhookConfig,
    http: reqwest::Client,
}

impl DeliverHandler {
    pub fn new(store: Store, config: WebhookConfig) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ferropay-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private_urls,
            }))
            .build()
            .expect("the webhook client builds");
        Arc::new(Self {
            store,
            config,
            http,
        })
    }
}

impl JobHandler for DeliverHandler {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let delivery_id = job.payload["delivery_id"]
                .as_str()
                .ok_or_else(|| JobError::Permanent("no delivery_id in the payload".into()))?;
            self.deliver(delivery_id).await
        })
    }
}

/// What one attempt came to.
struct Attempt {
    status_code: Option<u16>,
    error: Option<String>,
    latency_ms: i64,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.status_code
            .is_some_and(|code| (200..300).contains(&code))
    }
}

impl DeliverHandler {
    async fn deliver(&self, delivery_id: &str) -> Result<JobOutcome, JobError> {
        let row = sqlx::query(
            "SELECT d.event_id, d.status, d.created_at_ms, e.id, e.url, e.enabled, e.secret, \
             e.previous_secret, e.previous_secret_expires_at_ms, e.failing_since_ms, \
             e.deleted_at_ms FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
        )
        .bind(delivery_id)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else {
            return Err(JobError::Permanent(format!("no delivery `{delivery_id}`")));
        };
        let status: String = row.try_get("status")?;
        if status != "pending" {
            return Ok(JobOutcome::Done);
        }
        let endpoint = endpoint_of(&row).map_err(JobError::from)?;
        if !endpoint.enabled || endpoint.deleted {
            self.finish(delivery_id, "failed").await?;
            return Ok(JobOutcome::Done);
        }
        let event_id: String = row.try_get("event_id")?;
        let Some(event) = events::get(&self.store, &event_id).await? else {
            return Err(JobError::Permanent(format!("no event `{event_id}`")));
        };
        let body = serde_json::to_vec(&event)
            .map_err(|e| JobError::Permanent(format!("event `{event_id}`: {e}")))?;
        let attempt = self.send(&endpoint, &body).await;
        let result = if attempt.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        metrics::counter!("ferropay_merchant_webhook_attempts_total", "result" => result)
            .increment(1);
        let now = now_ms();
        self.record(delivery_id, &attempt, now).await?;
        if attempt.succeeded() {
            let mut tx = self.store.begin_write().await?;
            mark(&mut tx, delivery_id, "succeeded", now).await?;
            sqlx::query("UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = $1")
                .bind(&endpoint.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(JobOutcome::Done);
        }
        let failing_since_ms = endpoint.failing_since_ms.unwrap_or(now);
        let window_ms = self.config.retry_window_ms;
        if now - failing_since_ms >= window_ms {
            self.disable(&endpoint, delivery_id, failing_since_ms, now)
                .await?;
            return Ok(JobOutcome::Done);
        }
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since_ms = COALESCE(failing_since_ms, $1) \
             WHERE id = $2",
        )
        .bind(now)
        .bind(&endpoint.id)
        .execute(self.store.pool())
        .await?;
        let created_at_ms: i64 = row.try_get("created_at_ms")?;
        if now - created_at_ms >= window_ms {
            self.finish(delivery_id, "failed").await?;
            return Ok(JobOutcome::Done);
        }
        let attempts: i64 = sqlx::query("SELECT attempts FROM webhook_deliveries WHERE id = $1")
            .bind(delivery_id)
            .fetch_one(self.store.pool())
            .await?
            .try_get("attempts")?;
        let backoff_ms = self
            .config
            .retry
            .backoff_ms(u32::try_from(attempts).unwrap_or(u32::MAX));
        Ok(JobOutcome::RunAgainAt {
            due_at_ms: now.saturating_add(i64::try_from(backoff_ms).unwrap_or(i64::MAX)),
        })
    }

    /// One POST, never an error: what happened is the attempt's record.
    async fn send(&self, endpoint: &Endpoint, body: &[u8]) -> Attempt {
        let started = Instant::now();
        let elapsed =
            |started: Instant| i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        if let Err(error) = self.check_destination(&endpoint.url) {
            return Attempt {
                status_code: None,
                error: Some(error),
                latency_ms: 0,
            };
        }
        let signature = sign(&endpoint.signing_secrets(now_ms()), now_s(), body);
        let sent = self
            .http
            .post(&endpoint.url)
            .header("Content-Type", "application/json")
            .header(HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let code = response.status().as_u16();
                Attempt {
                    status_code: Some(code),
                    error: (!(200..300).contains(&code))
                        .then(|| format!("the endpoint answered {code}")),
                    latency_ms: elapsed(started),
                }
            }
            Err(error) => Attempt {
                status_code: None,
                error: Some(describe(&error)),
                latency_ms: elapsed(started),
            },
        }
    }

    /// Literal IP hosts are not resolved, so the guard's resolver does not see them.
    fn check_destination(&self, url: &str) -> std::result::Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        let host = parsed.host_str().unwrap_or("");
        if !self.config.allow_private_urls
            && let Some(ip) = literal_ip(host)
            && !is_public(ip)
        {
            return Err(format!(
                "{ip} is not a public address (private destinations are not allowed)"
            ));
        }
        Ok(())
    }

    async fn record(&self, delivery_id: &str, attempt: &Attempt, now: i64) -> Result<(), JobError> {
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (id, delivery_id, attempted_at_ms, status_code, \
             latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id("wha"))
        .bind(delivery_id)
        .bind(now)
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, updated_at_ms = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish(&self, delivery_id: &str, status: &str) -> Result<(), JobError> {
        let mut tx = self.store.begin_write().await?;
        mark(&mut tx, delivery_id, status, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables an endpoint that failed for a whole window, and says so with an event (in the
    /// same transaction).
    async fn disable(
        &self,
        endpoint: &Endpoint,
        delivery_id: &str,
        failing_since_ms: i64,
        now: i64,
    ) -> Result<(), JobError> {
        let reason = format!(
            "every delivery failed for {} hours",
            self.config.retry_window_ms / 3_600_000
        );
        let mut tx = self.store.begin_write().await?;
        let disabled = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at_ms = $2 \
             WHERE id = $3 AND enabled = 1",
        )
        .bind(&reason)
        .bind(now)
        .bind(&endpoint.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if disabled == 1 {
            crate::outbox::enqueue(
                &mut tx,
                "webhook_endpoint.disabled",
                &endpoint.id,
                &serde_json::json!({
                    "id": endpoint.id,
                    "url": endpoint.url,
                    "reason": reason,
                    "failing_since": rfc3339_from_ms(failing_since_ms),
                }),
                now,
            )
            .await?;
        }
        mark(&mut tx, delivery_id, "failed", now).await?;
        tx.commit().await?;
        tracing::warn!(endpoint_id = %endpoint.id, "webhook endpoint disabled after failing for the whole retry window");
        Ok(())
    }
}

async fn mark(tx: &mut crate::store::Tx, delivery_id: &str, status: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE webhook_deliveries SET status = $1, updated_at_ms = $2 WHERE id = $3")
        .bind(status)
        .bind(now)
        .bind(delivery_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A transport error in a few words, with its cause (a timeout, a refused connection, the guard).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One delivery in the endpoint's log, with each attempt.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: Vec<AttemptView>,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AttemptView {
    pub attempted_at: String,
    /// The endpoint's HTTP status; `null` when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// An endpoint's delivery log, newest first, paged.
pub async fn deliveries(
    store: &Store,
    endpoint_id: &str,
    page: &Page,
) -> Result<Listed<DeliveryView>> {
    super::endpoints::get(store, endpoint_id).await?;
    let cursor =
        crate::lists::cursor(store, "webhook_deliveries", page.starting_after.as_deref()).await?;
    let mut select = crate::lists::Select::new(store.backend());
    select.text_eq("endpoint_id", &Some(endpoint_id.to_owned()));
    select.after("", crate::lists::Order::NewestFirst, cursor);
    let rows = select
        .fetch(
            store,
            "SELECT id, endpoint_id, event_id, event_type, status, created_at_ms FROM webhook_deliveries",
            "",
            crate::lists::Order::NewestFirst,
            page.limit,
        )
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(delivery_of(store, row).await?);
    }
    Ok(page_of(data, page.limit))
}

pub(crate) async fn delivery_of(store: &Store, row: &sqlx::any::AnyRow) -> Result<DeliveryView> {
    let id: String = row.try_get("id")?;
    let attempts = sqlx::query(
        "SELECT attempted_at_ms, status_code, latency_ms, error FROM webhook_attempts \
         WHERE delivery_id = $1 ORDER BY attempted_at_ms, id",
    )
    .bind(&id)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|a| {
        Ok(AttemptView {
            attempted_at: rfc3339_from_ms(a.try_get("attempted_at_ms")?),
            status_code: a.try_get("status_code")?,
            latency_ms: a.try_get("latency_ms")?,
            error: a.try_get("error")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(DeliveryView {
        id,
        endpoint_id: row.try_get("endpoint_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: row.try_get("status")?,
        attempts,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
    })
}

/// Sends a delivery again now, whatever became of it (a receiver that lost it, or fixed the
/// bug that made it fail): back to `pending`, with a job of its own.
pub async fn redeliver(store: &Store, delivery_id: &str) -> Result<DeliveryView> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let row = sqlx::query("SELECT redeliveries FROM webhook_deliveries WHERE id = $1")
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("webhook delivery `{delivery_id}`")))?;
    let redeliveries: i64 = row.try_get("redeliveries")?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', redeliveries = redeliveries + 1, \
         updated_at_ms = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(delivery_id)
    .execute(&mut *tx)
    .await?;
    crate::jobs::enqueue(
        &mut tx,
        DELIVER_KIND,
        &serde_json::json!({ "delivery_id": delivery_id }),
        &format!("{delivery_id}#{}", redeliveries + 1),
        now,
    )
    .await?;
    tx.commit().await?;
    let row = sqlx::query(
        "SELECT id, endpoint_id, event_id, event_type, status, created_at_ms \
         FROM webhook_deliveries WHERE id = $1",
    )
    .bind(delivery_id)
    .fetch_one(store.pool())
    .await?;
    delivery_of(store, &row).await
}
