//! Scheduled work runs once across instances: the nightly reconciliation and the payout schedule
//! of a day, started on two instances at once, run on one; a run whose instance was killed is
//! taken over once its lease runs out, one whose instance was stopped is marked `interrupted`
//! and taken over at once, and the reconciliation run the dead instance left `running` is
//! closed as `interrupted`. Nothing is posted or paid twice.
//!
//! The instances' timers fire at a time of day; the tests call what the timer calls at that
//! moment (`reconcile::schedule::run_day`, `payout::schedule::run_day`) on each instance, and
//! leave the take-over to the instances' own schedule loops.

use std::time::Duration;

use ferropay::jobs::scheduled::{RunOutcome, ScheduledRuns};
use ferropay::reconcile::schedule::{self, TimeOfDay};
use sandbox_psp::{Faults, SandboxConfig};
use sqlx::Row;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::db_test;
use crate::helpers::*;

/// The schedules' lease in these tests: a dead holder's run is taken over within it.
const LEASE_MS: i64 = 4_000;
/// Every settlement file fetch takes this long at the sandbox: a run is caught in the middle.
const PSP_LATENCY_MS: u64 = 1_500;

/// A time of day twelve hours away: the timer itself does not fire during the test.
fn far_from_now() -> TimeOfDay {
    let now = OffsetDateTime::now_utc();
    TimeOfDay {
        hour: (now.hour() + 12) % 24,
        minute: now.minute(),
    }
}

fn days_ago(days: i64) -> time::Date {
    (OffsetDateTime::now_utc() - time::Duration::days(days)).date()
}

fn short_lease_jobs() -> ferropay::jobs::JobsConfig {
    ferropay::jobs::JobsConfig {
        lease_ms: LEASE_MS,
        ..test_jobs_config()
    }
}

