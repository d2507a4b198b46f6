//! `POST /v1/payments`, pay-in steps 2–4: store the payment event and its orders (with the jobs
//! that register its PSP session and poll it later), run the registration inline, and answer
//! with the redirect URL.
//!
//! The request moves through recovery points saved with its idempotency key: a request that dies
//! or meets a passing PSP failure leaves its key released at the last point reached, and a retry
//! with the same key resumes there. The registration is a queued job ([`super::register`]): when
//! the PSP keeps failing within the request, the answer is 503 and a worker goes on trying in the
//! background; a retried request finds the session registered, or runs the job again. Because
//! the PSP's idempotency key is the payment's id, no path ever makes a second session (I5).

use std::time::{Duration, Instant};

use sqlx::Row;

use super::commands::{CreatePayment, Created, checkout_in_flight};
use super::model::{BuyerView, OrderStatus, OrderView, PaymentStatus, PaymentView};
use super::repo::{load_view_on, lock_payment};
use super::request::NewPayment;
use super::{poll, register};
use crate::clock::{now_ms, rfc3339_from_ms};
use crate::engine::view::{NewOrderRow, NewPaymentRow};
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, KeyScope, RecoveryPoint};
use crate::ids::new_id;
use crate::jobs::{self, ClaimedJob, JobError};
use crate::money::Money;
use crate::service::Ferropay;
use crate::store::bulk::{Col, json_rows, to_param};
use crate::store::{Tx, is_unique_violation};

/// How often a request that finds its registration running in another worker looks again.
const WAIT_STEP_MS: u64 = 50;

pub use crate::idempotency::CreateOutcome;

/// Creates (or resumes, or replays) the payment for `payment` under `scope`.
pub async fn create_payment(
    service: &Ferropay,
    scope: &KeyScope,
    payment: &NewPayment,
    fingerprint: &str,
) -> Result<CreateOutcome> {
    // The common case, a key never seen: two money-engine commands (this one, and the one that
    // stores the session with the answer), each sharing its batch's commit.
    if let Some(fresh) = create_fresh(service, scope, payment, fingerprint).await? {
        let deadline = Instant::now() + Duration::from_millis(service.config.jobs.run_timeout_ms());
        let registered = run_claimed(
            service,
            scope,
            &fresh.payment_id,
            &fresh.job,
            Some(&fresh.created),
            deadline,
        )
        .await;
        return answer_registered(service, scope, &fresh.payment_id, registered).await;
    }

    let store = &service.store;
    let lock_timeout_ms = service.config.jobs.lease_ms;
    let claim = idempotency::claim(store, scope, fingerprint, now_ms(), lock_timeout_ms).await?;
    let (point, payment_id) = match claim {
        Claim::Replay { status, body } => {
            return Ok(CreateOutcome {
                status,
                body,
                replayed: true,
            });
        }
        Claim::Proceed { point, payment_id } => (point, payment_id),
    };

    let payment_id = match (point, payment_id) {
        (RecoveryPoint::Started, _) => match insert_payment(service, scope, payment).await {
            Ok(id) => id,
            Err(error) => {
                // Nothing was written: let the key go, so a later retry is judged afresh.
                idempotency::forget(store, scope).await?;
                return Err(error);
            }
        },
        (RecoveryPoint::PaymentCreated, Some(id)) => id,
        (point, _) => {
            return Err(Error::Internal(format!(
                "idempotency key at {point:?} without an answer"
            )));
        }
    };

    let registered = register_inline(service, scope, &payment_id).await;
    answer_registered(service, scope, &payment_id, registered).await
}

