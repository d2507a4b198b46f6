//! The sandbox's whole state, in memory behind one mutex (see `App::store`): sessions and their
//! indexes, refunds, payouts, idempotency records. Handlers lock it for a few statements.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use crate::disputes::Dispute;
use crate::idempotency::IdempotencyRecords;
use crate::payouts::Payout;
use crate::refunds::Refund;
use crate::sessions::Session;
use crate::settlements::SettlementFaults;

#[derive(Default)]
pub(crate) struct Store {
    /// By token.
    pub(crate) sessions: HashMap<String, Session>,
    /// PSP reference → token.
    pub(crate) tokens_by_psp_reference: HashMap<String, String>,
    /// Merchant reference → tokens, oldest first.
    pub(crate) tokens_by_reference: HashMap<String, Vec<String>>,
    /// (deadline, token) of sessions created open, in creation order. The TTL is the same for
    /// every session, so this is also deadline order and the sweeper only looks at its front.
    pub(crate) expiry_queue: VecDeque<(Instant, String)>,
    /// By id.
    pub(crate) refunds: HashMap<String, Refund>,
    /// By id.
    pub(crate) payouts: HashMap<String, Payout>,
    pub(crate) idempotency: IdempotencyRecords,
    /// Disputes (chargebacks), in creation order.
    pub(crate) disputes: Vec<Dispute>,
    /// Injected by `POST /v1/test/settlement_faults`.
    pub(crate) settlement_faults: SettlementFaults,
    /// Merchant references whose webhooks are never sent (`POST /v1/test/lost_webhooks`).
    pub(crate) lost_webhook_references: HashSet<String>,
}

impl Store {
    /// The session named by its token or, failing that, by its PSP reference.
    pub(crate) fn session_by_token_or_psp_reference(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id).or_else(|| {
            self.tokens_by_psp_reference
                .get(id)
                .and_then(|token| self.sessions.get(token))
        })
    }
}

/// A fresh identifier: `prefix` and a UUIDv7 in hex (time-ordered, 74 random bits).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