fn slow_psp_options(reconcile_at: Option<TimeOfDay>) -> AppOptions {
    AppOptions {
        sandbox: SandboxConfig {
            faults: Faults {
                latency_ms: PSP_LATENCY_MS,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        jobs: short_lease_jobs(),
        reconcile_at,
        ..AppOptions::default()
    }
}

/// (status, holder, attempts) of a scheduled run, if it exists.
async fn scheduled_run(app: &TestApp, name: &str, slot: &str) -> Option<(String, String, i64)> {
    sqlx::query(
        "SELECT status, holder, attempts FROM scheduled_runs WHERE schedule = $1 AND slot = $2",
    )
    .bind(name)
    .bind(slot)
    .fetch_optional(app.service().store.pool())
    .await
    .unwrap()
    .map(|row| (row.get("status"), row.get("holder"), row.get("attempts")))
}

/// Statuses of the reconciliation runs of `day`'s file, sorted.
async fn reconciliation_statuses(app: &TestApp, day: time::Date) -> Vec<String> {
    let mut statuses: Vec<String> =
        sqlx::query("SELECT status FROM reconciliation_runs WHERE source = $1")
            .bind(format!("psp:{day}"))
            .fetch_all(app.service().store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get("status"))
            .collect();
    statuses.sort();
    statuses
}

/// A paid payment, made three days ago as far as reconciliation can tell (the PSP has files of
/// ours from its day on), so that the last days may be reconciled.
async fn paid_three_days_ago(app: &TestApp) {
    app.paid_payment("chk_sched_first").await;
    sqlx::query("UPDATE payments SET created_at_ms = created_at_ms - $1")
        .bind(3 * 86_400_000_i64)
        .execute(app.service().store.pool())
        .await
        .unwrap();
}

async fn wait_until_claimed_by(app: &TestApp, slot: &str, holder: &str) {
    eventually(Duration::from_secs(20), "the run is claimed", || async {
        scheduled_run(app, schedule::SCHEDULE, slot)
            .await
            .is_some_and(|(status, h, _)| status == "running" && h == holder)
    })
    .await;
}

async fn a_killed_holders_run_is_taken_over_and_a_stopped_ones_at_once(db: Db) {
    // This instance's own schedule loop is the "next instance" that takes runs over.
    let Some(app) = spawn_app_with(db, slow_psp_options(Some(far_from_now()))).await else {
        return;
    };
    paid_three_days_ago(&app).await;
    let store = app.service().store.clone();
    let work_dir = std::env::temp_dir();

    // Killed: another instance claims yesterday's run and dies in the middle of the fetch,
    // leaving its lease to run out and (as far as it had got) a reconciliation run `running`.
    let day = days_ago(1);
    let slot = day.to_string();
    let dead = ScheduledRuns::new(store.clone(), LEASE_MS);
    let (_keep, stop) = watch::channel(false);
    let reconciler = app.service().reconciler();
    let dying = {
        let (dead, work_dir) = (dead.clone(), work_dir.clone());
        tokio::spawn(
            async move { schedule::run_day(&reconciler, &dead, day, &work_dir, stop).await },
        )
    };
    wait_until_claimed_by(&app, &slot, dead.holder()).await;
    sqlx::query(
        "INSERT INTO reconciliation_runs (id, psp, source, status, started_at_ms) \
         VALUES ('rcn_left_running', 'sandbox', $1, 'running', $2)",
    )
    .bind(format!("psp:{day}"))
    .bind(ferropay::clock::now_ms())
    .execute(store.pool())
    .await
    .unwrap();
    dying.abort();
    let _ = dying.await;

    eventually(
        Duration::from_secs(30),
        "the killed run is taken over and completed",
        || async {
            scheduled_run(&app, schedule::SCHEDULE, &slot)
                .await
                .is_some_and(|(status, holder, attempts)| {
                    status == "completed" && holder != dead.holder() && attempts == 2
                })
        },
    )
    .await;
    assert_eq!(
        reconciliation_statuses(&app, day).await,
        ["completed", "interrupted"]
    );

    // Stopped: a holder told to stop marks its run interrupted and drops it.
    let day = days_ago(2);
    let slot = day.to_string();
    let stopping = ScheduledRuns::new(store.clone(), 60_000);
    let (stop_tx, stop) = watch::channel(false);
    let reconciler = app.service().reconciler();
    let running = {
        let (stopping, work_dir) = (stopping.clone(), work_dir.clone());
        tokio::spawn(async move {
            schedule::run_day(&reconciler, &stopping, day, &work_dir, stop).await
        })
    };
    wait_until_claimed_by(&app, &slot, stopping.holder()).await;
    stop_tx.send(true).unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert!(matches!(outcome, RunOutcome::Interrupted), "{outcome:?}");
    // Its lease had a minute to go: the take-over comes from the mark, not from the lease.
    eventually(
        Duration::from_secs(20),
        "the stopped run is taken over",
        || async {
            scheduled_run(&app, schedule::SCHEDULE, &slot)
                .await
                .is_some_and(|(status, holder, attempts)| {
                    status == "completed" && holder != stopping.holder() && attempts == 2
                })
        },
    )
    .await;
    assert_eq!(reconciliation_statuses(&app, day).await, ["completed"]);

    // A completed day is not run again, by anyone.
    let again = ScheduledRuns::new(store.clone(), LEASE_MS);
    let (_keep, stop) = watch::channel(false);
    let outcome = schedule::run_day(&app.service().reconciler(), &again, day, &work_dir, stop)
        .await
        .unwrap();
    assert!(matches!(outcome, RunOutcome::Finished), "{outcome:?}");
    assert_eq!(reconciliation_statuses(&app, day).await, ["completed"]);
    assert!(app.verify_ledger().await.ok());
}

async fn two_instances_run_each_scheduled_day_once() {
    let options = AppOptions {
        sandbox: SandboxConfig {
            faults: Faults {
                latency_ms: 200,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Db::Postgres, options).await else {
        return;
    };
    paid_three_days_ago(&app).await;
    let other = app.spawn_sibling().await;
    let work_dir = std::env::temp_dir();
    let runs_a = ScheduledRuns::new(app.service().store.clone(), 30_000);
    let runs_b = ScheduledRuns::new(other.service.store.clone(), 30_000);
    let (_keep, stop) = watch::channel(false);

    // Both timers fire for yesterday's reconciliation at once: one instance runs it.
    let day = days_ago(1);
    let (reconciler_a, reconciler_b) = (app.service().reconciler(), other.service.reconciler());
    let (a, b) = tokio::join!(
        schedule::run_day(&reconciler_a, &runs_a, day, &work_dir, stop.clone()),
        schedule::run_day(&reconciler_b, &runs_b, day, &work_dir, stop.clone()),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, RunOutcome::Ran { result: Ok(_), .. }))
        .count();
    assert_eq!(ran, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, RunOutcome::HeldElsewhere | RunOutcome::Finished)),
        "{outcomes:?}"
    );
    assert_eq!(reconciliation_statuses(&app, day).await, ["completed"]);

    // Both timers fire for today's payouts at once: one instance walks the wallets.
    app.paid_payment("chk_sched_once_1").await;
    app.paid_payment("chk_sched_once_2").await;
    let date = OffsetDateTime::now_utc().date().to_string();
    let (a, b) = tokio::join!(
        ferropay::payout::schedule::run_day(app.service(), &runs_a, &date, 1, stop.clone()),
        ferropay::payout::schedule::run_day(&other.service, &runs_b, &date, 1, stop.clone()),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let paid: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            RunOutcome::Ran {
                result: Ok(paid), ..
            } => Some(paid),
            _ => None,
        })
        .collect();
    assert_eq!(paid.len(), 1, "{outcomes:?}");
    assert_eq!(paid[0].len(), 2, "seller_a and seller_b are paid out");
    assert_eq!(paid[0][0].amount, 3 * 1_500, "seller_a's three payments");
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 2);
    let again =
        ferropay::payout::schedule::run_day(&other.service, &runs_b, &date, 1, stop.clone())
            .await
            .unwrap();
    assert!(matches!(again, RunOutcome::Finished), "{again:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 2);
    assert!(app.verify_ledger().await.ok());
    other.shutdown().await;
}

