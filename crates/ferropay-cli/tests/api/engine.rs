//! The money engine under load, on both databases: many concurrent outcomes for the same
//! payments (duplicated, reordered) captured exactly once; a refused command and a command the
//! database refuses leave the rest of their batch committed; refunds and payouts racing for one
//! wallet never overdraw it across batches; two engines (two instances) on one database never
//! deadlock and keep one continuous hash chain; a SIGKILLed server loses nothing it answered;
//! on PostgreSQL a batch does not wait for the pool that requests share; and on SQLite a batch
//! is synced after its commit, every other write at its own.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferropay::engine::view::RefundRow;
use ferropay::engine::{
    Command as EngineCommand, Effect, Engine, EngineConfig, Keys, Post, Staged, View,
};
use ferropay::idempotency::{self, Claim, KeyScope};
use ferropay::inbound::ApplyEvent;
use ferropay::ledger::verify::verify;
use ferropay::ledger::{NewJournalTransaction, PostOutcome, Posting, accounts};
use ferropay::money::{Currency, Money};
use ferropay::payin::apply::{ApplyPaymentUpdate, ApplyResult};
use ferropay::payout::CreatePayout;
use ferropay::psp::{PaymentUpdate, PspEvent, PspEventKind, PspOutcome};
use ferropay::refund::{CreateRefund, RefundInput};
use ferropay::store::Store;
use futures_util::future::join_all;
use rand::seq::SliceRandom;
use sqlx::Row;

use crate::db_test;
use crate::helpers::*;

const PSP: &str = "sandbox";

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// Inserts `count` payments of two orders each (sellers `s0…s{sellers-1}`) in `status`, as a
/// registered checkout leaves them. Answers their ids and each one's `(seller, amount)` orders.
async fn seed_payments(
    store: &Store,
    tag: &str,
    count: usize,
    sellers: usize,
    status: &str,
) -> Vec<(String, Vec<(String, i64)>)> {
    let mut tx = store.begin_write().await.unwrap();
    let mut seeded = Vec::new();
    for i in 0..count {
        let id = format!("pay_{tag}_{i:05}");
        let orders = vec![
            (format!("s{}", i % sellers), 1_000 + (i as i64 % 7) * 100),
            (format!("s{}", (i * 7 + 3) % sellers), 250 + (i as i64 % 5)),
        ];
        let total: i64 = orders.iter().map(|(_, a)| a).sum();
        sqlx::query(
            "INSERT INTO payments (id, checkout_id, buyer_id, currency, amount_minor, status, psp, \
             psp_token, created_at_ms, updated_at_ms, platform_fee_bps) \
             VALUES ($1, $2, 'buyer', 'USD', $3, $4, 'sandbox', $5, 1, 1, 1000)",
        )
        .bind(&id)
        .bind(format!("chk_{id}"))
        .bind(total)
        .bind(status)
        .bind(format!("tok_{id}"))
        .execute(&mut *tx)
        .await
        .unwrap();
        for (position, (seller, amount)) in orders.iter().enumerate() {
            sqlx::query(
                "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
                 amount_minor, status, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 1, 1)",
            )
            .bind(format!("po_{id}_{position}"))
            .bind(&id)
            .bind(position as i64)
            .bind(format!("ord_{position}"))
            .bind(seller)
            .bind(amount)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        seeded.push((id, orders));
    }
    tx.commit().await.unwrap();
    seeded
}

fn payment_update(payment_id: &str, outcome: PspOutcome) -> PaymentUpdate {
    PaymentUpdate {
        reference: payment_id.to_owned(),
        outcome,
        psp_reference: Some(format!("psp_{payment_id}")),
        amount_minor: None,
        currency: Some("USD".into()),
        failure_code: None,
    }
}

fn engine(store: &Store, max_batch: usize, linger_us: u64) -> Engine {
    Engine::start(
        store.clone(),
        EngineConfig {
            max_batch,
            linger_us: Some(linger_us),
            queue_capacity: 20_000,
            lanes: 0,
        },
    )
    .unwrap()
}

