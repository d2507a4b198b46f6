//! The payout schedule: once a day at a set UTC time, every seller wallet with at least a minimum
//! available is paid out in full. Each day's run is idempotent per seller and currency (keys
//! `schedule:{date}:{seller}:{currency}`), so several instances, or a restart, pay nobody twice.
//!
//! And each day runs once across instances: the day is a scheduled run (`jobs::scheduled`,
//! schedule `payouts`) held under a lease, so one instance walks the wallets; a run whose
//! instance stopped or crashed is taken over and run again by another (paying nobody twice).

use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{PayoutInput, PayoutView};
use crate::error::{Error, Result};
use crate::idempotency::{self, KeyScope};
use crate::jobs::scheduled::{self, RunOutcome, ScheduledRuns};
use crate::service::Ferropay;

/// When and above what the schedule pays out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayoutSchedule {
    /// Minutes after midnight UTC.
    pub at_minute_of_day: u32,
    /// Wallets with less available (in minor units) wait for a later day.
    pub minimum_minor: i64,
}

impl PayoutSchedule {
    /// Parses `HH:MM` (UTC).
    pub fn parse_time(text: &str) -> Result<u32> {
        let bad = || Error::invalid("payout-at", "must be HH:MM (UTC), e.g. 02:30");
        let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
        let hours: u32 = hours.parse().map_err(|_| bad())?;
        let minutes: u32 = minutes.parse().map_err(|_| bad())?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        Ok(hours * 60 + minutes)
    }

    /// The next run strictly after `now`.
    pub fn next_run(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + self.wait_from(now)
    }

    /// How long from `now` until the next run.
    pub fn wait_from(&self, now: OffsetDateTime) -> Duration {
        let now_s =
            i64::from(now.hour()) * 3600 + i64::from(now.minute()) * 60 + i64::from(now.second());
        let at_s = i64::from(self.at_minute_of_day) * 60;
        let wait_s = (at_s - now_s).rem_euclid(24 * 3600);
        Duration::from_secs(if wait_s == 0 {
            24 * 3600
        } else {
            wait_s as u64
        })
    }
}

/// Pays out every wallet with at least `minimum_minor` available, once for `date`.
pub async fn run_once(
    service: &Ferropay,
    date: &str,
    minimum_minor: i64,
) -> Result<Vec<PayoutView>> {
    let wallets =
        sqlx::query("SELECT seller_id, currency FROM wallets ORDER BY seller_id, currency")
            .fetch_all(service.store.pool())
            .await?;
    let mut paid = Vec::new();
    for wallet in &wallets {
        let seller_id: String = wallet.try_get("seller_id")?;
        let currency: String = wallet.try_get("currency")?;
        let available = service
            .wallet(&seller_id)
            .await?
            .into_iter()
            .find(|b| b.currency == currency)
            .map_or(0, |b| b.available);
        if available < minimum_minor.max(1) {
            continue;
        }
        let input = PayoutInput {
            currency: currency.clone(),
            amount: None,
        };
        let scope = KeyScope {
            api_key_id: "system:payout-schedule".into(),
            key: format!("schedule:{date}:{seller_id}:{currency}"),
        };
        let fingerprint = idempotency::fingerprint(
            &serde_json::json!({"date": date, "seller_id": seller_id, "currency": currency}),
        );
        match super::create(
            &service.store,
            &service.engine,
            service.config.jobs.lease_ms,
            &scope,
            &seller_id,
            &input,
            &fingerprint,
        )
        .await
        {
            Ok(outcome) if !outcome.replayed => {
                paid.push(
                    serde_json::from_str(&outcome.body)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                );
            }
            Ok(_) => {}
            // Another instance is paying this one, or it changed since we looked: the next run sees.
            Err(Error::Conflict { code, .. }) => {
                tracing::info!(%seller_id, %currency, code, "scheduled payout skipped");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(paid)
}

/// The schedule's name in `scheduled_runs`.
pub const SCHEDULE: &str = "payouts";

/// Pays out `date`'s run once across instances (see the module's header).
pub async fn run_day(
    service: &Ferropay,
    runs: &ScheduledRuns,
    date: &str,
    minimum_minor: i64,
    stop: watch::Receiver<bool>,
) -> Result<RunOutcome<Vec<PayoutView>>> {
    let outcome = runs
        .run(SCHEDULE, date, stop, |_attempt| async move {
            run_once(service, date, minimum_minor)
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
    match &outcome {
        RunOutcome::Ran {
            result: Ok(paid), ..
        } => tracing::info!(%date, payouts = paid.len(), "scheduled payouts sent"),
        RunOutcome::Ran {
            result: Err(error), ..
        } => tracing::error!(%date, %error, "scheduled payouts failed"),
        RunOutcome::Interrupted => {}
        RunOutcome::Finished | RunOutcome::HeldElsewhere | RunOutcome::LostLease => {
            tracing::info!(%date, "scheduled payouts run by another instance")
        }
    }
    Ok(outcome)
}

/// Runs the schedule until `stop` turns true; every `check_ms` it looks for runs to take over.
pub fn spawn(
    service: Ferropay,
    schedule: PayoutSchedule,
    runs: ScheduledRuns,
    check_ms: u64,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let run_slot = |date: String| {
            let (service, runs, stop) = (&service, &runs, stop.clone());
            async move {
                if let Err(error) =
                    run_day(service, runs, &date, schedule.minimum_minor, stop).await
                {
                    tracing::error!(%date, %error, "scheduled payouts not recorded");
                }
            }
        };
        scheduled::daily_loop(
            &runs,
            SCHEDULE,
            |now| schedule.next_run(now),
            |due| due.date().to_string(),
            check_ms,
            stop.clone(),
            run_slot,
        )
        .await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_parse_and_waits_wrap_at_midnight() {
        assert_eq!(PayoutSchedule::parse_time("02:30").unwrap(), 150);
        assert!(PayoutSchedule::parse_time("24:00").is_err());
        assert!(PayoutSchedule::parse_time("2").is_err());
        let schedule = PayoutSchedule {
            at_minute_of_day: 150,
            minimum_minor: 0,
        };
        assert_eq!(
            schedule.wait_from(datetime!(2026-11-24 02:00 UTC)),
            Duration::from_secs(1800)
        );
        assert_eq!(
            schedule.wait_from(datetime!(2026-11-24 03:00 UTC)),
            Duration::from_secs(23 * 3600 + 1800)
        );
        assert_eq!(
            schedule.wait_from(datetime!(2026-11-24 02:30 UTC)),
            Duration::from_secs(24 * 3600)
        );
    }
}
