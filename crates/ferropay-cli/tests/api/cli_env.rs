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

    for open in ["1", "yes", "true"] {
        let (code, stdout, stderr) = run_cli_with_env(
            &["reconcile", "breaks"],
            &[("FERROPAY_DATABASE_URL", url), ("FERROPAY_OPEN", open)],
        );
        assert_eq!(code, 0, "FERROPAY_OPEN={open}: {stderr}");
        assert!(stdout.is_empty(), "no breaks yet: {stdout}");
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
