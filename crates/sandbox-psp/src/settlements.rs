//! Settlement files (`GET /v1/settlements/{YYYY-MM-DD}.csv`): what the PSP did with the
//! merchant's money on one UTC day, one CSV line per movement, and what it paid to the bank.
//! Also the test hooks that make a file wrong on purpose (`/v1/test/settlement_faults`), that
//! lose a payment's webhooks so that
//! only reconciliation can find it (`POST /v1/test/lost_webhooks`).
//!
//! Lines, in this order: payments (by the time they succeeded), succeeded refunds (by the time
//! they settled), chargebacks (by the time their dispute opened) and chargeback reversals (by
//! the time their dispute was won), the injected unknown lines, then
//! one `payout_to_bank` line per currency. Amounts are signed from the point of view of the
//! merchant's balance at the PSP: a payment adds (`gross > 0`), a refund or chargeback takes
//! (`gross < 0`), and the payout moves the day's net to the bank (`gross = net = -(sum of the
//! other lines' net)`), so the nets of a file sum to zero per currency.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde_json::{Value, json};

use crate::AppState;
use crate::clock::{civil_from_unix_s, rfc3339, unix_s_of_date};
use crate::errors::ApiError;
use crate::request::json_object;
use crate::sessions::SessionStatus;
use crate::store::new_id;

/// The header row of every settlement file.
pub const HEADER: &str =
    "psp_reference,merchant_reference,type,created_at,currency,gross,fee,net,batch";

/// At most this many references per fault list, and unknown lines per file.
const FAULTS_MAX: usize = 1_000;

/// Discrepancies injected into every settlement file until replaced or cleared. A reference
/// names a line by its `psp_reference` or its `merchant_reference`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SettlementFaults {
    /// Lines left out.
    missing: BTreeSet<String>,
    /// Lines written twice.
    duplicated: BTreeSet<String>,
    /// Lines whose gross (and net) is 100 minor units more than what happened.
    amount_changed: BTreeSet<String>,
    /// Lines whose currency is another one (USD becomes EUR, any other becomes USD).
    currency_changed: BTreeSet<String>,
    /// Payment lines for payments the merchant never registered, added to every file.
    unknown: Vec<Line>,
}

impl SettlementFaults {
    fn to_json(&self) -> Value {
        json!({
            "missing": self.missing,
            "duplicated": self.duplicated,
            "amount_changed": self.amount_changed,
            "currency_changed": self.currency_changed,
            "unknown_lines": self.unknown.iter().map(|l| json!({
                "psp_reference": l.psp_reference,
                "merchant_reference": l.merchant_reference,
            })).collect::<Vec<_>>(),
        })
    }

    /// Whether a fault naming `set` applies to `line`: its PSP reference, a refund's own
    /// reference, or the payment it is about (a payment or its chargeback; not its refunds, which
    /// a test names by their own reference).
    fn touches(set: &BTreeSet<String>, line: &Line) -> bool {
        set.contains(&line.psp_reference)
            || line
                .refund_reference
                .as_ref()
                .is_some_and(|reference| set.contains(reference))
            || (line.refund_reference.is_none()
                && !line.merchant_reference.is_empty()
                && set.contains(&line.merchant_reference))
    }
}

/// One line of a settlement file.
#[derive(Debug, Clone)]
struct Line {
    psp_reference: String,
    merchant_reference: String,
    /// A refund line's merchant refund id: not in the file (its merchant reference is the
    /// payment's), but what a test names to make that line wrong.
    refund_reference: Option<String>,
    kind: &'static str,
    created_unix_s: i64,
    currency: String,
    gross: i64,
    fee: i64,
}

impl Line {
    fn net(&self) -> i64 {
        self.gross - self.fee
    }

