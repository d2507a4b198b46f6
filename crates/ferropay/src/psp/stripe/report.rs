//! Stripe's settlement of a day as ferropay's settlement file: the payouts to our bank that
//! arrive that day (`GET /v1/payouts?arrival_date[gte]=…&arrival_date[lt]=…`), and for each the
//! balance transactions it pays out (`GET /v1/balance_transactions?payout=po_…`, with
//! `expand[]=data.source` to read our ids in the sources' metadata), one line each, batch = the
//! payout's id. The file then goes through the same reconciliation as the sandbox's.
//!
//! | balance transaction `reporting_category` | line `type` | `psp_reference` | `merchant_reference` |
//! |---|---|---|---|
//! | `charge` | `payment` | the charge's PaymentIntent | our payment id (metadata), else the charge |
//! | `refund` | `refund` | the refund (`re_…`) | our refund id (metadata) |
//! | `dispute`, `dispute_reversal` | `chargeback` | the dispute (`du_…`) | the PaymentIntent |
//! | `fee` | `fee` (gross 0, fee = −amount) | the transaction | |
//! | `payout` | `payout_to_bank` | the payout (`po_…`) | |
//! | `transfer` (Connect transfer to a seller) | `payout_to_bank` | the transfer (`tr_…`) | our payout id |
//! | anything else | its category, which reconciliation reports as a malformed line | | |
//!
//! A Connect transfer leaves the Stripe balance as a payout to the bank does: ferropay posts the
//! seller's payout against `bank` when it is paid, and the transfer's line posts the same sum
//! from `psp_receivable:stripe` to `bank`, so that the pair nets to zero.

use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{PAYMENT_KEY, PAYOUT_KEY, REFUND_KEY, StripeConnector};
use crate::psp::{PspError, SETTLEMENT_COLUMNS as COLUMNS};

/// Items per page of Stripe's lists (its maximum).
const PAGE_LIMIT: &str = "100";

/// Writes the settlement file of `date` to `destination`; answers the bytes written.
pub(super) async fn write_day(
    stripe: &StripeConnector,
    date: time::Date,
    destination: &Path,
) -> Result<u64, PspError> {
    let from_s = date.midnight().assume_utc().unix_timestamp();
    let to_s = from_s + 86_400;
    let payouts = list_all(
        stripe,
        "/v1/payouts",
        &[
            ("arrival_date[gte]", from_s.to_string()),
            ("arrival_date[lt]", to_s.to_string()),
        ],
    )
    .await?;
    let mut lines: Vec<[String; 9]> = Vec::new();
    for payout in &payouts {
        let Some(payout_id) = payout["id"].as_str() else {
            continue;
        };
        let transactions = list_all(
            stripe,
            "/v1/balance_transactions",
            &[
                ("payout", payout_id.to_owned()),
                ("expand[]", "data.source".to_owned()),
            ],
        )
        .await?;
        lines.extend(transactions.iter().map(|t| line_of(t, payout_id)));
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| PspError::Permanent(format!("writing the settlement: {e}"));
    writer.write_record(COLUMNS).map_err(failed)?;
    for line in &lines {
        writer.write_record(line).map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| PspError::Permanent(format!("writing the settlement: {e}")))?;
    tokio::fs::write(destination, &bytes)
        .await
        .map_err(|e| PspError::Permanent(format!("writing {}: {e}", destination.display())))?;
    Ok(bytes.len() as u64)
}

/// Every item of a Stripe list, page by page (`has_more`, `starting_after`).
async fn list_all(
    stripe: &StripeConnector,
    path: &str,
    filters: &[(&str, String)],
) -> Result<Vec<Value>, PspError> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
        query.push(("limit", PAGE_LIMIT));
        if let Some(after) = &after {
            query.push(("starting_after", after));
        }
        let page = stripe.get(path, &query).await?;
        let data = page["data"]
            .as_array()
            .ok_or_else(|| PspError::Retryable(format!("{path}: not a list")))?;
        items.extend(data.iter().cloned());
        let more = page["has_more"].as_bool().unwrap_or(false);
        match (more, data.last().and_then(|last| last["id"].as_str())) {
            (true, Some(last)) => after = Some(last.to_owned()),
            _ => return Ok(items),
        }
    }
}

