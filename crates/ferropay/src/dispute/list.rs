//! Reading disputes for the API: one payment's (oldest first) and all of them (newest first,
//! `limit` at a time after `starting_after`, by `(created_at_ms, id)`, optionally by status).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::rfc3339_from_ms;
use crate::error::{Error, Result};
use crate::lists::{Listed, Page};
use crate::psp::DisputeStatus;
use crate::store::Store;

/// A dispute as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DisputeView {
    pub id: String,
    pub payment_id: String,
    /// `needs_response` → `under_review` → `won` | `lost`.
    pub status: String,
    /// The disputed amount, in minor units: what the PSP took back.
    pub amount: i64,
    pub currency: String,
    /// The card network's reason.
    pub reason: String,
    /// The PSP's dispute id (the settlement file's `psp_reference`).
    pub psp_dispute_id: String,
    /// Whether evidence was sent.
    pub evidence_submitted: bool,
    pub created_at: String,
    pub updated_at: String,
}

pub(crate) const COLUMNS: &str = "id, payment_id, status, amount_minor, currency, reason, psp_dispute_id, \
                       evidence, created_at_ms, updated_at_ms";

pub(crate) fn view_of(row: &AnyRow) -> Result<DisputeView> {
    Ok(DisputeView {
        id: row.try_get("id")?,
        payment_id: row.try_get("payment_id")?,
        status: row.try_get("status")?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        reason: row.try_get("reason")?,
        psp_dispute_id: row.try_get("psp_dispute_id")?,
        evidence_submitted: row.try_get::<Option<String>, _>("evidence")?.is_some(),
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        updated_at: rfc3339_from_ms(row.try_get("updated_at_ms")?),
    })
}

/// One dispute by our id.
pub async fn get(store: &Store, dispute_id: &str) -> Result<DisputeView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM disputes WHERE id = $1"
    )))
    .bind(dispute_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("dispute `{dispute_id}`")))?;
    view_of(&row)
}

/// A payment's disputes, oldest first.
pub async fn of_payment(store: &Store, payment_id: &str) -> Result<Vec<DisputeView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM disputes WHERE payment_id = $1 ORDER BY created_at_ms, id"
    )))
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(view_of).collect()
}

/// Every dispute, newest first, a page at a time.
pub async fn all(
    store: &Store,
    status: Option<DisputeStatus>,
    page: &Page,
) -> Result<Listed<DisputeView>> {
    let after = match &page.starting_after {
        None => None,
        Some(id) => {
            let row = sqlx::query("SELECT created_at_ms FROM disputes WHERE id = $1")
                .bind(id)
                .fetch_optional(store.pool())
                .await?
                .ok_or_else(|| Error::invalid("starting_after", "no dispute has this id"))?;
            Some((row.try_get::<i64, _>("created_at_ms")?, id.clone()))
        }
    };
    let fetch = i64::from(page.limit) + 1;
    // Every value bound; the text only varies by which conditions apply.
    let mut conditions = vec!["1 = 1".to_owned()];
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if status.is_some() {
        conditions.push(format!("status = {}", next()));
    }
    if after.is_some() {
        let (at, at2, id) = (next(), next(), next());
        conditions.push(format!(
            "(created_at_ms < {at} OR (created_at_ms = {at2} AND id < {id}))"
        ));
    }
    let limit = next();
    let sql = format!(
        "SELECT {COLUMNS} FROM disputes WHERE {} ORDER BY created_at_ms DESC, id DESC LIMIT {limit}",
        conditions.join(" AND ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(status) = status {
        query = query.bind(status.as_str());
    }
    if let Some((at_ms, id)) = &after {
        query = query.bind(*at_ms).bind(*at_ms).bind(id.clone());
    }
    let rows = query.bind(fetch).fetch_all(store.pool()).await?;
    let mut data: Vec<DisputeView> = rows.iter().map(view_of).collect::<Result<_>>()?;
    let has_more = data.len() > page.limit as usize;
    data.truncate(page.limit as usize);
    Ok(Listed { data, has_more })
}
