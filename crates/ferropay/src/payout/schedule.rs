//! The payout schedule: once a day at a set UTC time, every seller wallet with at least a minimum
//! available is paid out in full. Each day's run is idempotent per seller and currency (keys
//! `schedule:{date}:{seller}:{currency}`), so several instances, or a restart, pay nobody twice.

use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;

use super::{PayoutInput, PayoutView};
use crate::error::{Error, Result};
use crate::idempotency::{self, KeyScope};
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

/// Runs the schedule until the task is dropped.
pub fn spawn(service: Ferropay, schedule: PayoutSchedule) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(schedule.wait_from(OffsetDateTime::now_utc())).await;
            let date = OffsetDateTime::now_utc().date().to_string();
            match run_once(&service, &date, schedule.minimum_minor).await {
                Ok(paid) => tracing::info!(%date, payouts = paid.len(), "scheduled payouts sent"),
                Err(error) => {
                    tracing::error!(%date, %error, "scheduled payouts failed; the next run retries")
                }
            }
        }
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
