//! `GET /console/payments`: payments newest first, found by id (straight to its page),
//! checkout, seller, buyer, status and creation date; `GET /console/payments/{id}`: one
//! payment with its orders, refunds, timeline and journal transactions.

use crate::extract::PathId;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use ferropay::Ferropay;
use ferropay::console::payments::{self as reads, PaymentFilter};
use ferropay::console::{Cursor, filter_text};
use ferropay::lists::parse_time_ms;
use ferropay::payin::model::PaymentStatus;
use maud::{Markup, html};
use serde::Deserialize;

use crate::extract::QueryParams;

use super::auth::Session;
use super::error::{ConsoleError, ConsoleResult};
use super::layout::{self, at, badge, money};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    id: Option<String>,
    checkout_id: Option<String>,
    seller_id: Option<String>,
    buyer_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
}

/// A day (`2026-11-28`, its start) or an RFC 3339 time, in ms.
pub fn parse_day_or_time(field: &str, text: &str) -> ferropay::Result<i64> {
    if text.len() == 10 {
        return parse_time_ms(field, &format!("{text}T00:00:00Z"));
    }
    parse_time_ms(field, text)
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    query: Result<QueryParams<ListQuery>, crate::error::ApiError>,
) -> ConsoleResult<Response> {
    let QueryParams(query) = query.map_err(|e| ConsoleError::Domain(e.0))?;
    if let Some(id) = filter_text("id", query.id.as_deref())? {
        return Ok(
            Redirect::to(&format!("/console/payments/{}", layout::seg(&id))).into_response(),
        );
    }
    let status = filter_text("status", query.status.as_deref())?;
    let filter = PaymentFilter {
        checkout_id: filter_text("checkout_id", query.checkout_id.as_deref())?,
        seller_id: filter_text("seller_id", query.seller_id.as_deref())?,
        buyer_id: filter_text("buyer_id", query.buyer_id.as_deref())?,
        status: status
            .as_deref()
            .map(|s| {
                PaymentStatus::parse(s).ok_or_else(|| {
                    ferropay::Error::invalid("status", format!("no payment status `{s}`"))
                })
            })
            .transpose()?,
        created_gte_ms: filter_text("from", query.from.as_deref())?
            .map(|t| parse_day_or_time("from", &t))
            .transpose()?,
        created_lt_ms: filter_text("to", query.to.as_deref())?
            .map(|t| parse_day_or_time("to", &t))
            .transpose()?,
    };
    let after = filter_text("after", query.after.as_deref())?
        .map(|a| Cursor::parse(&a))
        .transpose()?;
    let page = reads::list(&service.store, &filter, after.as_ref()).await?;
    let filters: Vec<(&str, &str)> = vec![
        ("checkout_id", query.checkout_id.as_deref().unwrap_or("")),
        ("seller_id", query.seller_id.as_deref().unwrap_or("")),
        ("buyer_id", query.buyer_id.as_deref().unwrap_or("")),
        ("status", query.status.as_deref().unwrap_or("")),
        ("from", query.from.as_deref().unwrap_or("")),
        ("to", query.to.as_deref().unwrap_or("")),
    ];
    let body = html! {
        form.filters method="get" action="/console/payments" {
            label { "Payment id" input name="id" placeholder="pay_…" size="28"; }
            label { "Checkout" input name="checkout_id" value=[query.checkout_id.as_deref()]; }
            label { "Seller" input name="seller_id" value=[query.seller_id.as_deref()]; }
            label { "Buyer" input name="buyer_id" value=[query.buyer_id.as_deref()]; }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in PaymentStatus::ALL {
                        option value=(s.as_str()) selected[status.as_deref() == Some(s.as_str())] { (s.as_str().replace('_', " ")) }
                    }
                }
            }
            label { "Created from (UTC)" input name="from" placeholder="2026-11-28" value=[query.from.as_deref()] size="12"; }
            label { "to (before)" input name="to" placeholder="2026-11-29" value=[query.to.as_deref()] size="12"; }
            button type="submit" { "Search" }
            a href="/console/payments" { "Clear" }
        }
        div.table-wrap {
            table #payments {
                thead { tr {
                    th { "Payment" } th { "Status" } th.num { "Amount" } th { "Checkout" }
                    th { "Buyer" } th { "Created (UTC)" }
                } }
                tbody {
                    @for p in &page.rows {
                        tr data-payment=(p.id) {
                            td { a.mono href={ "/console/payments/" (p.id) } { (p.id) } }
                            td { (badge(&p.status)) }
                            td.num { (money(p.amount_minor, &p.currency)) }
                            td.mono { (p.checkout_id) }
                            td { a href=(layout::link("/console/payments", &[("buyer_id", &p.buyer_id)])) { (p.buyer_id) } }
                            td.nowrap { (at(p.created_at_ms)) }
                        }
                    }
                    @if page.rows.is_empty() { tr { td colspan="6" { "No payment matches." } } }
                }
            }
        }
        (layout::pager("/console/payments", &filters, after.is_none(), page.next.as_deref()))
    };
    Ok(layout::page("Payments", "/console/payments", &session, body).into_response())
}

