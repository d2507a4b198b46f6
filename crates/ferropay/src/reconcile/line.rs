//! One line of a settlement file (CONTRACT.md, "Settlement file"), parsed and checked: the
//! columns are found by their header names, amounts are `i64` minor units with `gross - fee =
//! net`, the currency is ISO 4217, `created_at` is RFC 3339. A line that fails any check is kept
//! as [`ReadLine::Malformed`] with the reason, so that it becomes a break instead of stopping
//! the run.

use csv::ByteRecord;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::money::Currency;

/// The columns every settlement file has, in the contract's order (connectors write them).
pub const COLUMNS: [&str; 9] = crate::psp::SETTLEMENT_COLUMNS;

/// Longest reference or batch accepted, in bytes (they end up in keys and account names).
const TEXT_MAX_BYTES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineType {
    Payment,
    Refund,
    Chargeback,
    /// A won dispute's funds given back.
    ChargebackReversal,
    Fee,
    PayoutToBank,
}

impl LineType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "payment" => Self::Payment,
            "refund" => Self::Refund,
            "chargeback" => Self::Chargeback,
            "chargeback_reversal" => Self::ChargebackReversal,
            "fee" => Self::Fee,
            "payout_to_bank" => Self::PayoutToBank,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::Chargeback => "chargeback",
            Self::ChargebackReversal => "chargeback_reversal",
            Self::Fee => "fee",
            Self::PayoutToBank => "payout_to_bank",
        }
    }
}

/// A well-formed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementLine {
    /// 1-based, the header being line 0.
    pub line_no: u64,
    pub psp_reference: String,
    /// Our payment id for payments, our refund id for refunds; may be empty for payouts and fees.
    pub merchant_reference: String,
    pub kind: LineType,
    pub created_at_ms: i64,
    pub currency: String,
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub batch: String,
    /// A dispute line that names its payment, not its dispute (Adyen's `ChargebackReversed` and
    /// `SecondChargeback`: `psp_reference` is the record's own reference). Reconciliation finds
    /// the dispute through `merchant_reference` (`reconcile::dispute_lines`). False for the
    /// contract file's lines, whose `psp_reference` is the dispute's id.
    pub dispute_by_payment: bool,
}

/// A line as read: well formed, or not (with why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadLine {
    Line(SettlementLine),
    Malformed {
        line_no: u64,
        psp_reference: String,
        merchant_reference: String,
        reason: String,
    },
}

/// Where each contract column is in this file's records.
#[derive(Clone, Copy, Debug)]
pub struct Columns([usize; 9]);

impl Columns {
    /// Finds the contract's columns in the header row; extra columns are ignored.
    pub fn from_header(header: &ByteRecord) -> Result<Self, String> {
        let mut at = [0usize; 9];
        for (slot, name) in at.iter_mut().zip(COLUMNS) {
            *slot = header
                .iter()
                .position(|field| trim_bom(field) == name.as_bytes())
                .ok_or_else(|| {
                    format!(
                        "not a settlement file: the header has no `{name}` column (expected {})",
                        COLUMNS.join(",")
                    )
                })?;
        }
        Ok(Self(at))
    }

    /// Parses one record; `line_no` is its 1-based number after the header.
    pub fn parse(&self, record: &ByteRecord, line_no: u64) -> ReadLine {
        let field = |i: usize| -> &[u8] { record.get(self.0[i]).unwrap_or(b"") };
        let text = |i: usize| String::from_utf8_lossy(field(i)).into_owned();
        let psp_reference = text(0);
        let merchant_reference = text(1);
        match self.parse_checked(record, line_no) {
            Ok(line) => ReadLine::Line(line),
            Err(reason) => ReadLine::Malformed {
                line_no,
                psp_reference: truncate(psp_reference),
                merchant_reference: truncate(merchant_reference),
                reason,
            },
        }
    }

