//! Wall-clock helpers: unix seconds for the JSON and the signatures, and the calendar month a
//! card's expiry is compared with. Deadlines use tokio's monotonic clock instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch (0 if the clock is before it).
pub(crate) fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The UTC (year, month 1..=12) that `unix_s` falls in.
pub(crate) fn year_month(unix_s: i64) -> (i64, u32) {
    // Days since 1970-01-01 to a proleptic Gregorian date, counting in 400-year eras that
    // start on 1 March so that the leap day is the last day of an era's year.
    let days = unix_s.div_euclid(86_400);
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March … 11 = February
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::year_month;

    #[test]
    fn months_of_known_dates() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(951_782_400), (2000, 2)); // 2000-02-29 00:00:00
        assert_eq!(year_month(951_868_800), (2000, 3)); // 2000-03-01 00:00:00
        assert_eq!(year_month(1_764_000_000), (2025, 11)); // 2025-11-24
        assert_eq!(year_month(1_767_225_599), (2025, 12)); // 2025-12-31 23:59:59
        assert_eq!(year_month(1_767_225_600), (2026, 1)); // 2026-01-01 00:00:00
    }
}
