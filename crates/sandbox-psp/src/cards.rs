//! The sandbox's test cards and what each one does, and the checks on the hosted form's fields
//! (card number, `MM/YY` expiry, CVC) and on the 3-D Secure code.

use crate::clock::year_month;

/// What paying with a test card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardOutcome {
    /// Succeeds at once.
    Succeed,
    /// Succeeds at once; the buyer's bank disputes it `dispute_delay_ms` later.
    SucceedThenDispute,
    /// Declined at once with this failure code.
    Decline(&'static str),
    /// Asks for a 3-D Secure challenge first.
    Challenge,
    /// Held for review: `processing`, then succeeds after the review delay.
    Review,
    /// This attempt fails with `processing_error`; the session stays open.
    ProcessingError,
}

pub(crate) struct TestCard {
    pub(crate) number: &'static str,
    pub(crate) outcome: CardOutcome,
    pub(crate) does: &'static str,
}

pub(crate) const TEST_CARDS: [TestCard; 7] = [
    TestCard {
        number: "4242424242424242",
        outcome: CardOutcome::Succeed,
        does: "succeeds at once",
    },
    TestCard {
        number: "4000000000000002",
        outcome: CardOutcome::Decline("card_declined"),
        does: "declined",
    },
    TestCard {
        number: "4000000000009995",
        outcome: CardOutcome::Decline("insufficient_funds"),
        does: "declined: not enough funds",
    },
    TestCard {
        number: "4000002500003155",
        outcome: CardOutcome::Challenge,
        does: "3-D Secure challenge (000000 fails, other six digits pass)",
    },
    TestCard {
        number: "4000000000000259",
        outcome: CardOutcome::Review,
        does: "held for review, then succeeds",
    },
    TestCard {
        number: "4000000000002685",
        outcome: CardOutcome::SucceedThenDispute,
        does: "succeeds, then is disputed (chargeback) after the dispute delay",
    },
    TestCard {
        number: "4000000000000119",
        outcome: CardOutcome::ProcessingError,
        does: "cannot be processed this time: try again",
    },
];

/// The test card `digits` is, if any.
pub(crate) fn outcome_of(digits: &str) -> Option<CardOutcome> {
    TEST_CARDS
        .iter()
        .find(|card| card.number == digits)
        .map(|card| card.outcome)
}

/// `4242424242424242` as `4242 4242 4242 4242`.
pub(crate) fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 4);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && index % 4 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// The card number's digits (spaces allowed between them): 12 to 19 digits.
pub(crate) fn card_digits(raw: &str) -> Result<String, &'static str> {
    let digits: String = raw.chars().filter(|c| *c != ' ').collect();
    if (12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err("Enter the card number: 12 to 19 digits")
    }
}

/// `MM/YY`, a month 01..=12, not before the current month (a card is valid through the end of
/// its expiry month).
pub(crate) fn check_expiry(raw: &str, now_unix_s: i64) -> Result<(), &'static str> {
    let raw = raw.trim();
    let bytes = raw.as_bytes();
    let shaped = bytes.len() == 5
        && bytes[2] == b'/'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !shaped {
        return Err("Enter the expiry date as MM/YY");
    }
    let month = u32::from(bytes[0] - b'0') * 10 + u32::from(bytes[1] - b'0');
    let year = 2_000 + i64::from(bytes[3] - b'0') * 10 + i64::from(bytes[4] - b'0');
    if !(1..=12).contains(&month) {
        return Err("The expiry month must be 01 to 12");
    }
    if (year, month) < year_month(now_unix_s) {
        return Err("This card has expired: check the date, or use another card");
    }
    Ok(())
}

/// The contract: "any CVC". Only what no card could have is refused: more than four characters,
/// or anything but digits.
pub(crate) fn check_cvc(raw: &str) -> Result<(), &'static str> {
    let raw = raw.trim();
    if raw.len() <= 4 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("The CVC is the 3 or 4 digits on the card")
    }
}

/// The 3-D Secure code: six digits; `000000` fails authentication, any other passes.
pub(crate) fn challenge_passes(raw: &str) -> Result<bool, &'static str> {
    let raw = raw.trim();
    if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw != "000000")
    } else {
        Err("Enter the six digits of the code")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_2025_S: i64 = 1_764_000_000;

    #[test]
    fn test_cards_and_digits() {
        assert_eq!(
            card_digits("4242 4242 4242 4242").unwrap(),
            "4242424242424242"
        );
        assert!(card_digits("4242-4242-4242-4242").is_err());
        assert!(card_digits("12345").is_err());
        assert!(card_digits("").is_err());
        assert_eq!(outcome_of("4242424242424242"), Some(CardOutcome::Succeed));
        assert_eq!(
            outcome_of("4000000000009995"),
            Some(CardOutcome::Decline("insufficient_funds"))
        );
        assert_eq!(outcome_of("4111111111111111"), None);
        assert_eq!(grouped("4000002500003155"), "4000 0025 0000 3155");
    }

    #[test]
    fn expiry_is_mm_yy_and_not_past() {
        assert!(check_expiry("11/25", NOV_2025_S).is_ok());
        assert!(check_expiry(" 01/26 ", NOV_2025_S).is_ok());
        assert!(check_expiry("10/25", NOV_2025_S).is_err());
        assert!(check_expiry("12/24", NOV_2025_S).is_err());
        assert!(check_expiry("13/30", NOV_2025_S).is_err());
        assert!(check_expiry("00/30", NOV_2025_S).is_err());
        assert!(check_expiry("1/30", NOV_2025_S).is_err());
        assert!(check_expiry("12-30", NOV_2025_S).is_err());
        assert!(check_expiry("１2/30", NOV_2025_S).is_err());
    }

    #[test]
    fn cvc_and_challenge_code() {
        // "Any CVC" (CONTRACT.md): whatever a card could print.
        for any in ["123", "1234", "12", "1", "", " 999 "] {
            assert!(check_cvc(any).is_ok(), "{any:?}");
        }
        assert!(check_cvc("12a").is_err());
        assert!(check_cvc("12345").is_err());
        assert_eq!(challenge_passes("123456"), Ok(true));
        assert_eq!(challenge_passes("000000"), Ok(false));
        assert!(challenge_passes("12345").is_err());
        assert!(challenge_passes("abcdef").is_err());
    }
}