async fn captures_of(store: &Store) -> BTreeMap<String, i64> {
    sqlx::query(
        "SELECT payment_id, COUNT(*) AS n FROM journal_transactions WHERE kind = 'capture' \
         GROUP BY payment_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("payment_id"), r.get("n")))
    .collect()
}

async fn wallet_minor(store: &Store, seller: &str) -> i64 {
    sqlx::query("SELECT balance_minor FROM wallets WHERE seller_id = $1 AND currency = 'USD'")
        .bind(seller)
        .fetch_optional(store.pool())
        .await
        .unwrap()
        .map_or(0, |r| r.get("balance_minor"))
}

/// 2,000 outcomes for 500 payments — each payment's `processing` and `succeeded` events
/// delivered one to three times as webhooks, some as the poller's answers, all at once and in
/// any order: every payment ends `succeeded`, captured exactly once, the sellers' wallets hold
/// their shares less the 10 % fee, and `ledger verify` holds.
async fn concurrent_outcomes_capture_each_payment_exactly_once(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store = Store::open(&test_db.url, 8).await.unwrap();
    let payments = seed_payments(&store, "c", 500, 40, "requires_payment").await;
    let engine = engine(&store, 256, 500);
    let mut rng = rand::rng();
    let mut deliveries = Vec::new();
    for (n, (id, _)) in payments.iter().enumerate() {
        for (k, outcome) in [PspOutcome::Processing, PspOutcome::Succeeded]
            .into_iter()
            .enumerate()
        {
            let copies = 1 + (n + k) % 3;
            for copy in 0..copies {
                deliveries.push((id.clone(), format!("evt_{id}_{k}"), outcome, copy == 2));
            }
        }
    }
    while deliveries.len() < 2_000 {
        let (id, _) = &payments[deliveries.len() % payments.len()];
        deliveries.push((id.clone(), String::new(), PspOutcome::Succeeded, true));
    }
    deliveries.shuffle(&mut rng);
    assert_eq!(deliveries.len(), 2_000);
    let started = engine.stats();
    let answers = join_all(
        deliveries
            .into_iter()
            .map(|(id, event_id, outcome, via_poll)| {
                let engine = engine.clone();
                async move {
                    if via_poll || event_id.is_empty() {
                        engine
                            .submit(ApplyPaymentUpdate {
                                psp: PSP.into(),
                                update: payment_update(&id, outcome),
                                fallback_fee_bps: 0,
                            })
                            .await
                    } else {
                        engine
                            .submit(ApplyEvent {
                                psp: PSP.into(),
                                event: PspEvent {
                                    id: event_id,
                                    event_type: "payment.x".into(),
                                    created_s: 0,
                                    kind: PspEventKind::Payment(payment_update(&id, outcome)),
                                },
                                fallback_fee_bps: 0,
                            })
                            .await
                    }
                }
            }),
    )
    .await;
    let applied = answers
        .iter()
        .filter(|a| matches!(a, Ok(ApplyResult::Applied { .. })))
        .count();
    for answer in &answers {
        assert!(answer.is_ok(), "{answer:?}");
    }
    // Each payment moved to processing at most once and to succeeded exactly once.
    assert!((500..=1_000).contains(&applied), "{applied} applied");
    let stats = engine.stats();
    assert!(
        stats.batches - started.batches < 2_000,
        "the engine batched nothing: {stats:?}"
    );

    let captures = captures_of(&store).await;
    assert_eq!(captures.len(), 500);
    assert!(captures.values().all(|n| *n == 1), "{captures:?}");
    let statuses: Vec<String> = sqlx::query("SELECT status FROM payments")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("status"))
        .collect();
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    let mut owed: BTreeMap<String, i64> = BTreeMap::new();
    for (_, orders) in &payments {
        for (seller, amount) in orders {
            *owed.entry(seller.clone()).or_default() += amount - amount / 10;
        }
    }
    for (seller, minor) in &owed {
        assert_eq!(wallet_minor(&store, seller).await, *minor, "{seller}");
    }
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 500);
}