/// Turns the inline registration's outcome into the request's answer; when it is not final,
/// releases the key so that a retry resumes from `payment_created`.
async fn answer_registered(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    registered: Result<Registered>,
) -> Result<CreateOutcome> {
    let answered = match registered {
        Ok(Registered::Answered(outcome)) => Ok(outcome),
        Ok(Registered::Settled(rejection)) => answer(service, scope, payment_id, rejection).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &answered {
        if matches!(error, Error::PspUnavailable { .. }) {
            tracing::warn!(%payment_id, %error, "PSP registration failed; the key is released for a retry");
        }
        // Not final: a retry with the same key resumes from `payment_created`.
        if let Err(release) = idempotency::release(&service.store, scope).await {
            tracing::warn!(%payment_id, error = %release, "could not release the idempotency key; it expires with its lock");
        }
    }
    answered
}

/// A payment created with its key by one engine command, its registration job leased to us.
struct Fresh {
    payment_id: String,
    job: ClaimedJob,
    /// The payment as created (the answer, once the session is stored).
    created: PaymentView,
}

/// Steps 2 and 3's claim, for a key never seen: the key (straight at `payment_created`), the
/// payment and its orders, its registration job already leased to this request and its poll
/// job, as one money-engine command ([`CreatePayment`]) sharing its commit with the batch.
/// `None` when the key exists: the caller takes the general path.
async fn create_fresh(
    service: &Ferropay,
    scope: &KeyScope,
    payment: &NewPayment,
    fingerprint: &str,
) -> Result<Option<Fresh>> {
    // The routing rule first: a PSP the request names that is not configured refuses it before
    // anything is written.
    let psp = service
        .connectors
        .route(payment.psp.as_deref(), payment.currency.code())?
        .name()
        .to_owned();
    let payment_id = new_id("pay");
    let now = now_ms();
    let row = NewPaymentRow {
        id: payment_id.clone(),
        checkout_id: payment.checkout_id.clone(),
        buyer_id: payment.buyer_id.clone(),
        buyer_email: payment.buyer_email.clone(),
        amount: Money::new(payment.total.get(), payment.currency),
        psp,
        return_url: return_url(service, &payment_id, payment),
        platform_fee_bps: i64::from(service.config.platform_fee_bps),
        created_at_ms: now,
        orders: payment
            .orders
            .iter()
            .map(|order| NewOrderRow {
                id: new_id("po"),
                order_id: order.order_id.clone(),
                seller_id: order.seller_id.clone(),
                amount_minor: order.amount.get(),
            })
            .collect(),
    };
    let created = created_view(&row);
    let job = ClaimedJob {
        id: new_id("job"),
        kind: register::KIND.to_owned(),
        idempotency_key: payment_id.clone(),
        payload: serde_json::json!({ "payment_id": payment_id }),
        attempts: 1,
        lease_token: new_id("lease"),
    };
    let command = CreatePayment {
        scope: scope.clone(),
        request_sha256: fingerprint.to_owned(),
        payment: row,
        job: job.clone(),
        lease_until_ms: now + service.config.jobs.lease_ms,
        poll_due_at_ms: now + service.config.poll_after_ms,
    };
    match service.engine.try_submit(command).await {
        Ok(Created::Fresh) => {}
        Ok(Created::KeyExists) => return Ok(None),
        // Another batch wrote the key or the checkout's live payment first: the general path
        // judges the request against what is there.
        Err(Error::Database(error)) if is_unique_violation(&error) => return Ok(None),
        Err(error) => return Err(error),
    }
    metrics::counter!("ferropay_payments_total", "status" => "requires_payment").increment(1);
    Ok(Some(Fresh {
        payment_id,
        job,
        created,
    }))
}

/// Where the buyer returns after the hosted page: the request's URL, or the payment's status
/// page.
fn return_url(service: &Ferropay, payment_id: &str, payment: &NewPayment) -> String {
    payment
        .return_url
        .clone()
        .unwrap_or_else(|| format!("{}/payments/{payment_id}/status", service.config.public_url))
}

/// The payment as [`CreatePayment`] writes it, as the API shows it.
fn created_view(row: &NewPaymentRow) -> PaymentView {
    PaymentView {
        id: row.id.clone(),
        checkout_id: row.checkout_id.clone(),
        status: PaymentStatus::RequiresPayment,
        amount: row.amount.minor(),
        currency: row.amount.currency().code().to_owned(),
        psp: row.psp.clone(),
        redirect_url: None,
        return_url: Some(row.return_url.clone()),
        failure_code: None,
        buyer: BuyerView {
            id: row.buyer_id.clone(),
            email: row.buyer_email.clone(),
        },
        orders: row
            .orders
            .iter()
            .map(|o| OrderView {
                id: o.id.clone(),
                order_id: o.order_id.clone(),
                seller_id: o.seller_id.clone(),
                amount: o.amount_minor,
                status: OrderStatus::NotStarted,
            })
            .collect(),
        created_at: rfc3339_from_ms(row.created_at_ms),
        updated_at: rfc3339_from_ms(row.created_at_ms),
    }
}

/// Step 2: the payment event and its orders, `requires_payment` / `not_started`, in one
/// transaction with its registration and poll jobs and the key's move to `payment_created`.
async fn insert_payment(
    service: &Ferropay,
    scope: &KeyScope,
    payment: &NewPayment,
) -> Result<String> {
    let psp = service
        .connectors
        .route(payment.psp.as_deref(), payment.currency.code())?
        .name()
        .to_owned();
    let payment_id = new_id("pay");
    let now = now_ms();
    let mut tx = service.store.begin_write().await?;
    insert_rows(service, &mut tx, &payment_id, &psp, payment, now).await?;
    // The PSP calls the payment will need are queued with it: they happen even if this
    // request dies right after the commit.
    register::enqueue(&mut tx, &payment_id, now).await?;
    poll::enqueue(&mut tx, &payment_id, now + service.config.poll_after_ms).await?;
    idempotency::mark_payment_created(&mut tx, scope, &payment_id).await?;
    tx.commit().await?;
    metrics::counter!("ferropay_payments_total", "status" => "requires_payment").increment(1);
    Ok(payment_id)
}

/// One order's row, as the bulk insert reads it.
#[derive(serde::Serialize)]
struct OrderRow<'a> {
    id: String,
    position: i64,
    order_id: &'a str,
    seller_id: &'a str,
    amount_minor: i64,
}

