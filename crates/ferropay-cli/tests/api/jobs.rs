//! The durable job queue on a real database: enqueue is idempotent, concurrent claims never take
//! the same job, a crashed worker's job comes back after its lease, failures back off and end
//! in the dead-letter queue, and workers in two instances run every job once within their bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferropay::clock::now_ms;
use ferropay::jobs::worker::Workers;
use ferropay::jobs::{
    self, ClaimedJob, Failed, JobError, JobFuture, JobHandler, JobOutcome, JobsConfig, Registry,
    RetryPolicy,
};
use ferropay::store::Store;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

const KIND: &str = "test.work";

async fn open(db: Db) -> Option<(TestDb, Store)> {
    let db = TestDb::create(db).await?;
    let store = Store::open(&db.url, 8).await.expect("open the store");
    Some((db, store))
}

async fn enqueue_many(store: &Store, kind: &str, count: usize) -> Vec<String> {
    let mut tx = store.begin_write().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let job = jobs::enqueue(&mut tx, kind, &json!({ "n": n }), &format!("key-{n}"), 0)
            .await
            .unwrap();
        assert!(job.created);
        ids.push(job.id);
    }
    tx.commit().await.unwrap();
    ids
}

fn config(lease_ms: i64, max_attempts: u32) -> JobsConfig {
    JobsConfig {
        lease_ms,
        retry: RetryPolicy {
            base_delay_ms: 20,
            max_delay_ms: 200,
            max_attempts,
            retry_window_ms: 0,
        },
        concurrency: 3,
        idle_poll_ms: 10,
    }
}

async fn job_row(store: &Store, id: &str) -> (String, i64, Option<String>) {
    use sqlx::Row;
    let row = sqlx::query("SELECT status, attempts, last_error FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    (
        row.get("status"),
        row.get("attempts"),
        row.get("last_error"),
    )
}

