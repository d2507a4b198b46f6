//! External reconciliation (DESIGN.md, "Reconciliation"): the PSP's settlement file is read line
//! by line and matched to the ledger by PSP reference and merchant reference. Every line ends as
//! matched or as a break of a named kind; the PSP's fees and its payouts to our bank are posted
//! to the ledger exactly once; a run and its breaks are stored.
//!
//! - [`line`]: one line, parsed and checked;
//! - [`adyen_report`]: Adyen's Settlement details report read as lines (picked by its header);
//! - [`announced`]: a day's settlement from the reports a PSP announced that day (Adyen's);
//! - [`reader`]: the file streamed in chunks on a blocking thread (memory does not grow with it);
//! - [`matcher`]: a chunk of lines matched against payments and the journal, in a few queries;
//! - [`heal`]: asking the PSP about a payment the ledger lacks, and applying its answer;
//! - [`breaks`]: the kinds of break, storing, listing and resolving them;
//! - [`run`]: one run from start to report: the fees, the missing-in-file check, the run row;
//! - [`schedule`]: the nightly run inside `serve`;
//! - [`days`]: which days may be reconciled for good (closed ones), and provisional runs;
//! - [`bench_data`]: seeded payments and their file, for `ferropay bench reconcile`.
//!
//! What is posted is what the file says: the fees of its lines (per batch and currency: debit
//! `psp_fees:{psp}`, credit `psp_receivable:{psp}`) and each `payout_to_bank` line (debit `bank`,
//! credit `psp_receivable:{psp}`), each under a source reference of its own, so that running a
//! file again posts nothing. What remains on `psp_receivable:{psp}` after a clean day is zero;
//! otherwise it is the sum the breaks explain.

pub mod adyen_report;
mod announced;
pub mod bench_data;
pub mod breaks;
pub mod days;
mod dispute_lines;
mod heal;
pub mod line;
mod matcher;
pub mod reader;
mod run;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::psp::{Connector, PspError};
use crate::store::Store;

pub use breaks::{BreakFilter, BreakKind, BreakView, FoundBreak};

/// Lines matched per round of queries and per write transaction.
pub const CHUNK_LINES: usize = 5_000;

/// At most this many breaks and postings are listed in a report; all are stored and counted.
pub const REPORT_LIST_MAX: usize = 1_000;

/// Reconciles settlement files of one PSP against the books.
#[derive(Clone)]
pub struct Reconciler {
    pub store: Store,
    /// Posts the fees and bank settlements, and applies what healing learns.
    pub engine: Engine,
    /// The PSP's name in account names (`psp_receivable:sandbox`).
    pub psp: String,
    /// Asked about payments the ledger lacks; without one, such lines stay open breaks.
    pub connector: Option<Arc<dyn Connector>>,
    /// Applied when a healed payment is captured, as for a webhook.
    pub platform_fee_bps: u32,
    /// A UTC day counts as closed this long after its end ([`days`]); 0 by default.
    pub day_close_lag_ms: i64,
}

/// How a run was started.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The settlement day, for the missing-in-file check. Default: the days the file's payment
    /// and refund lines fall on.
    pub date: Option<time::Date>,
    /// Lines per chunk (default [`CHUNK_LINES`]); tests make it small to cross chunk borders.
    pub chunk_lines: usize,
    /// Read and match only: no posting, no healing, no break, match or run stored ([`days`]).
    pub provisional: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            date: None,
            chunk_lines: CHUNK_LINES,
            provisional: false,
        }
    }
}

/// How far a run has got, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub lines: u64,
    pub bytes: u64,
}

