//! Pay-in step 3 as a job (`payin.register_session`): register the payment's hosted-page session
//! at the PSP with the payment's id as the PSP's idempotency key, and store the token (step 4).
//!
//! The job is enqueued with the payment, in the same transaction. `POST /v1/payments` runs it
//! inline (see [`super::create`]); when the PSP keeps failing, the request answers 503 and the
//! job stays queued, so a worker keeps registering in the background. However often it runs —
//! inline, by a worker, after a crash — the PSP sees one idempotency key and makes one session.

use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use super::commands::{SessionStored, StoreSession};
use super::model::{OrderStatus, PaymentView};
use super::repo::{load_view_on, lock_payment};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::idempotency::{self, CreateOutcome, KeyScope};
use crate::jobs::{self, ClaimedJob, JobError, JobFuture, JobHandler, JobOutcome};
use crate::psp::{PspError, PspSession, SessionRequest};
use crate::service::Ferropay;
use crate::store::Tx;

/// The job kind.
pub const KIND: &str = "payin.register_session";

/// Queues the registration of `payment_id` inside the transaction that creates the payment.
pub(crate) async fn enqueue(tx: &mut Tx, payment_id: &str, now_ms: i64) -> Result<()> {
    jobs::enqueue(
        tx,
        KIND,
        &json!({ "payment_id": payment_id }),
        payment_id,
        now_ms,
    )
    .await?;
    Ok(())
}

/// The payment's id from a job's payload.
pub(crate) fn payment_id_of(job: &ClaimedJob) -> Result<&str, JobError> {
    job.payload["payment_id"]
        .as_str()
        .ok_or_else(|| JobError::Permanent("the payload has no `payment_id`".into()))
}

/// The worker's handler.
pub struct RegisterSession(pub Ferropay);

impl JobHandler for RegisterSession {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            register_once(&self.0, payment_id_of(job)?).await?;
            Ok(JobOutcome::Done)
        })
    }
}

/// Wraps the handler for the registry.
pub(crate) fn handler(service: &Ferropay) -> Arc<dyn JobHandler> {
    Arc::new(RegisterSession(service.clone()))
}

/// What `POST /v1/payments`, running the registration inline, adds to the transaction that
/// stores the session: its claimed job marked done, and its answer saved with its key — one
/// write transaction where there were three.
pub(crate) struct Inline<'a> {
    pub job: &'a ClaimedJob,
    pub scope: &'a KeyScope,
    /// The payment as this request just created it: the session is then stored by the money
    /// engine ([`StoreSession`]), sharing its commit, and the payment is not read back first.
    pub created: Option<&'a PaymentView>,
}

/// One attempt. `Ok` when the payment has its session (now or from an earlier run) or no longer
/// waits for one. A permanent refusal by the PSP fails the payment before it is returned.
pub(crate) async fn register_once(service: &Ferropay, payment_id: &str) -> Result<(), JobError> {
    register_with(service, payment_id, None)
        .await
        .map(|_| ())
        .map_err(JobError::from)
}

/// How an attempt of [`register_with`] failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The PSP failed, or the payment cannot be registered: retried (or not) as its kind says.
    Attempt(JobError),
    /// The database failed (reading the payment, storing the session): a request running the
    /// job inline does not try again while the database is away; the job's lease runs out and
    /// a worker goes on.
    Store(Error),
}

impl From<JobError> for Failure {
    fn from(error: JobError) -> Self {
        Self::Attempt(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<Failure> for JobError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Attempt(error) => error,
            Failure::Store(error) => error.into(),
        }
    }
}

/// [`register_once`], with the inline request's job and answer: `Ok(Some(answer))` when this
/// attempt stored the session, completed the job and saved the answer in one transaction.
pub(crate) async fn register_with(
    service: &Ferropay,
    payment_id: &str,
    inline: Option<Inline<'_>>,
) -> Result<Option<CreateOutcome>, Failure> {
    let (request, psp) = match inline.as_ref().and_then(|inline| inline.created) {
        Some(created) => (session_request(created), created.psp.clone()),
        None => {
            let row = sqlx::query(
                "SELECT status, psp, psp_token, amount_minor, currency, return_url, checkout_id \
                 FROM payments WHERE id = $1",
            )
            .bind(payment_id)
            .fetch_optional(service.store.pool())
            .await?
            .ok_or_else(|| JobError::Permanent(format!("no payment `{payment_id}`")))?;
            let status: String = row.try_get("status")?;
            let token: Option<String> = row.try_get("psp_token")?;
            if token.is_some() || status != "requires_payment" {
                return Ok(None);
            }
            let request = SessionRequest {
                idempotency_key: payment_id.to_owned(),
                amount_minor: row.try_get("amount_minor")?,
                currency: row.try_get("currency")?,
                reference: payment_id.to_owned(),
                return_url: row
                    .try_get::<Option<String>, _>("return_url")?
                    .unwrap_or_default(),
                description: format!("Checkout {}", row.try_get::<String, _>("checkout_id")?),
            };
            (request, row.try_get("psp")?)
        }
    };
    let connector = service
        .connectors
        .of(&psp)
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    match connector.register_session(&request).await {
        Ok(session) => match inline {
            Some(Inline {
                job,
                scope,
                created: Some(created),
            }) => Ok(store_created_session(service, job, scope, created, session).await?),
            inline => Ok(store_session(service, payment_id, &session, inline).await?),
        },
        Err(PspError::Permanent(message)) => {
            tracing::error!(%payment_id, %message, "the PSP refused the session");
            reject_payment(service, payment_id).await?;
            Err(JobError::Permanent(message).into())
        }
        Err(PspError::Retryable(message)) => {
            tracing::info!(%payment_id, %message, "PSP registration failed; will retry");
            Err(JobError::Retryable(message).into())
        }
    }
}

