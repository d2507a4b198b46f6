//! What the console's list pages share (payments, sellers, the ledger's trial balance,
//! reconciliation, dead letters, webhook deliveries, disputes): the query string read into the
//! page's filters ([`ListQuery`]: a bad or unknown parameter is a 400 page naming it, as the
//! API answers), the filter form's choices ([`choice`], checked by [`one_of`]), the table (one row
//! per item, or a line saying that none matches) and the pager (the first page, and the next one
//! from the last row's cursor).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ferropay::Ferropay;
use maud::{Markup, html};
use serde::de::DeserializeOwned;

use crate::extract::QueryParams;

use super::error::ConsoleError;
use super::layout::link;

/// A list page's query parameters, parsed into `T` (strings, checked by the handler).
pub struct ListQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Ferropay> for ListQuery<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Ferropay,
    ) -> Result<Self, ConsoleError> {
        let QueryParams(query) = QueryParams::from_request_parts(parts, service)
            .await
            .map_err(|error| ConsoleError::Domain(error.0))?;
        Ok(Self(query))
    }
}

/// The filter `field` when it is set (trimmed) and one of `allowed`; a 400 naming it otherwise.
pub fn one_of(
    field: &str,
    value: Option<&str>,
    allowed: &[&str],
) -> ferropay::Result<Option<String>> {
    let value = ferropay::console::filter_text(field, value)?;
    match value {
        Some(text) if !allowed.contains(&text.as_str()) => Err(ferropay::Error::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

/// A choice of the filter form: "any", then each of `values`.
pub fn choice(label: &str, name: &str, values: &[&str], selected: Option<&str>) -> Markup {
    html! {
        label { (label) select name=(name) {
            option value="" { "any" }
            @for value in values {
                option value=(value) selected[selected == Some(*value)] { (value) }
            }
        } }
    }
}

/// A column of a list's table; `Num` ones (amounts, counts) are aligned right.
pub enum Col {
    Text(&'static str),
    Num(&'static str),
}

/// A list's table `id`: the columns' headers, a row per item drawn by `row` (a `tr`), or
/// `empty` across the table when there is none.
pub fn table<T>(
    id: &str,
    cols: &[Col],
    items: &[T],
    row: impl Fn(&T) -> Markup,
    empty: &str,
) -> Markup {
    html! {
        div.table-wrap {
            table id=(id) {
                thead { tr {
                    @for col in cols {
                        @match col {
                            Col::Text(label) => { th { (label) } }
                            Col::Num(label) => { th.num { (label) } }
                        }
                    }
                } }
                tbody {
                    @for item in items { (row(item)) }
                    @if items.is_empty() { tr { td colspan=(cols.len()) { (empty) } } }
                }
            }
        }
    }
}

/// The pager under a list: the first page, and the next one when there is more.
pub fn pager(path: &str, filters: &[(&str, &str)], on_first: bool, next: Option<&str>) -> Markup {
    let next_href = next.map(|next| {
        let mut params = filters.to_vec();
        params.push(("after", next));
        link(path, &params)
    });
    html! {
        nav.pager {
            @if !on_first { a href=(link(path, filters)) { "« First page" } }
            @if let Some(href) = next_href {
                a.next rel="next" href=(href) { "Next page »" }
            } @else {
                span.end { "End of the list" }
            }
        }
    }
}
