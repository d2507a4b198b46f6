//! Adyen's Settlement details report (`settlement_detail_report_batch_N.csv`) read as ferropay's
//! settlement lines, so that it goes through the same reconciliation as the sandbox's file. The
//! reconciliation's reader picks this parser when the header has Adyen's columns. (Stripe's
//! settlement comes from its API, and `crate::psp::stripe::report` writes it as a contract file.)
//!
//! Columns are found by their header names (Adyen may add columns): `Psp Reference`, `Merchant
//! Reference`, `Creation Date` with `TimeZone`, `Type`, `Modification Reference`, `Gross
//! Currency`, `Gross Debit (GC)`, `Gross Credit (GC)`, `Net Currency`, `Net Debit (NC)`, `Net
//! Credit (NC)`, `Batch Number`. Amounts are decimals in major units (`5.00`), turned into minor
//! units by the currency's exponent; a line whose gross and net currencies differ is refused.
//!
//! | `Type` | line `type` | `psp_reference` | gross | fee | net |
//! |---|---|---|---|---|---|
//! | `Settled` | `payment` | `Psp Reference` | Gross Credit | gross − net | Net Credit |
//! | `Refunded` | `refund` | `Modification Reference` (the refund's) | −Gross Debit | gross − net | −Net Debit |
//! | `Chargeback` | `chargeback` | `Modification Reference` (the dispute's) | −Gross Debit | gross − net | −Net Debit |
//! | `ChargebackReversed` | `chargeback_reversal`, its dispute found by payment | `Modification Reference` (the reversal's own), else `Psp Reference` | Gross Credit | gross − net | Net Credit − Net Debit |
//! | `SecondChargeback` | `chargeback`, its dispute found by payment | as `ChargebackReversed` | −Gross Debit | gross − net | Net Credit − Net Debit |
//! | `Fee` | `fee` | `fee:{batch}:{line}` | 0 | Net Debit | −Net Debit |
//! | `MerchantPayout` | `payout_to_bank` | `payout:{batch}:{Modification Reference}` | −Net Debit | 0 | −Net Debit |
//! | others (`DepositCorrection`, …) | a malformed line naming the type | | | | |
//!
//! A `ChargebackReversed` record (a won dispute's funds given back) carries our payment id in
//! `Merchant Reference` and the payment's `Psp Reference`; its `Modification Reference` is the
//! reversal's own, not necessarily the chargeback's. So is a `SecondChargeback`'s (the funds
//! taken again after a reversal). Their lines are marked `dispute_by_payment`: reconciliation
//! finds the dispute through the payment (`reconcile::dispute_lines`), never through the
//! modification reference.
use csv::ByteRecord;
use time::macros::format_description;
use time::{PrimitiveDateTime, UtcOffset};

use super::line::{LineType, ReadLine, SettlementLine};
use crate::money::Currency;

/// The columns this parser reads, as Adyen names them.
const NAMES: [&str; 12] = [
    "Psp Reference",
    "Merchant Reference",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
];
const BATCH: &str = "Batch Number";

/// Where Adyen's columns are in this report.
#[derive(Clone, Copy, Debug)]
pub struct AdyenColumns {
    at: [usize; 12],
    batch: usize,
}