    fn write(&self, batch: &str, out: &mut String) {
        let fields = [
            csv_field(&self.psp_reference),
            csv_field(&self.merchant_reference),
            self.kind.to_owned(),
            rfc3339(self.created_unix_s),
            csv_field(&self.currency),
            self.gross.to_string(),
            self.fee.to_string(),
            self.net().to_string(),
            batch.to_owned(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(raw: &str) -> String {
    if raw.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", raw.replace('"', "\"\""))
    } else {
        raw.to_owned()
    }
}

/// The PSP's fee on a payment of `gross` minor units: `fee_bps` basis points of it, rounded half
/// up to a whole minor unit, plus `fixed_minor`. Integer arithmetic only (i128, no overflow).
pub(crate) fn payment_fee_minor(gross: i64, fee_bps: u32, fixed_minor: i64) -> i64 {
    let proportional = (i128::from(gross) * i128::from(fee_bps) + 5_000) / 10_000;
    i64::try_from(proportional)
        .unwrap_or(i64::MAX)
        .saturating_add(fixed_minor)
}

/// `YYYY-MM-DD` → unix seconds at its start, or `None`.
fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    unix_s_of_date(i64::from(number(0..4)?), number(5..7)?, number(8..10)?)
}

/// `GET /v1/settlements/{YYYY-MM-DD}.csv`.
pub(crate) async fn file(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let Some(date) = name.strip_suffix(".csv") else {
        return Err(ApiError::not_found(
            "settlement files are named YYYY-MM-DD.csv",
        ));
    };
    let day_start_s = parse_date(date).ok_or_else(|| {
        ApiError::invalid_field(format!("`{date}` must be a date written YYYY-MM-DD"))
    })?;
    let body = render(&app, day_start_s);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response())
}

/// The file of the day that starts at `day_start_s`.
fn render(app: &AppState, day_start_s: i64) -> String {
    let day = day_start_s..day_start_s + 86_400;
    let (year, month, dom) = civil_from_unix_s(day_start_s);
    let batch = format!("stl_{year:04}{month:02}{dom:02}");
    let config = &app.config;

    let (mut lines, faults) = {
        let store = app.store();
        let mut lines: Vec<Line> = store
            .sessions
            .values()
            .filter_map(|session| {
                let at = session.succeeded_unix_s?;
                // A succeeded session stays succeeded (refunds do not change its status).
                (session.status == SessionStatus::Succeeded && day.contains(&at)).then(|| Line {
                    psp_reference: session.psp_reference.clone(),
                    merchant_reference: session.reference.clone(),
                    refund_reference: None,
                    kind: "payment",
                    created_unix_s: at,
                    currency: session.currency.clone(),
                    gross: session.amount,
                    fee: payment_fee_minor(
                        session.amount,
                        config.settlement_fee_bps,
                        config.settlement_fee_fixed_minor,
                    ),
                })
            })
            .collect();
        let mut refunds: Vec<Line> = store
            .refunds
            .values()
            .filter_map(|refund| {
                let at = refund.settled_unix_s?;
                // The contract: `merchant_reference` is the payment's id as registered (the
                // refunded session's reference); the refund itself is named by our `re_` id.
                let payment_reference = store
                    .sessions
                    .get(&refund.payment_token)
                    .map_or_else(|| refund.reference.clone(), |s| s.reference.clone());
                (refund.status == crate::refunds::RefundStatus::Succeeded && day.contains(&at))
                    .then(|| Line {
                        psp_reference: refund.id.clone(),
                        merchant_reference: payment_reference,
                        refund_reference: Some(refund.reference.clone()),
                        kind: "refund",
                        created_unix_s: at,
                        currency: refund.currency.clone(),
                        gross: -refund.amount,
                        fee: 0,
                    })
            })
            .collect();
        let mut chargebacks: Vec<Line> = store
            .disputes
            .iter()
            .filter(|dispute| day.contains(&dispute.created_unix_s))
            .map(|dispute| Line {
                psp_reference: dispute.id.clone(),
                merchant_reference: dispute.reference.clone(),
                refund_reference: None,
                kind: "chargeback",
                created_unix_s: dispute.created_unix_s,
                currency: dispute.currency.clone(),
                gross: -dispute.amount,
                fee: config.chargeback_fee_minor,
            })
            .collect();
        // A won dispute gives the funds back on the day it was decided, without a fee.
        chargebacks.extend(store.disputes.iter().filter_map(|dispute| {
            let decided = dispute.decided_unix_s?;
            (dispute.status == crate::disputes::DisputeStatus::Won && day.contains(&decided)).then(
                || Line {
                    psp_reference: dispute.id.clone(),
                    merchant_reference: dispute.reference.clone(),
                    refund_reference: None,
                    kind: "chargeback_reversal",
                    created_unix_s: decided,
                    currency: dispute.currency.clone(),
                    gross: dispute.amount,
                    fee: 0,
                },
            )
        }));
        let by_time = |a: &Line, b: &Line| {
            (a.created_unix_s, &a.psp_reference).cmp(&(b.created_unix_s, &b.psp_reference))
        };
        lines.sort_by(by_time);
        refunds.sort_by(by_time);
        chargebacks.sort_by(by_time);
        lines.extend(refunds);
        lines.extend(chargebacks);
        (lines, store.settlement_faults.clone())
    };

    for unknown in &faults.unknown {
        lines.push(Line {
            created_unix_s: day_start_s,
            ..unknown.clone()
        });
    }
    let mut written: Vec<Line> = Vec::with_capacity(lines.len());
    for mut line in lines {
        if SettlementFaults::touches(&faults.missing, &line) {
            continue;
        }
        if SettlementFaults::touches(&faults.amount_changed, &line) {
            line.gross = line.gross.saturating_add(100);
        }
        if SettlementFaults::touches(&faults.currency_changed, &line) {
            line.currency = if line.currency == "USD" { "EUR" } else { "USD" }.to_owned();
        }
        if SettlementFaults::touches(&faults.duplicated, &line) {
            written.push(line.clone());
        }
        written.push(line);
    }

    // The payout is what the lines as written add up to, so the file agrees with itself.
    let mut net_by_currency: BTreeMap<String, i64> = BTreeMap::new();
    for line in &written {
        let net = net_by_currency.entry(line.currency.clone()).or_insert(0);
        *net = net.saturating_add(line.net());
    }
    let mut out = String::with_capacity(64 + written.len() * 120);
    out.push_str(HEADER);
    out.push('\n');
    for line in &written {
        line.write(&batch, &mut out);
    }
    for (currency, net) in net_by_currency {
        if net == 0 {
            continue;
        }
        Line {
            psp_reference: format!("po_{year:04}{month:02}{dom:02}_{currency}"),
            merchant_reference: String::new(),
            refund_reference: None,
            kind: "payout_to_bank",
            created_unix_s: day_start_s + 86_399,
            currency,
            gross: -net,
            fee: 0,
        }
        .write(&batch, &mut out);
    }
    out
}

/// A list of references from the faults body: absent is empty.
fn references(body: &Value, name: &str) -> Result<BTreeSet<String>, ApiError> {
    let invalid = || {
        ApiError::invalid_field(format!(
            "{name} must be a list of at most {FAULTS_MAX} non-empty strings"
        ))
    };
    match body.get(name) {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::Array(items)) if items.len() <= FAULTS_MAX => items
            .iter()
            .map(|item| match item.as_str() {
                Some(text) if !text.is_empty() => Ok(text.to_owned()),
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// `POST /v1/test/settlement_faults` `{missing, duplicated, amount_changed, currency_changed:
/// [reference…], unknown_lines: N}`: replaces the injected discrepancies; answers them.
pub(crate) async fn set_faults(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = json_object(&body)?;
    let unknown_count = match body.get("unknown_lines") {
        None | Some(Value::Null) => 0,
        Some(value) => match value.as_u64() {
            Some(n) if n <= FAULTS_MAX as u64 => n as usize,
            _ => {
                return Err(ApiError::invalid_field(format!(
                    "unknown_lines must be an integer from 0 to {FAULTS_MAX}"
                )));
            }
        },
    };
    let faults = SettlementFaults {
        missing: references(&body, "missing")?,
        duplicated: references(&body, "duplicated")?,
        amount_changed: references(&body, "amount_changed")?,
        currency_changed: references(&body, "currency_changed")?,
        unknown: (0..unknown_count)
            .map(|_| Line {
                psp_reference: new_id("psp_"),
                merchant_reference: new_id("pay_unknown_"),
                refund_reference: None,
                kind: "payment",
                created_unix_s: 0,
                currency: "USD".to_owned(),
                gross: 1_234,
                fee: payment_fee_minor(
                    1_234,
                    app.config.settlement_fee_bps,
                    app.config.settlement_fee_fixed_minor,
                ),
            })
            .collect(),
    };
    let answer = faults.to_json();
    app.store().settlement_faults = faults;
    tracing::info!(faults = %answer, "sandbox PSP: settlement faults set");
    Ok(Json(answer))
}

/// `DELETE /v1/test/settlement_faults`: settlement files are true again.
pub(crate) async fn clear_faults(State(app): State<AppState>) -> Json<Value> {
    let mut store = app.store();
    store.settlement_faults = SettlementFaults::default();
    Json(store.settlement_faults.to_json())
}

/// `POST /v1/test/lost_webhooks` `{"references": [merchant reference…]}`: from now on, no
/// webhook about these references is sent (as if every delivery were lost). Answers the list.
pub(crate) async fn lose_webhooks(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = json_object(&body)?;
    let references = references(&body, "references")?;
    let mut store = app.store();
    if store.lost_webhook_references.len() + references.len() > FAULTS_MAX {
        return Err(ApiError::invalid_field(format!(
            "at most {FAULTS_MAX} references may lose their webhooks"
        )));
    }
    store.lost_webhook_references.extend(references);
    let mut listed: Vec<&String> = store.lost_webhook_references.iter().collect();
    listed.sort();
    Ok(Json(json!({ "references": listed })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_are_basis_points_rounded_half_up_plus_fixed() {
        // 2.9 % of 1750 is 50.75 → 51, plus 30.
        assert_eq!(payment_fee_minor(1_750, 290, 30), 81);
        // 2.9 % of 1000 is 29.0 exactly.
        assert_eq!(payment_fee_minor(1_000, 290, 30), 59);
        // 2.9 % of 50 is 1.45 → 1; of 150 is 4.35 → 4; half rounds up: 2.9 % of 500 is 14.5 → 15.
        assert_eq!(payment_fee_minor(50, 290, 30), 31);
        assert_eq!(payment_fee_minor(150, 290, 30), 34);
        assert_eq!(payment_fee_minor(500, 290, 30), 45);
        assert_eq!(payment_fee_minor(1_000, 0, 0), 0);
        assert_eq!(payment_fee_minor(i64::MAX, 10_000, 1), i64::MAX);
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400));
        assert!(parse_date("2025-02-29").is_none());
        assert!(parse_date("2025-1-01").is_none());
        assert!(parse_date("2025-01-01x").is_none());
        assert!(parse_date("+025-01-01").is_none());
        assert!(parse_date("latest").is_none());
    }

    #[test]
    fn fields_with_commas_are_quoted() {
        assert_eq!(csv_field("pay_1"), "pay_1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