pub async fn show(
    State(service): State<Ferropay>,
    session: Session,
    PathId(payment_id): PathId,
) -> ConsoleResult<Markup> {
    let detail = reads::detail(&service.store, &payment_id).await?;
    let p = &detail.payment;
    let body = html! {
        div.grid {
            section.card #summary {
                div.split {
                    h2 { "Summary" }
                    span #status { (badge(p.status.as_str())) }
                }
                dl.facts {
                    dt { "Amount" } dd #amount { (money(p.amount, &p.currency)) }
                    dt { "Checkout" } dd.mono { a href=(layout::link("/console/payments", &[("checkout_id", &p.checkout_id)])) { (p.checkout_id) } }
                    dt { "Buyer" } dd { a href=(layout::link("/console/payments", &[("buyer_id", &p.buyer.id)])) { (p.buyer.id) } @if let Some(email) = &p.buyer.email { " · " (email) } }
                    dt { "Created" } dd { (p.created_at.replace('T', " ").replace('Z', " UTC")) }
                    dt { "Updated" } dd { (p.updated_at.replace('T', " ").replace('Z', " UTC")) }
                    @if let Some(code) = &p.failure_code { dt { "Failure" } dd { code { (code) } } }
                }
            }
            section.card {
                h2 { "Orders" }
                table #orders {
                    thead { tr { th { "Order" } th { "Seller" } th { "Status" } th.num { "Amount" } } }
                    tbody {
                        @for o in &p.orders {
                            tr {
                                td.mono { (o.order_id) }
                                td { a href={ "/console/sellers/" (layout::seg(&o.seller_id)) } { (o.seller_id) } }
                                td { (badge(o.status.as_str())) }
                                td.num { (money(o.amount, &p.currency)) }
                            }
                        }
                    }
                }
                h2 { "Refunds" }
                @if detail.refunds.is_empty() {
                    p.hint #no-refunds { "No refund." }
                } @else {
                    table #refunds {
                        thead { tr { th { "Refund" } th { "Order" } th { "Status" } th.num { "Amount" } } }
                        tbody {
                            @for r in &detail.refunds {
                                tr data-refund=(r.id) {
                                    td.mono { (r.id) }
                                    td.mono { (r.order_id) }
                                    td { (badge(&r.status)) }
                                    td.num { (money(r.amount, &r.currency)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Timeline" }
            ol.timeline #timeline {
                @for entry in &detail.timeline {
                    li data-moment=(entry.moment.as_str()) {
                        div.when { (at(entry.at_ms)) }
                        div.what { (entry.title) }
                        div.detail { (entry.detail) }
                    }
                }
            }
        }
        section.card {
            h2 { "Journal transactions" }
            @if detail.transactions.is_empty() {
                p.hint { "Nothing posted for this payment." }
            }
            @for t in &detail.transactions {
                div.table-wrap data-transaction=(t.id) {
                    table {
                        thead { tr {
                            th colspan="2" { a href={ "/console/ledger/transactions/" (t.id) } { "#" (t.seq) " " (t.kind) } " · " span.mono { (t.source_ref) } }
                            th.num { (at(t.created_at_ms)) }
                        } }
                        tbody {
                            @for posting in &t.postings {
                                tr {
                                    td { (posting.line_no) }
                                    td.mono { (posting.account) }
                                    td.num.neg[posting.amount_minor < 0] { (money(posting.amount_minor, &posting.currency)) }
                                }
                            }
                        }
                    }
                }
                br;
            }
        }
    };
    Ok(layout::page(
        &format!("Payment {}", p.id),
        "/console/payments",
        &session,
        body,
    ))
}
