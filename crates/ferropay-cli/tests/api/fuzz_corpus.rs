//! The fuzz targets' committed corpora and regression inputs (`fuzz/corpus/TARGET/`,
//! `fuzz/regressions/TARGET/`), run through the targets' own checks (`fuzz/oracles/`) in the
//! normal suite: an input a fuzzer once crashed on is kept in `regressions/` and stays fixed.

use std::path::{Path, PathBuf};

mod webhook {
    include!("../../../../fuzz/oracles/webhook.rs");
}
mod settlement_file {
    include!("../../../../fuzz/oracles/settlement_file.rs");
}
mod api_bodies {
    include!("../../../../fuzz/oracles/api_bodies.rs");
}

/// Every input of `target`: its corpus and its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|name| name == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            inputs.push((path, data));
        }
    }
    inputs.sort();
    inputs
}

/// Runs `check` on every input of `target`, naming the one that fails.
fn run_all(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for (path, data) in &inputs {
        if std::panic::catch_unwind(|| check(data)).is_err() {
            panic!("{} fails the {target} checks", path.display());
        }
    }
}

#[test]
fn the_webhook_corpus_and_regressions_hold() {
    run_all("webhook", webhook::check);
}

#[test]
fn the_settlement_file_corpus_and_regressions_hold() {
    run_all("settlement_file", settlement_file::check);
}

#[test]
fn the_api_bodies_corpus_and_regressions_hold() {
    run_all("api_bodies", api_bodies::check);
}