    fn parse_checked(&self, record: &ByteRecord, line_no: u64) -> Result<SettlementLine, String> {
        let max = self.0.iter().copied().max().unwrap_or(0);
        if record.len() <= max {
            return Err(format!(
                "{} fields where the header has at least {}",
                record.len(),
                max + 1
            ));
        }
        let text = |i: usize| -> Result<&str, String> {
            let bytes = record.get(self.0[i]).unwrap_or(b"");
            let text =
                std::str::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8", COLUMNS[i]))?;
            if text.len() > TEXT_MAX_BYTES {
                return Err(format!(
                    "`{}` is longer than {TEXT_MAX_BYTES} bytes",
                    COLUMNS[i]
                ));
            }
            // References are visible text; a control character is a broken file (and the unit
            // separator delimits lists sent to PostgreSQL).
            if text.chars().any(char::is_control) {
                return Err(format!("`{}` holds a control character", COLUMNS[i]));
            }
            Ok(text)
        };
        let amount = |i: usize| -> Result<i64, String> {
            let raw = text(i)?;
            raw.parse::<i64>().map_err(|_| {
                format!(
                    "`{}` must be an integer count of minor units, got `{raw}`",
                    COLUMNS[i]
                )
            })
        };

        let psp_reference = text(0)?;
        if psp_reference.is_empty() {
            return Err("`psp_reference` is empty".into());
        }
        let merchant_reference = text(1)?;
        let kind = LineType::parse(text(2)?).ok_or_else(|| {
            "`type` must be payment, refund, chargeback, chargeback_reversal, fee or payout_to_bank".to_owned()
        })?;
        let created_at = text(3)?;
        let created_at_ms = OffsetDateTime::parse(created_at, &Rfc3339)
            .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| format!("`created_at` must be RFC 3339, got `{created_at}`"))?;
        let currency = Currency::parse(text(4)?).map_err(|e| format!("`currency`: {e}"))?;
        let (gross_minor, fee_minor, net_minor) = (amount(5)?, amount(6)?, amount(7)?);
        if gross_minor.checked_sub(fee_minor) != Some(net_minor) {
            return Err(format!(
                "gross - fee must equal net: {gross_minor} - {fee_minor} is not {net_minor}"
            ));
        }
        match kind {
            LineType::Payment if gross_minor <= 0 => {
                return Err("a payment's gross must be positive".into());
            }
            LineType::Refund | LineType::Chargeback if gross_minor >= 0 => {
                return Err(format!("a {}'s gross must be negative", kind.as_str()));
            }
            LineType::Payment | LineType::Refund | LineType::Chargeback
                if merchant_reference.is_empty() =>
            {
                return Err(format!(
                    "a {} line needs a merchant_reference",
                    kind.as_str()
                ));
            }
            _ => {}
        }
        Ok(SettlementLine {
            line_no,
            psp_reference: psp_reference.to_owned(),
            merchant_reference: merchant_reference.to_owned(),
            kind,
            created_at_ms,
            currency: currency.code().to_owned(),
            gross_minor,
            fee_minor,
            net_minor,
            batch: text(8)?.to_owned(),
            dispute_by_payment: false,
        })
    }
}

/// A UTF-8 byte order mark before the first header name is not part of it.
fn trim_bom(field: &[u8]) -> &[u8] {
    field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
}

fn truncate(mut text: String) -> String {
    if text.len() > TEXT_MAX_BYTES {
        let mut end = TEXT_MAX_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    fn columns() -> Columns {
        Columns::from_header(&record(&COLUMNS)).unwrap()
    }

    const OK: [&str; 9] = [
        "psp_1",
        "pay_1",
        "payment",
        "2026-11-24T10:00:00Z",
        "USD",
        "1750",
        "81",
        "1669",
        "stl_20261124",
    ];

    fn with(index: usize, value: &str) -> ReadLine {
        let mut fields = OK;
        fields[index] = value;
        columns().parse(&record(&fields), 7)
    }

    #[test]
    fn a_good_line_parses() {
        let ReadLine::Line(line) = columns().parse(&record(&OK), 3) else {
            panic!("malformed");
        };
        assert_eq!(line.line_no, 3);
        assert_eq!(line.kind, LineType::Payment);
        assert_eq!(line.created_at_ms, 1_795_514_400_000);
        assert_eq!(
            (line.gross_minor, line.fee_minor, line.net_minor),
            (1750, 81, 1669)
        );
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let mut header: Vec<&str> = COLUMNS.iter().rev().copied().collect();
        header.push("extra");
        let columns = Columns::from_header(&record(&header)).unwrap();
        let mut fields: Vec<&str> = OK.iter().rev().copied().collect();
        fields.push("ignored");
        assert!(matches!(
            columns.parse(&record(&fields), 1),
            ReadLine::Line(_)
        ));
        let error = Columns::from_header(&record(&COLUMNS[..8])).unwrap_err();
        assert!(error.contains("batch"), "{error}");
    }

    #[test]
    fn bad_lines_are_malformed_with_a_reason() {
        for (index, value, needle) in [
            (0, "", "psp_reference"),
            (2, "gift", "type"),
            (3, "yesterday", "created_at"),
            (4, "usd", "currency"),
            (5, "17.50", "gross"),
            (6, "80", "gross - fee"),
            (1, "", "merchant_reference"),
            (7, "99999999999999999999", "net"),
            (1, "pay\u{1f}1", "control character"),
        ] {
            match with(index, value) {
                ReadLine::Malformed {
                    reason, line_no, ..
                } => {
                    assert!(reason.contains(needle), "{value}: {reason}");
                    assert_eq!(line_no, 7);
                }
                ReadLine::Line(line) => panic!("{value} parsed: {line:?}"),
            }
        }
        let mut negative = OK;
        (negative[5], negative[6], negative[7]) = ("-1750", "0", "-1750");
        let ReadLine::Malformed { reason, .. } = columns().parse(&record(&negative), 1) else {
            panic!("a negative payment parsed");
        };
        assert!(reason.contains("positive"), "{reason}");
        let short = columns().parse(&record(&OK[..4]), 2);
        assert!(matches!(short, ReadLine::Malformed { .. }));
    }
}
