//! The console's ledger: the trial balance (the `trial_balance` view over `account_balances`,
//! paged by account and currency), one journal transaction with
//! its postings and hash, the journal transactions of a payment or of a dispute (by their
//! source references), the `daily_settlement` view,
//! and, on demand only (it reads the whole journal), `ledger verify` with the trial balance's
//! total per currency, which is zero when the books balance.

use sqlx::Row;

use crate::error::{Error, Result};
use crate::ledger::verify::{VerifyReport, verify};
use crate::store::Store;

use super::{Paged, by_key};

/// One account's balance in one currency (a row of `trial_balance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountBalance {
    pub account: String,
    pub currency: String,
    pub balance_minor: i64,
    pub postings: i64,
}

/// A page of the trial balance, by account then currency, from the account `from` on (an
/// account name or its beginning: a search) or after the cursor `ACCOUNT~CURRENCY`. The view
/// reads `account_balances` (kept by the money engine with the postings), in its key's order.
pub async fn trial_balance(
    store: &Store,
    from: Option<&str>,
    after: Option<&str>,
) -> Result<Paged<AccountBalance>> {
    by_key(
        store,
        "account",
        "SELECT account, currency, balance_minor, postings FROM trial_balance",
        from,
        after,
    )
    .await?
    .read(|row| {
        Ok(AccountBalance {
            account: row.try_get("account")?,
            currency: row.try_get("currency")?,
            balance_minor: row.try_get("balance_minor")?,
            postings: row.try_get("postings")?,
        })
    })
}

/// A posting of a journal transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingLine {
    pub line_no: i64,
    pub account: String,
    pub currency: String,
    pub amount_minor: i64,
}

/// A journal transaction with its postings and its place in the hash chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalTransaction {
    pub id: String,
    pub seq: i64,
    pub kind: String,
    pub source_ref: String,
    pub payment_id: Option<String>,
    pub created_at_ms: i64,
    pub prev_hash: String,
    pub hash: String,
    pub postings: Vec<PostingLine>,
}

const SELECT_TRANSACTION: &str = "SELECT id, seq, kind, source_ref, payment_id, created_at_ms, \
     prev_hash, hash FROM journal_transactions";

/// One journal transaction; `NotFound` for no such id.
pub async fn transaction(store: &Store, transaction_id: &str) -> Result<JournalTransaction> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT_TRANSACTION} WHERE id = $1"
    )))
    .bind(transaction_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("journal transaction `{transaction_id}`")))?;
    with_postings(store, &row).await
}

/// The journal transactions of a payment, in the journal's order.
pub async fn transactions_of_payment(
    store: &Store,
    payment_id: &str,
) -> Result<Vec<JournalTransaction>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT_TRANSACTION} WHERE payment_id = $1 ORDER BY seq"
    )))
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?;
    let mut transactions = Vec::with_capacity(rows.len());
    for row in &rows {
        transactions.push(with_postings(store, row).await?);
    }
    Ok(transactions)
}

/// The journal transactions posted under any of `source_refs` (each is posted once, by its
/// source reference), in the journal's order.
pub async fn transactions_by_source_refs(
    store: &Store,
    source_refs: &[String],
) -> Result<Vec<JournalTransaction>> {
    let mut transactions = Vec::with_capacity(source_refs.len());
    for source_ref in source_refs {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_TRANSACTION} WHERE source_ref = $1"
        )))
        .bind(source_ref)
        .fetch_optional(store.pool())
        .await?;
        if let Some(row) = row {
            transactions.push(with_postings(store, &row).await?);
        }
    }
    transactions.sort_by_key(|transaction| transaction.seq);
    Ok(transactions)
}

async fn with_postings(store: &Store, row: &sqlx::any::AnyRow) -> Result<JournalTransaction> {
    let id: String = row.try_get("id")?;
    let postings = sqlx::query(
        "SELECT line_no, account, currency, amount_minor FROM postings \
         WHERE transaction_id = $1 ORDER BY line_no",
    )
    .bind(&id)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|p| {
        Ok(PostingLine {
            line_no: p.try_get("line_no")?,
            account: p.try_get("account")?,
            currency: p.try_get("currency")?,
            amount_minor: p.try_get("amount_minor")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let total: i64 = postings.iter().map(|p| p.amount_minor).sum();
    debug_assert_eq!(total, 0, "journal transaction {id} does not balance");
    Ok(JournalTransaction {
        id,
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        source_ref: row.try_get("source_ref")?,
        payment_id: row.try_get("payment_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        postings,
    })
}

/// The trial balance's total in one currency: zero when the books balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyTotal {
    pub currency: String,
    pub accounts: i64,
    pub total_minor: i64,
}

/// What "verify the ledger" shows: `ledger verify`'s report and the trial balance's totals.
#[derive(Debug)]
pub struct Checked {
    pub report: VerifyReport,
    pub totals: Vec<CurrencyTotal>,
}

/// Runs `ledger verify` and sums the trial balance per currency: reads the whole journal.
pub async fn check(store: &Store) -> Result<Checked> {
    let report = verify(store).await?;
    let rows = sqlx::query(
        "SELECT currency, COUNT(*) AS accounts, CAST(SUM(balance_minor) AS BIGINT) AS total \
         FROM trial_balance GROUP BY currency ORDER BY currency",
    )
    .fetch_all(store.pool())
    .await?;
    let totals = rows
        .iter()
        .map(|row| {
            Ok(CurrencyTotal {
                currency: row.try_get("currency")?,
                accounts: row.try_get("accounts")?,
                total_minor: row.try_get("total")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Checked { report, totals })
}

/// A row of the `daily_settlement` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementDay {
    pub day_start_ms: i64,
    pub psp: String,
    pub currency: String,
    pub expected_minor: i64,
    pub paid_out_minor: i64,
    pub outstanding_minor: i64,
}

/// The `daily_settlement` view from `from_day_ms` on, newest day first.
pub async fn daily_settlement(store: &Store, from_day_ms: i64) -> Result<Vec<SettlementDay>> {
    let rows = sqlx::query(
        "SELECT day_start_ms, psp, currency, expected_minor, paid_out_minor, outstanding_minor \
         FROM daily_settlement WHERE day_start_ms >= $1 \
         ORDER BY day_start_ms DESC, psp, currency",
    )
    .bind(from_day_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SettlementDay {
                day_start_ms: row.try_get("day_start_ms")?,
                psp: row.try_get("psp")?,
                currency: row.try_get("currency")?,
                expected_minor: row.try_get("expected_minor")?,
                paid_out_minor: row.try_get("paid_out_minor")?,
                outstanding_minor: row.try_get("outstanding_minor")?,
            })
        })
        .collect()
}
