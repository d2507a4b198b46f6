//! The operator console's reads and sessions (its pages are rendered by `ferropay-http`'s
//! `console` module). Every list here is keyset-paginated over an index (migrations 0010, 0015
//! and 0019) so that a page costs the same on a database of a million payments as on an empty
//! one: most walk newest first by a time and an id ([`Keyset`]). Figures that analysts read too
//! come from the views of migrations 0015 and 0019 (`trial_balance`, `seller_balances`,
//! `payment_funnel`, `daily_settlement`), so the console and their queries cannot disagree.
//! Nothing here changes money: the console's actions call the existing use cases
//! (`reconcile::breaks::resolve`, `jobs::dlq::replay`, `webhooks::deliver::redeliver`).
//!
//! Layer: reads only, over the tables of the layers below (beside `wallet` and `backlog`).

pub mod bench_data;
pub mod dead_letters;
pub mod deliveries;
pub mod disputes;
pub mod ledger;
pub mod overview;
pub mod payments;
pub mod reconciliation;
pub mod sellers;
pub mod sessions;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{Error, Result};
use crate::lists::{Param, Select};
use crate::store::Store;

/// Rows in one console page.
pub const PAGE_ROWS: u32 = 50;

/// A position in a list walked newest first by `(at_ms, id)`, written `AT_MS~ID` in the page's
/// link, so that the next page needs no lookup of the last row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: String,
}

impl Cursor {
    /// Parses the `after` query parameter; a 400 naming `after` when it is not a cursor.
    /// The optional `after` query parameter: trimmed, empty as none, else a cursor (a 400
    /// naming `after` when it is not one).
    pub fn from_param(after: Option<&str>) -> Result<Option<Self>> {
        filter_text("after", after)?
            .map(|text| Self::parse(&text))
            .transpose()
    }

    pub fn parse(text: &str) -> Result<Self> {
        let (at_ms, id) = text
            .split_once('~')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
            .filter(|(_, id)| !id.is_empty() && id.len() <= 255)
            .ok_or_else(|| Error::invalid("after", "must be a cursor from a page's link"))?;
        Ok(Self {
            at_ms,
            id: id.to_owned(),
        })
    }

    pub fn encode(&self) -> String {
        format!("{}~{}", self.at_ms, self.id)
    }

    /// Keeps the rows after this cursor in a list ordered `at DESC, id DESC` (keyset paging:
    /// the index on `(at, id)` seeks straight to the page).
    pub(crate) fn narrow(&self, select: &mut Select, at: &str, id: &str) {
        select.condition(
            &format!("{at} <= ? AND ({at} < ? OR {id} < ?)"),
            vec![
                Param::Int(self.at_ms),
                Param::Int(self.at_ms),
                Param::Text(self.id.clone()),
            ],
        );
    }
}

/// How a list is walked newest first: by the SQL expressions `at` (a time in ms) and `id`
/// (`d.created_at_ms`, `d.id`), which an index orders. Each row carries their values in the
/// columns named as the expressions are after their `.` (`created_at_ms`, `id`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keyset {
    pub at: &'static str,
    pub id: &'static str,
}

impl Keyset {
    /// One page of `select_from` (with the conditions already in `select`), newest first after
    /// `after`: at most [`PAGE_ROWS`] rows, and the next page's cursor when more follow.
    pub(crate) async fn page(
        self,
        store: &Store,
        mut select: Select,
        select_from: &str,
        after: Option<&Cursor>,
    ) -> Result<Paged<AnyRow>> {
        if let Some(cursor) = after {
            cursor.narrow(&mut select, self.at, self.id);
        }
        let order = format!("{} DESC, {} DESC", self.at, self.id);
        let rows = select
            .fetch_ordered(store, select_from, "", &order, PAGE_ROWS)
            .await?;
        let column = |expression: &'static str| expression.rsplit('.').next().unwrap_or_default();
        Paged::cut(rows, |row| {
            Ok(Cursor {
                at_ms: row
                    .try_get::<Option<i64>, _>(column(self.at))?
                    .unwrap_or_default(),
                id: row.try_get(column(self.id))?,
            }
            .encode())
        })
    }
}

