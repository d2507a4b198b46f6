//! The console's disputes: every dispute newest first, filtered by status, payment and seller
//! (keyset on `(created_at_ms, id)` over `disputes_status`, `disputes_payment` or
//! `disputes_created`; a seller's disputes are those of the payments with one of its orders),
//! and one dispute with what an operator answering it needs: the disputed payment, the status
//! history (each status the dispute took, as the events it caused record it), the evidence sent,
//! and the journal transactions it caused — its withdrawal and, once won, its reinstatement.

use sqlx::Row;

use crate::dispute::list::{COLUMNS, DisputeView, view_of};
use crate::dispute::{reinstatement_ref, withdrawal_ref};
use crate::error::{Error, Result};
use crate::lists::{Param, Select};
use crate::payin::model::PaymentView;
use crate::payin::repo::load_view;
use crate::psp::DisputeStatus;
use crate::store::Store;

use super::ledger::{JournalTransaction, transactions_by_source_refs};
use super::{Cursor, Keyset, Paged};

/// Disputes newest first.
const NEWEST: Keyset = Keyset {
    at: "created_at_ms",
    id: "id",
};

/// The list's filters (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct DisputeFilter {
    pub status: Option<DisputeStatus>,
    pub payment_id: Option<String>,
    pub seller_id: Option<String>,
}

/// A page of disputes, newest first, after `after`.
pub async fn list(
    store: &Store,
    filter: &DisputeFilter,
    after: Option<&Cursor>,
) -> Result<Paged<DisputeView>> {
    let mut select = Select::new(store.backend());
    if let Some(status) = filter.status {
        select.condition("status = ?", vec![Param::Text(status.as_str().to_owned())]);
    }
    select.text_eq("payment_id", &filter.payment_id);
    if let Some(seller_id) = &filter.seller_id {
        select.condition(
            "payment_id IN (SELECT payment_id FROM payment_orders WHERE seller_id = ?)",
            vec![Param::Text(seller_id.clone())],
        );
    }
    NEWEST
        .page(
            store,
            select,
            &format!("SELECT {COLUMNS} FROM disputes"),
            after,
        )
        .await?
        .read(view_of)
}

/// A status a dispute took, and when: an event it caused (`dispute.created`,
/// `dispute.under_review`, `dispute.won`, `dispute.lost`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub at_ms: i64,
    pub status: String,
    pub event_id: String,
    pub topic: String,
}

/// Everything a dispute's page shows.
#[derive(Clone, Debug)]
pub struct DisputeDetail {
    pub dispute: DisputeView,
    pub psp: String,
    /// The evidence sent to the PSP, when it was.
    pub evidence: Option<String>,
    pub payment: PaymentView,
    /// Oldest first.
    pub history: Vec<StatusChange>,
    /// The withdrawal and, once won, the reinstatement, in the journal's order.
    pub transactions: Vec<JournalTransaction>,
}

/// A dispute's page; `NotFound` for no such dispute.
pub async fn detail(store: &Store, dispute_id: &str) -> Result<DisputeDetail> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, psp FROM disputes WHERE id = $1"
    )))
    .bind(dispute_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("dispute `{dispute_id}`")))?;
    let dispute = view_of(&row)?;
    let payment = load_view(store, &dispute.payment_id).await?;
    let history = history(store, &dispute).await?;
    let transactions = transactions_by_source_refs(
        store,
        &[
            withdrawal_ref(&dispute.psp_dispute_id),
            reinstatement_ref(&dispute.psp_dispute_id),
        ],
    )
    .await?;
    Ok(DisputeDetail {
        psp: row.try_get("psp")?,
        evidence: row.try_get("evidence")?,
        dispute,
        payment,
        history,
        transactions,
    })
}

/// The dispute's events among its payment's (the outbox keeps them by payment, with the
/// dispute's id in the payload).
async fn history(store: &Store, dispute: &DisputeView) -> Result<Vec<StatusChange>> {
    let rows = sqlx::query(
        "SELECT id, topic, payload, created_at_ms FROM outbox \
         WHERE aggregate_id = $1 AND topic LIKE 'dispute.%' ORDER BY created_at_ms, id",
    )
    .bind(&dispute.payment_id)
    .fetch_all(store.pool())
    .await?;
    let mut history = Vec::new();
    for row in &rows {
        let payload: String = row.try_get("payload")?;
        let payload: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        if payload["dispute_id"] != dispute.id.as_str() {
            continue;
        }
        history.push(StatusChange {
            at_ms: row.try_get("created_at_ms")?,
            status: payload["status"].as_str().unwrap_or_default().to_owned(),
            event_id: row.try_get("id")?,
            topic: row.try_get("topic")?,
        });
    }
    Ok(history)
}
