//! `GET /console/reconciliation`: breaks counted by kind and status, and listed (newest first)
//! by kind and status, each with the settlement line it is about; the latest runs.
//! `GET /console/reconciliation/runs`: every run, newest first. `GET
//! /console/reconciliation/breaks/{id}`: one break and, while open, the form that resolves it
//! with a reason (`POST …/resolve`, the use case `POST /v1/reconciliation/breaks/{id}/resolve`
//! calls).

use crate::extract::PathId;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use ferropay::Ferropay;
use ferropay::console::Cursor;
use ferropay::console::reconciliation::{self as reads, BreakFilter, RunRow};
use ferropay::reconcile::breaks::BreakKind;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Act, Session};
use super::error::ConsoleResult;
use super::layout::{self, at, badge, money, seg};
use super::list::{Col, ListQuery, choice, one_of, pager, table};

/// A break's statuses.
const STATUSES: [&str; 2] = ["open", "resolved"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    kind: Option<String>,
    status: Option<String>,
    after: Option<String>,
}

pub async fn page(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Markup> {
    let kinds = BreakKind::ALL.map(BreakKind::as_str);
    let filter = BreakFilter {
        kind: one_of("kind", query.kind.as_deref(), &kinds)?,
        status: one_of("status", query.status.as_deref(), &STATUSES)?,
    };
    let after = Cursor::from_param(query.after.as_deref())?;
    let counts = reads::counts_by_kind(&service.store).await?;
    let breaks = reads::breaks(&service.store, &filter, after.as_ref()).await?;
    let runs = reads::runs(&service.store, None).await?;
    let columns = [
        Col::Text("Break"),
        Col::Text("Kind"),
        Col::Text("Status"),
        Col::Text("Line"),
        Col::Text("References"),
        Col::Num("Expected"),
        Col::Num("Found"),
        Col::Text("Detail"),
    ];
    let body = html! {
        section.card {
            h2 { "Breaks by kind" }
            table #break-counts {
                thead { tr { th { "Kind" } th.num { "Open" } th.num { "Resolved" } } }
                tbody {
                    @for k in kinds {
                        @let open = counts.iter().find(|c| c.kind == k && c.status == "open").map_or(0, |c| c.count);
                        @let resolved = counts.iter().find(|c| c.kind == k && c.status == "resolved").map_or(0, |c| c.count);
                        @if open + resolved > 0 {
                            tr {
                                td { a href=(layout::link("/console/reconciliation", &[("kind", k)])) { (k.replace('_', " ")) } }
                                td.num { a href=(layout::link("/console/reconciliation", &[("kind", k), ("status", "open")])) { (open) } }
                                td.num { (resolved) }
                            }
                        }
                    }
                    @if counts.is_empty() { tr { td colspan="3" { "No break found by any run." } } }
                }
            }
        }
        form.filters method="get" action="/console/reconciliation" {
            (choice("Kind", "kind", &kinds, filter.kind.as_deref()))
            (choice("Status", "status", &STATUSES, filter.status.as_deref()))
            button type="submit" { "Show" }
        }
        (table("breaks", &columns, &breaks.rows, |b| html! {
            tr data-break=(b.id) {
                td.mono { a href={ "/console/reconciliation/breaks/" (seg(&b.id)) } { (b.id) } }
                td { (b.kind.replace('_', " ")) }
                td { (badge(&b.status)) @if b.auto_healed { " " span.badge.info { "healed" } } }
                td { (b.line_no.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) }
                td.mono {
                    @if let Some(r) = &b.merchant_reference { a href={ "/console/payments/" (seg(r)) } { (r) } br; }
                    @if let Some(r) = &b.psp_reference { (r) }
                }
                td.num { (amount(b.expected_amount, b.currency.as_deref())) }
                td.num { (amount(b.actual_amount, b.currency.as_deref())) }
                td { (b.detail) }
            }
        }, "No break matches."))
        (pager("/console/reconciliation", &[("kind", filter.kind.as_deref().unwrap_or("")), ("status", filter.status.as_deref().unwrap_or(""))], after.is_none(), breaks.next.as_deref()))
        section.card {
            div.split { h2 { "Latest runs" } a href="/console/reconciliation/runs" { "All runs »" } }
            (runs_table(&runs.rows[..runs.rows.len().min(5)]))
        }
    };
    Ok(layout::page(
        "Reconciliation",
        "/console/reconciliation",
        &session,
        body,
    ))
}

