//! The double-entry ledger: journal transactions made of postings (debits positive, credits
//! negative) that sum to zero per currency (I3), append-only (I2), each chained to the hash of
//! its predecessor, and idempotent on a source reference (I6: posted once, whatever retries).
//!
//! Postings on a seller's account move that seller's wallet in the same database transaction,
//! so a wallet cannot drift from its account (I4).

pub mod accounts;
mod batch;
mod hash;
pub mod verify;

use std::collections::BTreeMap;

use sqlx::Row;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::store::{Store, Tx};
use crate::wallet;

pub use batch::post_batch;

/// One line of a journal transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub currency: String,
    /// Debit positive, credit negative, never zero.
    pub amount_minor: i64,
}

impl Posting {
    pub fn new(account: impl Into<String>, currency: impl Into<String>, amount_minor: i64) -> Self {
        Self {
            account: account.into(),
            currency: currency.into(),
            amount_minor,
        }
    }
}

/// A journal transaction to post.
#[derive(Clone, Debug)]
pub struct NewJournalTransaction {
    /// What caused it (`capture:pay_…`); unique, so the same cause posts at most once.
    pub source_ref: String,
    /// What kind of movement it is (`capture`, `refund`, …), for people and analysts.
    pub kind: &'static str,
    pub payment_id: Option<String>,
    pub postings: Vec<Posting>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    Posted {
        transaction_id: String,
        seq: i64,
    },
    /// A transaction with this source reference exists already; nothing was written.
    AlreadyPosted {
        transaction_id: String,
    },
}

/// Checks invariant I3 before anything is written: at least two postings, none zero, and the
/// postings sum to zero in every currency.
pub fn check_balanced(postings: &[Posting]) -> Result<()> {
    if postings.len() < 2 {
        return Err(Error::Internal(
            "a journal transaction needs at least two postings".into(),
        ));
    }
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for posting in postings {
        if posting.amount_minor == 0 {
            return Err(Error::Internal(format!(
                "zero posting on {}",
                posting.account
            )));
        }
        let sum = sums.entry(posting.currency.as_str()).or_insert(0);
        *sum = sum
            .checked_add(posting.amount_minor)
            .ok_or_else(|| Error::Internal("posting sum overflows i64".into()))?;
    }
    if let Some((currency, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
        return Err(Error::Internal(format!(
            "unbalanced journal transaction: {currency} sums to {sum}"
        )));
    }
    Ok(())
}

/// The end of the hash chain: the last transaction's sequence number, hash and id.
#[derive(Clone, Debug)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
    pub transaction_id: Option<String>,
}

/// Locks the chain head for the rest of `tx` (PostgreSQL; SQLite's write transaction holds the
/// database's write lock already) and answers it. Every posting takes this lock, so holding it
/// also freezes every wallet until `tx` ends.
pub async fn lock_head(store: &Store, tx: &mut Tx) -> Result<ChainHead> {
    let head = sqlx::query(store.pick(
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1",
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1 FOR UPDATE",
    ))
    .fetch_one(&mut **tx)
    .await?;
    Ok(ChainHead {
        seq: head.try_get("seq")?,
        hash: head.try_get("hash")?,
        transaction_id: head.try_get("transaction_id")?,
    })
}

/// Posts a balanced journal transaction inside the caller's write transaction, extends the hash
/// chain, and moves the wallets of the sellers it touches. Posting the same `source_ref` again
/// writes nothing and answers [`PostOutcome::AlreadyPosted`].
pub async fn post(store: &Store, tx: &mut Tx, new: &NewJournalTransaction) -> Result<PostOutcome> {
    check_balanced(&new.postings)?;

    // The chain head is the ledger's one serialization point: taking its lock first also makes
    // the source_ref check below race-free between instances.
    let ChainHead {
        seq: head_seq,
        hash: head_hash,
        transaction_id: head_transaction_id,
    } = lock_head(store, tx).await?;

    if let Some(row) = sqlx::query("SELECT id FROM journal_transactions WHERE source_ref = $1")
        .bind(&new.source_ref)
        .fetch_optional(&mut **tx)
        .await?
    {
        return Ok(PostOutcome::AlreadyPosted {
            transaction_id: row.try_get("id")?,
        });
    }

    let transaction_id = new_id("jtx");
    let seq = head_seq + 1;
    let created_at_ms = now_ms();
    let hash = hash::transaction_hash(&hash::HashInput {
        prev_hash: &head_hash,
        transaction_id: &transaction_id,
        seq,
        source_ref: &new.source_ref,
        kind: new.kind,
        payment_id: new.payment_id.as_deref(),
        created_at_ms,
        postings: &new.postings,
    });

    sqlx::query(
        "INSERT INTO journal_transactions \
         (id, seq, source_ref, kind, payment_id, created_at_ms, prev_hash, hash, \
          prev_transaction_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&transaction_id)
    .bind(seq)
    .bind(&new.source_ref)
    .bind(new.kind)
    .bind(new.payment_id.as_deref())
    .bind(created_at_ms)
    .bind(&head_hash)
    .bind(&hash)
    .bind(head_transaction_id.as_deref())
    .execute(&mut **tx)
    .await?;

    for (line_no, posting) in new.postings.iter().enumerate() {
        sqlx::query(
            "INSERT INTO postings (transaction_id, line_no, account, currency, amount_minor) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&transaction_id)
        .bind(line_no as i64)
        .bind(&posting.account)
        .bind(&posting.currency)
        .bind(posting.amount_minor)
        .execute(&mut **tx)
        .await?;

        if let Some(seller_id) = accounts::seller_id(&posting.account) {
            // The wallet holds what we owe the seller: a credit (negative) raises it.
            wallet::add(
                tx,
                seller_id,
                &posting.currency,
                -posting.amount_minor,
                created_at_ms,
            )
            .await?;
        }
    }

    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2, transaction_id = $3 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .bind(&transaction_id)
        .execute(&mut **tx)
        .await?;

    metrics::counter!("ferropay_ledger_transactions_total", "kind" => new.kind).increment(1);
    Ok(PostOutcome::Posted {
        transaction_id,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_transactions_pass_and_others_do_not() {
        let ok = [
            Posting::new("psp_receivable:sandbox", "USD", 1750),
            Posting::new("seller:a", "USD", -1500),
            Posting::new("seller:b", "USD", -250),
        ];
        assert!(check_balanced(&ok).is_ok());
        let unbalanced = [
            Posting::new("psp_receivable:sandbox", "USD", 1750),
            Posting::new("seller:a", "USD", -1500),
        ];
        assert!(check_balanced(&unbalanced).is_err());
        let mixed_currencies = [
            Posting::new("psp_receivable:sandbox", "USD", 100),
            Posting::new("seller:a", "EUR", -100),
        ];
        assert!(check_balanced(&mixed_currencies).is_err());
        assert!(
            check_balanced(&[Posting::new("a", "USD", 0), Posting::new("b", "USD", 0)]).is_err()
        );
        assert!(check_balanced(&ok[..1]).is_err());
        let overflow = [
            Posting::new("a", "USD", i64::MAX),
            Posting::new("b", "USD", 1),
            Posting::new("c", "USD", i64::MIN),
        ];
        assert!(check_balanced(&overflow).is_err());
    }
}
