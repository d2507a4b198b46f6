//! `GET /console/ledger`: the trial balance by account and currency (`trial_balance`), the
//! last days of `daily_settlement`, and a form to verify the ledger on demand (`POST
//! /console/ledger/verify`: `ledger verify` and the trial balance's total per currency, zero
//! when the books balance); `GET /console/ledger/transactions/{id}`: one journal transaction
//! with its postings and its hashes.

use crate::extract::PathId;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::clock::now_ms;
use ferropay::console::{day_start_ms, filter_text, ledger};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Act, Session};
use super::error::ConsoleResult;
use super::layout::{self, at, day, money, seg};
use super::list::{Col, ListQuery, pager, table};

/// Days of `daily_settlement` shown by default, today included.
const SETTLEMENT_DAYS: i64 = 7;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    q: Option<String>,
    after: Option<String>,
}

pub async fn page(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<PageQuery>,
) -> ConsoleResult<Markup> {
    let q = filter_text("q", query.q.as_deref())?;
    let after = filter_text("after", query.after.as_deref())?;
    let balances = ledger::trial_balance(&service.store, q.as_deref(), after.as_deref()).await?;
    let body = html! {
        div.split {
            form.filters method="get" action="/console/ledger" {
                label { "Account (or its beginning)" input name="q" value=[q.as_deref()] placeholder="seller:" size="30"; }
                button type="submit" { "Find" }
            }
            form method="post" action="/console/ledger/verify" {
                (layout::csrf(&session))
                button.secondary type="submit" { "Verify the ledger now" }
                div.hint { "Reads the whole journal: the hash chain, each transaction's balance, wallets against postings, and the trial balance's totals." }
            }
        }
        section.card {
            h2 { "Trial balance" }
            p.hint { "From the " code { "trial_balance" } " view: debits positive, credits negative. Each currency's balances sum to zero; "
                "verify the ledger to see the totals." }
            (table("trial-balance", &[Col::Text("Account"), Col::Text("Currency"), Col::Num("Balance"), Col::Num("Postings")], &balances.rows, |b| html! {
                tr data-account=(b.account) {
                    td.mono {
                        @if let Some(seller) = b.account.strip_prefix("seller:") {
                            a href={ "/console/sellers/" (seg(seller)) } { (b.account) }
                        } @else { (b.account) }
                    }
                    td { (b.currency) }
                    td.num.neg[b.balance_minor < 0] { (money(b.balance_minor, &b.currency)) }
                    td.num { (b.postings) }
                }
            }, "No account from there on."))
            (pager("/console/ledger", &[("q", q.as_deref().unwrap_or(""))], after.is_none(), balances.next.as_deref()))
        }
        p { a href="/console/ledger/settlement" { "Daily settlement: what the PSP owes and paid out, day by day »" } }
    };
    Ok(layout::page("Ledger", "/console/ledger", &session, body))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SettlementQuery {
    days: Option<String>,
}

/// `GET /console/ledger/settlement?days=N`: the last N days (1 to 31, default 7) of
/// `daily_settlement`, which reads a row per day, PSP and currency (`settlement_days`).
pub async fn settlement(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<SettlementQuery>,
) -> ConsoleResult<Markup> {
    let days = match filter_text("days", query.days.as_deref())? {
        None => SETTLEMENT_DAYS,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| {
                ferropay::Error::invalid("days", "must be a number of days from 1 to 31")
            })?,
    };
    let settlement = ledger::daily_settlement(
        &service.store,
        day_start_ms(now_ms()) - (days - 1) * 86_400_000,
    )
    .await?;
    let body = html! {
        section.card {
            h2 { "Daily settlement, last " (days) " days" }
            p.hint { "From the " code { "daily_settlement" } " view: what the day's captures, refunds and fees added to what the PSP owes, "
                "against what the PSP paid out to the bank that day (from reconciled settlement files)." }
            (table("daily-settlement", &[Col::Text("Day"), Col::Text("PSP"), Col::Num("Expected"), Col::Num("Paid out"), Col::Num("Left owed")], &settlement, |d| html! {
                tr {
                    td { (day(d.day_start_ms)) } td { (d.psp) }
                    td.num { (money(d.expected_minor, &d.currency)) }
                    td.num { (money(d.paid_out_minor, &d.currency)) }
                    td.num { (money(d.outstanding_minor, &d.currency)) }
                }
            }, "Nothing posted in these days."))
        }
    };
    Ok(layout::page(
        "Daily settlement",
        "/console/ledger",
        &session,
        body,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyForm {}

pub async fn verify(
    State(service): State<Ferropay>,
    act: Act<VerifyForm>,
) -> ConsoleResult<Markup> {
    let checked = ledger::check(&service.store).await?;
    let report = &checked.report;
    let line = |ok: bool, good: &str, bad: &str| {
        html! { @if ok { li.ok-line { "✓ " (good) } } @else { li.bad-line { "✗ " (bad) } } }
    };
    let body = html! {
        section.card #verify data-ok=(report.ok()) {
            h2 { @if report.ok() { "The ledger verifies" } @else { "The ledger does NOT verify" } }
            p { (report.transactions) " journal transactions, " (report.postings) " postings read." }
            ul {
                (line(report.chain_intact, "The hash chain is intact.", "The hash chain is broken."))
                (line(report.balanced, "Every transaction balances.", "Some transactions do not balance."))
                (line(report.wallets_match, "Every wallet equals its account's postings.", "Some wallets differ from their postings."))
                (line(report.balances_match, "Every account's kept balance equals its postings.", "Some kept account balances differ from their postings."))
                (line(report.settlement_days_match, "Every day's kept settlement sums equal its postings.", "Some kept settlement days differ from their postings."))
            }
            @for id in &report.unbalanced_transactions {
                p.bad-line { "Unbalanced: " a href={ "/console/ledger/transactions/" (seg(id)) } { (id) } }
            }
            h2 { "Trial balance totals" }
            table #totals {
                thead { tr { th { "Currency" } th.num { "Accounts" } th.num { "Sum of balances" } } }
                tbody {
                    @for t in &checked.totals {
                        tr data-currency=(t.currency) {
                            td { (t.currency) }
                            td.num { (t.accounts) }
                            td.num.neg[t.total_minor != 0] data-total=(t.total_minor) { (money(t.total_minor, &t.currency)) }
                        }
                    }
                }
            }
            details {
                summary { "The full report" }
                pre { (serde_json::to_string_pretty(report).unwrap_or_default()) }
            }
            p { a href="/console/ledger" { "« Back to the ledger" } }
        }
    };
    Ok(layout::page(
        "Ledger verification",
        "/console/ledger",
        &act.session,
        body,
    ))
}

pub async fn transaction(
    State(service): State<Ferropay>,
    session: Session,
    PathId(transaction_id): PathId,
) -> ConsoleResult<Markup> {
    let t = ledger::transaction(&service.store, &transaction_id).await?;
    let total: i64 = t.postings.iter().map(|p| p.amount_minor).sum();
    let body = html! {
        section.card #transaction {
            dl.facts {
                dt { "Sequence" } dd { (t.seq) }
                dt { "Kind" } dd { (t.kind) }
                dt { "Source reference" } dd.mono { (t.source_ref) }
                dt { "Payment" } dd.mono { @if let Some(id) = &t.payment_id { a href={ "/console/payments/" (seg(id)) } { (id) } } @else { "—" } }
                dt { "Posted" } dd { (at(t.created_at_ms)) " UTC" }
                dt { "Previous hash" } dd.mono { (t.prev_hash) }
                dt { "Hash" } dd.mono #hash { (t.hash) }
            }
        }
        div.table-wrap {
            table #postings {
                thead { tr { th { "Line" } th { "Account" } th.num { "Amount" } } }
                tbody {
                    @for p in &t.postings {
                        tr {
                            td { (p.line_no) }
                            td.mono { (p.account) }
                            td.num.neg[p.amount_minor < 0] { (money(p.amount_minor, &p.currency)) }
                        }
                    }
                }
                tfoot { tr { td {} td { "Sum" } td.num data-total=(total) { (total) } } }
            }
        }
    };
    Ok(layout::page(
        &format!("Journal transaction {}", t.id),
        "/console/ledger",
        &session,
        body,
    ))
}