async fn enqueue_is_idempotent_by_kind_and_key(db: Db) {
    let Some((_db, store)) = open(db).await else {
        return;
    };
    let mut tx = store.begin_write().await.unwrap();
    let first = jobs::enqueue(&mut tx, KIND, &json!({"a": 1}), "same", 0)
        .await
        .unwrap();
    let again = jobs::enqueue(&mut tx, KIND, &json!({"a": 2}), "same", 0)
        .await
        .unwrap();
    let other_kind = jobs::enqueue(&mut tx, "test.other", &json!({}), "same", 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(first.created && !again.created && other_kind.created);
    assert_eq!(first.id, again.id);
    let job = jobs::claim_due(&store, &[KIND.to_owned()], &config(1_000, 3))
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(job.payload, json!({"a": 1}), "the first payload stays");
    assert_eq!(job.attempts, 1);

    // A job enqueued in a transaction that rolls back does not exist.
    let mut tx = store.begin_write().await.unwrap();
    jobs::enqueue(&mut tx, KIND, &json!({}), "rolled-back", 0)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let none = jobs::claim_due(&store, &[KIND.to_owned()], &config(1_000, 3))
        .await
        .unwrap();
    assert!(none.is_none(), "{none:?}");
}

async fn concurrent_claims_take_each_job_once(db: Db) {
    let Some((_db, store)) = open(db).await else {
        return;
    };
    let ids = enqueue_many(&store, KIND, 60).await;
    // Not due yet, and of a kind nobody asks for: never claimed.
    let mut tx = store.begin_write().await.unwrap();
    jobs::enqueue(&mut tx, KIND, &json!({}), "later", now_ms() + 60_000)
        .await
        .unwrap();
    jobs::enqueue(&mut tx, "test.unknown", &json!({}), "x", 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let claimers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = jobs::claim_due(&store, &[KIND.to_owned()], &config(60_000, 3))
                .await
                .unwrap()
            {
                mine.push(job.id);
            }
            mine
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(unique, ids.iter().collect(), "every due job was claimed");
}

async fn a_crashed_workers_job_is_claimed_again_after_its_lease(db: Db) {
    let Some((_db, store)) = open(db).await else {
        return;
    };
    let kinds = [KIND.to_owned()];
    let config = config(300, 2);
    let id = enqueue_many(&store, KIND, 1).await.remove(0);
    // A worker claims the job and dies without a word.
    let crashed = jobs::claim_due(&store, &kinds, &config)
        .await
        .unwrap()
        .unwrap();
    assert!(
        jobs::claim_due(&store, &kinds, &config)
            .await
            .unwrap()
            .is_none(),
        "leased: nobody else takes it"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let retaken = jobs::claim_due(&store, &kinds, &config)
        .await
        .unwrap()
        .expect("claimed again after the lease");
    assert_eq!(retaken.id, id);
    assert_eq!(retaken.attempts, 2);
    assert!(
        job_row(&store, &id)
            .await
            .2
            .unwrap()
            .contains("ran out of its lease")
    );
    // The crashed worker comes back to life: its lease is no longer good.
    assert!(!jobs::complete(store.pool(), &crashed).await.unwrap());
    assert_eq!(
        jobs::fail(
            &store,
            &crashed,
            &JobError::Permanent("late".into()),
            &config
        )
        .await
        .unwrap(),
        Failed::LeaseLost
    );
    // The second holder dies too: with no attempts left, the job is dead-lettered, not run.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        jobs::claim_due(&store, &kinds, &config)
            .await
            .unwrap()
            .is_none()
    );
    let (status, attempts, error) = job_row(&store, &id).await;
    assert_eq!((status.as_str(), attempts), ("dead", 3));
    assert!(error.unwrap().contains("each lease ran out"));
    assert!(!jobs::complete(store.pool(), &retaken).await.unwrap());
}

async fn failures_back_off_and_end_in_the_dead_letter_queue(db: Db) {
    let Some((_db, store)) = open(db).await else {
        return;
    };
    let kinds = [KIND.to_owned()];
    let config = config(60_000, 3);
    let ids = enqueue_many(&store, KIND, 2).await;
    let (store_ref, kinds_ref, config_ref) = (&store, &kinds, &config);
    let claim = || async move {
        // Waits out the backoff: at most the cap (200 ms) each time.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(job) = jobs::claim_due(store_ref, kinds_ref, config_ref)
                .await
                .unwrap()
            {
                return job;
            }
            assert!(Instant::now() < deadline, "no job came back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    // The first job fails permanently: dead at once.
    let job = claim().await;
    assert_eq!(job.id, ids[0]);
    let failed = jobs::fail(
        &store,
        &job,
        &JobError::Permanent("sandbox answered 401".into()),
        &config,
    )
    .await
    .unwrap();
    assert_eq!(failed, Failed::Dead);

    // The second fails retryably: back twice after a bounded backoff, dead on the third.
    for attempt in 1..=3 {
        let job = claim().await;
        assert_eq!((job.id.as_str(), job.attempts), (ids[1].as_str(), attempt));
        let before = now_ms();
        let failed = jobs::fail(
            &store,
            &job,
            &JobError::Retryable(format!("timeout {attempt}")),
            &config,
        )
        .await
        .unwrap();
        match failed {
            Failed::Retrying { due_at_ms } => {
                assert!(attempt < 3);
                let ceiling = i64::try_from(config.retry.ceiling_ms(attempt)).unwrap();
                assert!(due_at_ms >= before && due_at_ms <= now_ms() + ceiling);
            }
            Failed::Dead => assert_eq!(attempt, 3),
            Failed::LeaseLost => panic!("the lease was ours"),
        }
    }
    let dead = jobs::dlq::list(&store).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].id, ids[0]);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("permanent: sandbox answered 401")
    );
    assert_eq!(dead[1].attempts, 3);
    assert_eq!(dead[1].last_error.as_deref(), Some("retryable: timeout 3"));
    assert_eq!(dead[1].payload, json!({"n": 1}));

    // Replay puts it back with a fresh count; it runs and is done.
    let replayed = jobs::dlq::replay(&store, &ids[1]).await.unwrap();
    assert_eq!(replayed.status, "queued");
    let job = claim().await;
    assert_eq!((job.id.as_str(), job.attempts), (ids[1].as_str(), 1));
    assert!(jobs::complete(store.pool(), &job).await.unwrap());
    assert_eq!(jobs::dlq::list(&store).await.unwrap().len(), 1);
    // Only dead jobs replay.
    let error = jobs::dlq::replay(&store, &ids[1]).await.unwrap_err();
    assert!(
        matches!(
            error,
            ferropay::Error::Conflict {
                code: "job_not_dead",
                ..
            }
        ),
        "{error}"
    );
    let error = jobs::dlq::replay(&store, "job_nope").await.unwrap_err();
    assert!(matches!(error, ferropay::Error::NotFound(_)), "{error}");
}

/// Counts runs per job and how many run at once; fails the first run of every third job.
#[derive(Default)]
struct Counting {
    runs: Mutex<HashMap<String, u32>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

struct CountingHandler(Arc<Counting>);

impl JobHandler for CountingHandler {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            let counting = &self.0;
            let now = counting.running.fetch_add(1, Ordering::SeqCst) + 1;
            counting.most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
            counting.running.fetch_sub(1, Ordering::SeqCst);
            let n = job.payload["n"].as_u64().unwrap();
            let runs = {
                let mut runs = counting.runs.lock().unwrap();
                let entry = runs.entry(job.id.clone()).or_default();
                *entry += 1;
                *entry
            };
            if n.is_multiple_of(3) && runs == 1 {
                return Err(JobError::Retryable(
                    "first runs of every third job fail".into(),
                ));
            }
            Ok(JobOutcome::Done)
        })
    }
}

