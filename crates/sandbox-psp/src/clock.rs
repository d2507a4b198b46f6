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
    let (year, month, _) = civil_from_unix_s(unix_s);
    (year, month)
}

/// The UTC (year, month 1..=12, day 1..=31) that `unix_s` falls in.
pub(crate) fn civil_from_unix_s(unix_s: i64) -> (i64, u32, u32) {
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
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Unix seconds at 00:00:00 UTC of a date, or `None` when the date does not exist.
pub(crate) fn unix_s_of_date(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || !(1..=9_999).contains(&year) {
        return None;
    }
    // The inverse of `civil_from_unix_s`, in the same March-based eras.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let unix_s = days * 86_400;
    // A day past the month's end (31 April) lands in the next month: refuse it.
    (civil_from_unix_s(unix_s) == (year, month, day)).then_some(unix_s)
}

/// `2026-11-24T10:00:00Z` for a unix second.
pub(crate) fn rfc3339(unix_s: i64) -> String {
    let (year, month, day) = civil_from_unix_s(unix_s);
    let second_of_day = unix_s.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_known_dates() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(951_782_400), (2000, 2)); // 2000-02-29 00:00:00
        assert_eq!(year_month(951_868_800), (2000, 3)); // 2000-03-01 00:00:00
        assert_eq!(year_month(1_764_000_000), (2025, 11)); // 2025-11-24
        assert_eq!(year_month(1_767_225_599), (2025, 12)); // 2025-12-31 23:59:59
        assert_eq!(year_month(1_767_225_600), (2026, 1)); // 2026-01-01 00:00:00
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(unix_s_of_date(1970, 1, 1), Some(0));
        assert_eq!(unix_s_of_date(2000, 2, 29), Some(951_782_400));
        assert_eq!(unix_s_of_date(2026, 1, 1), Some(1_767_225_600));
        assert_eq!(unix_s_of_date(2025, 2, 29), None);
        assert_eq!(unix_s_of_date(2025, 4, 31), None);
        assert_eq!(unix_s_of_date(2025, 13, 1), None);
        assert_eq!(unix_s_of_date(2025, 1, 0), None);
        assert_eq!(rfc3339(1_764_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(civil_from_unix_s(1_767_225_599), (2025, 12, 31));
        let mut day_s = unix_s_of_date(1999, 12, 1).unwrap();
        for _ in 0..1_000 {
            let (y, m, d) = civil_from_unix_s(day_s);
            assert_eq!(unix_s_of_date(y, m, d), Some(day_s));
            day_s += 86_400;
        }
    }
}