/// The payment's row and its orders' rows (one statement each). A checkout that already has a
/// payment in flight or paid is `checkout_in_flight`.
async fn insert_rows(
    service: &Ferropay,
    tx: &mut Tx,
    payment_id: &str,
    psp: &str,
    payment: &NewPayment,
    now: i64,
) -> Result<()> {
    let return_url = return_url(service, payment_id, payment);
    let inserted = sqlx::query(
        "INSERT INTO payments (id, checkout_id, buyer_id, buyer_email, currency, amount_minor, \
         status, psp, return_url, created_at_ms, updated_at_ms, platform_fee_bps) \
         VALUES ($1, $2, $3, $4, $5, $6, 'requires_payment', $7, $8, $9, $9, $10)",
    )
    .bind(payment_id)
    .bind(&payment.checkout_id)
    .bind(&payment.buyer_id)
    .bind(payment.buyer_email.as_deref())
    .bind(payment.currency.code())
    .bind(payment.total.get())
    .bind(psp)
    .bind(&return_url)
    .bind(now)
    .bind(i64::from(service.config.platform_fee_bps))
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            return Err(checkout_in_flight(&payment.checkout_id));
        }
        Err(error) => return Err(error.into()),
    }
    let rows: Vec<OrderRow<'_>> = payment
        .orders
        .iter()
        .enumerate()
        .map(|(position, order)| OrderRow {
            id: new_id("po"),
            position: position as i64,
            order_id: &order.order_id,
            seller_id: &order.seller_id,
            amount_minor: order.amount.get(),
        })
        .collect();
    let source = json_rows(
        service.store.backend(),
        4,
        "o",
        &[
            ("id", Col::Text),
            ("position", Col::Int),
            ("order_id", Col::Text),
            ("seller_id", Col::Text),
            ("amount_minor", Col::Int),
        ],
    );
    // Only fixed text is formatted in: the source's columns and the dialect's JSON expansion.
    let written = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
         amount_minor, status, created_at_ms, updated_at_ms) \
         SELECT o.id, $1, o.position, o.order_id, o.seller_id, o.amount_minor, $2, $3, $3 \
         FROM {source}"
    )))
    .bind(payment_id)
    .bind(OrderStatus::NotStarted.as_str())
    .bind(now)
    .bind(to_param(&rows))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    assert_eq!(
        written,
        rows.len() as u64,
        "every order of payment {payment_id} is written"
    );
    Ok(())
}

/// How the inline registration ended.
enum Registered {
    /// The session was stored, the job completed and the answer saved, in one transaction.
    Answered(CreateOutcome),
    /// The payment no longer waits for its session (`Some`: the PSP refused it for good); the
    /// answer is still to be saved.
    Settled(Option<String>),
}

/// Step 3, inline: claims the payment's registration job and runs it now, with a few quick
/// retries of passing failures, all within the lease. When it stores the session, it saves the
/// answer in the same transaction (`Registered::Answered`); `Settled(Some(message))` when the PSP
/// refused the session for good. When the job is running in another worker, waits for it within the
/// same budget. A passing failure leaves the job queued for the workers and answers
/// `PspUnavailable`.
async fn register_inline(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
) -> Result<Registered> {
    let config = &service.config.jobs;
    let deadline = Instant::now() + Duration::from_millis(config.run_timeout_ms());
    loop {
        if registration_settled(service, payment_id).await? {
            return Ok(Registered::Settled(None));
        }
        if let Some(job) =
            jobs::claim_by_key(&service.store, register::KIND, payment_id, config).await?
        {
            return run_claimed(service, scope, payment_id, &job, None, deadline).await;
        }
        if jobs::status_of(&service.store, register::KIND, payment_id)
            .await?
            .is_none()
        {
            // A payment from before the job queue: give it its job now.
            let mut tx = service.store.begin_write().await?;
            register::enqueue(&mut tx, payment_id, now_ms()).await?;
            tx.commit().await?;
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Error::PspUnavailable {
                message: "the PSP session is being registered by a worker".into(),
                retry_after_s: 1,
            });
        }
        tokio::time::sleep(Duration::from_millis(WAIT_STEP_MS)).await;
    }
}

