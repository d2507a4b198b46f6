//! Dispute lines that name their payment, not their dispute (`SettlementLine::
//! dispute_by_payment`: Adyen's `ChargebackReversed` and `SecondChargeback`, whose references are
//! the payment's and the record's own). This module owns finding such a line's dispute among its
//! payment's, and what the line is matched to when none can be told apart.
//!
//! A reversal's dispute is the payment's one dispute (at this PSP, in the line's currency),
//! whatever its status: open or `lost` (the reversal is then booked, `dispute::ApplyReversal`)
//! or `won` already (its notification came; the line matches the booked reinstatement). Among
//! several, the one whose amount is the line's gross; if no single one is, the line is an
//! `unknown_reference` break: a reversal is never booked on a guess.
//!
//! A second chargeback is not booked: ferropay's disputes are not re-opened once won (a second
//! withdrawal would need its own journal reference and status). Its line is a
//! `missing_in_ledger` break of its own subject (`second_chargeback:{psp}:{reference}`) naming
//! the payment, for an operator to book.

use std::collections::HashMap;

use sqlx::Row;

use super::line::{LineType, SettlementLine};
use crate::error::Result;
use crate::store::{Store, sql};

/// One of a payment's disputes, as a reversal line is matched against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Candidate {
    pub psp_dispute_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
}

/// What a by-payment line was found to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The reversal of this dispute (its PSP id).
    Reversal(String),
    /// No dispute, or none that can be told apart: why.
    Unresolved(String),
    /// A second chargeback (not booked).
    SecondChargeback,
}

/// The disputes at `psp` of each of `payment_ids`, oldest first.
pub(super) async fn load(
    store: &Store,
    psp: &str,
    payment_ids: &[&str],
) -> Result<HashMap<String, Vec<Candidate>>> {
    let mut by_payment: HashMap<String, Vec<Candidate>> = HashMap::new();
    if payment_ids.is_empty() {
        return Ok(by_payment);
    }
    let mut prefix = String::from(
        "SELECT payment_id, psp_dispute_id, amount_minor, currency, status FROM disputes \
         WHERE psp = ",
    );
    sql::push_param(&mut prefix, store.backend(), 1);
    prefix.push_str(" AND payment_id IN ");
    let statement = sql::in_list(
        store.backend(),
        &prefix,
        2,
        payment_ids.len(),
        " ORDER BY created_at_ms, id",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(psp);
    for id in payment_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(store.pool()).await? {
        by_payment
            .entry(row.try_get("payment_id")?)
            .or_default()
            .push(Candidate {
                psp_dispute_id: row.try_get("psp_dispute_id")?,
                amount_minor: row.try_get("amount_minor")?,
                currency: row.try_get("currency")?,
                status: row.try_get("status")?,
            });
    }
    Ok(by_payment)
}

/// What a by-payment line is, given its payment's disputes.
pub(super) fn find(line: &SettlementLine, disputes: Option<&Vec<Candidate>>) -> Found {
    if line.kind == LineType::Chargeback {
        return Found::SecondChargeback;
    }
    let payment = &line.merchant_reference;
    let in_currency: Vec<&Candidate> = disputes
        .into_iter()
        .flatten()
        .filter(|d| d.currency == line.currency)
        .collect();
    let amount = line.gross_minor.abs();
    match in_currency[..] {
        [] => Found::Unresolved(format!(
            "payment {payment} has no dispute in {} that this reversal could give back",
            line.currency
        )),
        [one] => Found::Reversal(one.psp_dispute_id.clone()),
        _ => {
            let same: Vec<&&Candidate> = in_currency
                .iter()
                .filter(|d| d.amount_minor == amount)
                .collect();
            match same[..] {
                [one] => Found::Reversal(one.psp_dispute_id.clone()),
                _ => Found::Unresolved(format!(
                    "payment {payment} has {} disputes ({}) and {} of {amount} {}: which one \
                     this reversal gives back cannot be told",
                    in_currency.len(),
                    in_currency
                        .iter()
                        .map(|d| format!("{} {} {}", d.psp_dispute_id, d.amount_minor, d.status))
                        .collect::<Vec<_>>()
                        .join(", "),
                    same.len(),
                    line.currency
                )),
            }
        }
    }
}

/// What an unresolved reversal line is matched to.
pub(super) fn unresolved_ref(psp: &str, line: &SettlementLine) -> String {
    format!("unknown_dispute:{psp}:{}", line.psp_reference)
}

/// What a second chargeback line is matched to (and its break's subject).
pub(super) fn second_chargeback_ref(psp: &str, line: &SettlementLine) -> String {
    format!("second_chargeback:{psp}:{}", line.psp_reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reversal(gross_minor: i64) -> SettlementLine {
        SettlementLine {
            line_no: 4,
            psp_reference: "9913642467170955".into(),
            merchant_reference: "pay_1".into(),
            kind: LineType::ChargebackReversal,
            created_at_ms: 0,
            currency: "USD".into(),
            gross_minor,
            fee_minor: 0,
            net_minor: gross_minor,
            batch: "1".into(),
            dispute_by_payment: true,
        }
    }

    fn dispute(id: &str, amount_minor: i64, status: &str) -> Candidate {
        Candidate {
            psp_dispute_id: id.into(),
            amount_minor,
            currency: "USD".into(),
            status: status.into(),
        }
    }

    #[test]
    fn the_one_dispute_or_the_one_of_the_amount() {
        let one = vec![dispute("cb_1", 1750, "lost")];
        assert_eq!(
            find(&reversal(1750), Some(&one)),
            Found::Reversal("cb_1".into())
        );
        let two = vec![
            dispute("cb_1", 1750, "won"),
            dispute("cb_2", 500, "needs_response"),
        ];
        assert_eq!(
            find(&reversal(500), Some(&two)),
            Found::Reversal("cb_2".into())
        );
        assert_eq!(
            find(&reversal(1750), Some(&two)),
            Found::Reversal("cb_1".into())
        );
    }

    #[test]
    fn none_or_no_single_one_is_unresolved() {
        assert!(
            matches!(find(&reversal(1750), None), Found::Unresolved(why) if why.contains("no dispute"))
        );
        let mut euro = dispute("cb_1", 1750, "lost");
        euro.currency = "EUR".into();
        assert!(matches!(
            find(&reversal(1750), Some(&vec![euro])),
            Found::Unresolved(_)
        ));
        let alike = vec![
            dispute("cb_1", 1750, "lost"),
            dispute("cb_2", 1750, "needs_response"),
        ];
        let Found::Unresolved(why) = find(&reversal(1750), Some(&alike)) else {
            panic!("guessed")
        };
        assert!(why.contains("cb_1") && why.contains("cb_2"), "{why}");
        assert!(matches!(
            find(&reversal(900), Some(&alike)),
            Found::Unresolved(_)
        ));
        let mut second = reversal(-1750);
        second.kind = LineType::Chargeback;
        assert_eq!(find(&second, Some(&alike)), Found::SecondChargeback);
    }
}
