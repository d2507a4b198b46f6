//! One reconciliation run, from its row to its report: stream the file chunk by chunk through
//! the matcher, then post the fees per batch and currency, then look for captures of the
//! file's day(s) that the file lacks, and close the run row with its counts (or its error).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::Row;
use tokio::sync::mpsc;

use super::breaks::{self, BreakKind, FoundBreak};
use super::{
    Progress, REPORT_LIST_MAX, ReconcileReport, Reconciler, RunOptions, Window, matcher, reader,
};
use crate::clock::{now_ms, rfc3339_from_ms};
use crate::engine::Post;
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::ledger::{NewJournalTransaction, PostOutcome, Posting, accounts};
use crate::money::Currency;
use crate::store::{Store, sql};

const DAY_MS: i64 = 86_400_000;

/// Breaks described and stored per round of the missing-in-file check.
const MISSING_PAGE: usize = 500;

/// Parts of the missing-in-file window read at once.
const MISSING_SPLITS: usize = 2;

/// What a run has found so far. Memory: counters, at most [`REPORT_LIST_MAX`] listed breaks
/// and postings, and one fee sum per (batch, currency).
pub(super) struct RunState<'a> {
    pub reconciler: &'a Reconciler,
    pub run_id: String,
    pub started_at_ms: i64,
    pub lines: u64,
    pub matched: u64,
    pub breaks_found: u64,
    pub breaks_new: u64,
    pub auto_healed: u64,
    pub by_kind: BTreeMap<BreakKind, u64>,
    pub listed: Vec<FoundBreak>,
    pub postings: Vec<super::PostingSummary>,
    /// The PSP's fees per (batch, currency), as the file states them.
    pub fees: BTreeMap<(String, String), i64>,
    /// Earliest and latest `created_at` of the payment and refund lines, in ms.
    pub dated_ms: Option<(i64, i64)>,
    /// Nothing is written: no posting, healing, match, break or run row ([`super::days`]).
    pub provisional: bool,
}

/// Distinct (batch, currency) pairs a file may have; more means it is not a settlement file.
const FEE_KEYS_MAX: usize = 10_000;

impl RunState<'_> {
    /// Counts a break and lists it in the report while there is room.
    pub fn found(&mut self, found: &FoundBreak) {
        self.breaks_found += 1;
        *self.by_kind.entry(found.kind).or_insert(0) += 1;
        if found.auto_healed {
            self.auto_healed += 1;
        }
        if self.listed.len() < REPORT_LIST_MAX {
            self.listed.push(found.clone());
        }
    }

    pub fn posted(&mut self, summary: super::PostingSummary) {
        if self.postings.len() < REPORT_LIST_MAX {
            self.postings.push(summary);
        }
    }

    pub fn add_fee(&mut self, batch: &str, currency: &str, fee_minor: i64) -> Result<()> {
        let key = (batch.to_owned(), currency.to_owned());
        if !self.fees.contains_key(&key) && self.fees.len() >= FEE_KEYS_MAX {
            return Err(Error::invalid(
                "file",
                format!("more than {FEE_KEYS_MAX} batch and currency pairs"),
            ));
        }
        let sum = self.fees.entry(key).or_insert(0);
        *sum = sum
            .checked_add(fee_minor)
            .ok_or_else(|| Error::invalid("file", "the fees of a batch overflow i64"))?;
        Ok(())
    }

    pub fn dated(&mut self, at_ms: i64) {
        self.dated_ms = Some(match self.dated_ms {
            None => (at_ms, at_ms),
            Some((from, to)) => (from.min(at_ms), to.max(at_ms)),
        });
    }
}

