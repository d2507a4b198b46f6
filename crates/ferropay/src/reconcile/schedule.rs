//! The nightly run inside `serve`: at a configured UTC time of day (`--reconcile-at HH:MM`),
//! fetch the settlement file of the day that just ended from the PSP and reconcile it. A fetch
//! that fails for a passing reason is tried again every few minutes for an hour.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use time::{OffsetDateTime, Time};

use super::Reconciler;
use crate::error::Error;

/// A UTC time of day, to the minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl FromStr for TimeOfDay {
    type Err = String;

    /// `HH:MM`, 00:00 to 23:59.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a UTC time of day written HH:MM (00:00 to 23:59)");
        let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
        if hour.len() != 2 || minute.len() != 2 {
            return Err(bad());
        }
        let hour: u8 = hour.parse().map_err(|_| bad())?;
        let minute: u8 = minute.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(Self { hour, minute })
    }
}

/// A settlement day written `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<time::Date, String> {
    let bad = || format!("`{text}` is not a date written YYYY-MM-DD");
    let mut parts = text.split('-');
    let (Some(year), Some(month), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let digits = |part: &str| -> Result<u16, String> {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let month = time::Month::try_from(u8::try_from(digits(month)?).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let day = u8::try_from(digits(day)?).map_err(|_| bad())?;
    time::Date::from_calendar_date(i32::from(digits(year)?), month, day).map_err(|_| bad())
}

/// The first moment at `at` strictly after `now`.
pub fn next_run(now: OffsetDateTime, at: TimeOfDay) -> OffsetDateTime {
    let time = Time::from_hms(at.hour, at.minute, 0).expect("checked when parsed");
    let today = now.date().with_time(time).assume_utc();
    if today > now {
        today
    } else {
        today + time::Duration::days(1)
    }
}

/// The settlement day a run at `run_at` reconciles: the UTC day before it.
pub fn day_for_run(run_at: OffsetDateTime) -> time::Date {
    run_at.date().previous_day().unwrap_or(run_at.date())
}

/// Tries per night when the PSP cannot hand the file over, and the pause between them.
const FETCH_ATTEMPTS: u32 = 12;
const FETCH_RETRY: Duration = Duration::from_secs(300);

/// Runs for the server's life (the caller aborts the task to stop it).
pub async fn run_nightly(reconciler: Reconciler, at: TimeOfDay, work_dir: PathBuf) {
    loop {
        let now = OffsetDateTime::now_utc();
        let next = next_run(now, at);
        let wait = (next - now).unsigned_abs();
        tracing::info!(next_run = %next, "nightly reconciliation scheduled");
        tokio::time::sleep(wait).await;
        let day = day_for_run(next);
        for attempt in 1..=FETCH_ATTEMPTS {
            match reconciler.reconcile_day(day, &work_dir, false).await {
                Ok(report) => {
                    tracing::info!(
                        %day, run_id = %report.run_id, lines = report.lines,
                        matched = report.matched, breaks = report.breaks_found,
                        auto_healed = report.auto_healed, "nightly reconciliation done"
                    );
                    break;
                }
                Err(Error::PspUnavailable { message, .. }) if attempt < FETCH_ATTEMPTS => {
                    tracing::warn!(%day, attempt, %message, "settlement file not fetched; will retry");
                    tokio::time::sleep(FETCH_RETRY).await;
                }
                Err(error) => {
                    tracing::error!(%day, %error, "nightly reconciliation failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month};

    fn at(year: i32, month: Month, day: u8, hour: u8, minute: u8, second: u8) -> OffsetDateTime {
        Date::from_calendar_date(year, month, day)
            .unwrap()
            .with_hms(hour, minute, second)
            .unwrap()
            .assume_utc()
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(
            "02:30".parse::<TimeOfDay>(),
            Ok(TimeOfDay {
                hour: 2,
                minute: 30
            })
        );
        for bad in ["2:30", "24:00", "12:60", "1230", "", "ab:cd", "12:3"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_date("2026-11-24"),
            Ok(Date::from_calendar_date(2026, Month::November, 24).unwrap())
        );
        for bad in [
            "2026-11-31",
            "2026-13-01",
            "26-11-24",
            "2026-1-24",
            "2026-11-24-1",
            "+026-11-24",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_next_run_is_today_or_tomorrow() {
        use Month::*;
        let two = TimeOfDay { hour: 2, minute: 0 };
        assert_eq!(
            next_run(at(2026, November, 24, 1, 59, 59), two),
            at(2026, November, 24, 2, 0, 0)
        );
        assert_eq!(
            next_run(at(2026, November, 24, 2, 0, 0), two),
            at(2026, November, 25, 2, 0, 0)
        );
        assert_eq!(
            next_run(at(2026, December, 31, 23, 0, 0), two),
            at(2027, January, 1, 2, 0, 0)
        );
        assert_eq!(
            day_for_run(at(2027, January, 1, 2, 0, 0)),
            Date::from_calendar_date(2026, December, 31).unwrap()
        );
    }
}
