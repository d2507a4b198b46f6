//! Stopping: `ferropay serve` stops on SIGTERM (what systemd, Kubernetes and `docker stop` send)
//! as it does on Ctrl-C: it stops taking requests, lets running jobs finish or give back their
//! lease, closes the database and exits 0. A payment made before the signal is intact after a
//! restart. SIGKILL is the crash test's business (`crash.rs`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_cleanly_and_keeps_its_payments() {
    let db = TestDb::create(Db::Sqlite).await.unwrap();
    let (code, stdout, stderr) = run_cli(&["api-key", "create", "--database-url", &db.url]);
    assert_eq!(code, 0, "{stderr}");
    let api_key = serde_json::from_str::<Value>(&stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = std::env::temp_dir().join(format!("ferropay-sigterm-{}.log", uuid::Uuid::now_v7()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let port = fixed_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let serve = |log: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--sandbox-listen", &format!("127.0.0.1:{}", fixed_port())])
            .args(["--database-url", &db.url])
            .env("FERROPAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn ferropay serve")
    };
    let up = |http: reqwest::Client, base_url: String| async move {
        eventually(Duration::from_secs(30), "ferropay answers /healthz", || {
            let (http, base_url) = (http.clone(), base_url.clone());
            async move {
                http.get(format!("{base_url}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    };

    let mut child = serve(&log);
    up(http.clone(), base_url.clone()).await;
    let created = http
        .post(format!("{base_url}/v1/payments"))
        .bearer_auth(&api_key)
        .header("Idempotency-Key", "sigterm-1")
        .json(&checkout("chk_sigterm"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let payment: Value = created.json().await.unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferropay did not stop within 20 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let printed = std::fs::read_to_string(&log).unwrap();
    // Killed by the signal, a process has no exit code; stopped cleanly, it exits 0.
    assert_eq!(exit.code(), Some(0), "{exit:?}\n{printed}");
    assert!(printed.contains("SIGTERM, stopping"), "{printed}");
    assert!(printed.contains("ferropay: stopped"), "{printed}");
    // The port is free again and nothing answers on it.
    assert!(
        http.get(format!("{base_url}/healthz"))
            .send()
            .await
            .is_err()
    );

    // Started again on the same database, it has the payment as it was answered.
    let mut again = serve(&log.with_extension("2.log"));
    up(http.clone(), base_url.clone()).await;
    let read: Value = http
        .get(format!(
            "{base_url}/v1/payments/{}",
            payment["id"].as_str().unwrap()
        ))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["id"], payment["id"]);
    assert_eq!(read["amount"], 1750, "{read:#}");
    assert_eq!(read["status"], payment["status"], "{read:#}");
    let _ = again.kill();
    let _ = again.wait();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("2.log"));
}
