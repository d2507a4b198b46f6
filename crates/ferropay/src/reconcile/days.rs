//! Which settlement days may be reconciled for good: only closed ones. A PSP's file for a UTC
//! day that has not ended holds what happened so far; reconciling it would post a partial payout
//! to the bank and a partial fee total under the day's source references, and the complete
//! file would then break against them. So a run for a day that has not closed, for a day in the
//! future, or for a day before our first payment (the PSP has no file of ours for it) is refused
//! with 400, unless it is provisional: a provisional run reads and matches and posts nothing.
//!
//! A day closes at its end (midnight UTC) plus the reconciler's `day_close_lag_ms`: a PSP that
//! publishes its files a few hours after midnight wants a positive lag; tests that reconcile the
//! day they paid on set it to minus a day.

use time::{Date, OffsetDateTime};

use crate::error::{Error, Result};
use crate::store::Store;

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The first moment (ms since the epoch) at which `date` counts as closed.
pub fn closes_at_ms(date: Date, day_close_lag_ms: i64) -> i64 {
    let end_ms = date.midnight().assume_utc().unix_timestamp() * 1_000 + DAY_MS;
    end_ms.saturating_add(day_close_lag_ms)
}

/// Refuses, as 400 naming `date`, a day that is in the future or has not closed at `now`, or
/// that lies before `first_day` (the day of our first payment; `None`: we have none yet).
pub fn check_closed(
    date: Date,
    now: OffsetDateTime,
    day_close_lag_ms: i64,
    first_day: Option<Date>,
) -> Result<()> {
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let today = now.date();
    if date > today {
        return Err(Error::invalid(
            "date",
            format!(
                "{date} is in the future (today is {today} UTC); only a closed day can be \
                 reconciled"
            ),
        ));
    }
    if now_ms < closes_at_ms(date, day_close_lag_ms) {
        return Err(Error::invalid(
            "date",
            format!(
                "{date} has not closed yet (a UTC day closes at its end, plus {} s); its file is \
                 still partial. Ask for a provisional run, which posts nothing, to look at it now",
                day_close_lag_ms / 1_000
            ),
        ));
    }
    match first_day {
        Some(first) if date < first => Err(Error::invalid(
            "date",
            format!(
                "{date} is before our first payment ({first}): the PSP has no settlement file \
                 of ours for it"
            ),
        )),
        None => Err(Error::invalid(
            "date",
            format!("{date}: no payment has been made yet, so the PSP has no file of ours"),
        )),
        Some(_) => Ok(()),
    }
}

/// [`check_closed`] now, against the first payment in `store`.
pub async fn check_closed_now(store: &Store, date: Date, day_close_lag_ms: i64) -> Result<()> {
    let first_day = first_payment_day(store).await?;
    check_closed(date, OffsetDateTime::now_utc(), day_close_lag_ms, first_day)
}

/// The UTC day of our first payment, if any.
pub async fn first_payment_day(store: &Store) -> Result<Option<Date>> {
    let first_ms: Option<i64> = sqlx::query_scalar("SELECT MIN(created_at_ms) FROM payments")
        .fetch_one(store.pool())
        .await?;
    Ok(first_ms.and_then(|ms| {
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1_000))
            .ok()
            .map(|at| at.date())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month::November;

    fn day(d: u8) -> Date {
        Date::from_calendar_date(2026, November, d).unwrap()
    }

    fn at(d: u8, hour: u8) -> OffsetDateTime {
        day(d).with_hms(hour, 0, 0).unwrap().assume_utc()
    }

    fn refused(date: Date, now: OffsetDateTime, lag_ms: i64, first: Option<Date>) -> bool {
        check_closed(date, now, lag_ms, first).is_err()
    }

    #[test]
    fn only_closed_days_after_the_first_payment_pass() {
        let first = Some(day(10));
        // Yesterday is closed at midnight; today and tomorrow are not.
        assert!(!refused(day(23), at(24, 0), 0, first));
        assert!(refused(day(24), at(24, 23), 0, first));
        assert!(refused(day(25), at(24, 23), 0, first));
        // A lag of three hours keeps yesterday open until 03:00.
        assert!(refused(day(23), at(24, 2), 3 * 3_600_000, first));
        assert!(!refused(day(23), at(24, 3), 3 * 3_600_000, first));
        // Minus a day: today counts as closed (tests), the future still does not.
        assert!(!refused(day(24), at(24, 1), -DAY_MS, first));
        assert!(refused(day(25), at(24, 1), -DAY_MS, first));
        // Before the first payment, or with none at all.
        assert!(refused(day(9), at(24, 1), 0, first));
        assert!(!refused(day(10), at(24, 1), 0, first));
        assert!(refused(day(20), at(24, 1), 0, None));
    }
}
