//! `GET /console`: the overview. Today's payments by status with their volume, the backlog
//! that needs an operator (dead jobs, open breaks, payments pending for long, disputes awaiting a
//! response, outbox lag), the
//! funnel of the last days (`payment_funnel`) and a chart of today's settled volume per hour,
//! drawn as an inline SVG on the server.

use axum::extract::State;
use ferropay::Ferropay;
use ferropay::backlog::PENDING_LONG_MS;
use ferropay::clock::now_ms;
use ferropay::console::overview::{self, HourVolume};
use maud::{Markup, html};

use super::auth::Session;
use super::error::ConsoleResult;
use super::layout::{self, badge, day, money, tile};

pub async fn page(State(service): State<Ferropay>, session: Session) -> ConsoleResult<Markup> {
    let now = now_ms();
    let view = overview::read(&service.store, now, &service.config.outbox_relays).await?;
    let backlog = &view.backlog;
    let created_today: i64 = view.today.iter().map(|s| s.count).sum();
    let pending_since = layout::at(now - PENDING_LONG_MS).replace(' ', "T") + "Z";
    let body = html! {
        div.tiles {
            (tile("Payments today", &created_today.to_string(),
                Some(&layout::link("/console/payments", &[("from", &day(view.day_start_ms))])), false))
            (tile("Dead jobs", &backlog.jobs_dead.to_string(), Some("/console/dead-letters"), backlog.jobs_dead > 0))
            (tile("Open breaks", &backlog.reconciliation_breaks_open.to_string(),
                Some("/console/reconciliation?status=open"), backlog.reconciliation_breaks_open > 0))
            (tile("Pending > 1 h", &backlog.payments_pending_long.to_string(),
                Some(&layout::link("/console/payments", &[("status", "processing"), ("to", &pending_since)])),
                backlog.payments_pending_long > 0))
            (tile("Disputes to answer", &view.disputes_needing_response.to_string(),
                Some("/console/disputes?status=needs_response"), view.disputes_needing_response > 0))
            (tile("Jobs queued / running", &format!("{} / {}", backlog.jobs_queued, backlog.jobs_running), None, false))
            @match backlog.outbox_lag_s {
                Some(lag_s) => { (tile("Outbox lag", &format!("{lag_s} s"), None, lag_s > 60)) }
                None => { (tile("Outbox lag", "no relay", None, false)) }
            }
        }
        div.grid {
            section.card {
                h2 { "Settled today per hour (UTC)" }
                (chart(&view.settled_per_hour))
            }
            section.card {
                h2 { "Today by status" }
                @if view.today.is_empty() {
                    p.hint { "No payment created today yet." }
                } @else {
                    table #today {
                        thead { tr { th { "Status" } th.num { "Payments" } th.num { "Volume" } } }
                        tbody {
                            @for row in &view.today {
                                tr data-status=(row.status) {
                                    td { a href=(layout::link("/console/payments", &[("status", &row.status), ("from", &day(view.day_start_ms))])) { (badge(&row.status)) } }
                                    td.num { (row.count) }
                                    td.num { (money(row.volume_minor, &row.currency)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Payment funnel, last " (overview::FUNNEL_DAYS) " days" }
            p.hint { "From the " code { "payment_funnel" } " view: payments by the day they were created, and what became of them." }
            div.table-wrap {
                table #funnel {
                    thead { tr {
                        th { "Day" } th.num { "Created" } th.num { "Paid" } th.num { "Failed" }
                        th.num { "Expired" } th.num { "Refunded" } th.num { "Disputed" } th.num { "Still open" } th.num { "Conversion" }
                    } }
                    tbody {
                        @for d in &view.funnel {
                            tr {
                                td { (day(d.day_start_ms)) }
                                td.num { (d.created) } td.num { (d.paid) } td.num { (d.failed) }
                                td.num { (d.expired) } td.num { (d.refunded) }
                                td.num { @if d.disputed > 0 { a href="/console/disputes" { (d.disputed) } } @else { (d.disputed) } }
                                td.num { (d.open) }
                                td.num { (format!("{}.{:02} %", d.conversion_bps / 100, d.conversion_bps % 100)) }
                            }
                        }
                        @if view.funnel.is_empty() { tr { td colspan="9" { "No payments in these days." } } }
                    }
                }
            }
        }
    };
    Ok(layout::page("Overview", "/console", &session, body))
}

/// Bars of the hours 0–23 for the currency with the most volume today.
fn chart(hours: &[HourVolume]) -> Markup {
    let mut totals: Vec<(String, i64)> = Vec::new();
    for hour in hours {
        match totals.iter_mut().find(|(c, _)| *c == hour.currency) {
            Some((_, total)) => *total += hour.amount_minor,
            None => totals.push((hour.currency.clone(), hour.amount_minor)),
        }
    }
    totals.sort_by_key(|(_, total)| -total);
    let Some((currency, total)) = totals.first().cloned() else {
        return html! { p.hint { "Nothing captured yet today." } };
    };
    let mut per_hour = [0_i64; 24];
    for hour in hours.iter().filter(|h| h.currency == currency) {
        if let Ok(index) = usize::try_from(hour.hour)
            && index < 24
        {
            per_hour[index] += hour.amount_minor;
        }
    }
    let peak = per_hour.iter().copied().max().unwrap_or(0).max(1);
    // A 480 × 160 drawing: 20 units per hour, bars up to 130 high above the axis at 140.
    html! {
        svg.chart viewBox="0 0 480 160" preserveAspectRatio="none" role="img"
            aria-label={ "Captured volume per hour in " (currency) } {
            line x1="0" y1="140" x2="480" y2="140" {}
            @for (index, amount) in per_hour.iter().enumerate() {
                @let height = amount * 130 / peak;
                rect.bar x=(index * 20 + 3) y=(140 - height) width="14" height=(height) {
                    title { (format!("{index:02}:00 {}", money(*amount, &currency))) }
                }
                @if index % 3 == 0 {
                    text x=(index * 20 + 2) y="154" { (format!("{index:02}h")) }
                }
            }
        }
        p.hint { "Total " strong { (money(total, &currency)) } " captured today; the highest hour "
            (money(peak, &currency)) "." }
    }
}
