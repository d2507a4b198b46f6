//! `GET /console/disputes`: disputes newest first, by status, payment and seller;
//! `GET /console/disputes/{id}`: one dispute — the disputed payment and amount, the reason, the
//! status history (the events the dispute caused), the evidence sent, and the journal
//! transactions it caused (the withdrawal from the sellers and the platform, and the
//! reinstatement once won). Answering a dispute (evidence) stays the API's
//! (`POST /v1/disputes/{id}/evidence`): the console shows where each dispute stands.

use crate::extract::PathId;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::console::disputes::{self as reads, DisputeFilter};
use ferropay::console::{Cursor, filter_text};
use ferropay::psp::DisputeStatus;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Session;
use super::error::ConsoleResult;
use super::layout::{self, at, badge, money, seg};
use super::list::{Col, ListQuery, choice, one_of, pager, table};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    status: Option<String>,
    payment_id: Option<String>,
    seller_id: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Markup> {
    let statuses = DisputeStatus::ALL.map(DisputeStatus::as_str);
    let status = one_of("status", query.status.as_deref(), &statuses)?;
    let filter = DisputeFilter {
        status: status.as_deref().and_then(DisputeStatus::parse),
        payment_id: filter_text("payment_id", query.payment_id.as_deref())?,
        seller_id: filter_text("seller_id", query.seller_id.as_deref())?,
    };
    let after = Cursor::from_param(query.after.as_deref())?;
    let page = reads::list(&service.store, &filter, after.as_ref()).await?;
    let columns = [
        Col::Text("Dispute"),
        Col::Text("Status"),
        Col::Num("Amount"),
        Col::Text("Reason"),
        Col::Text("Payment"),
        Col::Text("Evidence"),
        Col::Text("Opened (UTC)"),
    ];
    let body = html! {
        form.filters method="get" action="/console/disputes" {
            (choice("Status", "status", &statuses, status.as_deref()))
            label { "Payment" input name="payment_id" value=[filter.payment_id.as_deref()] placeholder="pay_…" size="28"; }
            label { "Seller" input name="seller_id" value=[filter.seller_id.as_deref()]; }
            button type="submit" { "Show" }
            a href="/console/disputes" { "Clear" }
        }
        p.hint { "Chargebacks: the buyer's bank took the amount back through the PSP. "
            "Needs response: evidence is due (sent through " code { "POST /v1/disputes/{id}/evidence" } "); "
            "won: the amount came back; lost: it stays with the buyer." }
        (table("disputes", &columns, &page.rows, |d| html! {
            tr data-dispute=(d.id) {
                td.mono { a href={ "/console/disputes/" (seg(&d.id)) } { (d.id) } }
                td { (badge(&d.status)) }
                td.num { (money(d.amount, &d.currency)) }
                td { (d.reason) }
                td.mono { a href={ "/console/payments/" (seg(&d.payment_id)) } { (d.payment_id) } }
                td { @if d.evidence_submitted { "sent" } @else { "—" } }
                td.nowrap { (layout::shown(&d.created_at)) }
            }
        }, "No dispute matches."))
        (pager("/console/disputes", &[
            ("status", status.as_deref().unwrap_or("")),
            ("payment_id", filter.payment_id.as_deref().unwrap_or("")),
            ("seller_id", filter.seller_id.as_deref().unwrap_or("")),
        ], after.is_none(), page.next.as_deref()))
    };
    Ok(layout::page(
        "Disputes",
        "/console/disputes",
        &session,
        body,
    ))
}

pub async fn show(
    State(service): State<Ferropay>,
    session: Session,
    PathId(dispute_id): PathId,
) -> ConsoleResult<Markup> {
    let detail = reads::detail(&service.store, &dispute_id).await?;
    let d = &detail.dispute;
    let p = &detail.payment;
    let body = html! {
        div.grid {
            section.card #dispute data-status=(d.status) {
                div.split {
                    h2 { "Dispute" }
                    span #dispute-status { (badge(&d.status)) }
                }
                dl.facts {
                    dt { "Disputed" } dd #disputed-amount { (money(d.amount, &d.currency)) }
                    dt { "Reason" } dd #reason { (d.reason) }
                    dt { "PSP" } dd.mono { (detail.psp) " · " (d.psp_dispute_id) }
                    dt { "Opened" } dd { (d.created_at.replace('T', " ").replace('Z', " UTC")) }
                    dt { "Last changed" } dd { (d.updated_at.replace('T', " ").replace('Z', " UTC")) }
                    dt { "Evidence due" } dd #evidence-due {
                        @if d.status == DisputeStatus::NeedsResponse.as_str() {
                            "now: the dispute needs a response (the PSP's deadline is not recorded here)"
                        } @else { "— (no response due)" }
                    }
                }
            }
            section.card #payment {
                h2 { "Payment" }
                dl.facts {
                    dt { "Payment" } dd.mono { a href={ "/console/payments/" (seg(&p.id)) } { (p.id) } }
                    dt { "Status" } dd { (badge(p.status.as_str())) }
                    dt { "Amount" } dd { (money(p.amount, &p.currency)) }
                    dt { "Buyer" } dd { (p.buyer.id) }
                    dt { "Sellers" } dd {
                        @for (i, o) in p.orders.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href={ "/console/sellers/" (seg(&o.seller_id)) } { (o.seller_id) }
                            " (" (money(o.amount, &p.currency)) ")"
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Status history" }
            ol.timeline #history {
                @for change in &detail.history {
                    li data-status=(change.status) {
                        div.when { (at(change.at_ms)) }
                        div.what { (badge(&change.status)) }
                        div.detail { "event " (change.topic) " · " span.mono { (change.event_id) } }
                    }
                }
                @if detail.history.is_empty() { li { div.detail { "No event recorded for this dispute." } } }
            }
        }
        section.card #evidence {
            h2 { "Evidence" }
            @if let Some(text) = &detail.evidence { pre { (text) } } @else { p.hint { "None sent." } }
        }
        section.card {
            h2 { "Journal transactions" }
            p.hint { "The withdrawal takes the disputed amount from " code { "psp_receivable" } " back out of the sellers' wallets and the platform's fees; a won dispute's reinstatement puts it back." }
            (table("dispute-transactions", &[Col::Text("#"), Col::Text("Kind"), Col::Text("Source"), Col::Text("Postings"), Col::Text("Posted (UTC)")], &detail.transactions, |t| html! {
                tr data-transaction=(t.id) {
                    td { a href={ "/console/ledger/transactions/" (seg(&t.id)) } { (t.seq) } }
                    td { (t.kind) }
                    td.mono { (t.source_ref) }
                    td {
                        @for posting in &t.postings {
                            div.mono { (posting.account) " " span.neg[posting.amount_minor < 0] { (money(posting.amount_minor, &posting.currency)) } }
                        }
                    }
                    td { (at(t.created_at_ms)) }
                }
            }, "Nothing posted for this dispute."))
        }
        p { a href=(layout::link("/console/disputes", &[("payment_id", &p.id)])) { "« This payment's disputes" } " · " a href="/console/disputes" { "All disputes" } }
    };
    Ok(layout::page(
        &format!("Dispute {}", d.id),
        "/console/disputes",
        &session,
        body,
    ))
}