/// Whether the payment has its session, or no longer waits for one.
async fn registration_settled(service: &Ferropay, payment_id: &str) -> Result<bool> {
    let row = sqlx::query("SELECT status, psp_token FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_optional(service.store.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    let status: String = row.try_get("status")?;
    let token: Option<String> = row.try_get("psp_token")?;
    Ok(token.is_some() || status != PaymentStatus::RequiresPayment.as_str())
}

/// Runs the claimed registration job within `deadline`, retrying passing failures with full
/// jitter, and records its outcome on the queue. `created`: the payment as this request just
/// created it (its session is then stored by the money engine).
async fn run_claimed(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    job: &ClaimedJob,
    created: Option<&PaymentView>,
    deadline: Instant,
) -> Result<Registered> {
    let config = &service.config.jobs;
    let attempts = service.config.psp_register_attempts.max(1);
    let mut backoff_ms = 50_u64;
    let mut last_error = String::from("no attempt fitted in the time allowed");
    for attempt in 1..=attempts {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let inline = register::Inline {
            job,
            scope,
            created,
        };
        match tokio::time::timeout(
            left,
            register::register_with(service, payment_id, Some(inline)),
        )
        .await
        {
            Ok(Ok(Some(answered))) => return Ok(Registered::Answered(answered)),
            Ok(Ok(None)) => {
                jobs::complete(service.store.pool(), job).await?;
                return Ok(Registered::Settled(None));
            }
            // The database is away (or the engine full): no use calling the PSP again now
            // (its session is kept under the payment's id); the request answers 503 at once,
            // and the job's lease runs out for a worker.
            Ok(Err(register::Failure::Store(error))) if error.status() == 503 => {
                return Err(error);
            }
            Ok(Err(register::Failure::Store(error))) => last_error = error.to_string(),
            Ok(Err(register::Failure::Attempt(JobError::Permanent(message)))) => {
                jobs::fail(
                    &service.store,
                    job,
                    &JobError::Permanent(message.clone()),
                    config,
                )
                .await?;
                return Ok(Registered::Settled(Some(message)));
            }
            Ok(Err(register::Failure::Attempt(JobError::Retryable(message)))) => {
                last_error = message
            }
            Err(_) => {
                last_error = "the PSP did not answer in time".into();
                break;
            }
        }
        if attempt < attempts {
            tracing::info!(%payment_id, attempt, %last_error, "retrying PSP registration");
            // Full jitter: anywhere up to the current backoff.
            let sleep_ms = rand::random_range(0..=backoff_ms);
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            backoff_ms = (backoff_ms * 4).min(2_000);
        }
    }
    // Back on the queue: the workers go on from here with the queue's backoff.
    jobs::fail(
        &service.store,
        job,
        &JobError::Retryable(last_error.clone()),
        config,
    )
    .await?;
    Err(Error::PspUnavailable {
        message: last_error,
        retry_after_s: 1,
    })
}

/// Step 4's answer, from the payment as it stands, saved as the key's final answer: 201 with the
/// redirect URL once the session is registered; 502 once the PSP refused it for good.
async fn answer(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    rejection: Option<String>,
) -> Result<CreateOutcome> {
    let mut tx = service.store.begin_write().await?;
    let row = lock_payment(&service.store, &mut tx, payment_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    let status: String = row.try_get("status")?;
    let view = load_view_on(&mut tx, payment_id).await?;
    let (http_status, body) = if view.redirect_url.is_some() {
        let body = serde_json::to_string(&view).map_err(|e| Error::Internal(e.to_string()))?;
        (201, body)
    } else if status == PaymentStatus::Failed.as_str()
        && view.failure_code.as_deref() == Some("psp_rejected")
    {
        let error = Error::PspRejected(
            rejection.unwrap_or_else(|| "the PSP refused to register the payment".into()),
        );
        (error.status(), error.to_body().to_string())
    } else {
        return Err(Error::Internal(format!(
            "payment {payment_id} is {status} without a PSP session"
        )));
    };
    idempotency::finish(&mut tx, scope, http_status, &body).await?;
    tx.commit().await?;
    Ok(CreateOutcome {
        status: http_status,
        body,
        replayed: false,
    })
}
