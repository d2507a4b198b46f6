//! Progress bars for long commands (`reconcile`, `bench`): drawn on stderr only when both
//! stdout and stderr are terminals, so piped or captured output never carries one.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting bytes up to `total_bytes`, or `None` when the output is not a terminal.
pub fn bytes_bar(total_bytes: u64, what: &str) -> Option<ProgressBar> {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return None;
    }
    let bar = ProgressBar::new(total_bytes);
    let template = format!(
        "{what} [{{elapsed_precise}}] {{wide_bar}} {{bytes}}/{{total_bytes}} {{msg}} (eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    Some(bar)
}

/// A bar counting items up to `total`, or `None` when the output is not a terminal.
pub fn count_bar(total: u64, what: &str) -> Option<ProgressBar> {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return None;
    }
    let bar = ProgressBar::new(total);
    let template =
        format!("{what} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} (eta {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    Some(bar)
}
