//! Tamper evidence against someone who holds the database but not the chain key: journal rows
//! rewritten with every hash recomputed (unkeyed, as anyone can) are caught; a rotated key signs
//! new transactions while the old ones still verify; signed checkpoints kept outside the
//! database catch what an intact-looking chain cannot (the newest transactions removed and the
//! head moved back), and `ferropay ledger verify --checkpoint FILE` proves the ledger extends
//! them. On SQLite and PostgreSQL.

use sha2::{Digest, Sha256};
use sqlx::Row;

use ferropay::chain_keys::ChainKeys;
use ferropay::ledger::checkpoint::{self, Checkpoint};
use ferropay::ledger::verify::{VerifyOptions, verify_with};
use ferropay_cli::serve::{self, PspChoice, ServeConfig};
use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

/// `ferropay ledger verify` (the real binary) with `keys` in the environment, and any extra
/// arguments; answers the exit code and the report.
fn verify_cli(app: &TestApp, keys: &ChainKeys, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["ledger", "verify", "--database-url", &app.db.url];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) =
        run_cli_with_env(&args, &[("FERROPAY_LEDGER_KEYS", &keys.to_text())]);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (code, report)
}

async fn keyed_app(db: Db, keys: &ChainKeys) -> Option<TestApp> {
    spawn_app_with(
        db,
        AppOptions {
            ledger_keys: Some(keys.clone()),
            ..AppOptions::default()
        },
    )
    .await
}