/// A command that stages a refund of a payment that does not exist: the database refuses its
/// batch (a foreign key), which must not sink the other commands of the batch.
struct Poison;

impl EngineCommand for Poison {
    type Answer = ();

    fn keys(&self, _keys: &mut Keys) {}

    fn decide(&self, _view: &View, staged: &mut Staged) -> ferropay::Result<()> {
        staged.push(Effect::NewRefund(RefundRow {
            id: "re_poison".into(),
            payment_id: "pay_missing".into(),
            payment_order_id: "po_missing".into(),
            seller_id: "nobody".into(),
            amount: Money::new(1, usd()),
            platform_fee_minor: 0,
            status: "pending".into(),
            psp_refund_id: None,
            failure_code: None,
            created_at_ms: 1,
        }));
        Ok(())
    }
}

fn transfer(source_ref: String, seller: &str, minor: i64) -> Post {
    Post(NewJournalTransaction {
        source_ref,
        kind: "test_transfer",
        payment_id: None,
        postings: vec![
            Posting::minor(accounts::psp_receivable("test"), minor, usd()),
            Posting::minor(accounts::seller(seller), -minor, usd()),
        ],
    })
}

/// One batch (a long linger gathers them): 50 transfers, one that does not balance (refused by
/// its own check) and one the database refuses. The 50 commit, each of the others gets its own
/// error, and the books verify.
async fn refused_commands_leave_the_rest_of_their_batch_committed(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store = Store::open(&test_db.url, 4).await.unwrap();
    let engine = engine(&store, 1_000, 300_000);
    let unbalanced = Post(NewJournalTransaction {
        source_ref: "unbalanced".into(),
        kind: "test_transfer",
        payment_id: None,
        postings: vec![
            Posting::minor("a", 5, usd()),
            Posting::minor(accounts::seller("x"), -4, usd()),
        ],
    });
    let good = join_all((0..50).map(|i| engine.submit(transfer(format!("ok:{i}"), "good", 10))));
    let (good, bad, poison) = tokio::join!(good, engine.submit(unbalanced), engine.submit(Poison));
    assert!(
        good.iter()
            .all(|g| matches!(g, Ok(PostOutcome::Posted { .. }))),
        "{good:?}"
    );
    assert!(bad.is_err(), "an unbalanced transaction was posted");
    assert!(poison.is_err(), "a refund of no payment was written");
    assert_eq!(
        count_on(&store, "SELECT COUNT(*) FROM journal_transactions").await,
        50
    );
    assert_eq!(count_on(&store, "SELECT COUNT(*) FROM refunds").await, 0);
    assert_eq!(wallet_minor(&store, "good").await, 500);
    assert_eq!(wallet_minor(&store, "x").await, 0);
    let stats = engine.stats();
    assert!(stats.max_batch >= 52, "not one batch: {stats:?}");
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
}

async fn claimed(store: &Store, key: &str) -> KeyScope {
    let scope = KeyScope {
        api_key_id: "key_test".into(),
        key: key.into(),
    };
    let claim = idempotency::claim(store, &scope, key, ferropay::clock::now_ms(), 60_000)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Proceed { .. }));
    scope
}

