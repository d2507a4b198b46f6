//! The README's walk-through, run as a reader would paste it: its ```` ```sh walkthrough-serve ````
//! block starts `ferropay serve` (in the background here, a terminal of its own for a reader),
//! then every ```` ```sh walkthrough ```` block runs, in order, in one bash (`set -euo
//! pipefail`), from a fresh directory where `./target/debug/ferropay` is the binary under test.
//! The only change made to the text is the two ports, so that runs in parallel do not collide.
//! A block that fails, a wait that never ends, or a README whose walk-through went missing fails
//! the test: the README cannot rot.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// The blocks of `markdown` fenced with exactly this info string, in order.
fn blocks<'a>(markdown: &'a str, info: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut lines = markdown.split_inclusive('\n');
    let mut offset = 0;
    while let Some(line) = lines.next() {
        offset += line.len();
        if line.trim_end() != format!("```{info}") {
            continue;
        }
        let start = offset;
        for inner in lines.by_ref() {
            if inner.trim_end() == "```" {
                out.push(&markdown[start..offset]);
                offset += inner.len();
                break;
            }
            offset += inner.len();
        }
    }
    out
}

#[test]
fn blocks_are_found_by_their_info_string() {
    let markdown = "a\n```sh walkthrough\necho 1\n```\n```sh\nno\n```\n```sh walkthrough\necho 2\necho 3\n```\n";
    assert_eq!(
        blocks(markdown, "sh walkthrough"),
        ["echo 1\n", "echo 2\necho 3\n"]
    );
    assert_eq!(blocks(markdown, "sh"), ["no\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let serve = blocks(&readme, "sh walkthrough-serve");
    let steps = blocks(&readme, "sh walkthrough");
    assert_eq!(serve.len(), 1, "one block starts the server");
    assert!(
        steps.len() >= 8,
        "the walk-through has its steps: {}",
        steps.len()
    );
    let (api_port, psp_port) = (fixed_port(), fixed_port());
    let ports = |text: &str| {
        text.replace("127.0.0.1:8080", &format!("127.0.0.1:{api_port}"))
            .replace("127.0.0.1:8090", &format!("127.0.0.1:{psp_port}"))
    };

    // A fresh directory that looks like the clone after `cargo build`.
    let dir = std::env::temp_dir().join(format!("ferropay-readme-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_ferropay"),
        dir.join("target/debug/ferropay"),
    )
    .unwrap();

    let serve_line = serve[0].trim();
    assert!(
        !serve_line.contains('\n') && serve_line.starts_with("./target/debug/ferropay serve"),
        "the server block is one command: {serve_line}"
    );
    let serve_log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut server = Command::new("bash")
        .arg("-c")
        .arg(format!("exec {serve_line}"))
        .current_dir(&dir)
        .env("FERROPAY_LISTEN", format!("127.0.0.1:{api_port}"))
        .env("FERROPAY_SANDBOX_LISTEN", format!("127.0.0.1:{psp_port}"))
        .stdout(Stdio::null())
        .stderr(serve_log)
        .spawn()
        .expect("bash");
    let http = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{api_port}/healthz");
    eventually(Duration::from_secs(60), "ferropay serve answers", || {
        let (http, health) = (http.clone(), health.clone());
        async move {
            http.get(health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    let script = format!("set -euo pipefail\n{}", ports(&steps.concat()));
    let walk = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let pid = walk.id();
    // A wait in the README that never ends must fail the test, not hang it.
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || walk.wait_with_output()),
    )
    .await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let output = output
        .unwrap_or_else(|_| panic!("the walk-through did not finish in 180 s\nserve.log:\n{log}"))
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walk-through failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- serve.log\n{log}",
        output.status
    );

    // The transcript, for `--no-capture`.
    println!("{stdout}");
    // What the reader is told to expect.
    assert!(
        log.contains("./target/debug/ferropay api-key create"),
        "the banner gives a command that works from the clone: {log}"
    );
    for expected in [
        "status=succeeded",
        "status=failed",
        "Confirm it's you",
        "\"failure_code\":\"card_declined\"",
        "partially_refunded",
        "\"status\":\"paid\"",
        "psp_reference,merchant_reference,type,created_at,currency,gross,fee,net,batch",
        "\"breaks\":[]",
        "\"balanced\":true,\"wallets_match\":true,\"chain_intact\":true",
    ] {
        assert!(
            stdout.contains(expected),
            "the walk-through's output lacks {expected:?}:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
