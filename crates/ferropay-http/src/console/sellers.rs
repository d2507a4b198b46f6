//! `GET /console/sellers`: sellers' balances (`seller_balances`), jumping to a seller id or
//! its beginning; `GET /console/sellers/{id}`: the wallet (amount owed, available, in flight),
//! the payouts and the postings of the seller's ledger account.

use crate::extract::PathId;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::console::{filter_text, sellers};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Session;
use super::error::ConsoleResult;
use super::layout::{self, at, badge, money, seg};
use super::list::{Col, ListQuery, pager, table};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    q: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Markup> {
    let q = filter_text("q", query.q.as_deref())?;
    let after = filter_text("after", query.after.as_deref())?;
    let page = sellers::list(&service.store, q.as_deref(), after.as_deref()).await?;
    let columns = [
        Col::Text("Seller"),
        Col::Text("Currency"),
        Col::Num("Amount owed"),
        Col::Num("Available"),
        Col::Num("Payouts in flight"),
    ];
    let body = html! {
        form.filters method="get" action="/console/sellers" {
            label { "Seller id (or its beginning)" input name="q" value=[q.as_deref()] size="30"; }
            button type="submit" { "Find" }
        }
        p.hint { "From the " code { "seller_balances" } " view, by seller id. Amount: what the platform owes; available: what may be paid out now." }
        (table("sellers", &columns, &page.rows, |s| html! {
            tr data-seller=(s.seller_id) {
                td { a href={ "/console/sellers/" (seg(&s.seller_id)) } { (s.seller_id) } }
                td { (s.currency) }
                td.num { (money(s.amount_minor, &s.currency)) }
                td.num { (money(s.available_minor, &s.currency)) }
                td.num { (money(s.payouts_in_flight_minor, &s.currency)) }
            }
        }, "No seller from there on."))
        (pager("/console/sellers", &[("q", q.as_deref().unwrap_or(""))], after.is_none(), page.next.as_deref()))
    };
    Ok(layout::page("Sellers", "/console/sellers", &session, body))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    after: Option<String>,
}

pub async fn show(
    State(service): State<Ferropay>,
    session: Session,
    PathId(seller_id): PathId,
    ListQuery(query): ListQuery<ShowQuery>,
) -> ConsoleResult<Markup> {
    let before_seq = filter_text("after", query.after.as_deref())?
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                ferropay::Error::invalid("after", "must be a cursor from a page's link")
            })
        })
        .transpose()?;
    let detail = sellers::detail(&service.store, &seller_id, before_seq).await?;
    let posting_columns = [
        Col::Text("#"),
        Col::Text("Kind"),
        Col::Text("Payment"),
        Col::Num("Amount"),
        Col::Text("Posted (UTC)"),
    ];
    let body = html! {
        div.grid {
            section.card {
                h2 { "Wallet" }
                table #wallet {
                    thead { tr { th { "Currency" } th.num { "Amount owed" } th.num { "Available" } th.num { "Payouts in flight" } } }
                    tbody {
                        @for w in &detail.wallet {
                            tr {
                                td { (w.currency) }
                                td.num { (money(w.amount, &w.currency)) }
                                td.num { (money(w.available, &w.currency)) }
                                td.num { (money(w.payouts_in_flight, &w.currency)) }
                            }
                        }
                        @if detail.wallet.is_empty() { tr { td colspan="4" { "No balance yet." } } }
                    }
                }
                p { a href=(layout::link("/console/payments", &[("seller_id", &detail.seller_id)])) { "This seller's payments »" } }
            }
            section.card {
                h2 { "Payouts (latest 100)" }
                @if detail.payouts.is_empty() {
                    p.hint { "No payout." }
                } @else {
                    table #payouts {
                        thead { tr { th { "Payout" } th { "Status" } th.num { "Amount" } th { "Created" } } }
                        tbody {
                            @for p in &detail.payouts {
                                tr {
                                    td.mono { (p.id) }
                                    td { (badge(&p.status)) }
                                    td.num { (money(p.amount, &p.currency)) }
                                    td { (layout::shown(&p.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Postings on " code { "seller:" (detail.seller_id) } }
            p.hint { "Credits (negative) are what the platform came to owe the seller; debits, what left the wallet." }
            (table("postings", &posting_columns, &detail.postings.rows, |p| html! {
                tr {
                    td { a href={ "/console/ledger/transactions/" (seg(&p.transaction_id)) } { (p.seq) } }
                    td { (p.kind) }
                    td.mono { @if let Some(id) = &p.payment_id { a href={ "/console/payments/" (seg(id)) } { (id) } } @else { "—" } }
                    td.num.neg[p.amount_minor < 0] { (money(p.amount_minor, &p.currency)) }
                    td { (at(p.created_at_ms)) }
                }
            }, "No posting on this account."))
            (pager(&format!("/console/sellers/{}", seg(&detail.seller_id)), &[], before_seq.is_none(), detail.postings.next.as_deref()))
        }
    };
    Ok(layout::page(
        &format!("Seller {}", detail.seller_id),
        "/console/sellers",
        &session,
        body,
    ))
}