/// One seller with 10,000 from a captured payment; 40 payouts of 700 and 20 refunds of 300
/// race for it in small batches. What is accepted never passes what the wallet held, the
/// wallet never goes below what pending refunds hold back, and the books verify.
async fn refunds_and_payouts_never_overdraw_a_wallet(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store = Store::open(&test_db.url, 8).await.unwrap();
    let engine = engine(&store, 4, 200);
    let mut tx = store.begin_write().await.unwrap();
    sqlx::query(
        "INSERT INTO payments (id, checkout_id, buyer_id, currency, amount_minor, status, psp, \
         created_at_ms, updated_at_ms, platform_fee_bps) \
         VALUES ('pay_w', 'chk_w', 'b', 'USD', 10000, 'processing', 'sandbox', 1, 1, 0)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, amount_minor, \
         status, created_at_ms, updated_at_ms) \
         VALUES ('po_w', 'pay_w', 0, 'ord_1', 'seller_w', 10000, 'pending', 1, 1)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    engine
        .submit(ApplyPaymentUpdate {
            psp: PSP.into(),
            update: payment_update("pay_w", PspOutcome::Succeeded),
            fallback_fee_bps: 0,
        })
        .await
        .unwrap();
    assert_eq!(wallet_minor(&store, "seller_w").await, 10_000);

    let mut payout_scopes = Vec::new();
    for i in 0..40 {
        payout_scopes.push(claimed(&store, &format!("payout-{i}")).await);
    }
    let mut refund_scopes = Vec::new();
    for i in 0..20 {
        refund_scopes.push(claimed(&store, &format!("refund-{i}")).await);
    }
    let payouts = join_all(payout_scopes.into_iter().map(|scope| {
        engine.submit(CreatePayout {
            scope,
            seller_id: "seller_w".into(),
            currency: usd(),
            amount_minor: Some(700),
        })
    }));
    let refunds = join_all(refund_scopes.into_iter().map(|scope| {
        engine.submit(CreateRefund {
            scope,
            payment_id: "pay_w".into(),
            input: RefundInput {
                order_id: "ord_1".into(),
                amount: Some(300),
            },
        })
    }));
    let (payouts, refunds) = tokio::join!(payouts, refunds);
    let paid = payouts.iter().filter(|p| p.is_ok()).count() as i64;
    let refunded = refunds.iter().filter(|r| r.is_ok()).count() as i64;
    for refused in payouts
        .iter()
        .chain(refunds.iter())
        .filter_map(|r| r.as_ref().err())
    {
        assert!(
            matches!(
                refused,
                ferropay::Error::Conflict {
                    code: "insufficient_balance",
                    ..
                }
            ),
            "{refused:?}"
        );
    }
    assert!(
        paid * 700 + refunded * 300 <= 10_000,
        "{paid} payouts, {refunded} refunds"
    );
    // The wallet was used up: not even the smaller of the two fits in what is left.
    assert!(
        10_000 - paid * 700 - refunded * 300 < 300,
        "{paid} payouts, {refunded} refunds"
    );
    let balance = wallet_minor(&store, "seller_w").await;
    assert_eq!(balance, 10_000 - paid * 700);
    let held = count_on(
        &store,
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE status = 'pending'",
    )
    .await;
    assert_eq!(held, refunded * 300);
    assert!(balance - held >= 0);
    assert!(engine.stats().batches > 10, "small batches were asked for");
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
}

/// Two engines (two instances) on one database, each posting 1,500 transfers that move money
/// between 20 shared wallets in both directions, and 100 transfers that both post under the
/// same references: no deadlock (all answered in time), each shared reference posted once,
/// one continuous hash chain, and the books verify.
async fn two_engines_share_one_database_without_deadlock(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store_a = Store::open(&test_db.url, 4).await.unwrap();
    let store_b = Store::open(&test_db.url, 4).await.unwrap();
    let (engine_a, engine_b) = (engine(&store_a, 128, 300), engine(&store_b, 128, 300));
    let sellers: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let between = |source_ref: String, from: &str, to: &str| {
        Post(NewJournalTransaction {
            source_ref,
            kind: "test_transfer",
            payment_id: None,
            postings: vec![
                Posting::minor(accounts::seller(from), 10, usd()),
                Posting::minor(accounts::seller(to), -10, usd()),
            ],
        })
    };
    let load = |engine: Engine, name: &'static str| {
        let sellers = sellers.clone();
        async move {
            let mut answers = Vec::new();
            let moves = join_all((0..1_500).map(|i| {
                let (from, to) = (&sellers[i % 20], &sellers[(i * 7 + 1 + i / 20) % 20]);
                let to = if to == from {
                    &sellers[(i + 1) % 20]
                } else {
                    to
                };
                engine.submit(between(format!("{name}:{i}"), from, to))
            }));
            let shared = join_all(
                (0..100)
                    .map(|i| engine.submit(transfer(format!("shared:{i}"), &sellers[i % 20], 5))),
            );
            let (moves, shared) = tokio::join!(moves, shared);
            answers.extend(moves);
            (answers, shared)
        }
    };
    let started = Instant::now();
    let ((moves_a, shared_a), (moves_b, shared_b)) =
        tokio::time::timeout(Duration::from_secs(120), async {
            tokio::join!(load(engine_a, "a"), load(engine_b, "b"))
        })
        .await
        .expect("two engines deadlocked or stalled");
    for answer in moves_a.iter().chain(&moves_b) {
        assert!(
            matches!(answer, Ok(PostOutcome::Posted { .. })),
            "{answer:?}"
        );
    }
    let mut posted_once = 0;
    for (a, b) in shared_a.iter().zip(&shared_b) {
        let posted = [a, b]
            .iter()
            .filter(|x| matches!(x, Ok(PostOutcome::Posted { .. })))
            .count();
        let already = [a, b]
            .iter()
            .filter(|x| matches!(x, Ok(PostOutcome::AlreadyPosted { .. })))
            .count();
        assert_eq!((posted, already), (1, 1), "{a:?} {b:?}");
        posted_once += 1;
    }
    assert_eq!(posted_once, 100);
    assert_eq!(
        count_on(&store_a, "SELECT COUNT(*) FROM journal_transactions").await,
        3_100
    );
    let report = verify(&store_a).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(report.chain_intact);
    eprintln!("two engines: 3,200 commands in {:?}", started.elapsed());
}