/// The unkeyed hash anyone can compute: SHA-256 over the length-prefixed fields, as the chain
/// was before it had keys.
fn unkeyed_hash(fields: &[String]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Rewrites the chain from sequence `from` to the head with unkeyed hashes, as someone with
/// the database but without the key would after changing a row: every hash recomputed, the key
/// ids cleared, the head moved to the new last hash.
async fn recompute_unkeyed(app: &TestApp, db: Db, from: i64) {
    let pool = app.service().store.pool();
    let rows = sqlx::query(
        "SELECT id, seq, source_ref, kind, payment_id, created_at_ms, prev_hash \
         FROM journal_transactions ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut statements = Vec::new();
    let mut prev: Option<String> = None;
    for row in &rows {
        let id: String = row.get("id");
        let seq: i64 = row.get("seq");
        if seq < from {
            prev = Some(
                sqlx::query("SELECT hash FROM journal_transactions WHERE id = $1")
                    .bind(&id)
                    .fetch_one(pool)
                    .await
                    .unwrap()
                    .get("hash"),
            );
            continue;
        }
        let prev_hash = prev.clone().unwrap_or_else(|| row.get("prev_hash"));
        let mut fields = vec![
            prev_hash.clone(),
            id.clone(),
            seq.to_string(),
            row.get("source_ref"),
            row.get("kind"),
            row.get::<Option<String>, _>("payment_id")
                .unwrap_or_default(),
            row.get::<i64, _>("created_at_ms").to_string(),
        ];
        let postings = sqlx::query(
            "SELECT line_no, account, currency, amount_minor FROM postings \
             WHERE transaction_id = $1 ORDER BY line_no",
        )
        .bind(&id)
        .fetch_all(pool)
        .await
        .unwrap();
        for posting in &postings {
            fields.push(posting.get::<i64, _>("line_no").to_string());
            fields.push(posting.get("account"));
            fields.push(posting.get("currency"));
            fields.push(posting.get::<i64, _>("amount_minor").to_string());
        }
        let hash = unkeyed_hash(&fields);
        statements.push(format!(
            "UPDATE journal_transactions SET prev_hash = '{prev_hash}', hash = '{hash}', \
             hash_key_id = NULL WHERE id = '{id}'"
        ));
        prev = Some(hash);
    }
    statements.push(format!(
        "UPDATE ledger_head SET hash = '{}' WHERE id = 1",
        prev.unwrap()
    ));
    behind_our_back(app, db, &statements).await;
}

/// Lifts the append-only guard (as the database's owner could), runs `statements`, and puts
/// the guard back where the database allows.
async fn behind_our_back(app: &TestApp, db: Db, statements: &[String]) {
    let pool = app.service().store.pool();
    let (disable, enable): (&[&str], &[&str]) = match db {
        Db::Sqlite => (
            &[
                "DROP TRIGGER IF EXISTS postings_no_update",
                "DROP TRIGGER IF EXISTS postings_no_delete",
                "DROP TRIGGER IF EXISTS journal_transactions_no_update",
                "DROP TRIGGER IF EXISTS journal_transactions_no_delete",
            ],
            &[],
        ),
        Db::Postgres => (
            &[
                "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
                "ALTER TABLE journal_transactions DISABLE TRIGGER journal_transactions_append_only",
            ],
            &[
                "ALTER TABLE postings ENABLE TRIGGER postings_append_only",
                "ALTER TABLE journal_transactions ENABLE TRIGGER journal_transactions_append_only",
            ],
        ),
    };
    let all = disable
        .iter()
        .map(|s| s.to_string())
        .chain(statements.iter().cloned())
        .chain(enable.iter().map(|s| s.to_string()));
    for statement in all {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn transaction_id_at(app: &TestApp, seq: i64) -> String {
    sqlx::query("SELECT id FROM journal_transactions WHERE seq = $1")
        .bind(seq)
        .fetch_one(app.service().store.pool())
        .await
        .unwrap()
        .get("id")
}

async fn a_row_rewritten_with_recomputed_unkeyed_hashes_is_caught(db: Db) {
    let keys = ChainKeys::generate();
    let Some(app) = keyed_app(db, &keys).await else {
        return;
    };
    for i in 0..3 {
        app.paid_payment(&format!("chk_keyed_{i}")).await;
    }
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.keyed_transactions, 3);
    assert_eq!(report.unkeyed_transactions, 0);
    assert_eq!(verify_cli(&app, &keys, &[]).0, 0);

    // Seller a's share of the second capture moves to seller b: still balanced, the wallets
    // moved to match, and every hash from there on recomputed. Only the key is missing.
    let second = transaction_id_at(&app, 2).await;
    behind_our_back(
        &app,
        db,
        &[
            format!(
                "UPDATE postings SET amount_minor = amount_minor + 1000 \
                 WHERE transaction_id = '{second}' AND account = 'seller:seller_a'"
            ),
            format!(
                "UPDATE postings SET amount_minor = amount_minor - 1000 \
                 WHERE transaction_id = '{second}' AND account = 'seller:seller_b'"
            ),
            "UPDATE wallets SET balance_minor = balance_minor - 1000 \
             WHERE seller_id = 'seller_a'"
                .to_owned(),
            "UPDATE wallets SET balance_minor = balance_minor + 1000 \
             WHERE seller_id = 'seller_b'"
                .to_owned(),
        ],
    )
    .await;
    recompute_unkeyed(&app, db, 2).await;

    let report = app.verify_ledger().await;
    assert!(report.balanced && report.wallets_match, "{report:?}");
    assert!(
        !report.chain_intact,
        "the rewrite went unnoticed: {report:?}"
    );
    assert_eq!(report.unkeyed_transactions, 2);
    let named = report
        .chain_breaks
        .iter()
        .find(|b| b.transaction_id == second)
        .unwrap_or_else(|| panic!("{second} not named: {report:?}"));
    assert!(named.problem.contains("not keyed"), "{named:?}");
    let (code, cli) = verify_cli(&app, &keys, &[]);
    assert_eq!(code, 1, "{cli}");
    assert_eq!(cli["chain_intact"], false);

    // Without the key the rewriter cannot pass the transactions off as keyed either: the same
    // rows labelled with the key's id fail their HMAC.
    behind_our_back(
        &app,
        db,
        &[format!(
            "UPDATE journal_transactions SET hash_key_id = '{}' WHERE seq >= 2",
            keys.current().id()
        )],
    )
    .await;
    let report = app.verify_ledger().await;
    assert!(!report.chain_intact);
    assert!(
        report
            .chain_breaks
            .iter()
            .any(|b| b.transaction_id == second && b.problem.contains("do not match its hash")),
        "{report:?}"
    );
}

/// Starts ferropay again on `app`'s database with `keys` (and a sandbox of its own), as a
/// restart after a key rotation does.
async fn restart_with_keys(app: &mut TestApp, keys: &ChainKeys) {
    app.running.take().unwrap().shutdown().await;
    let running = serve::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: app.db.url.clone(),
        max_db_connections: 8,
        public_url: None,
        psp: PspChoice::InProcessSandbox {
            listen: "127.0.0.1:0".parse().unwrap(),
            sandbox: AppOptions::default().sandbox,
        },
        psps: Default::default(),
        platform_fee_bps: 0,
        payout_schedule: None,
        poll_after_ms: 60_000,
        jobs: test_jobs_config(),
        reconcile_at: None,
        reconcile_day_close_lag_ms: -ferropay::reconcile::days::DAY_MS,
        limits: ferropay_http::ServerLimits::default(),
        nats: None,
        kafka: None,
        retention: None,
        engine: Default::default(),
        webhooks: test_webhook_config(),
        ledger_keys: Some(keys.clone()),
        checkpoint_file: None,
        checkpoint_every_ms: 50,
    })
    .await
    .unwrap();
    app.base_url = running.public_url.clone();
    app.sandbox_url = running.sandbox.as_ref().unwrap().base_url.clone();
    app.running = Some(running);
}

async fn a_rotated_key_signs_new_transactions_and_old_ones_still_verify(db: Db) {
    let old = ChainKeys::generate();
    let Some(mut app) = keyed_app(db, &old).await else {
        return;
    };
    app.paid_payment("chk_before_rotation").await;
    let rotated = old.rotated();
    restart_with_keys(&mut app, &rotated).await;
    app.paid_payment("chk_after_rotation").await;

    let key_ids: Vec<Option<String>> =
        sqlx::query("SELECT hash_key_id FROM journal_transactions ORDER BY seq")
            .fetch_all(app.service().store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get("hash_key_id"))
            .collect();
    assert_eq!(
        key_ids,
        [
            Some(old.current().id().to_owned()),
            Some(rotated.current().id().to_owned())
        ]
    );
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.keyed_transactions, 2);
    assert_eq!(verify_cli(&app, &rotated, &[]).0, 0);

    // A verifier that lost the old key cannot vouch for what it signed, and says so.
    let only_new = ChainKeys::parse(rotated.to_text().lines().last().unwrap()).unwrap();
    assert_eq!(only_new.ids().count(), 1);
    let (code, report) = verify_cli(&app, &only_new, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["chain_breaks"][0]["problem"]
            .as_str()
            .unwrap()
            .contains(old.current().id()),
        "{report}"
    );
}

