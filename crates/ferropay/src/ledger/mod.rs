//! The double-entry ledger: journal transactions made of postings (debits positive, credits
//! negative) that sum to zero per currency (I3), append-only (I2), each chained to the hash of
//! its predecessor, and idempotent on a source reference (I6: posted once, whatever retries).
//!
//! Postings on a seller's account move that seller's wallet in the same database transaction,
//! so a wallet cannot drift from its account (I4). Nothing here writes: every journal
//! transaction is written by the money engine (`crate::engine`), a batch at a time, which
//! extends the chain in memory ([`chain`]) and moves the wallets with their postings.

pub mod accounts;
pub mod chain;
pub mod checkpoint;
mod hash;
pub mod summaries;
pub mod verify;

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// One line of a journal transaction: an account and a signed amount (debit positive, credit
/// negative, never zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub amount: Money,
}

impl Posting {
    pub fn new(account: impl Into<String>, amount: Money) -> Self {
        Self {
            account: account.into(),
            amount,
        }
    }

    /// A posting of `minor` units of `currency`.
    pub fn minor(account: impl Into<String>, minor: i64, currency: Currency) -> Self {
        Self::new(account, Money::new(minor, currency))
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
    /// Posted under this id (its place on the chain is given when its batch commits).
    Posted { transaction_id: String },
    /// A transaction with this source reference exists already; nothing was written.
    AlreadyPosted { transaction_id: String },
}

/// Checks invariant I3 before anything is written: at least two postings, none zero, and the
/// postings sum to zero in every currency.
pub fn check_balanced(postings: &[Posting]) -> Result<()> {
    if postings.len() < 2 {
        return Err(Error::Internal(
            "a journal transaction needs at least two postings".into(),
        ));
    }
    let mut sums: BTreeMap<Currency, Money> = BTreeMap::new();
    for posting in postings {
        if posting.amount.is_zero() {
            return Err(Error::Internal(format!(
                "zero posting on {}",
                posting.account
            )));
        }
        let currency = posting.amount.currency();
        let sum = sums.entry(currency).or_insert(Money::zero(currency));
        *sum = sum
            .checked_add(posting.amount)
            .map_err(|e| Error::Internal(format!("posting sum: {e}")))?;
    }
    if let Some(sum) = sums.values().find(|sum| !sum.is_zero()) {
        return Err(Error::Internal(format!(
            "unbalanced journal transaction: sums to {sum}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(account: &str, minor: i64, currency: &str) -> Posting {
        Posting::minor(account, minor, Currency::parse(currency).unwrap())
    }

    #[test]
    fn balanced_transactions_pass_and_others_do_not() {
        let ok = [
            p("psp_receivable:sandbox", 1750, "USD"),
            p("seller:a", -1500, "USD"),
            p("seller:b", -250, "USD"),
        ];
        assert!(check_balanced(&ok).is_ok());
        let unbalanced = [
            p("psp_receivable:sandbox", 1750, "USD"),
            p("seller:a", -1500, "USD"),
        ];
        assert!(check_balanced(&unbalanced).is_err());
        let mixed_currencies = [
            p("psp_receivable:sandbox", 100, "USD"),
            p("seller:a", -100, "EUR"),
        ];
        assert!(check_balanced(&mixed_currencies).is_err());
        assert!(check_balanced(&[p("a", 0, "USD"), p("b", 0, "USD")]).is_err());
        assert!(check_balanced(&ok[..1]).is_err());
        let overflow = [
            p("a", i64::MAX, "USD"),
            p("b", 1, "USD"),
            p("c", i64::MIN, "USD"),
        ];
        assert!(check_balanced(&overflow).is_err());
    }
}
