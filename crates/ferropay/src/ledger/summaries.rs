//! The ledger's kept summaries of a run of journal transactions: each account's balance and
//! postings count (`account_balances`, read by the `trial_balance` view) and each day's
//! settlement sums per PSP and currency (`settlement_days`, read by `daily_settlement`).
//!
//! The money engine sums them in memory for a whole batch and writes one upsert row per account
//! and per day, in the batch's transaction (migration 21 replaced the triggers on `postings` that
//! did this per statement on PostgreSQL and per posting on SQLite, under the chain head).
//! `ledger verify` checks the kept rows against the postings' own sums.

use std::collections::BTreeMap;

use super::{NewJournalTransaction, accounts};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// The journal kind whose postings on `psp_receivable:*` are money paid out by the PSP to our
/// bank (the settlement), not money it owes us for a capture.
pub const BANK_SETTLEMENT: &str = "bank_settlement";

/// An account's net change and postings in a run of transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountSum {
    pub net: Money,
    pub postings: i64,
}

/// One day's change for one PSP and currency: what the PSP owes us for the day's postings other
/// than the settlement (`expected`), what it settled to our bank (`paid_out`), and postings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySum {
    pub expected: Money,
    pub paid_out: Money,
    pub postings: i64,
}

/// The start (UTC midnight, ms) of the day holding `at_ms`, as `settlement_days` keys it.
pub fn day_start_ms(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(86_400_000)
}

/// A batch's summaries, keyed in the order their rows are written (sorted keys: two writers of
/// the same rows take their locks in one order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summaries<'a> {
    /// By account and currency.
    pub accounts: BTreeMap<(&'a str, Currency), AccountSum>,
    /// By day start, PSP and currency.
    pub days: BTreeMap<(i64, &'a str, Currency), DaySum>,
}

impl<'a> Summaries<'a> {
    /// Sums the postings of `transactions`, each with the time it is posted at. Fails only on
    /// an overflow (checked arithmetic).
    pub fn of(
        transactions: impl IntoIterator<Item = (i64, &'a NewJournalTransaction)>,
    ) -> Result<Self> {
        let mut summaries = Self::default();
        for (created_at_ms, t) in transactions {
            for posting in &t.postings {
                let currency = posting.amount.currency();
                let zero = Money::zero(currency);
                let sum = summaries
                    .accounts
                    .entry((posting.account.as_str(), currency))
                    .or_insert(AccountSum {
                        net: zero,
                        postings: 0,
                    });
                sum.net = sum.net.checked_add(posting.amount).map_err(overflow)?;
                sum.postings += 1;
                let Some(psp) = posting
                    .account
                    .strip_prefix(accounts::PSP_RECEIVABLE_PREFIX)
                else {
                    continue;
                };
                let day = summaries
                    .days
                    .entry((day_start_ms(created_at_ms), psp, currency))
                    .or_insert(DaySum {
                        expected: zero,
                        paid_out: zero,
                        postings: 0,
                    });
                if t.kind == BANK_SETTLEMENT {
                    let paid = posting.amount.checked_neg().map_err(overflow)?;
                    day.paid_out = day.paid_out.checked_add(paid).map_err(overflow)?;
                } else {
                    day.expected = day.expected.checked_add(posting.amount).map_err(overflow)?;
                }
                day.postings += 1;
            }
        }
        Ok(summaries)
    }
}

fn overflow(e: crate::money::MoneyError) -> Error {
    Error::Internal(format!("a batch's ledger summary: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Posting;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn transaction(kind: &'static str, postings: &[(&str, i64)]) -> NewJournalTransaction {
        NewJournalTransaction {
            source_ref: format!("test:{kind}:{}", postings[0].1),
            kind,
            payment_id: None,
            postings: postings
                .iter()
                .map(|(account, minor)| Posting::minor(*account, *minor, usd()))
                .collect(),
        }
    }

    #[test]
    fn a_batch_is_summed_per_account_and_per_settlement_day() {
        let day_ms = 20_000 * 86_400_000;
        let news = [
            transaction(
                "capture",
                &[("psp_receivable:sandbox", 1_000), ("seller:a", -1_000)],
            ),
            transaction(
                "capture",
                &[("psp_receivable:sandbox", 500), ("seller:b", -500)],
            ),
            transaction(
                BANK_SETTLEMENT,
                &[("bank", 1_200), ("psp_receivable:sandbox", -1_200)],
            ),
        ];
        let summaries = Summaries::of(news.iter().map(|t| (day_ms + 3_600_000, t))).unwrap();
        let account = |name: &'static str| summaries.accounts[&(name, usd())];
        assert_eq!(
            account("psp_receivable:sandbox"),
            AccountSum {
                net: Money::new(300, usd()),
                postings: 3
            }
        );
        assert_eq!(account("seller:a").net, Money::new(-1_000, usd()));
        assert_eq!(account("bank").postings, 1);
        assert_eq!(summaries.accounts.len(), 4);
        let total: i64 = summaries.accounts.values().map(|s| s.net.minor()).sum();
        assert_eq!(
            total, 0,
            "a batch's accounts sum to zero, as its transactions do"
        );
        assert_eq!(
            summaries.days.into_iter().collect::<Vec<_>>(),
            vec![(
                (day_ms, "sandbox", usd()),
                DaySum {
                    expected: Money::new(1_500, usd()),
                    paid_out: Money::new(1_200, usd()),
                    postings: 3
                }
            )]
        );
    }

    #[test]
    fn days_start_at_utc_midnight() {
        assert_eq!(day_start_ms(86_400_000 * 3 + 5), 86_400_000 * 3);
        assert_eq!(day_start_ms(86_400_000 * 3), 86_400_000 * 3);
    }
}
