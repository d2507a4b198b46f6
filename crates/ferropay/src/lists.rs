//! Lists of payments, refunds and payouts with filters and keyset pagination: a page is
//! `limit` items after the item `starting_after` in the list's order, found by the position of
//! that item — `(created_at_ms, id)`, which no insert changes — never by an offset, so rows
//! inserted while a client pages neither shift nor repeat what it sees. Payments, refunds and
//! payouts list newest first; events ([`crate::events`]) oldest first.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::payin::model::{PaymentStatus, PaymentView};
use crate::payin::repo::load_view_on;
use crate::payout::PayoutView;
use crate::refund::RefundView;
use crate::store::{Backend, Store, sql};

/// Items in a page when `limit` is not given, and the most a page holds.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Which page: at most `limit` items after `starting_after` (an item's id), or from the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub starting_after: Option<String>,
}

impl Page {
    /// Parses the `limit` and `starting_after` query parameters.
    pub fn parse(limit: Option<&str>, starting_after: Option<&str>) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
                })?,
        };
        let starting_after = starting_after.map(str::to_owned);
        if starting_after
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 255)
        {
            return Err(Error::invalid(
                "starting_after",
                "must be an id of the list",
            ));
        }
        Ok(Self {
            limit,
            starting_after,
        })
    }
}

/// A page of items and whether more follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

/// Parses an RFC 3339 time (`2026-11-24T10:00:00Z`) given as filter `field`, in ms.
pub fn parse_time_ms(field: &str, text: &str) -> Result<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        Error::invalid(
            field,
            "must be an RFC 3339 time such as 2026-11-24T10:00:00Z",
        )
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| Error::invalid(field, "is out of range"))
}

/// Filters of `GET /v1/payments`.
#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub checkout_id: Option<String>,
    /// Payments with an order for this seller.
    pub seller_id: Option<String>,
    pub buyer_id: Option<String>,
    pub status: Option<PaymentStatus>,
    /// Created at or after this time.
    pub created_gte_ms: Option<i64>,
    /// Created before this time.
    pub created_lt_ms: Option<i64>,
}

/// Filters of `GET /v1/refunds`.
#[derive(Clone, Debug, Default)]
pub struct RefundFilter {
    pub payment_id: Option<String>,
    pub seller_id: Option<String>,
    pub status: Option<String>,
    pub created_gte_ms: Option<i64>,
    pub created_lt_ms: Option<i64>,
}

/// Filters of `GET /v1/payouts`.
#[derive(Clone, Debug, Default)]
pub struct PayoutFilter {
    pub seller_id: Option<String>,
    pub status: Option<String>,
    pub created_gte_ms: Option<i64>,
    pub created_lt_ms: Option<i64>,
}

/// Order of a list by `(created_at_ms, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    NewestFirst,
    OldestFirst,
}

/// A `SELECT` under construction: conditions with their parameters, numbered in the backend's
/// style, so that every value is bound and none is spliced into the text.
pub(crate) struct Select {
    backend: Backend,
    conditions: Vec<String>,
    params: Vec<Param>,
}

pub(crate) enum Param {
    Text(String),
    Int(i64),
}