/// A child process that is killed (SIGKILL) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(port: u16, database_url: &str, log: &std::path::Path) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let psp = parked_addr();
    Process(
        Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .args(["--psp-url", &format!("http://{psp}")])
            .args([
                "--psp-api-key",
                "psk",
                "--psp-webhook-secret",
                WEBHOOK_SECRET,
            ])
            .args([
                "--poll-after-s",
                "3600",
                "--reconcile-at",
                "off",
                "--job-concurrency",
                "0",
            ])
            .env("FERROPAY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferropay serve"),
    )
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(30), "ferropay serves", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

fn webhook_body(event_id: &str, payment_id: &str) -> String {
    serde_json::json!({
        "id": event_id,
        "type": "payment.succeeded",
        "created": ferropay::clock::now_s(),
        "data": {"reference": payment_id, "status": "succeeded", "currency": "USD",
                 "psp_reference": format!("psp_{payment_id}")},
    })
    .to_string()
}

/// The real server, receiving 300 signed `payment.succeeded` webhooks 24 at a time, is killed
/// with SIGKILL while batches are in flight. Every webhook it answered 200 is in the books
/// after a restart; the PSP then sends every webhook again and each payment ends captured once.
async fn a_sigkill_loses_nothing_that_was_answered(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    // With the chain keys `ferropay serve` finds for this database (created here on SQLite), so
    // that this store verifies what the server writes.
    let store = ferropay_cli::ledger_keys::open_store(&test_db.url, 4, &Default::default())
        .await
        .unwrap();
    let payments = seed_payments(&store, "k", 300, 30, "processing").await;
    let port = fixed_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("ferropay-engine-kill-{port}.log"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut server = Some(spawn_server(port, &test_db.url, &log));
    wait_healthy(&http, &base).await;

    let answered = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let ids: Vec<String> = payments.iter().map(|(id, _)| id.clone()).collect();
    let queue = Arc::new(std::sync::Mutex::new(ids.clone()));
    let mut senders = Vec::new();
    for _ in 0..24 {
        let (http, base, queue, answered) =
            (http.clone(), base.clone(), queue.clone(), answered.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop() else {
                    return;
                };
                let body = webhook_body(&format!("evt_{id}"), &id);
                let response = http
                    .post(format!("{base}/webhooks/psp/sandbox"))
                    .header("Content-Type", "application/json")
                    .header(
                        "Sandbox-Signature",
                        sandbox_psp::sign(
                            WEBHOOK_SECRET,
                            ferropay::clock::now_s(),
                            body.as_bytes(),
                        ),
                    )
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        answered.lock().unwrap().insert(id);
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    // Kill it once a third of the webhooks have been answered: batches are in flight.
    eventually(Duration::from_secs(60), "a third answered", || async {
        answered.lock().unwrap().len() >= 100
    })
    .await;
    drop(server.take());
    for sender in senders {
        sender.await.unwrap();
    }
    let answered: HashSet<String> = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 100 && answered.len() < 300,
        "{}",
        answered.len()
    );

    server = Some(spawn_server(port, &test_db.url, &log));
    wait_healthy(&http, &base).await;
    let captures = captures_of(&store).await;
    for id in &answered {
        assert_eq!(
            captures.get(id),
            Some(&1),
            "{id} was answered but is not captured once"
        );
    }
    // The PSP retries every webhook it has not seen answered (and some it has).
    for id in &ids {
        let body = webhook_body(&format!("evt_{id}"), id);
        let response = http
            .post(format!("{base}/webhooks/psp/sandbox"))
            .header("Content-Type", "application/json")
            .header(
                "Sandbox-Signature",
                sandbox_psp::sign(WEBHOOK_SECRET, ferropay::clock::now_s(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let captures = captures_of(&store).await;
    assert_eq!(captures.len(), 300);
    assert!(captures.values().all(|n| *n == 1));
    drop(server);
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    let _ = std::fs::remove_file(&log);
}

db_test!(
    concurrent_outcomes_capture_each_payment_exactly_once,
    refused_commands_leave_the_rest_of_their_batch_committed,
    refunds_and_payouts_never_overdraw_a_wallet,
    two_engines_share_one_database_without_deadlock,
    a_sigkill_loses_nothing_that_was_answered,
);

/// A new payment's session moves no money, so storing it does not wait for its sellers'
/// wallets: with both wallets locked by another transaction (as a capture or a payout holds
/// them), `POST /v1/payments` still answers 201 with the hosted page, and the payment is
/// captured once the lock is gone. PostgreSQL only: SQLite's one writer locks the whole file.
async fn a_new_payment_does_not_wait_for_its_sellers_wallets() {
    let Some(app) = spawn_app(Db::Postgres).await else {
        return;
    };
    // Both sellers' wallets exist once a first payment is captured.
    app.paid_payment("chk_wallets_first").await;

    let pool = app.service().store.pool();
    let mut holder = pool.begin().await.unwrap();
    let locked = sqlx::query(
        "SELECT seller_id FROM wallets WHERE seller_id IN ('seller_a', 'seller_b') \
         ORDER BY seller_id, currency FOR UPDATE",
    )
    .fetch_all(&mut *holder)
    .await
    .unwrap();
    assert_eq!(locked.len(), 2, "both sellers have a wallet");

    let second = tokio::time::timeout(
        Duration::from_secs(30),
        app.create_payment("chk_wallets_second"),
    )
    .await
    .expect("creating a payment waited for its sellers' wallets");
    assert_eq!(second["status"], "requires_payment");
    assert!(second["redirect_url"].as_str().is_some(), "{second}");

    holder.rollback().await.unwrap();
    app.pay(&second, CARD_OK).await;
    app.wait_for_status(second["id"].as_str().unwrap(), "succeeded")
        .await;
    assert!(app.verify_ledger().await.ok());
}

/// The engine's batches run on connections of their own on PostgreSQL: with every connection
/// of the shared pool held (by requests, say), a transfer still commits, well within the
/// pool's acquire timeout, and its wallet moves. PostgreSQL only: SQLite's batches use its one
/// write connection.
async fn a_batch_does_not_wait_for_the_shared_pool() {
    let Some(test_db) = TestDb::create(Db::Postgres).await else {
        return;
    };
    let store = Store::open(&test_db.url, 2).await.unwrap();
    let engine = engine(&store, 100, 0);
    let held = [
        store.pool().acquire().await.unwrap(),
        store.pool().acquire().await.unwrap(),
    ];
    let started = Instant::now();
    let posted = tokio::time::timeout(
        Duration::from_secs(30),
        engine.submit(transfer("while the pool is held".into(), "busy", 700)),
    )
    .await
    .expect("the engine answers while the pool is held");
    assert!(posted.is_ok(), "{posted:?}");
    assert!(
        started.elapsed() < Duration::from_millis(ferropay::store::ACQUIRE_TIMEOUT_MS),
        "the batch waited for the shared pool ({:?})",
        started.elapsed()
    );
    drop(held);
    assert_eq!(wallet_minor(&store, "busy").await, 700);
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
}

/// SQLite's batches commit without syncing and are synced before they are answered; every other
/// write transaction on the one write connection syncs at its commit, also right after a batch
/// (`store::durable`). Each transaction reports the `synchronous` level its commit runs with:
/// 1 (`NORMAL`) in a batch, 2 (`FULL`) otherwise; and the engine's figures show the sync.
async fn sqlite_batches_sync_after_their_commit_and_other_writes_at_theirs() {
    let test_db = TestDb::create(Db::Sqlite).await.unwrap();
    let store = Store::open(&test_db.url, 2).await.unwrap();
    async fn level(tx: &mut ferropay::store::Tx) -> i64 {
        sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut **tx)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }
    for round in 0..2 {
        let mut batch = store.begin_batch().await.unwrap();
        assert_eq!(
            level(&mut batch).await,
            1,
            "round {round}: a batch commits unsynced"
        );
        batch.commit().await.unwrap();
        let mut write = store.begin_write().await.unwrap();
        assert_eq!(
            level(&mut write).await,
            2,
            "round {round}: a write syncs after a batch"
        );
        write.commit().await.unwrap();
    }
    store.make_durable().await.unwrap();

    let engine = engine(&store, 100, 0);
    engine
        .submit(transfer("synced before answered".into(), "synced", 900))
        .await
        .unwrap();
    assert_eq!(wallet_minor(&store, "synced").await, 900);
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.stats().phases.sync_us == 0 {
        assert!(Instant::now() < deadline, "no batch recorded its sync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut write = store.begin_write().await.unwrap();
    assert_eq!(
        level(&mut write).await,
        2,
        "a write after the engine's batch syncs"
    );
    write.rollback().await.unwrap();
}

/// On SQLite a batch's load reads what its keys alone decide in one call to the driver's
/// thread (`engine::load`, `Prefetched`): a payment created, paid and captured goes through it,
/// and its books are right (every engine test on SQLite runs the same path; a debug build also
/// asserts that the load uses every statement fetched ahead).
async fn sqlite_a_batch_fetches_its_reads_in_one_call() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let payment = app.paid_payment("chk_prefetched").await;
    assert_eq!(payment["status"], "succeeded", "{payment}");
    let metrics = app.metrics_text().await;
    let fetched: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ferropay_engine_load_prefetched_total "))
        .unwrap_or_else(|| panic!("no prefetch counted:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(fetched >= 2.0, "{fetched} statements fetched ahead");
    assert!(app.verify_ledger().await.ok());
}

mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_sync_after_their_commit_and_other_writes_at_theirs() {
        super::sqlite_batches_sync_after_their_commit_and_other_writes_at_theirs().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_fetches_its_reads_in_one_call() {
        super::sqlite_a_batch_fetches_its_reads_in_one_call().await
    }
}

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_payment_does_not_wait_for_its_sellers_wallets() {
        super::a_new_payment_does_not_wait_for_its_sellers_wallets().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_does_not_wait_for_the_shared_pool() {
        super::a_batch_does_not_wait_for_the_shared_pool().await
    }
}
