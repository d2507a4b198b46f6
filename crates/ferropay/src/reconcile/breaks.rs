//! Breaks: what did not match, by kind, stored so that an operator can list the open ones and
//! resolve each with a reason. A break's id is derived from its kind and subject, so a later
//! run of the same file finds the same break instead of adding another.

use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::store::{Backend, Store, Tx, sql};

/// The kinds of break (DESIGN.md, "Reconciliation").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The file has a movement the ledger lacks; for a payment we know, reconciliation asks the
    /// PSP and applies the outcome (auto-healed when that posts it).
    MissingInLedger,
    /// The ledger has a capture (or refund) of the file's day(s) that the file lacks.
    MissingInFile,
    AmountMismatch,
    CurrencyMismatch,
    /// The same movement twice in the file.
    DuplicateLine,
    /// A line for a payment we never saw.
    UnknownReference,
    /// A line that is not a well-formed settlement line.
    MalformedLine,
}

impl BreakKind {
    pub const ALL: [Self; 7] = [
        Self::MissingInLedger,
        Self::MissingInFile,
        Self::AmountMismatch,
        Self::CurrencyMismatch,
        Self::DuplicateLine,
        Self::UnknownReference,
        Self::MalformedLine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingInLedger => "missing_in_ledger",
            Self::MissingInFile => "missing_in_file",
            Self::AmountMismatch => "amount_mismatch",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::DuplicateLine => "duplicate_line",
            Self::UnknownReference => "unknown_reference",
            Self::MalformedLine => "malformed_line",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A break found by a run, before it is stored.
#[derive(Clone, Debug, Serialize)]
pub struct FoundBreak {
    pub id: String,
    pub kind: BreakKind,
    pub psp_reference: Option<String>,
    pub merchant_reference: Option<String>,
    pub line_no: Option<u64>,
    pub currency: Option<String>,
    /// What the ledger says, in minor units (where an amount is in question).
    pub expected_amount: Option<i64>,
    /// What the file says.
    pub actual_amount: Option<i64>,
    pub detail: String,
    /// Reconciliation fixed it itself (asked the PSP, applied the outcome): stored resolved.
    pub auto_healed: bool,
    #[serde(skip)]
    pub dedupe_key: String,
}

impl FoundBreak {
    /// A break of `kind` about `subject` (what makes it this break and no other: a ledger source
    /// reference or a line's PSP reference).
    pub fn new(kind: BreakKind, subject: &str, detail: impl Into<String>) -> Self {
        let dedupe_key = format!("{}:{subject}", kind.as_str());
        Self {
            id: break_id(&dedupe_key),
            kind,
            psp_reference: None,
            merchant_reference: None,
            line_no: None,
            currency: None,
            expected_amount: None,
            actual_amount: None,
            detail: detail.into(),
            auto_healed: false,
            dedupe_key,
        }
    }
}

/// `brk_` and 128 bits of SHA-256 of the dedupe key.
fn break_id(dedupe_key: &str) -> String {
    let digest = Sha256::digest(dedupe_key.as_bytes());
    let mut id = String::with_capacity(36);
    id.push_str("brk_");
    for byte in &digest[..16] {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// Resolves the open `missing_in_ledger` breaks whose movement the ledger has now (healed by a
/// later run, by the poller, or by a webhook that came late), saying which run saw it, so that
/// no operator books by hand what is booked already. Answers how many.
pub(crate) async fn resolve_now_posted(store: &Store, run_id: &str) -> Result<u64> {
    // The subject (a ledger source reference) follows the kind and a colon in `dedupe_key`.
    let subject_from = BreakKind::MissingInLedger.as_str().len() + 2;
    let statement = format!(
        "UPDATE reconciliation_breaks SET status = 'resolved', resolution = $1, \
         resolved_at_ms = $2 \
         WHERE status = 'open' AND kind = 'missing_in_ledger' \
           AND EXISTS (SELECT 1 FROM journal_transactions j \
                       WHERE j.source_ref = substr(reconciliation_breaks.dedupe_key, \
                                                   {subject_from}))"
    );
    let mut tx = store.begin_write().await?;
    let resolved = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(format!("the ledger has it now (seen by run {run_id})"))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(resolved)
}

/// Rows per INSERT statement (16 parameters each, far under both databases' limits).
const INSERT_ROWS: usize = 500;

/// Stores `found` within the run's transaction. A break already stored (same id) is left as it
/// is, resolved or not. Answers how many were new.
pub(crate) async fn insert(
    backend: Backend,
    tx: &mut Tx,
    run_id: &str,
    found: &[FoundBreak],
) -> Result<u64> {
    let now = now_ms();
    let mut inserted = 0;
    for rows in found.chunks(INSERT_ROWS) {
        let mut sql = String::from(
            "INSERT INTO reconciliation_breaks (id, run_id, dedupe_key, kind, psp_reference, \
             merchant_reference, line_no, currency, expected_minor, actual_minor, detail, \
             auto_healed, status, resolution, resolved_at_ms, created_at_ms) VALUES ",
        );
        sql::push_value_rows(&mut sql, backend, rows.len(), 16);
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for found in rows {
            let (status, resolution, resolved_at_ms) = if found.auto_healed {
                ("resolved", Some("auto-healed by reconciliation"), Some(now))
            } else {
                ("open", None, None)
            };
            query = query
                .bind(found.id.clone())
                .bind(run_id.to_owned())
                .bind(found.dedupe_key.clone())
                .bind(found.kind.as_str())
                .bind(found.psp_reference.clone())
                .bind(found.merchant_reference.clone())
                .bind(found.line_no.map(|n| n as i64))
                .bind(found.currency.clone())
                .bind(found.expected_amount)
                .bind(found.actual_amount)
                .bind(found.detail.clone())
                .bind(i64::from(found.auto_healed))
                .bind(status)
                .bind(resolution)
                .bind(resolved_at_ms)
                .bind(now);
        }
        inserted += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

/// A stored break, as the CLI and the API show it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BreakView {
    pub id: String,
    pub run_id: String,
    pub kind: String,
    pub psp_reference: Option<String>,
    pub merchant_reference: Option<String>,
    pub line_no: Option<i64>,
    pub currency: Option<String>,
    pub expected_amount: Option<i64>,
    pub actual_amount: Option<i64>,
    pub detail: String,
    pub auto_healed: bool,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

pub(crate) const SELECT_BREAK: &str = "SELECT id, run_id, kind, psp_reference, merchant_reference, line_no, \
     currency, expected_minor, actual_minor, detail, auto_healed, status, resolution, \
     created_at_ms, resolved_at_ms FROM reconciliation_breaks";

pub(crate) fn view(row: &sqlx::any::AnyRow) -> Result<BreakView> {
    let auto_healed: i64 = row.try_get("auto_healed")?;
    let resolved_at_ms: Option<i64> = row.try_get("resolved_at_ms")?;
    Ok(BreakView {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        kind: row.try_get("kind")?,
        psp_reference: row.try_get("psp_reference")?,
        merchant_reference: row.try_get("merchant_reference")?,
        line_no: row.try_get("line_no")?,
        currency: row.try_get("currency")?,
        expected_amount: row.try_get("expected_minor")?,
        actual_amount: row.try_get("actual_minor")?,
        detail: row.try_get("detail")?,
        auto_healed: auto_healed != 0,
        status: row.try_get("status")?,
        resolution: row.try_get("resolution")?,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        resolved_at: resolved_at_ms.map(rfc3339_from_ms),
    })
}

/// Which breaks to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakFilter {
    All,
    Open,
    Resolved,
}

/// The most breaks one listing answers.
pub const LIST_MAX: u32 = 1_000;

/// Breaks, oldest first, at most `limit` (1..=[`LIST_MAX`]).
pub async fn list(store: &Store, filter: BreakFilter, limit: u32) -> Result<Vec<BreakView>> {
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be from 1 to {LIST_MAX}"),
        ));
    }
    let sql = match filter {
        BreakFilter::All => format!("{SELECT_BREAK} ORDER BY created_at_ms, id LIMIT $1"),
        BreakFilter::Open => {
            format!("{SELECT_BREAK} WHERE status = 'open' ORDER BY created_at_ms, id LIMIT $1")
        }
        BreakFilter::Resolved => {
            format!("{SELECT_BREAK} WHERE status = 'resolved' ORDER BY created_at_ms, id LIMIT $1")
        }
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(view).collect()
}

/// The longest resolution reason, in characters.
pub const REASON_MAX_CHARS: usize = 1_000;

/// Marks an open break resolved with the operator's reason. 404 when there is no such break,
/// 409 `break_already_resolved` when it is resolved already.
pub async fn resolve(store: &Store, break_id: &str, reason: &str) -> Result<BreakView> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX_CHARS {
        return Err(Error::invalid(
            "reason",
            format!("must be 1 to {REASON_MAX_CHARS} characters saying why"),
        ));
    }
    let mut tx = store.begin_write().await?;
    let updated = sqlx::query(
        "UPDATE reconciliation_breaks SET status = 'resolved', resolution = $1, \
         resolved_at_ms = $2 WHERE id = $3 AND status = 'open'",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(break_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_BREAK} WHERE id = $1")))
        .bind(break_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("break `{break_id}`")))?;
    let view = view(&row)?;
    if updated == 0 {
        return Err(Error::conflict(
            "break_already_resolved",
            format!(
                "break {break_id} was resolved already: {}",
                view.resolution.as_deref().unwrap_or("")
            ),
        ));
    }
    tx.commit().await?;
    tracing::info!(%break_id, kind = %view.kind, "reconciliation break resolved by an operator");
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_subject() {
        let a = FoundBreak::new(BreakKind::DuplicateLine, "capture:pay_1", "x");
        let again = FoundBreak::new(BreakKind::DuplicateLine, "capture:pay_1", "y");
        let other = FoundBreak::new(BreakKind::AmountMismatch, "capture:pay_1", "x");
        assert_eq!(a.id, again.id);
        assert_ne!(a.id, other.id);
        assert_eq!(a.id.len(), 36);
        assert!(a.id.starts_with("brk_"));
        for kind in BreakKind::ALL {
            assert_eq!(BreakKind::parse(kind.as_str()), Some(kind));
        }
    }
}