impl AdyenColumns {
    /// `Some` when the header is a Settlement details report's.
    pub fn from_header(header: &ByteRecord) -> Option<Self> {
        let find = |name: &str| {
            header.iter().position(|field| {
                field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field) == name.as_bytes()
            })
        };
        let mut at = [0usize; 12];
        for (slot, name) in at.iter_mut().zip(NAMES) {
            *slot = find(name)?;
        }
        Some(Self {
            at,
            batch: find(BATCH)?,
        })
    }

    /// One record as a settlement line, or a malformed line with why.
    pub fn parse(&self, record: &ByteRecord, line_no: u64) -> ReadLine {
        let text = |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or(b"")).into_owned();
        match self.parse_checked(record, line_no) {
            Ok(line) => ReadLine::Line(line),
            Err(reason) => ReadLine::Malformed {
                line_no,
                psp_reference: text(self.at[0]),
                merchant_reference: text(self.at[1]),
                reason,
            },
        }
    }

    fn parse_checked(&self, record: &ByteRecord, line_no: u64) -> Result<SettlementLine, String> {
        let field = |i: usize| -> Result<&str, String> {
            let bytes = record.get(i).unwrap_or(b"");
            let text = std::str::from_utf8(bytes).map_err(|_| "a field is not UTF-8".to_owned())?;
            if text.chars().any(char::is_control) {
                return Err("a field holds a control character".into());
            }
            Ok(text.trim())
        };
        let column = |n: usize| field(self.at[n]);
        let record_type = column(4)?;
        let batch = field(self.batch)?.to_owned();
        let gross_currency = column(6)?;
        let net_currency = column(9)?;
        let currency_code = if gross_currency.is_empty() {
            net_currency
        } else {
            gross_currency
        };
        if !net_currency.is_empty() && net_currency != currency_code {
            return Err(format!(
                "gross in {gross_currency} and net in {net_currency}: settlement in another currency is not reconciled"
            ));
        }
        let currency =
            Currency::parse(currency_code).map_err(|e| format!("`Gross Currency`: {e}"))?;
        let amount = |n: usize| -> Result<i64, String> {
            minor_units(column(n)?, currency.minor_digits())
                .map_err(|e| format!("`{}`: {e}", NAMES[n]))
        };
        let created_at_ms = created_at_ms(column(2)?, column(3)?)?;
        let psp_reference = column(0)?;
        let merchant_reference = column(1)?.to_owned();
        let modification = column(5)?;
        let (kind, psp_reference, gross_minor, net_minor) = match record_type {
            "Settled" => (
                LineType::Payment,
                psp_reference.to_owned(),
                amount(8)?,
                amount(11)?,
            ),
            "Refunded" => (
                LineType::Refund,
                modification.to_owned(),
                -amount(7)?,
                -amount(10)?,
            ),
            "Chargeback" => (
                LineType::Chargeback,
                modification.to_owned(),
                -amount(7)?,
                -amount(10)?,
            ),
            "ChargebackReversed" => (
                LineType::ChargebackReversal,
                own_reference(modification, psp_reference),
                amount(8)?,
                amount(11)? - amount(10)?,
            ),
            "SecondChargeback" => (
                LineType::Chargeback,
                own_reference(modification, psp_reference),
                -amount(7)?,
                amount(11)? - amount(10)?,
            ),
            "Fee" => (
                LineType::Fee,
                format!("fee:{batch}:{line_no}"),
                0,
                -amount(10)?,
            ),
            "MerchantPayout" => {
                let paid = amount(10)?;
                (
                    LineType::PayoutToBank,
                    format!("payout:{batch}:{modification}"),
                    -paid,
                    -paid,
                )
            }
            other => {
                return Err(format!(
                    "Adyen record type `{other}` is not reconciled by ferropay (Settled, Refunded, \
                     Chargeback, ChargebackReversed, SecondChargeback, Fee and MerchantPayout are)"
                ));
            }
        };
        if psp_reference.is_empty() {
            return Err(format!("a {record_type} record without its PSP reference"));
        }
        if matches!(
            kind,
            LineType::Payment | LineType::Refund | LineType::Chargeback
        ) && merchant_reference.is_empty()
        {
            return Err(format!(
                "a {record_type} record without a Merchant Reference"
            ));
        }
        let dispute_by_payment = matches!(record_type, "ChargebackReversed" | "SecondChargeback");
        if dispute_by_payment && merchant_reference.is_empty() {
            return Err(format!(
                "a {record_type} record without a Merchant Reference (its payment)"
            ));
        }
        match record_type {
            "Settled" if gross_minor <= 0 => {
                return Err("a Settled record's Gross Credit must be positive".into());
            }
            "ChargebackReversed" if gross_minor <= 0 => {
                return Err("a ChargebackReversed record's Gross Credit must be positive".into());
            }
            "SecondChargeback" if gross_minor >= 0 => {
                return Err("a SecondChargeback record's Gross Debit must be positive".into());
            }
            _ => {}
        }
        Ok(SettlementLine {
            line_no,
            psp_reference,
            merchant_reference,
            kind,
            created_at_ms,
            currency: currency.code().to_owned(),
            gross_minor,
            fee_minor: gross_minor - net_minor,
            net_minor,
            batch,
            dispute_by_payment,
        })
    }
}

/// A record's own reference: its modification reference, or the payment's when it has none.
fn own_reference(modification: &str, psp_reference: &str) -> String {
    if modification.is_empty() {
        psp_reference.to_owned()
    } else {
        modification.to_owned()
    }
}

