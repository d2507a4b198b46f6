//! The nightly run inside `serve`: at a configured UTC time of day (`--reconcile-at HH:MM`),
//! fetch the settlement file of the day that just ended from the PSP and reconcile it. A fetch
//! that fails for a passing reason is tried again every few minutes for an hour.
//!
//! One run per day across all instances: each day is a scheduled run (`jobs::scheduled`,
//! schedule `reconcile`, slot the settlement day) held under a lease. A run whose instance was
//! stopped or crashed is taken over and run again by another (reconciling a file twice posts
//! once); its reconciliation run row, left `running`, is marked `interrupted`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use time::{OffsetDateTime, Time};
use tokio::sync::watch;

use super::{ReconcileReport, Reconciler};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::jobs::scheduled::{self, RunOutcome, ScheduledRuns};

/// The schedule's name in `scheduled_runs`.
pub const SCHEDULE: &str = "reconcile";

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

/// Runs for the server's life, until `stop` turns true (a run in progress is then marked
/// interrupted for another instance). Every `check_ms` it looks for runs to take over.
pub async fn run_nightly(
    reconciler: Reconciler,
    at: TimeOfDay,
    work_dir: PathBuf,
    runs: ScheduledRuns,
    check_ms: u64,
    stop: watch::Receiver<bool>,
) {
    let run_slot = |slot: String| {
        let (reconciler, runs, work_dir, stop) = (&reconciler, &runs, &work_dir, stop.clone());
        async move {
            let Ok(day) = parse_date(&slot) else {
                tracing::error!(%slot, "a scheduled reconciliation with a bad day");
                return;
            };
            if let Err(error) = run_day(reconciler, runs, day, work_dir, stop).await {
                tracing::error!(%day, %error, "nightly reconciliation not recorded");
            }
        }
    };
    scheduled::daily_loop(
        &runs,
        SCHEDULE,
        |now| next_run(now, at),
        |due| day_for_run(due).to_string(),
        check_ms,
        stop.clone(),
        run_slot,
    )
    .await;
}

/// Reconciles `day` once across instances: claims the day's scheduled run, fetches and
/// reconciles (retrying a passing fetch failure), records how it ended.
pub async fn run_day(
    reconciler: &Reconciler,
    runs: &ScheduledRuns,
    day: time::Date,
    work_dir: &Path,
    stop: watch::Receiver<bool>,
) -> Result<RunOutcome<ReconcileReport>> {
    let source = format!("psp:{day}");
    // One slot per PSP and day (the sandbox's keeps the plain day it always had).
    let slot = match reconciler.psp.as_str() {
        crate::psp::sandbox::NAME => day.to_string(),
        psp => format!("{psp}:{day}"),
    };
    let outcome = runs
        .run(SCHEDULE, &slot, stop, |attempt| async move {
            if attempt > 1 {
                mark_interrupted(reconciler, &source)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            fetch_and_reconcile(reconciler, day, work_dir)
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
    match &outcome {
        RunOutcome::Ran {
            result: Ok(report), ..
        } => tracing::info!(
            %day, run_id = %report.run_id, lines = report.lines,
            matched = report.matched, breaks = report.breaks_found,
            auto_healed = report.auto_healed, "nightly reconciliation done"
        ),
        RunOutcome::Ran {
            result: Err(error), ..
        } => tracing::error!(%day, %error, "nightly reconciliation failed"),
        RunOutcome::Interrupted => mark_interrupted(reconciler, &format!("psp:{day}")).await?,
        RunOutcome::Finished | RunOutcome::HeldElsewhere | RunOutcome::LostLease => {
            tracing::info!(%day, "nightly reconciliation run by another instance")
        }
    }
    Ok(outcome)
}

async fn fetch_and_reconcile(
    reconciler: &Reconciler,
    day: time::Date,
    work_dir: &Path,
) -> Result<ReconcileReport> {
    let mut attempt = 1;
    loop {
        match reconciler.reconcile_day(day, work_dir, false).await {
            Err(Error::PspUnavailable { message, .. }) if attempt < FETCH_ATTEMPTS => {
                tracing::warn!(%day, attempt, %message, "settlement file not fetched; will retry");
                tokio::time::sleep(FETCH_RETRY).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Closes the reconciliation runs of `source` that a stopped or crashed instance left
/// `running`: they will never finish; the scheduled run's next attempt reconciles the day.
async fn mark_interrupted(reconciler: &Reconciler, source: &str) -> Result<()> {
    let marked = sqlx::query(
        "UPDATE reconciliation_runs SET status = 'interrupted', finished_at_ms = $1, \
         error = 'interrupted: its instance stopped or crashed; the day is reconciled again' \
         WHERE source = $2 AND status = 'running'",
    )
    .bind(now_ms())
    .bind(source)
    .execute(reconciler.store.pool())
    .await?;
    if marked.rows_affected() > 0 {
        tracing::warn!(
            source,
            runs = marked.rows_affected(),
            "reconciliation runs marked interrupted"
        );
    }
    Ok(())
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