fn amount(minor: Option<i64>, currency: Option<&str>) -> String {
    match (minor, currency) {
        (Some(minor), Some(currency)) => money(minor, currency),
        (Some(minor), None) => minor.to_string(),
        _ => "—".into(),
    }
}

fn runs_table(runs: &[RunRow]) -> Markup {
    let columns = [
        Col::Text("Run"),
        Col::Text("Source"),
        Col::Text("Status"),
        Col::Text("Started (UTC)"),
        Col::Num("Lines"),
        Col::Num("Matched"),
        Col::Num("Breaks"),
        Col::Num("Healed"),
    ];
    table(
        "runs",
        &columns,
        runs,
        |r| {
            html! {
                tr {
                    td.mono { (r.id) }
                    td.mono { (r.psp) " · " (r.source) }
                    td { (badge(&r.status)) @if let Some(e) = &r.error { " " span.hint { (e) } } }
                    td { (at(r.started_at_ms)) }
                    td.num { (r.lines) } td.num { (r.matched) } td.num { (r.breaks) } td.num { (r.healed) }
                }
            }
        },
        "No run yet.",
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    after: Option<String>,
}

pub async fn runs(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<RunsQuery>,
) -> ConsoleResult<Markup> {
    let after = Cursor::from_param(query.after.as_deref())?;
    let runs = reads::runs(&service.store, after.as_ref()).await?;
    let body = html! {
        (runs_table(&runs.rows))
        (pager("/console/reconciliation/runs", &[], after.is_none(), runs.next.as_deref()))
    };
    Ok(layout::page(
        "Reconciliation runs",
        "/console/reconciliation",
        &session,
        body,
    ))
}

pub async fn show_break(
    State(service): State<Ferropay>,
    session: Session,
    PathId(break_id): PathId,
) -> ConsoleResult<Markup> {
    let b = reads::one_break(&service.store, &break_id).await?;
    let body = html! {
        section.card #break data-status=(b.status) {
            dl.facts {
                dt { "Kind" } dd { (b.kind.replace('_', " ")) }
                dt { "Status" } dd #break-status { (badge(&b.status)) }
                dt { "Found by run" } dd.mono { (b.run_id) }
                dt { "Settlement line" } dd { (b.line_no.map(|n| n.to_string()).unwrap_or_else(|| "— (missing from the file)".into())) }
                dt { "Our reference" } dd.mono { @if let Some(r) = &b.merchant_reference { a href={ "/console/payments/" (seg(r)) } { (r) } } @else { "—" } }
                dt { "PSP reference" } dd.mono { (b.psp_reference.as_deref().unwrap_or("—")) }
                dt { "Expected" } dd { (amount(b.expected_amount, b.currency.as_deref())) }
                dt { "Found" } dd { (amount(b.actual_amount, b.currency.as_deref())) }
                dt { "Detail" } dd { (b.detail) }
                dt { "Found at" } dd { (b.created_at.replace('T', " ").replace('Z', " UTC")) }
                @if let Some(resolution) = &b.resolution {
                    dt { "Resolution" } dd #resolution { (resolution) }
                    dt { "Resolved at" } dd { (b.resolved_at.as_deref().unwrap_or("").replace('T', " ").replace('Z', " UTC")) }
                }
            }
        }
        @if b.status == "open" {
            section.card {
                h2 { "Resolve" }
                form #resolve method="post" action={ "/console/reconciliation/breaks/" (seg(&b.id)) "/resolve" } {
                    (layout::csrf(&session))
                    label for="reason" { "Why is this break resolved? (kept with the break)" }
                    textarea #reason name="reason" required maxlength="1000" {}
                    p { button type="submit" { "Resolve the break" } }
                }
            }
        }
        p { a href="/console/reconciliation" { "« All breaks" } }
    };
    Ok(layout::page(
        &format!("Break {}", b.id),
        "/console/reconciliation",
        &session,
        body,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveForm {
    #[serde(default)]
    reason: String,
}

pub async fn resolve(
    State(service): State<Ferropay>,
    PathId(break_id): PathId,
    act: Act<ResolveForm>,
) -> ConsoleResult<Response> {
    service
        .reconciler()
        .resolve(&break_id, &act.form.reason)
        .await?;
    tracing::info!(%break_id, key_id = %act.session.operator.principal.key_id, "break resolved from the console");
    Ok(Redirect::to(&format!(
        "/console/reconciliation/breaks/{}",
        seg(&break_id)
    ))
    .into_response())
}
