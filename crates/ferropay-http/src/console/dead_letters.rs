//! `GET /console/dead-letters`: the dead-letter queue, the latest death first, by job kind;
//! `GET /console/dead-letters/{id}`: one job (its payload, attempts and last error) and, while
//! it is dead, the form that replays it (`POST …/replay`: `jobs::dlq::replay`, as `ferropay dlq
//! replay` does).

use crate::extract::PathId;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use ferropay::Ferropay;
use ferropay::console::{Cursor, dead_letters, filter_text};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Act, Session};
use super::error::ConsoleResult;
use super::layout::{self, at, badge, seg};
use super::list::{Col, ListQuery, choice, pager, table};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    kind: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(service): State<Ferropay>,
    session: Session,
    ListQuery(query): ListQuery<Filters>,
) -> ConsoleResult<Markup> {
    let kind = filter_text("kind", query.kind.as_deref())?;
    let after = Cursor::from_param(query.after.as_deref())?;
    let page = dead_letters::list(&service.store, kind.as_deref(), after.as_ref()).await?;
    let kinds = service.job_registry().kinds();
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    let columns = [
        Col::Text("Job"),
        Col::Text("Kind"),
        Col::Text("About"),
        Col::Num("Attempts"),
        Col::Text("Last error"),
        Col::Text("Dead since (UTC)"),
    ];
    let body = html! {
        form.filters method="get" action="/console/dead-letters" {
            (choice("Job kind", "kind", &kinds, kind.as_deref()))
            button type="submit" { "Show" }
        }
        p.hint { "Jobs that failed for good or too often. Fix the cause, then replay: the job runs again with a fresh attempt count." }
        (table("dead-letters", &columns, &page.rows, |j| html! {
            tr data-job=(j.id) {
                td.mono { a href={ "/console/dead-letters/" (seg(&j.id)) } { (j.id) } }
                td { (j.kind) }
                td.mono { (about(&j.idempotency_key)) }
                td.num { (j.attempts) }
                td { (j.last_error.as_deref().unwrap_or("—")) }
                td { (j.dead_at_ms.map(at).unwrap_or_default()) }
            }
        }, "The dead-letter queue is empty."))
        (pager("/console/dead-letters", &[("kind", kind.as_deref().unwrap_or(""))], after.is_none(), page.next.as_deref()))
    };
    Ok(layout::page(
        "Dead letters",
        "/console/dead-letters",
        &session,
        body,
    ))
}

pub async fn show(
    State(service): State<Ferropay>,
    session: Session,
    PathId(job_id): PathId,
) -> ConsoleResult<Markup> {
    let job = dead_letters::job(&service.store, &job_id).await?;
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| job.payload.clone());
    let body = html! {
        section.card #job data-status=(job.status) {
            dl.facts {
                dt { "Kind" } dd { (job.kind) }
                dt { "Status" } dd #job-status { (badge(&job.status)) }
                dt { "About" } dd.mono { (about(&job.idempotency_key)) }
                dt { "Attempts" } dd { (job.attempts) }
                dt { "Created" } dd { (at(job.created_at_ms)) " UTC" }
                @if let Some(dead_at) = job.dead_at_ms { dt { "Finished" } dd { (at(dead_at)) " UTC" } }
                dt { "Last error" } dd { (job.last_error.as_deref().unwrap_or("—")) }
            }
            h2 { "Payload" }
            pre { (payload) }
        }
        @if job.status == "dead" {
            form #replay method="post" action={ "/console/dead-letters/" (seg(&job.id)) "/replay" } {
                (layout::csrf(&session))
                button type="submit" { "Replay this job" }
            }
        }
        p { a href="/console/dead-letters" { "« The dead-letter queue" } }
    };
    Ok(layout::page(
        &format!("Job {}", job.id),
        "/console/dead-letters",
        &session,
        body,
    ))
}

/// What a job is about: a link to the payment when it is one.
fn about(key: &str) -> Markup {
    html! {
        @if key.starts_with("pay_") {
            a href={ "/console/payments/" (seg(key)) } { (key) }
        } @else {
            (key)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayForm {}

pub async fn replay(
    State(service): State<Ferropay>,
    PathId(job_id): PathId,
    act: Act<ReplayForm>,
) -> ConsoleResult<Response> {
    ferropay::jobs::dlq::replay(&service.store, &job_id).await?;
    tracing::info!(%job_id, key_id = %act.session.operator.principal.key_id, "dead job replayed from the console");
    Ok(Redirect::to(&format!("/console/dead-letters/{}", seg(&job_id))).into_response())
}
