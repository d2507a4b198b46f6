//! The console's reconciliation: runs newest first, the count of breaks by kind and status,
//! and breaks filtered by kind and status, newest first, each with the settlement line it is
//! about (line number, references, amounts expected and found) — keyset on
//! `(created_at_ms, id)` over `reconciliation_breaks_kind` / `reconciliation_breaks_status`.

use sqlx::Row;

use crate::error::Result;
use crate::lists::Select;
use crate::reconcile::breaks::{self, BreakView};
use crate::store::Store;

use super::{Cursor, Keyset, Paged};

/// Runs and breaks, newest first.
const RUNS_NEWEST: Keyset = Keyset {
    at: "started_at_ms",
    id: "id",
};
const BREAKS_NEWEST: Keyset = Keyset {
    at: "created_at_ms",
    id: "id",
};

/// A reconciliation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub psp: String,
    pub source: String,
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub lines: i64,
    pub matched: i64,
    pub breaks: i64,
    pub healed: i64,
    pub error: Option<String>,
}

/// Runs, newest first.
pub async fn runs(store: &Store, after: Option<&Cursor>) -> Result<Paged<RunRow>> {
    RUNS_NEWEST
        .page(
            store,
            Select::new(store.backend()),
            "SELECT id, psp, source, status, started_at_ms, finished_at_ms, lines, matched, \
             breaks, healed, error FROM reconciliation_runs",
            after,
        )
        .await?
        .read(|row| {
            Ok(RunRow {
                id: row.try_get("id")?,
                psp: row.try_get("psp")?,
                source: row.try_get("source")?,
                status: row.try_get("status")?,
                started_at_ms: row.try_get("started_at_ms")?,
                finished_at_ms: row.try_get("finished_at_ms")?,
                lines: row.try_get("lines")?,
                matched: row.try_get("matched")?,
                breaks: row.try_get("breaks")?,
                healed: row.try_get("healed")?,
                error: row.try_get("error")?,
            })
        })
}

/// How many breaks of one kind have one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
}

pub async fn counts_by_kind(store: &Store) -> Result<Vec<KindCount>> {
    let rows = sqlx::query(
        "SELECT kind, status, COUNT(*) AS n FROM reconciliation_breaks \
         GROUP BY kind, status ORDER BY kind, status",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KindCount {
                kind: row.try_get("kind")?,
                status: row.try_get("status")?,
                count: row.try_get("n")?,
            })
        })
        .collect()
}

/// Which breaks to list.
#[derive(Clone, Debug, Default)]
pub struct BreakFilter {
    pub kind: Option<String>,
    /// `open` or `resolved`; all when `None`.
    pub status: Option<String>,
}

/// Breaks newest first.
pub async fn breaks(
    store: &Store,
    filter: &BreakFilter,
    after: Option<&Cursor>,
) -> Result<Paged<BreakView>> {
    let mut select = Select::new(store.backend());
    select.text_eq("kind", &filter.kind);
    select.text_eq("status", &filter.status);
    BREAKS_NEWEST
        .page(store, select, breaks::SELECT_BREAK, after)
        .await?
        .read(breaks::view)
}

/// One break; `NotFound` for no such id.
pub async fn one_break(store: &Store, break_id: &str) -> Result<BreakView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{} WHERE id = $1",
        breaks::SELECT_BREAK
    )))
    .bind(break_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| crate::Error::NotFound(format!("break `{break_id}`")))?;
    breaks::view(&row)
}