/// `5.00` in a currency of `digits` minor digits → 500. Empty is zero; more decimals than the
/// currency has are refused, as is anything but digits and one point.
fn minor_units(text: &str, digits: u32) -> Result<i64, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(format!("`{text}` is not a decimal amount"));
    }
    if fraction.len() > digits as usize {
        return Err(format!("`{text}` has more than {digits} decimals"));
    }
    let scale = 10_i64.pow(digits);
    let fraction_minor = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i64>().map_err(|e| e.to_string())?
            * 10_i64.pow(digits - fraction.len() as u32)
    };
    whole
        .parse::<i64>()
        .ok()
        .and_then(|whole| whole.checked_mul(scale))
        .and_then(|minor| minor.checked_add(fraction_minor))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `2013-06-03 11:26:49` in the report's time zone (`CET`, `CEST`, `GMT`, …) as Unix ms.
fn created_at_ms(date: &str, zone: &str) -> Result<i64, String> {
    let at = PrimitiveDateTime::parse(
        date,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .map_err(|_| format!("`Creation Date` must be YYYY-MM-DD hh:mm:ss, got `{date}`"))?;
    let hours: i8 = match zone {
        "UTC" | "GMT" | "WET" => 0,
        "CET" | "BST" | "WEST" => 1,
        "CEST" | "EET" => 2,
        "EEST" | "MSK" => 3,
        "SGT" | "HKT" | "AWST" => 8,
        "JST" => 9,
        "AEST" => 10,
        "AEDT" => 11,
        "EST" => -5,
        "EDT" => -4,
        "CDT" => -5,
        "CST" => -6,
        "MST" => -7,
        "PST" => -8,
        "PDT" => -7,
        other => return Err(format!("`TimeZone` `{other}` is not one ferropay knows")),
    };
    let offset = UtcOffset::from_hms(hours, 0, 0).map_err(|e| e.to_string())?;
    Ok((at.assume_offset(offset).unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Company Account,Merchant Account,Psp Reference,Merchant Reference,Payment Method,\
Creation Date,TimeZone,Type,Modification Reference,Gross Currency,Gross Debit (GC),Gross Credit (GC),\
Exchange Rate,Net Currency,Net Debit (NC),Net Credit (NC),Commission (NC),Markup (NC),Scheme Fees (NC),\
Interchange (NC),Payment Method Variant,Modification Merchant Reference,Batch Number";

    fn record(line: &str) -> ByteRecord {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        reader.byte_records().next().unwrap().unwrap()
    }

    fn columns() -> AdyenColumns {
        AdyenColumns::from_header(&record(HEADER)).expect("an Adyen header")
    }

    #[test]
    fn each_record_type_becomes_its_line() {
        let settled = "Co,Shop,1813702551707653,pay_1,visa,2013-06-03 11:26:49,CET,Settled,1713702551795048,GBP,,5.00,1,GBP,,4.88,,0.04,0.01,0.07,visaclassic,,7";
        let ReadLine::Line(line) = columns().parse(&record(settled), 1) else {
            panic!("malformed")
        };
        assert_eq!(line.kind, LineType::Payment);
        assert_eq!(line.psp_reference, "1813702551707653");
        assert_eq!(
            (line.gross_minor, line.fee_minor, line.net_minor),
            (500, 12, 488)
        );
        assert_eq!(line.created_at_ms, 1_370_255_209_000);
        assert_eq!(line.batch, "7");
        let chargeback = "Co,Shop,1313642467023511,pay_2,visa,2013-03-26 22:37:26,CET,Chargeback,2313642467170922,EUR,349.99,,1,EUR,357.49,,7.5,,,,visaclassic,,7";
        let ReadLine::Line(line) = columns().parse(&record(chargeback), 2) else {
            panic!("malformed")
        };
        assert_eq!(line.kind, LineType::Chargeback);
        assert_eq!(line.psp_reference, "2313642467170922");
        assert_eq!(
            (line.gross_minor, line.fee_minor, line.net_minor),
            (-34_999, 750, -35_749)
        );
        let fee =
            "Co,Shop,,,,2013-06-11 04:55:40,BST,Fee,Transaction Fees,GBP,,,,GBP,0.15,,,,,,,,7";
        let ReadLine::Line(line) = columns().parse(&record(fee), 3) else {
            panic!("malformed")
        };
        assert_eq!(
            (line.kind, line.gross_minor, line.fee_minor, line.net_minor),
            (LineType::Fee, 0, 15, -15)
        );
        let payout =
            "Co,Shop,,,,2013-06-11 04:55:40,BST,MerchantPayout,TX123,GBP,,,,GBP,4.73,,,,,,,,7";
        let ReadLine::Line(line) = columns().parse(&record(payout), 4) else {
            panic!("malformed")
        };
        assert_eq!(line.kind, LineType::PayoutToBank);
        assert_eq!(line.gross_minor, -473);
        assert!(!line.dispute_by_payment);
    }

    #[test]
    fn a_reversal_and_a_second_chargeback_name_their_payment() {
        let reversed = "Co,Shop,1313642467023511,pay_2,visa,2013-04-16 10:01:02,CET,ChargebackReversed,9913642467170955,EUR,,349.99,1,EUR,,349.99,,,,,visaclassic,,8";
        let ReadLine::Line(line) = columns().parse(&record(reversed), 1) else {
            panic!("malformed")
        };
        assert_eq!(line.kind, LineType::ChargebackReversal);
        assert!(line.dispute_by_payment);
        assert_eq!(line.merchant_reference, "pay_2");
        assert_eq!(line.psp_reference, "9913642467170955");
        assert_eq!(
            (line.gross_minor, line.fee_minor, line.net_minor),
            (34_999, 0, 34_999)
        );
        // No modification reference: the payment's stands in (matching does not use it).
        let bare = reversed.replace(",9913642467170955,", ",,");
        let ReadLine::Line(line) = columns().parse(&record(&bare), 2) else {
            panic!("malformed")
        };
        assert_eq!(line.psp_reference, "1313642467023511");
        let second = "Co,Shop,1313642467023511,pay_2,visa,2013-05-02 09:00:00,CET,SecondChargeback,9913642467170999,EUR,349.99,,1,EUR,357.49,,7.5,,,,visaclassic,,9";
        let ReadLine::Line(line) = columns().parse(&record(second), 3) else {
            panic!("malformed")
        };
        assert_eq!(line.kind, LineType::Chargeback);
        assert!(line.dispute_by_payment);
        assert_eq!(
            (line.gross_minor, line.fee_minor, line.net_minor),
            (-34_999, 750, -35_749)
        );
    }

    #[test]
    fn other_types_and_bad_amounts_are_malformed_with_a_reason() {
        for (line, needle) in [
            (
                "Co,Shop,1,pay_1,visa,2013-06-03 11:26:49,CET,DepositCorrection,2,EUR,,1.00,1,EUR,,1.00,,,,,,,7",
                "DepositCorrection",
            ),
            (
                "Co,Shop,1,,visa,2013-06-03 11:26:49,CET,ChargebackReversed,2,EUR,,1.00,1,EUR,,1.00,,,,,,,7",
                "Merchant Reference",
            ),
            (
                "Co,Shop,1,pay_1,visa,2013-06-03 11:26:49,CET,ChargebackReversed,2,EUR,1.00,,1,EUR,1.00,,,,,,,,7",
                "Gross Credit must be positive",
            ),
            (
                "Co,Shop,1,pay_1,visa,2013-06-03 11:26:49,CET,Settled,2,EUR,,1.001,1,EUR,,1.00,,,,,,,7",
                "decimals",
            ),
            (
                "Co,Shop,1,pay_1,visa,2013-06-03 11:26:49,CET,Settled,2,EUR,,1.00,1,USD,,1.00,,,,,,,7",
                "another currency",
            ),
            (
                "Co,Shop,1,pay_1,visa,2013-06-03 11:26:49,XYZ,Settled,2,EUR,,1.00,1,EUR,,1.00,,,,,,,7",
                "TimeZone",
            ),
            (
                "Co,Shop,1,,visa,2013-06-03 11:26:49,CET,Settled,2,EUR,,1.00,1,EUR,,1.00,,,,,,,7",
                "Merchant Reference",
            ),
        ] {
            match columns().parse(&record(line), 9) {
                ReadLine::Malformed { reason, .. } => assert!(reason.contains(needle), "{reason}"),
                ReadLine::Line(line) => panic!("parsed: {line:?}"),
            }
        }
        assert!(AdyenColumns::from_header(&record("psp_reference,merchant_reference")).is_none());
        assert_eq!(minor_units("12", 0), Ok(12));
        assert_eq!(minor_units("0.5", 2), Ok(50));
        assert!(minor_units("-1.00", 2).is_err());
    }
}