impl Select {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            conditions: Vec::new(),
            params: Vec::new(),
        }
    }

    /// The next parameter's placeholder, bound to `param`.
    fn param(&mut self, param: Param) -> String {
        self.params.push(param);
        let mut placeholder = String::new();
        sql::push_param(&mut placeholder, self.backend, self.params.len());
        placeholder
    }

    /// Adds `template` with each `?` replaced by a placeholder bound to the next of `params`.
    pub(crate) fn condition(&mut self, template: &str, params: Vec<Param>) {
        let mut text = String::new();
        let mut params = params.into_iter();
        for (i, part) in template.split('?').enumerate() {
            if i > 0 {
                let param = params.next().expect("one parameter per ?");
                let placeholder = self.param(param);
                text.push_str(&placeholder);
            }
            text.push_str(part);
        }
        self.conditions.push(text);
    }

    pub(crate) fn text_eq(&mut self, column: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.condition(&format!("{column} = ?"), vec![Param::Text(value.clone())]);
        }
    }

    pub(crate) fn created_between(&mut self, column: &str, gte: Option<i64>, lt: Option<i64>) {
        if let Some(gte) = gte {
            self.condition(&format!("{column} >= ?"), vec![Param::Int(gte)]);
        }
        if let Some(lt) = lt {
            self.condition(&format!("{column} < ?"), vec![Param::Int(lt)]);
        }
    }

    /// Rows after the cursor `(created_at_ms, id)` in `order`.
    pub(crate) fn after(&mut self, prefix: &str, order: Order, cursor: Option<(i64, String)>) {
        if let Some((at_ms, id)) = cursor {
            let op = match order {
                Order::NewestFirst => "<",
                Order::OldestFirst => ">",
            };
            self.condition(
                &format!(
                    "({prefix}created_at_ms {op} ? OR ({prefix}created_at_ms = ? AND {prefix}id {op} ?))"
                ),
                vec![Param::Int(at_ms), Param::Int(at_ms), Param::Text(id)],
            );
        }
    }

    /// `select … WHERE conditions ORDER BY order_by LIMIT limit + 1`, for lists walked in
    /// another order than `(created_at_ms, id)` (the operator console's).
    pub(crate) async fn fetch_ordered(
        mut self,
        store: &Store,
        select_from: &str,
        group_by: &str,
        order_by: &str,
        limit: u32,
    ) -> Result<Vec<AnyRow>> {
        let mut text = select_from.to_owned();
        if !self.conditions.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.conditions.join(" AND "));
        }
        text.push_str(group_by);
        let limit_param = self.param(Param::Int(i64::from(limit) + 1));
        text.push_str(&format!(" ORDER BY {order_by} LIMIT {limit_param}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
        for param in self.params {
            query = match param {
                Param::Text(value) => query.bind(value),
                Param::Int(value) => query.bind(value),
            };
        }
        Ok(query.fetch_all(store.pool()).await?)
    }

    /// `select … WHERE conditions ORDER BY … LIMIT limit + 1` (one more shows `has_more`).
    pub(crate) async fn fetch(
        mut self,
        store: &Store,
        select_from: &str,
        prefix: &str,
        order: Order,
        limit: u32,
    ) -> Result<Vec<AnyRow>> {
        let mut text = select_from.to_owned();
        if !self.conditions.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.conditions.join(" AND "));
        }
        let direction = match order {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        };
        let limit_param = self.param(Param::Int(i64::from(limit) + 1));
        text.push_str(&format!(
            " ORDER BY {prefix}created_at_ms {direction}, {prefix}id {direction} LIMIT {limit_param}"
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
        for param in self.params {
            query = match param {
                Param::Text(value) => query.bind(value),
                Param::Int(value) => query.bind(value),
            };
        }
        Ok(query.fetch_all(store.pool()).await?)
    }
}

/// The position `(created_at_ms, id)` of the cursor item `id` in `table`; a 400 naming
/// `starting_after` when there is no such item.
pub(crate) async fn cursor(
    store: &Store,
    table: &'static str,
    id: Option<&str>,
) -> Result<Option<(i64, String)>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let statement = format!("SELECT created_at_ms FROM {table} WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| Error::invalid("starting_after", format!("no item `{id}` in this list")))?;
    Ok(Some((row.try_get("created_at_ms")?, id.to_owned())))
}

/// Cuts the extra row fetched to tell whether more follow.
pub(crate) fn page_of<T>(mut data: Vec<T>, limit: u32) -> Listed<T> {
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    Listed { data, has_more }
}

