//! [`Ferropay`]: the use cases behind one handle, as the HTTP face and the CLI call them.

use std::sync::Arc;

use crate::api_keys;
use crate::clock::now_s;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::idempotency::{self, KeyScope};
use crate::inbound::ApplyEvent;
use crate::jobs::{JobsConfig, Registry};
use crate::ledger::verify::{VerifyReport, verify};
use crate::outbox::relay::Broker;
use crate::payin::apply::ApplyResult;
use crate::payin::create::{CreateOutcome, create_payment};
use crate::payin::model::PaymentView;
use crate::payin::repo::load_view;
use crate::payin::request::{CreatePaymentInput, NewPayment};
use crate::payin::{poll, register};
use crate::payout::{self, PayoutInput, PayoutView};
use crate::psp::registry::Connectors;
use crate::psp::{Connector, PspEventKind, WebhookAck, WebhookError};
use crate::reconcile::Reconciler;
use crate::refund::{self, RefundInput, RefundView};
use crate::secret::Secret;
use crate::store::Store;
use crate::wallet::{self, WalletBalance};
use crate::webhooks::{self, WebhookConfig};

#[derive(Clone, Debug)]
pub struct FerropayConfig {
    /// Where buyers and PSPs reach us, without a trailing slash (`http://127.0.0.1:8080`).
    pub public_url: String,
    /// The platform's fee on each order, in basis points (0 to 10,000).
    pub platform_fee_bps: u32,
    /// How many times one request tries to register a PSP session before answering 503.
    pub psp_register_attempts: u32,
    /// A payment still pending this long after its creation is polled at the PSP (and again,
    /// less and less often, while it stays pending).
    pub poll_after_ms: i64,
    /// The job queue: leases (which also bound how long a request may hold its
    /// `Idempotency-Key`), retries, workers.
    pub jobs: JobsConfig,
    /// Webhooks to merchants' endpoints: timeouts, retries, which destinations are allowed.
    pub webhooks: WebhookConfig,
    /// The brokers the outbox is relayed to (some instance runs a relay to each): its lag is
    /// worth reporting. Without a relay the outbox is the record and only grows.
    pub outbox_relays: Vec<Broker>,
    /// The money engine's batching.
    pub engine: EngineConfig,
    /// A UTC day's settlement file is final this long after midnight (negative in tests that
    /// reconcile the day they paid on): [`crate::reconcile::days`].
    pub reconcile_day_close_lag_ms: i64,
}

/// The default for `poll_after_ms`: long enough that the webhook has nearly always come first.
pub const DEFAULT_POLL_AFTER_MS: i64 = 60_000;

impl Default for FerropayConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            platform_fee_bps: 0,
            psp_register_attempts: 3,
            poll_after_ms: DEFAULT_POLL_AFTER_MS,
            jobs: JobsConfig::default(),
            outbox_relays: Vec::new(),
            engine: EngineConfig::default(),
            webhooks: WebhookConfig::default(),
            reconcile_day_close_lag_ms: 0,
        }
    }
}

/// ferropay's use cases over one store and its PSP connectors. Cheap to clone.
#[derive(Clone)]
pub struct Ferropay {
    pub store: Store,
    /// The process's money engine: every effect that moves money goes through it.
    pub engine: Engine,
    /// The PSPs configured, and the rule that picks one per payment.
    pub connectors: Arc<Connectors>,
    pub config: Arc<FerropayConfig>,
}