/// One balance transaction as a settlement line (see the module's table).
pub fn line_of(transaction: &Value, payout_id: &str) -> [String; 9] {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let source = &transaction["source"];
    let source_id = match source {
        Value::String(id) => id.clone(),
        _ => text(&source["id"]),
    };
    let amount = transaction["amount"].as_i64().unwrap_or_default();
    let fee = transaction["fee"].as_i64().unwrap_or_default();
    let net = transaction["net"].as_i64().unwrap_or_default();
    let category = transaction["reporting_category"]
        .as_str()
        .or_else(|| transaction["type"].as_str())
        .unwrap_or_default();
    let (kind, psp_reference, merchant_reference, gross, fee, net) = match category {
        "charge" => (
            "payment",
            source["payment_intent"]
                .as_str()
                .map_or(source_id.clone(), str::to_owned),
            // A charge ferropay did not make has no id of ours: its own id, which
            // reconciliation then reports as an unknown reference.
            source["metadata"][PAYMENT_KEY]
                .as_str()
                .map_or(source_id.clone(), str::to_owned),
            amount,
            fee,
            net,
        ),
        "refund" => (
            "refund",
            source_id.clone(),
            text(&source["metadata"][REFUND_KEY]),
            amount,
            fee,
            net,
        ),
        "dispute" | "dispute_reversal" => (
            "chargeback",
            source_id.clone(),
            text(&source["payment_intent"]),
            amount,
            fee,
            net,
        ),
        "fee" => (
            "fee",
            text(&transaction["id"]),
            String::new(),
            0,
            -amount,
            amount,
        ),
        "payout" => (
            "payout_to_bank",
            source_id.clone(),
            String::new(),
            amount,
            0,
            amount,
        ),
        "transfer" => (
            "payout_to_bank",
            source_id.clone(),
            text(&source["metadata"][PAYOUT_KEY]),
            amount,
            0,
            amount,
        ),
        other => (
            other,
            text(&transaction["id"]),
            String::new(),
            amount,
            fee,
            net,
        ),
    };
    let created_at = transaction["created"]
        .as_i64()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default();
    [
        psp_reference,
        merchant_reference,
        kind.to_owned(),
        created_at,
        text(&transaction["currency"]).to_ascii_uppercase(),
        gross.to_string(),
        fee.to_string(),
        net.to_string(),
        payout_id.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_category_becomes_its_line() {
        let charge = json!({"id": "txn_1", "amount": 1750, "fee": 81, "net": 1669,
            "currency": "usd", "created": 1_795_514_400, "reporting_category": "charge",
            "type": "charge", "source": {"id": "ch_1", "object": "charge",
            "payment_intent": "pi_1", "metadata": {"ferropay_payment_id": "pay_1"}}});
        assert_eq!(
            line_of(&charge, "po_1"),
            [
                "pi_1",
                "pay_1",
                "payment",
                "2026-11-24T10:00:00Z",
                "USD",
                "1750",
                "81",
                "1669",
                "po_1"
            ]
            .map(str::to_owned)
        );
        let fee = json!({"id": "txn_2", "amount": -500, "fee": 0, "net": -500,
            "currency": "usd", "created": 1, "reporting_category": "fee", "source": null});
        let line = line_of(&fee, "po_1");
        assert_eq!(
            (&line[2][..], &line[5][..], &line[6][..], &line[7][..]),
            ("fee", "0", "500", "-500")
        );
        let payout = json!({"id": "txn_3", "amount": -1169, "fee": 0, "net": -1169,
            "currency": "usd", "created": 1, "reporting_category": "payout",
            "source": {"id": "po_1", "object": "payout"}});
        assert_eq!(
            line_of(&payout, "po_1")[..3],
            ["po_1", "", "payout_to_bank"].map(str::to_owned)
        );
        let odd = json!({"id": "txn_4", "amount": 10, "fee": 0, "net": 10, "currency": "usd",
            "created": 1, "reporting_category": "topup", "source": "tu_1"});
        assert_eq!(line_of(&odd, "po_1")[2], "topup");
    }
}