/// The PSP's session request for a payment (its id is the PSP's idempotency key).
fn session_request(payment: &PaymentView) -> SessionRequest {
    SessionRequest {
        idempotency_key: payment.id.clone(),
        amount_minor: payment.amount,
        currency: payment.currency.clone(),
        reference: payment.id.clone(),
        return_url: payment.return_url.clone().unwrap_or_default(),
        description: format!("Checkout {}", payment.checkout_id),
    }
}

/// Step 4 for the request that created the payment: one money-engine command stores the
/// session, completes the job and saves the answer ([`StoreSession`]). A payment that moved on
/// meanwhile takes the transactional path, which answers from its rows.
async fn store_created_session(
    service: &Ferropay,
    job: &ClaimedJob,
    scope: &KeyScope,
    created: &PaymentView,
    session: PspSession,
) -> Result<Option<CreateOutcome>> {
    let command = StoreSession {
        scope: scope.clone(),
        job: job.clone(),
        session: session.clone(),
        created: created.clone(),
    };
    match service.engine.try_submit(command).await? {
        SessionStored::Answered(answer) => Ok(Some(answer)),
        SessionStored::KeyTaken => Ok(None),
        SessionStored::Stale => {
            let inline = Inline {
                job,
                scope,
                created: None,
            };
            store_session(service, &created.id, &session, Some(inline)).await
        }
    }
}

/// Step 4: the token and hosted-page URL, stored before anyone can see the page; the orders
/// move to `executing`.
async fn store_session(
    service: &Ferropay,
    payment_id: &str,
    session: &PspSession,
    inline: Option<Inline<'_>>,
) -> Result<Option<CreateOutcome>> {
    let now = now_ms();
    let mut tx = service.store.begin_write().await?;
    // The update locks the row and says what the session must match; a mismatch rolls it back.
    let row = sqlx::query(
        "UPDATE payments SET psp_token = $1, psp_url = $2, \
         psp_reference = COALESCE(psp_reference, $3), updated_at_ms = $4 WHERE id = $5 \
         RETURNING amount_minor, currency",
    )
    .bind(&session.token)
    .bind(&session.url)
    .bind(session.psp_reference.as_deref())
    .bind(now)
    .bind(payment_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let currency: String = row.try_get("currency")?;
    if !session.matches(amount_minor, &currency, payment_id) {
        return Err(Error::Internal(format!(
            "the PSP's session {} does not match payment {payment_id}",
            session.token
        )));
    }
    sqlx::query(
        "UPDATE payment_orders SET status = $1, updated_at_ms = $2 \
         WHERE payment_id = $3 AND status = $4",
    )
    .bind(OrderStatus::Executing.as_str())
    .bind(now)
    .bind(payment_id)
    .bind(OrderStatus::NotStarted.as_str())
    .execute(&mut *tx)
    .await?;
    let mut answered = None;
    if let Some(Inline { job, scope, .. }) = inline {
        // A lease lost meanwhile leaves the job to its new holder, which finds the session.
        jobs::complete(&mut *tx, job).await?;
        let view = load_view_on(&mut tx, payment_id).await?;
        let body = serde_json::to_string(&view).map_err(|e| Error::Internal(e.to_string()))?;
        match idempotency::finish(&mut tx, scope, 201, &body).await {
            Ok(()) => {
                answered = Some(CreateOutcome {
                    status: 201,
                    body,
                    replayed: false,
                })
            }
            // A request that took the key over has answered: the session is stored all the
            // same, and the caller's own answer step says 409.
            Err(Error::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(answered)
}

/// The PSP refused the session for good: the payment fails (`psp_rejected`), and with it the
/// checkout is free for a new payment. Its poll is no longer needed.
async fn reject_payment(service: &Ferropay, payment_id: &str) -> Result<()> {
    let now = now_ms();
    let mut tx = service.store.begin_write().await?;
    lock_payment(&service.store, &mut tx, payment_id).await?;
    let moved = sqlx::query(
        "UPDATE payments SET status = 'failed', failure_code = 'psp_rejected', updated_at_ms = $1 \
         WHERE id = $2 AND status = 'requires_payment' AND psp_token IS NULL",
    )
    .bind(now)
    .bind(payment_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 1 {
        sqlx::query(
            "UPDATE payment_orders SET status = $1, updated_at_ms = $2 WHERE payment_id = $3 \
             AND status IN ('not_started', 'executing')",
        )
        .bind(OrderStatus::Failed.as_str())
        .bind(now)
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        jobs::cancel_queued(&mut tx, super::poll::KIND, payment_id).await?;
        // Receivers hear of this failure as of any other (`payment.failed`).
        let payment =
            sqlx::query("SELECT checkout_id, amount_minor, currency FROM payments WHERE id = $1")
                .bind(payment_id)
                .fetch_one(&mut *tx)
                .await?;
        let event = json!({
            "payment_id": payment_id,
            "checkout_id": payment.try_get::<String, _>("checkout_id")?,
            "status": "failed",
            "amount": payment.try_get::<i64, _>("amount_minor")?,
            "currency": payment.try_get::<String, _>("currency")?,
            "failure_code": "psp_rejected",
        });
        crate::outbox::enqueue(&mut tx, "payment.failed", payment_id, &event, now).await?;
    }
    tx.commit().await?;
    Ok(())
}
