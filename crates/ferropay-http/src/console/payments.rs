//! `GET /console/payments`: payments newest first, found by id (straight to its page),
//! checkout, seller, buyer, status and creation date; `GET /console/payments/{id}`: one
//! payment with its orders, refunds, timeline and journal transactions.

use crate::extract::PathId;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use ferropay::Ferropay;
use ferropay::console::payments::{self as reads, PaymentFilter, Subject};
use ferropay::console::{Cursor, filter_text};
use ferropay::lists::parse_time_ms;
use ferropay::payin::model::PaymentStatus;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Session;
use super::error::ConsoleResult;
use super::layout::{self, at, badge, money, seg};
use super::list::{Col, ListQuery, choice, one_of, pager, table};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
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
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Response> {
    if let Some(id) = filter_text("id", query.id.as_deref())? {
        return Ok(Redirect::to(&format!("/console/payments/{}", seg(&id))).into_response());
    }
    let statuses = PaymentStatus::ALL.map(PaymentStatus::as_str);
    let status = one_of("status", query.status.as_deref(), &statuses)?;
    let filter = PaymentFilter {
        checkout_id: filter_text("checkout_id", query.checkout_id.as_deref())?,
        seller_id: filter_text("seller_id", query.seller_id.as_deref())?,
        buyer_id: filter_text("buyer_id", query.buyer_id.as_deref())?,
        status: status.as_deref().and_then(PaymentStatus::parse),
        created_gte_ms: filter_text("from", query.from.as_deref())?
            .map(|t| parse_day_or_time("from", &t))
            .transpose()?,
        created_lt_ms: filter_text("to", query.to.as_deref())?
            .map(|t| parse_day_or_time("to", &t))
            .transpose()?,
    };
    let after = Cursor::from_param(query.after.as_deref())?;
    let page = reads::list(&service.store, &filter, after.as_ref()).await?;
    let filters: Vec<(&str, &str)> = vec![
        ("checkout_id", query.checkout_id.as_deref().unwrap_or("")),
        ("seller_id", query.seller_id.as_deref().unwrap_or("")),
        ("buyer_id", query.buyer_id.as_deref().unwrap_or("")),
        ("status", query.status.as_deref().unwrap_or("")),
        ("from", query.from.as_deref().unwrap_or("")),
        ("to", query.to.as_deref().unwrap_or("")),
    ];
    let columns = [
        Col::Text("Payment"),
        Col::Text("Status"),
        Col::Num("Amount"),
        Col::Text("Checkout"),
        Col::Text("Buyer"),
        Col::Text("Created (UTC)"),
    ];
    let body = html! {
        form.filters method="get" action="/console/payments" {
            label { "Payment id" input name="id" placeholder="pay_…" size="28"; }
            label { "Checkout" input name="checkout_id" value=[query.checkout_id.as_deref()]; }
            label { "Seller" input name="seller_id" value=[query.seller_id.as_deref()]; }
            label { "Buyer" input name="buyer_id" value=[query.buyer_id.as_deref()]; }
            (choice("Status", "status", &statuses, status.as_deref()))
            label { "Created from (UTC)" input name="from" placeholder="2026-11-28" value=[query.from.as_deref()] size="12"; }
            label { "to (before)" input name="to" placeholder="2026-11-29" value=[query.to.as_deref()] size="12"; }
            button type="submit" { "Search" }
            a href="/console/payments" { "Clear" }
        }
        (table("payments", &columns, &page.rows, |p| html! {
            tr data-payment=(p.id) {
                td { a.mono href={ "/console/payments/" (seg(&p.id)) } { (p.id) } }
                td { (badge(&p.status)) }
                td.num { (money(p.amount_minor, &p.currency)) }
                td.mono { (p.checkout_id) }
                td { a href=(layout::link("/console/payments", &[("buyer_id", &p.buyer_id)])) { (p.buyer_id) } }
                td.nowrap { (at(p.created_at_ms)) }
            }
        }, "No payment matches."))
        (pager("/console/payments", &filters, after.is_none(), page.next.as_deref()))
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
                                td { a href={ "/console/sellers/" (seg(&o.seller_id)) } { (o.seller_id) } }
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
        @if !detail.disputes.is_empty() {
            section.card {
                h2 { "Disputes" }
                table #disputes {
                    thead { tr { th { "Dispute" } th { "Status" } th { "Reason" } th.num { "Amount" } th { "Opened (UTC)" } } }
                    tbody {
                        @for d in &detail.disputes {
                            tr data-dispute=(d.id) {
                                td.mono { a href={ "/console/disputes/" (seg(&d.id)) } { (d.id) } }
                                td { (badge(&d.status)) }
                                td { (d.reason) }
                                td.num { (money(d.amount, &d.currency)) }
                                td { (layout::shown(&d.created_at)) }
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
                        div.what {
                            @match &entry.subject {
                                Some(Subject::Dispute(id)) => { a href={ "/console/disputes/" (seg(id)) } { (entry.title) } }
                                Some(Subject::JournalTransaction(id)) => { a href={ "/console/ledger/transactions/" (seg(id)) } { (entry.title) } }
                                None => { (entry.title) }
                            }
                        }
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