async fn a_stopped_instance_hands_its_run_to_the_next() {
    // The first instance serves the sandbox only; B and C run the nightly schedule.
    let Some(app) = spawn_app_with(Db::Postgres, slow_psp_options(None)).await else {
        return;
    };
    let sibling = |reconcile_at| SiblingOptions {
        ledger_keys: app.service().store.chain_keys().cloned(),
        jobs: short_lease_jobs(),
        reconcile_at,
    };
    paid_three_days_ago(&app).await;
    let b = app.spawn_sibling_with(sibling(Some(far_from_now()))).await;

    // A third instance dies holding yesterday's run; B takes it over once the lease is out.
    let day = days_ago(1);
    let slot = day.to_string();
    let dead = ScheduledRuns::new(app.service().store.clone(), LEASE_MS);
    let (_keep, stop) = watch::channel(false);
    let reconciler = app.service().reconciler();
    let dying = {
        let dead = dead.clone();
        tokio::spawn(async move {
            schedule::run_day(&reconciler, &dead, day, &std::env::temp_dir(), stop).await
        })
    };
    wait_until_claimed_by(&app, &slot, dead.holder()).await;
    dying.abort();
    let _ = dying.await;
    eventually(Duration::from_secs(30), "B takes the run over", || async {
        scheduled_run(&app, schedule::SCHEDULE, &slot)
            .await
            .is_some_and(|(status, holder, attempts)| {
                status == "running" && holder != dead.holder() && attempts == 2
            })
    })
    .await;

    // B is stopped (SIGTERM's path) in the middle of its fetch: it marks the run interrupted.
    b.shutdown().await;
    let (status, _, attempts) = scheduled_run(&app, schedule::SCHEDULE, &slot)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("interrupted", 2));

    // C starts and runs it at once.
    let c = app.spawn_sibling_with(sibling(Some(far_from_now()))).await;
    eventually(Duration::from_secs(30), "C completes the run", || async {
        scheduled_run(&app, schedule::SCHEDULE, &slot)
            .await
            .is_some_and(|(status, _, attempts)| status == "completed" && attempts == 3)
    })
    .await;
    let statuses = reconciliation_statuses(&app, day).await;
    assert_eq!(
        statuses.iter().filter(|s| *s == "completed").count(),
        1,
        "{statuses:?}"
    );
    assert!(!statuses.iter().any(|s| s == "running"), "{statuses:?}");
    assert!(app.verify_ledger().await.ok());
    c.shutdown().await;
}

db_test!(a_killed_holders_run_is_taken_over_and_a_stopped_ones_at_once);

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_run_each_scheduled_day_once() {
        super::two_instances_run_each_scheduled_day_once().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_instance_hands_its_run_to_the_next() {
        super::a_stopped_instance_hands_its_run_to_the_next().await
    }
}