/// One page of `select_from` walked by a text key then currency (`account, currency`;
/// `seller_id, currency`, the view's key order), from the key `from` on (a search by a key or
/// its beginning) and after the cursor `after`, `KEY~CURRENCY` (a 400 naming `after` when it is
/// not one); the next page's cursor is the last row's.
pub(crate) async fn by_key(
    store: &Store,
    key: &'static str,
    select_from: &str,
    from: Option<&str>,
    after: Option<&str>,
) -> Result<Paged<AnyRow>> {
    let mut select = Select::new(store.backend());
    if let Some(from) = from {
        select.condition(&format!("{key} >= ?"), vec![Param::Text(from.to_owned())]);
    }
    if let Some(after) = after {
        let (at_key, currency) = after
            .rsplit_once('~')
            .ok_or_else(|| Error::invalid("after", "must be a cursor from a page's link"))?;
        select.condition(
            &format!("{key} >= ? AND ({key} > ? OR currency > ?)"),
            vec![
                Param::Text(at_key.to_owned()),
                Param::Text(at_key.to_owned()),
                Param::Text(currency.to_owned()),
            ],
        );
    }
    let rows = select
        .fetch_ordered(
            store,
            select_from,
            "",
            &format!("{key}, currency"),
            PAGE_ROWS,
        )
        .await?;
    Paged::cut(rows, |row| {
        Ok(format!(
            "{}~{}",
            row.try_get::<String, _>(key)?,
            row.try_get::<String, _>("currency")?
        ))
    })
}

/// One page of rows and, when more follow, the cursor of the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub next: Option<String>,
}

impl<T> Paged<T> {
    /// Cuts the extra row fetched and makes the next page's cursor from the last row kept.
    pub(crate) fn of(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(cursor) } else { None };
        Self { rows, next }
    }
}

impl Paged<AnyRow> {
    /// The page out of the `PAGE_ROWS + 1` rows fetched, and, when the extra one came, the
    /// next page's cursor made from the last row kept.
    fn cut(mut rows: Vec<AnyRow>, cursor: impl Fn(&AnyRow) -> Result<String>) -> Result<Self> {
        let more = rows.len() > PAGE_ROWS as usize;
        rows.truncate(PAGE_ROWS as usize);
        let next = match rows.last() {
            Some(last) if more => Some(cursor(last)?),
            _ => None,
        };
        Ok(Self { rows, next })
    }

    /// The page with each row read into what the console shows.
    pub(crate) fn read<T>(self, read: impl FnMut(&AnyRow) -> Result<T>) -> Result<Paged<T>> {
        Ok(Paged {
            rows: self.rows.iter().map(read).collect::<Result<_>>()?,
            next: self.next,
        })
    }
}

/// The first millisecond of the UTC day holding `at_ms`.
pub fn day_start_ms(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(86_400_000)
}

/// A free-text filter: trimmed, `None` when empty, at most 255 bytes (a 400 naming `field`).
pub fn filter_text(field: &str, text: Option<&str>) -> Result<Option<String>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.len() > 255 || t.contains('\0')) {
        return Err(Error::invalid(field, "must be at most 255 characters"));
    }
    Ok(text.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_name_the_parameter() {
        let cursor = Cursor {
            at_ms: 1_795_860_000_000,
            id: "pay_1~x".into(),
        };
        assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "12", "x~pay", "12~"] {
            let error = Cursor::parse(bad).unwrap_err();
            assert_eq!(error.to_body()["error"]["field"], "after", "{bad}");
        }
        assert_eq!(day_start_ms(86_400_000 + 5), 86_400_000);
        assert_eq!(filter_text("q", Some("  ")).unwrap(), None);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_follow() {
        let page = Paged::of(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.rows, vec![1, 2]);
        assert_eq!(page.next.as_deref(), Some("2"));
        let page = Paged::of(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(page.next, None);
    }
}
