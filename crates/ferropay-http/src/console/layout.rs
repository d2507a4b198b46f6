//! The console's page chrome and the small pieces every page uses: the tabs, the signed-in bar
//! with its sign-out form, amounts in their currency's units, UTC times, status badges, links
//! with a query, and the stylesheet. What list pages share besides: [`super::list`].

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferropay::clock::rfc3339_from_ms;
use ferropay::money::{Currency, format_minor};
use maud::{DOCTYPE, Markup, html};

use super::auth::Session;

const STYLESHEET: &str = include_str!("console.css");

/// The tabs, in order: (path, label).
pub const TABS: &[(&str, &str)] = &[
    ("/console", "Overview"),
    ("/console/payments", "Payments"),
    ("/console/sellers", "Sellers"),
    ("/console/ledger", "Ledger"),
    ("/console/reconciliation", "Reconciliation"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/disputes", "Disputes"),
    ("/console/deliveries", "Webhooks"),
];

/// `GET /console/assets/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ferropay console" }
            link rel="stylesheet" href="/console/assets/console.css";
        }
    }
}

/// A page of the signed-in console: `tab` is the path of the tab it belongs to.
pub fn page(title: &str, tab: &str, session: &Session, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console" { "ferropay" span { "console" } }
                    nav {
                        @for (path, label) in TABS {
                            a.active[*path == tab] href=(path) { (label) }
                        }
                    }
                    div.who {
                        span.key title="The API key of this session" {
                            (session.operator.principal.key_id)
                            @if !session.operator.may_act() { " (read only)" }
                        }
                        form method="post" action="/console/logout" {
                            (csrf(session))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main data-page=(tab) {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without the tabs (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { main { (body) } }
        }
    }
}

/// The hidden CSRF field every form that changes something carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// An amount in its currency's units (`12.34 USD`).
pub fn money(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(parsed) => format_minor(amount_minor, parsed),
        Err(_) => format!("{amount_minor} {currency} (minor units)"),
    }
}

/// A stored time, in UTC (`2026-11-28 10:00:00`).
pub fn at(at_ms: i64) -> String {
    shown(&rfc3339_from_ms(at_ms))
}

/// An RFC 3339 UTC time as the console shows it (`2026-11-28 10:00:00`).
pub fn shown(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").replace('Z', "")
}

/// A UTC day (`2026-11-28`).
pub fn day(day_start_ms: i64) -> String {
    rfc3339_from_ms(day_start_ms)
        .split('T')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A status as a coloured badge.
pub fn badge(status: &str) -> Markup {
    let tone = match status {
        "succeeded" | "resolved" | "done" | "paid" | "matched" | "completed" | "won" => "good",
        "failed" | "dead" | "expired" | "open" | "error" | "lost" | "needs_response" => "bad",
        "partially_refunded" | "refunded" => "info",
        _ => "wait",
    };
    html! { span class={ "badge " (tone) } data-status=(status) { (status.replace('_', " ")) } }
}

/// A link with a query built from `params` (empty values left out).
pub fn link(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in params {
        if !value.is_empty() {
            query.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_owned()
    }
}

/// A labelled figure for the overview's tiles.
pub fn tile(label: &str, value: &str, href: Option<&str>, alert: bool) -> Markup {
    html! {
        div.tile.alert[alert] {
            div.label { (label) }
            @if let Some(href) = href {
                a.value href=(href) { (value) }
            } @else {
                div.value { (value) }
            }
        }
    }
}

/// `text` as one path segment (every byte but letters, digits and `*-._` percent-encoded).
pub fn seg(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