/// Why a webhook was refused (all answered 400, nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum WebhookRejection {
    #[error("no PSP named `{0}`")]
    UnknownPsp(String),
    #[error(transparent)]
    Verify(#[from] WebhookError),
    #[error(transparent)]
    Apply(#[from] Error),
}

impl Ferropay {
    /// Starts the service's money engine too (on the current tokio runtime).
    pub fn new(store: Store, connectors: Connectors, config: FerropayConfig) -> Result<Self> {
        if config.platform_fee_bps > 10_000 {
            return Err(Error::invalid("platform_fee_bps", "must be 0 to 10000"));
        }
        if config.poll_after_ms < 1 {
            return Err(Error::invalid("poll_after_ms", "must be at least 1"));
        }
        if config.jobs.lease_ms < 100 {
            return Err(Error::invalid("lease_ms", "must be at least 100"));
        }
        let mut config = config;
        config.public_url = config.public_url.trim_end_matches('/').to_owned();
        let engine = Engine::start(store.clone(), config.engine.clone())?;
        Ok(Self {
            store,
            engine,
            connectors: Arc::new(connectors),
            config: Arc::new(config),
        })
    }

    /// The API key (id and scopes) of a bearer secret.
    pub async fn authenticate(&self, bearer_secret: &Secret) -> Result<api_keys::Principal> {
        api_keys::authenticate(&self.store, bearer_secret).await
    }

    /// `POST /v1/payments`: `body` is the parsed JSON, `input` its typed form.
    pub async fn create_payment(
        &self,
        api_key_id: &str,
        idempotency_key: Option<&str>,
        body: &serde_json::Value,
        input: CreatePaymentInput,
    ) -> Result<CreateOutcome> {
        let key = idempotency::parse_key(idempotency_key)?;
        let payment = NewPayment::parse(input)?;
        let scope = KeyScope {
            api_key_id: api_key_id.to_owned(),
            key,
        };
        create_payment(self, &scope, &payment, &idempotency::fingerprint(body)).await
    }

    pub async fn payment(&self, payment_id: &str) -> Result<PaymentView> {
        load_view(&self.store, payment_id).await
    }

    /// The connector of the PSP named `psp`, for its webhook route.
    pub fn webhook_connector(&self, psp: &str) -> Result<&Arc<dyn Connector>, WebhookRejection> {
        self.connectors
            .get(psp)
            .ok_or_else(|| WebhookRejection::UnknownPsp(psp.to_owned()))
    }

    /// `POST /webhooks/psp/{psp}`: verify on the raw body with that PSP's own check, then apply
    /// each event once (Adyen batches several). Answers each event's result, in order, and how
    /// the PSP wants to be answered.
    pub async fn handle_webhook(
        &self,
        psp: &str,
        signature: Option<&str>,
        raw_body: &[u8],
    ) -> Result<(Vec<ApplyResult>, WebhookAck), WebhookRejection> {
        let connector = self.webhook_connector(psp)?;
        let mut events = connector.verify_webhook(signature, raw_body, now_s())?;
        for event in &mut events {
            // A dispute names the payment as the PSP knows it (Stripe: its PaymentIntent).
            if let PspEventKind::Dispute(update) = &mut event.kind
                && let Some(id) =
                    crate::payin::repo::resolve_payment_id(&self.store, psp, &update.reference)
                        .await?
            {
                update.reference = id;
            }
        }
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            event.check_texts()?;
            let command = ApplyEvent {
                psp: psp.to_owned(),
                event,
                fallback_fee_bps: self.config.platform_fee_bps,
            };
            // A full engine answers 503 with Retry-After: the PSP sends the webhook again (the
            // events applied before are duplicates then).
            results.push(self.engine.try_submit(command).await?);
        }
        Ok((results, connector.webhook_ack()))
    }

    pub async fn wallet(&self, seller_id: &str) -> Result<Vec<WalletBalance>> {
        wallet::balances(&self.store, seller_id).await
    }

    pub async fn verify_ledger(&self) -> Result<VerifyReport> {
        verify(&self.store).await
    }

    /// `POST /v1/payments/{id}/refunds`.
    pub async fn create_refund(
        &self,
        api_key_id: &str,
        idempotency_key: Option<&str>,
        payment_id: &str,
        body: &serde_json::Value,
        input: RefundInput,
    ) -> Result<CreateOutcome> {
        let scope = KeyScope {
            api_key_id: api_key_id.to_owned(),
            key: idempotency::parse_key(idempotency_key)?,
        };
        let fingerprint =
            idempotency::fingerprint(&serde_json::json!({"refund_of": payment_id, "body": body}));
        refund::create(self, &scope, payment_id, &input, &fingerprint).await
    }

    pub async fn refunds(&self, payment_id: &str) -> Result<Vec<RefundView>> {
        load_view(&self.store, payment_id).await?;
        refund::list(&self.store, payment_id).await
    }

    /// `POST /v1/sellers/{seller_id}/payouts`.
    pub async fn create_payout(
        &self,
        api_key_id: &str,
        idempotency_key: Option<&str>,
        seller_id: &str,
        body: &serde_json::Value,
        input: PayoutInput,
    ) -> Result<CreateOutcome> {
        let scope = KeyScope {
            api_key_id: api_key_id.to_owned(),
            key: idempotency::parse_key(idempotency_key)?,
        };
        let fingerprint =
            idempotency::fingerprint(&serde_json::json!({"payout_to": seller_id, "body": body}));
        payout::create(
            &self.store,
            &self.engine,
            self.config.jobs.lease_ms,
            &scope,
            seller_id,
            &input,
            &fingerprint,
        )
        .await
    }

    /// `PUT /v1/sellers/{seller_id}/psp_accounts/{psp}`: where the seller's payouts go at a
    /// configured PSP.
    pub async fn set_seller_psp_account(
        &self,
        seller_id: &str,
        psp: &str,
        account_id: &str,
    ) -> Result<crate::sellers::PspAccountView> {
        if self.connectors.get(psp).is_none() {
            return Err(Error::NotFound(format!("PSP `{psp}`")));
        }
        crate::sellers::set_psp_account(&self.store, seller_id, psp, account_id).await
    }

    pub async fn payouts(&self, seller_id: &str) -> Result<Vec<PayoutView>> {
        payout::list(&self.store, seller_id).await
    }

    /// The handlers of every job kind ferropay runs, for the workers.
    pub fn job_registry(&self) -> Registry {
        let mut registry = Registry::new();
        registry
            .register(register::KIND, register::handler(self))
            .register(poll::KIND, poll::handler(self))
            .register(refund::job::KIND, refund::job::handler(self))
            .register(payout::job::KIND, payout::job::handler(self))
            .register(
                webhooks::DELIVER_KIND,
                webhooks::deliver::DeliverHandler::new(
                    self.store.clone(),
                    self.config.webhooks.clone(),
                ),
            );
        registry
    }

    /// Reconciliation against the default PSP, which it asks about payments the ledger lacks.
    pub fn reconciler(&self) -> Reconciler {
        self.reconciler_for(self.connectors.default_connector())
    }

    /// Reconciliation against the PSP named `psp`, if configured.
    pub fn psp_reconciler(&self, psp: &str) -> Result<Reconciler> {
        Ok(self.reconciler_for(self.connectors.of(psp)?))
    }

    fn reconciler_for(&self, connector: &Arc<dyn Connector>) -> Reconciler {
        Reconciler {
            store: self.store.clone(),
            engine: self.engine.clone(),
            psp: connector.name().to_owned(),
            connector: Some(connector.clone()),
            platform_fee_bps: self.config.platform_fee_bps,
            day_close_lag_ms: self.config.reconcile_day_close_lag_ms,
        }
    }
}