pub(super) async fn execute(
    reconciler: &Reconciler,
    path: PathBuf,
    source: String,
    options: &RunOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ReconcileReport> {
    let started = Instant::now();
    let mut state = RunState {
        reconciler,
        run_id: new_id("rcn"),
        started_at_ms: now_ms(),
        lines: 0,
        matched: 0,
        breaks_found: 0,
        breaks_new: 0,
        auto_healed: 0,
        by_kind: BTreeMap::new(),
        listed: Vec::new(),
        postings: Vec::new(),
        fees: BTreeMap::new(),
        dated_ms: None,
        provisional: options.provisional,
    };
    if options.provisional {
        let window = drive(&mut state, path, options, progress).await?;
        return Ok(report(state, source, window, started));
    }
    let store = &reconciler.store;
    sqlx::query(
        "INSERT INTO reconciliation_runs (id, psp, source, status, started_at_ms) \
         VALUES ($1, $2, $3, 'running', $4)",
    )
    .bind(&state.run_id)
    .bind(&reconciler.psp)
    .bind(&source)
    .bind(state.started_at_ms)
    .execute(store.pool())
    .await?;
    tracing::info!(run_id = %state.run_id, %source, "reconciliation run started");

    let outcome = drive(&mut state, path, options, progress).await;
    let (status, error) = match &outcome {
        Ok(_) => ("completed", None),
        Err(error) => ("failed", Some(error.to_string())),
    };
    sqlx::query(
        "UPDATE reconciliation_runs SET status = $1, finished_at_ms = $2, lines = $3, \
         matched = $4, breaks = $5, healed = $6, error = $7 WHERE id = $8",
    )
    .bind(status)
    .bind(now_ms())
    .bind(state.lines as i64)
    .bind(state.matched as i64)
    .bind(state.breaks_found as i64)
    .bind(state.auto_healed as i64)
    .bind(error)
    .bind(&state.run_id)
    .execute(store.pool())
    .await?;
    let window = outcome?;

    Ok(report(state, source, window, started))
}

fn report(
    state: RunState<'_>,
    source: String,
    window: Option<Window>,
    started: Instant,
) -> ReconcileReport {
    let elapsed = started.elapsed();
    let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let lines_per_s = (state.lines as f64 / elapsed.as_secs_f64().max(1e-9)) as u64;
    tracing::info!(
        run_id = %state.run_id, lines = state.lines, matched = state.matched,
        breaks = state.breaks_found, auto_healed = state.auto_healed, duration_ms,
        provisional = state.provisional, "reconciliation run completed"
    );
    ReconcileReport {
        run_id: state.run_id,
        psp: state.reconciler.psp.clone(),
        source,
        provisional: state.provisional,
        lines: state.lines,
        matched: state.matched,
        breaks_found: state.breaks_found,
        auto_healed: state.auto_healed,
        breaks_new: state.breaks_new,
        breaks_by_kind: state.by_kind,
        breaks: state.listed,
        postings: state.postings,
        missing_in_file_window: window,
        duration_ms,
        lines_per_s,
    }
}

async fn drive(
    state: &mut RunState<'_>,
    path: PathBuf,
    options: &RunOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Option<Window>> {
    // Two chunks in flight: while one is judged and written, the next is read from the
    // database (on another connection), so the two cores both work.
    let mut chunks = reader::spawn(path, options.chunk_lines);
    let reconciler = state.reconciler;
    let mut in_hand: Option<(matcher::Prepared, u64)> = None;
    loop {
        let next = match chunks.recv().await {
            Some(chunk) => Some(chunk.map_err(|reason| Error::invalid("file", reason))?),
            None => None,
        };
        let bytes_read = next.as_ref().map(|chunk| chunk.bytes_read);
        let prepare_next = async {
            match next {
                Some(chunk) => matcher::prepare(reconciler, chunk.lines, options.provisional)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let prepared = match in_hand.take() {
            Some((prepared, bytes)) => {
                let (applied, next) = tokio::join!(matcher::apply(state, prepared), prepare_next);
                applied?;
                progress(Progress {
                    lines: state.lines,
                    bytes,
                });
                next?
            }
            None => prepare_next.await?,
        };
        match (prepared, bytes_read) {
            (Some(prepared), Some(bytes)) => in_hand = Some((prepared, bytes)),
            _ => break,
        }
    }
    post_fees(state).await?;
    if state.provisional {
        // The file of a day still open is still growing: captures it lacks are not breaks yet.
        return Ok(None);
    }
    let window = missing_in_file(state, options).await?;
    let resolved = breaks::resolve_now_posted(&state.reconciler.store, &state.run_id).await?;
    if resolved > 0 {
        tracing::info!(run_id = %state.run_id, resolved, "open missing_in_ledger breaks the ledger has now: resolved");
    }
    Ok(window)
}

/// Posts the fees of each (batch, currency) once: debit `psp_fees:{psp}`, credit
/// `psp_receivable:{psp}`. A batch posted before with another sum is an `amount_mismatch`.
async fn post_fees(state: &mut RunState<'_>) -> Result<()> {
    let psp = state.reconciler.psp.clone();
    let store = &state.reconciler.store;
    let fees = std::mem::take(&mut state.fees);
    if fees.values().all(|fee| *fee == 0) {
        return Ok(());
    }
    let mut found = Vec::new();
    for ((batch, currency), fee_minor) in fees {
        if fee_minor == 0 {
            continue;
        }
        let source_ref = format!("settlement_fees:{psp}:{batch}:{currency}");
        let money_currency =
            Currency::parse(&currency).map_err(|e| Error::invalid("currency", e.to_string()))?;
        if state.provisional {
            state.posted(super::PostingSummary {
                source_ref,
                kind: "psp_fees",
                currency,
                amount: fee_minor,
                outcome: "not_posted",
            });
            continue;
        }
        let posting = NewJournalTransaction {
            source_ref: source_ref.clone(),
            kind: "psp_fees",
            payment_id: None,
            postings: vec![
                Posting::minor(accounts::psp_fees(&psp), fee_minor, money_currency),
                Posting::minor(accounts::psp_receivable(&psp), -fee_minor, money_currency),
            ],
        };
        let outcome = state.reconciler.engine.submit(Post(posting)).await?;
        let outcome = match outcome {
            PostOutcome::Posted { .. } => "posted",
            PostOutcome::AlreadyPosted { transaction_id } => {
                let before =
                    posted_amount(store, &transaction_id, &accounts::psp_fees(&psp)).await?;
                if before != fee_minor {
                    let mut mismatch = FoundBreak::new(
                        BreakKind::AmountMismatch,
                        &format!("{source_ref}:{fee_minor}"),
                        format!(
                            "the fees of batch {batch} in {currency} were posted as {before}; \
                             this file says {fee_minor}"
                        ),
                    );
                    mismatch.psp_reference = Some(batch.clone());
                    mismatch.currency = Some(currency.clone());
                    mismatch.expected_amount = Some(before);
                    mismatch.actual_amount = Some(fee_minor);
                    found.push(mismatch);
                }
                "already_posted"
            }
        };
        state.posted(super::PostingSummary {
            source_ref,
            kind: "psp_fees",
            currency,
            amount: fee_minor,
            outcome,
        });
    }
    for mismatch in &found {
        state.found(mismatch);
    }
    if found.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    state.breaks_new += breaks::insert(store.backend(), &mut tx, &state.run_id, &found).await?;
    tx.commit().await?;
    Ok(())
}

/// The sum of a posted transaction's postings on `account`.
pub(super) async fn posted_amount(
    store: &Store,
    transaction_id: &str,
    account: &str,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total FROM postings \
         WHERE transaction_id = $1 AND account = $2",
    )
    .bind(transaction_id)
    .bind(account)
    .fetch_one(store.pool())
    .await?;
    Ok(row.try_get("total")?)
}

/// Captures and refunds posted in the file's day(s) that no line of any run matched: each is a
/// `missing_in_file` break. The window ends when the run started, so a payment captured while
/// the file was on its way is not blamed on it. The captures are streamed (an index scan and one
/// lookup each), the window cut in [`MISSING_SPLITS`] parts read at once, so that the database
/// uses every core; the few that are missing are described and stored a page at a time.
async fn missing_in_file(state: &mut RunState<'_>, options: &RunOptions) -> Result<Option<Window>> {
    let (from_ms, to_ms) = match (options.date, state.dated_ms) {
        (Some(date), _) => {
            let from_ms = date.midnight().assume_utc().unix_timestamp() * 1_000;
            (from_ms, from_ms + DAY_MS)
        }
        (None, Some((first_ms, last_ms))) => (
            first_ms.div_euclid(DAY_MS) * DAY_MS,
            (last_ms.div_euclid(DAY_MS) + 1) * DAY_MS,
        ),
        (None, None) => return Ok(None),
    };
    let to_ms = to_ms.min(state.started_at_ms);
    let store = state.reconciler.store.clone();
    let window = Window {
        from: rfc3339_from_ms(from_ms),
        to: rfc3339_from_ms(to_ms),
    };
    // Cut where the postings are, not the calendar: a day's file may cover a few busy hours.
    let Some((first_ms, last_ms)) = posted_span(&store, from_ms, to_ms).await? else {
        return Ok(Some(window));
    };
    // Two readers and the writer each hold a connection: a smaller pool reads in one part.
    let splits = if store.pool().options().get_max_connections() >= 3 {
        MISSING_SPLITS
    } else {
        1
    };
    let parts = split_window(first_ms, last_ms + 1, splits);
    let (pages, received) = mpsc::channel::<Result<Vec<String>>>(splits);
    let readers = futures_util::future::join_all(
        parts
            .into_iter()
            .map(|(from_ms, to_ms)| unmatched_pages(&store, from_ms, to_ms, pages.clone())),
    );
    drop(pages);
    // The writer owns the receiver: when it stops (done, or on the first error, its own or a
    // reader's) the receiver is dropped, every reader's next send fails and the readers end.
    let (_, written) = tokio::join!(readers, write_missing(state, &store, received));
    written?;
    Ok(Some(window))
}

/// Describes and stores the unmatched source references the readers send, a page at a time;
/// stops at the first error (a reader's, sent as a page, or its own).
async fn write_missing(
    state: &mut RunState<'_>,
    store: &Store,
    mut received: mpsc::Receiver<Result<Vec<String>>>,
) -> Result<()> {
    while let Some(page) = received.recv().await {
        let found = describe_missing(state, &page?).await?;
        for missing in &found {
            state.found(missing);
        }
        let mut tx = store.begin_write().await?;
        state.breaks_new += breaks::insert(store.backend(), &mut tx, &state.run_id, &found).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The first and the last `created_at_ms` of the captures and refunds posted in
/// `[from_ms, to_ms)`, read off the ends of an index; `None` when there are none.
async fn posted_span(store: &Store, from_ms: i64, to_ms: i64) -> Result<Option<(i64, i64)>> {
    let end = |kind: &str, order: &str| {
        format!(
            "(SELECT created_at_ms FROM journal_transactions WHERE kind = '{kind}' \
              AND created_at_ms >= $1 AND created_at_ms < $2 ORDER BY created_at_ms {order} \
              LIMIT 1)"
        )
    };
    let statement = format!(
        "SELECT {} AS first_capture, {} AS last_capture, {} AS first_refund, {} AS last_refund",
        end("capture", "ASC"),
        end("capture", "DESC"),
        end("refund", "ASC"),
        end("refund", "DESC"),
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(store.pool())
        .await?;
    let ends = |first: &str, last: &str| -> Result<Option<(i64, i64)>> {
        let first: Option<i64> = row.try_get(first)?;
        let last: Option<i64> = row.try_get(last)?;
        Ok(first.zip(last))
    };
    let captures = ends("first_capture", "last_capture")?;
    let refunds = ends("first_refund", "last_refund")?;
    Ok(match (captures, refunds) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (one, other) => one.or(other),
    })
}

/// `[from_ms, to_ms)` cut in `parts` adjacent windows (fewer when it is shorter than that).
fn split_window(from_ms: i64, to_ms: i64, parts: usize) -> Vec<(i64, i64)> {
    let span_ms = (to_ms - from_ms).max(0);
    let parts = (parts.max(1) as i64).min(span_ms.max(1));
    (0..parts)
        .map(|part| {
            (
                from_ms + span_ms * part / parts,
                from_ms + span_ms * (part + 1) / parts,
            )
        })
        .collect()
}

/// Streams the unmatched captures and refunds posted in `[from_ms, to_ms)` to `pages`, at most
/// [`MISSING_PAGE`] source references a page; an error is sent as the last page.
async fn unmatched_pages(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
    pages: mpsc::Sender<Result<Vec<String>>>,
) {
    let read = async {
        let mut unmatched = sqlx::query(
            "SELECT j.source_ref FROM journal_transactions j \
             WHERE j.kind IN ('capture', 'refund') AND j.created_at_ms >= $1 \
               AND j.created_at_ms < $2 \
               AND NOT EXISTS (SELECT 1 FROM reconciliation_matches m \
                               WHERE m.match_ref = j.source_ref)",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch(store.pool());
        let mut page: Vec<String> = Vec::with_capacity(MISSING_PAGE);
        while let Some(row) = unmatched.try_next().await? {
            page.push(row.try_get("source_ref")?);
            if page.len() == MISSING_PAGE
                && pages.send(Ok(std::mem::take(&mut page))).await.is_err()
            {
                return Ok(()); // the writer stopped
            }
        }
        if !page.is_empty() {
            let _ = pages.send(Ok(page)).await;
        }
        Ok::<(), Error>(())
    };
    if let Err(error) = read.await {
        let _ = pages.send(Err(error)).await;
    }
}

/// `missing_in_file` breaks for unmatched ledger source references: this PSP's only (those with
/// a posting on its receivable), with the amount and the PSP reference the ledger knows.
async fn describe_missing(state: &RunState<'_>, source_refs: &[String]) -> Result<Vec<FoundBreak>> {
    let store = &state.reconciler.store;
    let backend = store.backend();
    let mut prefix = String::from(
        "SELECT j.source_ref, j.payment_id, pm.psp_reference, p.currency, \
                CAST(SUM(p.amount_minor) AS BIGINT) AS amount_minor \
         FROM journal_transactions j \
         JOIN postings p ON p.transaction_id = j.id AND p.account = ",
    );
    sql::push_param(&mut prefix, backend, 1);
    prefix.push_str(
        " LEFT JOIN payments pm ON pm.id = j.payment_id \
         WHERE j.source_ref IN ",
    );
    let statement = sql::in_list(
        backend,
        &prefix,
        2,
        source_refs.len(),
        " GROUP BY j.seq, j.source_ref, j.payment_id, pm.psp_reference, p.currency \
         ORDER BY j.seq",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(accounts::psp_receivable(&state.reconciler.psp));
    for source_ref in source_refs {
        query = query.bind(source_ref.as_str());
    }
    let mut found = Vec::with_capacity(source_refs.len());
    for row in query.fetch_all(store.pool()).await? {
        let source_ref: String = row.try_get("source_ref")?;
        let amount_minor: i64 = row.try_get("amount_minor")?;
        let mut missing = FoundBreak::new(
            BreakKind::MissingInFile,
            &source_ref,
            format!("{source_ref} is in the ledger but not in the settlement file"),
        );
        missing.psp_reference = row.try_get("psp_reference")?;
        missing.merchant_reference = row.try_get("payment_id")?;
        missing.currency = Some(row.try_get("currency")?);
        missing.expected_amount = Some(amount_minor);
        found.push(missing);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::split_window;

    #[test]
    fn a_window_is_cut_into_adjacent_parts_that_cover_it() {
        assert_eq!(split_window(0, 10, 2), [(0, 5), (5, 10)]);
        assert_eq!(
            split_window(100, 107, 3),
            [(100, 102), (102, 104), (104, 107)]
        );
        // A window of one millisecond (a single posting) is not cut.
        assert_eq!(split_window(42, 43, 2), [(42, 43)]);
        for parts in 1..=4 {
            let cut = split_window(1_000, 87_400_000, parts);
            assert_eq!(cut.len(), parts);
            assert_eq!(cut[0].0, 1_000);
            assert_eq!(cut[parts - 1].1, 87_400_000);
            assert!(cut.windows(2).all(|pair| pair[0].1 == pair[1].0));
        }
    }
}