async fn workers_in_two_instances_run_every_job_once(db: Db) {
    let Some((db, store)) = open(db).await else {
        return;
    };
    let ids = enqueue_many(&store, KIND, 60).await;
    let counting = Arc::new(Counting::default());
    let config = config(30_000, 5);
    let mut instances = Vec::new();
    for _ in 0..2 {
        // Each instance has its own pool, as two processes would.
        let store = Store::open(&db.url, 4).await.unwrap();
        let mut registry = Registry::new();
        registry.register(KIND, Arc::new(CountingHandler(counting.clone())));
        instances.push(Workers::spawn(store, registry, config.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done =
            crate::helpers::count_on(&store, "SELECT COUNT(*) FROM jobs WHERE status = 'done'")
                .await;
        if done == 60 {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of 60 jobs done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for workers in instances {
        workers.shutdown(Duration::from_secs(5)).await;
    }
    let runs = counting.runs.lock().unwrap();
    for (n, id) in ids.iter().enumerate() {
        let expected = if n % 3 == 0 { 2 } else { 1 };
        assert_eq!(runs.get(id), Some(&expected), "job {n}");
    }
    let most = counting.most_at_once.load(Ordering::SeqCst);
    assert!(
        (2..=2 * config.concurrency).contains(&most),
        "{most} ran at once; two instances of {} each",
        config.concurrency
    );
}

/// A PSP down for an hour: a job failing for a passing reason far past its attempts is retried,
/// never dead-lettered, while it is younger than the retry window; once it is older (its row
/// backdated past the window, as a day's outage would leave it), the next failure dead-letters.
async fn passing_failures_within_the_retry_window_are_retried_past_the_attempts(db: Db) {
    let Some((_db, store)) = open(db).await else {
        return;
    };
    let kinds = [KIND.to_owned()];
    let hour_ms: u64 = 60 * 60 * 1000;
    let config = JobsConfig {
        lease_ms: 60_000,
        retry: RetryPolicy {
            base_delay_ms: 1,
            max_delay_ms: 2,
            max_attempts: 3,
            retry_window_ms: 2 * hour_ms,
        },
        concurrency: 1,
        idle_poll_ms: 10,
    };
    let ids = enqueue_many(&store, KIND, 1).await;
    let claim = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(job) = jobs::claim_due(&store, &kinds, &config).await.unwrap() {
                return job;
            }
            assert!(Instant::now() < deadline, "the job did not come back");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    // An hour old (the outage so far): ten failures, three times its attempts, none fatal.
    sqlx::query("UPDATE jobs SET created_at_ms = $1 WHERE id = $2")
        .bind(now_ms() - hour_ms as i64)
        .bind(&ids[0])
        .execute(store.pool())
        .await
        .unwrap();
    for attempt in 1..=10 {
        let job = claim().await;
        assert_eq!((job.id.as_str(), job.attempts), (ids[0].as_str(), attempt));
        let failed = jobs::fail(
            &store,
            &job,
            &JobError::Retryable("PSP down".into()),
            &config,
        )
        .await
        .unwrap();
        assert!(
            matches!(failed, Failed::Retrying { .. }),
            "attempt {attempt}: {failed:?}"
        );
    }
    assert!(jobs::dlq::list(&store).await.unwrap().is_empty());
    // Past the window: the next passing failure ends in the dead-letter queue.
    sqlx::query("UPDATE jobs SET created_at_ms = $1 WHERE id = $2")
        .bind(now_ms() - 3 * hour_ms as i64)
        .bind(&ids[0])
        .execute(store.pool())
        .await
        .unwrap();
    let job = claim().await;
    let failed = jobs::fail(
        &store,
        &job,
        &JobError::Retryable("PSP down".into()),
        &config,
    )
    .await
    .unwrap();
    assert_eq!(failed, Failed::Dead);
    assert_eq!(job_row(&store, &ids[0]).await.0, "dead");
}

db_test!(
    enqueue_is_idempotent_by_kind_and_key,
    concurrent_claims_take_each_job_once,
    a_crashed_workers_job_is_claimed_again_after_its_lease,
    failures_back_off_and_end_in_the_dead_letter_queue,
    passing_failures_within_the_retry_window_are_retried_past_the_attempts,
    workers_in_two_instances_run_every_job_once,
);
