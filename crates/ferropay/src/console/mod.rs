//! The operator console's reads and sessions (its pages are rendered by `ferropay-http`'s
//! `console` module). Every list here is keyset-paginated over an index (migrations 0010 and
//! 0015) so that a page costs the same on a database of a million payments as on an empty one;
//! figures that analysts read too come from the views of migration 0015 (`trial_balance`,
//! `seller_balances`, `payment_funnel`, `daily_settlement`), so the console and their queries
//! cannot disagree. Nothing here changes money: the console's actions call the existing use
//! cases (`reconcile::breaks::resolve`, `jobs::dlq::replay`, `webhooks::deliver::redeliver`).
//!
//! Layer: reads only, over the tables of the layers below (beside `wallet` and `backlog`).

pub mod bench_data;
pub mod dead_letters;
pub mod deliveries;
pub mod ledger;
pub mod overview;
pub mod payments;
pub mod reconciliation;
pub mod sellers;
pub mod sessions;

use crate::error::{Error, Result};

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
    pub(crate) fn narrow(&self, select: &mut crate::lists::Select, at: &str, id: &str) {
        use crate::lists::Param;
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
