//! CONTRACT.md, CLI: "every flag also reads an environment variable `FERROPAY_<FLAG>`": the
//! command-specific flags too, and booleans as `1`/`yes`/`true`.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn every_flag_reads_its_environment_variable() {
    let db = TestDb::create(Db::Sqlite).await.unwrap();
    let url = db.url.as_str();

    let (code, stdout, stderr) = run_cli_with_env(
        &["api-key", "create"],
        &[
            ("FERROPAY_DATABASE_URL", url),
            ("FERROPAY_NAME", "from-env"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let key: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(key["name"], "from-env");

    // One open break and one resolved: `FERROPAY_OPEN` lists the open one only.
    let store = ferropay::store::Store::open(url, 1).await.unwrap();
    for statement in [
        "INSERT INTO reconciliation_runs (id, psp, source, status, started_at_ms) \
         VALUES ('rcn_env', 'sandbox', 'file:x', 'completed', 1)",
        "INSERT INTO reconciliation_breaks (id, run_id, dedupe_key, kind, detail, status, \
         created_at_ms) VALUES ('brk_open', 'rcn_env', 'k1', 'duplicate_line', 'd', 'open', 1)",
        "INSERT INTO reconciliation_breaks (id, run_id, dedupe_key, kind, detail, status, \
         resolution, resolved_at_ms, created_at_ms) \
         VALUES ('brk_done', 'rcn_env', 'k2', 'duplicate_line', 'd', 'resolved', 'r', 2, 2)",
    ] {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    store.close().await;
    let (code, all, stderr) =
        run_cli_with_env(&["reconcile", "breaks"], &[("FERROPAY_DATABASE_URL", url)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(all.lines().count(), 2, "{all}");
    for open in ["1", "yes", "true"] {
        let (code, stdout, stderr) = run_cli_with_env(
            &["reconcile", "breaks"],
            &[("FERROPAY_DATABASE_URL", url), ("FERROPAY_OPEN", open)],
        );
        assert_eq!(code, 0, "FERROPAY_OPEN={open}: {stderr}");
        let listed: Vec<Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(listed.len(), 1, "FERROPAY_OPEN={open}: {stdout}");
        assert_eq!(listed[0]["id"], "brk_open");
    }

    // `--file` from the environment: the run reads (and refuses) the file it names.
    let (code, _, stderr) = run_cli_with_env(
        &["reconcile"],
        &[
            ("FERROPAY_DATABASE_URL", url),
            ("FERROPAY_FILE", "/nonexistent/settlement.csv"),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("/nonexistent/settlement.csv"),
        "the file came from FERROPAY_FILE: {stderr}"
    );

    let (code, stdout, stderr) = run_cli_with_env(
        &["payout", "create"],
        &[
            ("FERROPAY_DATABASE_URL", url),
            ("FERROPAY_SELLER_ID", "seller_env"),
            ("FERROPAY_CURRENCY", "USD"),
            ("FERROPAY_AMOUNT", "100"),
        ],
    );
    // An empty wallet cannot pay out: refused for the seller the environment named.
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("insufficient"),
        "{stdout}{stderr}"
    );
}