async fn checkpoints_catch_a_removed_tail_that_the_chain_alone_cannot(db: Db) {
    let keys = ChainKeys::generate();
    let dir = std::env::temp_dir().join(format!("ferropay-cp-{}", uuid::Uuid::now_v7()));
    let served = dir.join("served.jsonl");
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            ledger_keys: Some(keys.clone()),
            checkpoint_file: Some(served.clone()),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    for i in 0..3 {
        app.paid_payment(&format!("chk_cp_{i}")).await;
    }
    // `serve` writes a checkpoint of each new head (and logs it).
    eventually(
        std::time::Duration::from_secs(10),
        "serve checkpoints the head at sequence 3",
        || async {
            checkpoint::read_file(&served)
                .is_ok_and(|all| all.last().is_some_and(|c: &Checkpoint| c.seq == 3))
        },
    )
    .await;
    let served_all = checkpoint::read_file(&served).unwrap();
    assert!(served_all.iter().all(|c| c.check_signature(&keys).is_ok()));

    // `ferropay ledger checkpoint` signs the head on demand, and `verify --checkpoint` checks.
    let file = dir.join("cli.jsonl");
    let file_arg = file.to_str().unwrap();
    let (code, stdout, stderr) = run_cli_with_env(
        &[
            "ledger",
            "checkpoint",
            "--database-url",
            &app.db.url,
            "--checkpoint-file",
            file_arg,
        ],
        &[("FERROPAY_LEDGER_KEYS", &keys.to_text())],
    );
    assert_eq!(code, 0, "{stderr}");
    let printed: Checkpoint = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed.seq, 3);
    app.paid_payment("chk_cp_after").await;
    let (code, report) = verify_cli(&app, &keys, &["--checkpoint", file_arg]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checkpoints_checked"], 1);
    assert_eq!(report["checkpoints_ok"], true);

    // A forged checkpoint (another hash, the old signature) is refused.
    let mut forged = printed.clone();
    forged.hash = "00".repeat(32);
    let forged_file = dir.join("forged.jsonl");
    checkpoint::append(&forged_file, &forged).unwrap();
    let (code, report) = verify_cli(
        &app,
        &keys,
        &["--checkpoint", forged_file.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{report}");
    assert!(
        report["checkpoint_problems"][0]
            .as_str()
            .unwrap()
            .contains("signature does not match"),
        "{report}"
    );

    // Someone with the database removes the two newest transactions, moves the wallets, the kept
    // sums and the head back: the chain left is intact and balanced, and only a checkpoint remembers more.
    let third = transaction_id_at(&app, 3).await;
    let fourth = transaction_id_at(&app, 4).await;
    let head_after_two: Value = {
        let row = sqlx::query("SELECT hash FROM journal_transactions WHERE seq = 2")
            .fetch_one(app.service().store.pool())
            .await
            .unwrap();
        Value::String(row.get("hash"))
    };
    let second = transaction_id_at(&app, 2).await;
    behind_our_back(
        &app,
        db,
        &[
            format!("DELETE FROM postings WHERE transaction_id IN ('{third}', '{fourth}')"),
            format!("DELETE FROM journal_transactions WHERE id IN ('{third}', '{fourth}')"),
            "UPDATE wallets SET balance_minor = balance_minor - 3000 \
             WHERE seller_id = 'seller_a'"
                .to_owned(),
            "UPDATE wallets SET balance_minor = balance_minor - 500 \
             WHERE seller_id = 'seller_b'"
                .to_owned(),
            // ...and the per-account balances that `ledger verify` checks against them.
            "DELETE FROM account_balances".to_owned(),
            "INSERT INTO account_balances (account, currency, balance_minor, postings) \
             SELECT account, currency, SUM(amount_minor), COUNT(*) FROM postings \
             GROUP BY account, currency"
                .to_owned(),
            // ...and the daily settlement sums it checks too.
            "DELETE FROM settlement_days".to_owned(),
            "INSERT INTO settlement_days (day_start_ms, psp, currency, expected_minor, \
             paid_out_minor, postings) \
             SELECT j.created_at_ms - j.created_at_ms % 86400000, SUBSTR(p.account, 16), \
             p.currency, SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END), \
             SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END), COUNT(*) \
             FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id \
             WHERE p.account LIKE 'psp_receivable:%' GROUP BY 1, 2, 3"
                .to_owned(),
            format!(
                "UPDATE ledger_head SET seq = 2, hash = {}, transaction_id = '{second}' \
                 WHERE id = 1",
                head_after_two.to_string().replace('"', "'")
            ),
        ],
    )
    .await;
    let (code, report) = verify_cli(&app, &keys, &[]);
    assert_eq!(
        code, 0,
        "without a checkpoint the shortened ledger looks whole: {report}"
    );
    let (code, report) = verify_cli(&app, &keys, &["--checkpoint", file_arg]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["checkpoints_ok"], false);
    assert!(
        report["checkpoint_problems"][0]
            .as_str()
            .unwrap()
            .contains("transactions were removed"),
        "{report}"
    );
    // The checkpoints `serve` wrote catch it too, through the library.
    let options = VerifyOptions {
        checkpoints: served_all,
        unkeyed_through_seq: 0,
    };
    let report = verify_with(&app.service().store, &options).await.unwrap();
    assert!(!report.checkpoints_ok && report.chain_intact, "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

db_test!(
    a_row_rewritten_with_recomputed_unkeyed_hashes_is_caught,
    a_rotated_key_signs_new_transactions_and_old_ones_still_verify,
    checkpoints_catch_a_removed_tail_that_the_chain_alone_cannot,
);