/// `GET /v1/payments`: newest first.
pub async fn payments(
    store: &Store,
    filter: &PaymentFilter,
    page: &Page,
) -> Result<Listed<PaymentView>> {
    let cursor = cursor(store, "payments", page.starting_after.as_deref()).await?;
    let mut select = Select::new(store.backend());
    select.text_eq("p.checkout_id", &filter.checkout_id);
    select.text_eq("p.buyer_id", &filter.buyer_id);
    if let Some(status) = filter.status {
        select.condition(
            "p.status = ?",
            vec![Param::Text(status.as_str().to_owned())],
        );
    }
    if let Some(seller_id) = &filter.seller_id {
        select.condition(
            "EXISTS (SELECT 1 FROM payment_orders o WHERE o.payment_id = p.id AND o.seller_id = ?)",
            vec![Param::Text(seller_id.clone())],
        );
    }
    select.created_between(
        "p.created_at_ms",
        filter.created_gte_ms,
        filter.created_lt_ms,
    );
    select.after("p.", Order::NewestFirst, cursor);
    let rows = select
        .fetch(
            store,
            "SELECT p.id FROM payments p",
            "p.",
            Order::NewestFirst,
            page.limit,
        )
        .await?;
    let mut conn = store.pool().acquire().await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        data.push(load_view_on(&mut conn, &id).await?);
    }
    Ok(page_of(data, page.limit))
}

/// `GET /v1/refunds`: newest first.
pub async fn refunds(
    store: &Store,
    filter: &RefundFilter,
    page: &Page,
) -> Result<Listed<RefundView>> {
    let cursor = cursor(store, "refunds", page.starting_after.as_deref()).await?;
    let mut select = Select::new(store.backend());
    select.text_eq("r.payment_id", &filter.payment_id);
    select.text_eq("r.seller_id", &filter.seller_id);
    select.text_eq("r.status", &filter.status);
    select.created_between(
        "r.created_at_ms",
        filter.created_gte_ms,
        filter.created_lt_ms,
    );
    select.after("r.", Order::NewestFirst, cursor);
    let rows = select
        .fetch(
            store,
            "SELECT r.id, r.payment_id, o.order_id, r.seller_id, r.amount_minor, r.currency, \
             r.status, r.failure_code, r.created_at_ms FROM refunds r \
             JOIN payment_orders o ON o.id = r.payment_order_id",
            "r.",
            Order::NewestFirst,
            page.limit,
        )
        .await?;
    let data = rows
        .iter()
        .map(crate::refund::view_of)
        .collect::<Result<Vec<_>>>()?;
    Ok(page_of(data, page.limit))
}

/// `GET /v1/payouts`: newest first.
pub async fn payouts(
    store: &Store,
    filter: &PayoutFilter,
    page: &Page,
) -> Result<Listed<PayoutView>> {
    let cursor = cursor(store, "payouts", page.starting_after.as_deref()).await?;
    let mut select = Select::new(store.backend());
    select.text_eq("seller_id", &filter.seller_id);
    select.text_eq("status", &filter.status);
    select.created_between("created_at_ms", filter.created_gte_ms, filter.created_lt_ms);
    select.after("", Order::NewestFirst, cursor);
    let rows = select
        .fetch(
            store,
            "SELECT id, seller_id, amount_minor, currency, status, failure_code, created_at_ms, \
             updated_at_ms FROM payouts",
            "",
            Order::NewestFirst,
            page.limit,
        )
        .await?;
    let data = rows
        .iter()
        .map(crate::payout::view_of)
        .collect::<Result<Vec<_>>>()?;
    Ok(page_of(data, page.limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_and_times_parse() {
        assert_eq!(Page::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(Page::parse(Some("100"), None).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(Page::parse(Some(bad), None).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time_ms("created_gte", "2026-11-28T10:00:00Z").unwrap(),
            1_795_860_000_000
        );
        assert!(parse_time_ms("created_gte", "yesterday").is_err());
    }

    #[test]
    fn conditions_are_numbered_in_order() {
        let mut select = Select::new(Backend::Postgres);
        select.text_eq("a", &Some("x".into()));
        select.after("", Order::NewestFirst, Some((5, "id".into())));
        assert_eq!(select.conditions[0], "a = $1");
        assert_eq!(
            select.conditions[1],
            "(created_at_ms < $2 OR (created_at_ms = $3 AND id < $4))"
        );
    }
}
