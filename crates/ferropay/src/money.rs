//! Money (invariant I1): an integer count of a currency's minor units (`i64`) and an ISO 4217
//! currency. Values are parsed, never trusted: a `Currency` is a known code with minor units, an
//! amount is positive and under a ceiling, and every sum is checked. No float touches money.

use std::fmt;

/// The largest amount one payment order or one payment may carry, in minor units
/// (10^12: ten billion dollars in cents). Far below `i64::MAX`, so sums of many stay exact.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// An ISO 4217 currency that has minor units (e.g. `USD`: 2, `JPY`: 0, `KWD`: 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parses an upper-case ISO 4217 code. Codes without minor units (gold, funds) are refused.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let currency = iso_currency::Currency::from_code(code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))?;
        if currency.exponent().is_none() {
            return Err(MoneyError::UnknownCurrency(code.to_owned()));
        }
        Ok(Self(currency))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// How many decimal digits the minor unit has (2 for USD).
    pub fn minor_digits(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Currency {
    /// By ISO code, so that sorted keys (wallets, totals) read alphabetically.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(other.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A positive amount within [`MAX_AMOUNT_MINOR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmountMinor(i64);

impl AmountMinor {
    pub fn parse(amount_minor: i64) -> Result<Self, MoneyError> {
        if amount_minor <= 0 {
            return Err(MoneyError::NotPositive(amount_minor));
        }
        if amount_minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::TooLarge(amount_minor));
        }
        Ok(Self(amount_minor))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The sum of two amounts, refused when it passes [`MAX_AMOUNT_MINOR`].
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        let sum = self
            .0
            .checked_add(other.0)
            .ok_or(MoneyError::TooLarge(i64::MAX))?;
        Self::parse(sum)
    }
}

/// A signed amount of one currency (a posting, a wallet delta, a balance): debits and credits,
/// refunds and reversals. Arithmetic is checked, and two currencies never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// A stored amount and currency code, which the database only holds once validated.
    pub fn from_stored(minor: i64, currency_code: &str) -> Result<Self, MoneyError> {
        Ok(Self::new(minor, Currency::parse(currency_code)?))
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    /// `self + other`, refused across currencies and on overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.code(),
                other.currency.code(),
            ));
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Self::new(minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, refused across currencies and on overflow.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.checked_add(other.checked_neg()?)
    }

    /// `-self`, refused for `i64::MIN`.
    pub fn checked_neg(self) -> Result<Self, MoneyError> {
        self.minor
            .checked_neg()
            .map(|minor| Self::new(minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }
}

impl From<(AmountMinor, Currency)> for Money {
    fn from((amount, currency): (AmountMinor, Currency)) -> Self {
        Self::new(amount.get(), currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.minor, self.currency))
    }
}

/// Formats minor units for people: `1750` USD → `17.50 USD`, `500` JPY → `500 JPY`.
pub fn format_minor(amount_minor: i64, currency: Currency) -> String {
    let digits = currency.minor_digits();
    if digits == 0 {
        return format!("{amount_minor} {currency}");
    }
    let scale = 10_i64.pow(digits);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale_u = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale_u,
        abs % scale_u,
        width = digits as usize
    )
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("`{0}` is not an ISO 4217 currency code with minor units (e.g. USD, EUR, JPY)")]
    UnknownCurrency(String),
    #[error("amount must be a positive integer count of minor units, got {0}")]
    NotPositive(i64),
    #[error("amount {0} is above the limit of {MAX_AMOUNT_MINOR} minor units")]
    TooLarge(i64),
    #[error("{0} and {1} cannot be added: amounts of two currencies")]
    CurrencyMismatch(&'static str, &'static str),
    #[error("the sum overflows 64-bit minor units")]
    Overflow,
}

/// For an optional amount where leaving the field out means "the rest" (a refund, a payout):
/// serde calls this only when the field is there, so an explicit `null` is refused instead of
/// being read as absent (which would move the maximum).
pub fn present_amount<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error as _;
    match Option::<i64>::deserialize(deserializer)? {
        Some(amount) => Ok(Some(amount)),
        None => Err(D::Error::custom(
            "must be an integer of minor units; null is not allowed (leave the field out to \
             mean all of it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_parse_with_their_minor_units() {
        assert_eq!(Currency::parse("USD").unwrap().minor_digits(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_digits(), 3);
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn amounts_are_positive_and_bounded() {
        assert!(AmountMinor::parse(0).is_err());
        assert!(AmountMinor::parse(-5).is_err());
        assert!(AmountMinor::parse(MAX_AMOUNT_MINOR + 1).is_err());
        let max = AmountMinor::parse(MAX_AMOUNT_MINOR).unwrap();
        assert!(max.checked_add(AmountMinor::parse(1).unwrap()).is_err());
        assert_eq!(
            AmountMinor::parse(2)
                .unwrap()
                .checked_add(AmountMinor::parse(3).unwrap())
                .unwrap()
                .get(),
            5
        );
    }

    #[test]
    fn signed_money_never_mixes_currencies_or_overflows() {
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let a = Money::new(150, usd);
        assert_eq!(
            a.checked_add(Money::new(-200, usd)).unwrap(),
            Money::new(-50, usd)
        );
        assert_eq!(
            a.checked_sub(Money::new(150, usd)).unwrap(),
            Money::zero(usd)
        );
        assert!(a.checked_add(Money::new(1, eur)).is_err());
        assert!(
            Money::new(i64::MAX, usd)
                .checked_add(Money::new(1, usd))
                .is_err()
        );
        assert!(Money::new(i64::MIN, usd).checked_neg().is_err());
        assert_eq!(Money::new(-120, usd).to_string(), "-1.20 USD");
    }

    #[test]
    fn formats_for_people() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(format_minor(1750, usd), "17.50 USD");
        assert_eq!(format_minor(5, usd), "0.05 USD");
        assert_eq!(format_minor(-120, usd), "-1.20 USD");
        assert_eq!(
            format_minor(500, Currency::parse("JPY").unwrap()),
            "500 JPY"
        );
    }
}