/// What `ferropay reconcile` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub run_id: String,
    pub psp: String,
    pub source: String,
    /// A provisional run (of a day not closed yet): it posted and stored nothing; its postings
    /// say `not_posted` and its breaks are what a final run would find now.
    pub provisional: bool,
    /// Lines read after the header.
    pub lines: u64,
    /// Lines that agree with the books (auto-healed ones included).
    pub matched: u64,
    /// Breaks found, the auto-healed ones included.
    pub breaks_found: u64,
    /// `missing_in_ledger` breaks that reconciliation fixed by asking the PSP.
    pub auto_healed: u64,
    /// Breaks found that were not stored before (a later run of the same file finds none new).
    pub breaks_new: u64,
    pub breaks_by_kind: BTreeMap<BreakKind, u64>,
    /// The breaks found, at most [`REPORT_LIST_MAX`]; each says whether it was auto-healed.
    pub breaks: Vec<FoundBreak>,
    /// What this run posted to the ledger or found posted already, at most [`REPORT_LIST_MAX`].
    pub postings: Vec<PostingSummary>,
    /// The captures (and refunds) posted in this window were checked against the file.
    pub missing_in_file_window: Option<Window>,
    pub duration_ms: u64,
    pub lines_per_s: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PostingSummary {
    pub source_ref: String,
    /// `psp_fees` or `bank_settlement`.
    pub kind: &'static str,
    pub currency: String,
    pub amount: i64,
    /// `posted`, `already_posted` by an earlier run, or `not_posted` by a provisional run.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub from: String,
    pub to: String,
}

impl Reconciler {
    /// Reconciles the settlement file at `path`. `progress` is called after each chunk.
    pub async fn reconcile_file(
        &self,
        path: &Path,
        options: &RunOptions,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<ReconcileReport> {
        let source = format!("file:{}", path.display());
        run::execute(self, path.to_path_buf(), source, options, progress).await
    }

    /// Fetches the settlement file of `date` from the PSP into `work_dir` and reconciles it;
    /// the downloaded file is removed afterwards. A day that has not closed (or is in the
    /// future, or before our first payment) is refused with 400 unless the run is
    /// `provisional` ([`days`]). A PSP that refuses the file for good is `PspRejected` (502,
    /// with its reason); one that cannot give it now is `PspUnavailable` (503, retry later).
    pub async fn reconcile_day(
        &self,
        date: time::Date,
        work_dir: &Path,
        provisional: bool,
    ) -> Result<ReconcileReport> {
        let connector = self.connector.as_ref().ok_or_else(|| {
            Error::Internal("fetching a settlement file needs a PSP connector".into())
        })?;
        if !provisional {
            days::check_closed_now(&self.store, date, self.day_close_lag_ms).await?;
        } else if date > time::OffsetDateTime::now_utc().date() {
            days::check_closed(date, time::OffsetDateTime::now_utc(), 0, None)?;
        }
        let path: PathBuf = work_dir.join(format!(
            "ferropay-settlement-{}-{date}-{}.csv",
            self.psp,
            uuid::Uuid::now_v7().simple()
        ));
        let fetched = match connector.settlement_report_event() {
            Some(event_type) => {
                announced::fetch_day(&self.store, connector.as_ref(), event_type, date, &path).await
            }
            None => connector.settlement_file(date, &path).await,
        };
        let result = match fetched {
            Ok(bytes) => {
                tracing::info!(%date, bytes, provisional, "settlement file fetched");
                let options = RunOptions {
                    date: Some(date),
                    provisional,
                    ..RunOptions::default()
                };
                run::execute(self, path.clone(), format!("psp:{date}"), &options, &|_| {}).await
            }
            Err(PspError::Permanent(reason)) => Err(Error::PspRejected(format!(
                "the settlement file of {date}: {reason}"
            ))),
            Err(PspError::Retryable(reason)) => Err(Error::PspUnavailable {
                message: format!("fetching the settlement file of {date}: {reason}"),
                retry_after_s: 60,
            }),
        };
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    pub async fn breaks(&self, filter: BreakFilter, limit: u32) -> Result<Vec<BreakView>> {
        breaks::list(&self.store, filter, limit).await
    }

    pub async fn resolve(&self, break_id: &str, reason: &str) -> Result<BreakView> {
        breaks::resolve(&self.store, break_id, reason).await
    }
}
