//! `GET /payments/{id}/status`: the buyer's page after the hosted page sends them back, and
//! `GET /favicon.ico`.
//!
//! The outcome shown comes from the database only. The PSP's redirect adds
//! `?payment=…&status=…` to the URL; that hint is never taken as the outcome, but while the
//! database has not heard from the PSP yet (its webhook is on the way) it tells the page to say
//! "confirming your payment" instead of offering to pay again. A page that is not final reloads
//! itself until it is. Buyers read plain language and a way forward, never an internal status or
//! failure code (those stay in `data-*` attributes for tests and support). Every value shown is
//! HTML-escaped.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::money::{Currency, format_minor};
use ferropay::payin::model::{PaymentStatus, PaymentView};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::extract::PathId;

/// How often a page reloads while the PSP has returned the buyer and its webhook is awaited, in
/// seconds: the buyer is watching, and it usually takes well under a second.
const CONFIRMING_REFRESH_S: u32 = 1;

/// How often a page reloads while the payment waits for the buyer or a review, in seconds.
const PENDING_REFRESH_S: u32 = 3;

const FAVICON: &[u8] = include_bytes!("../../assets/favicon.ico");

/// `GET /favicon.ico`.
pub async fn favicon() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/x-icon"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        FAVICON,
    )
        .into_response()
}

/// The buyer's status page, which refreshes itself while the PSP has not decided.
#[utoipa::path(get, path = "/payments/{id}/status", tag = "pages",
    params(("id" = String, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 404, description = "No such payment", content_type = "text/html", body = String),
        (status = 500, description = "The database failed", content_type = "text/html", body = String),
    ))]
pub async fn payment_status(
    State(service): State<Ferropay>,
    PathId(payment_id): PathId,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    // Only whether the PSP sent the buyer back matters, not what it said. A query that does not
    // parse is no hint at all.
    let returned_from_psp = query.is_ok_and(|Query(query)| query.contains_key("status"));
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    match service.payment(&payment_id).await {
        Ok(view) => (no_store, Html(render(&view, returned_from_psp))).into_response(),
        Err(ferropay::Error::NotFound(_)) => (
            StatusCode::NOT_FOUND,
            no_store,
            Html(page(
                "We could not find this payment",
                "",
                "not_found",
                "<p>The link may be incomplete. If you were paying, go back to the shop and \
                 start again: nothing was charged through this link.</p>",
            )),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "status page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                no_store,
                Html(page(
                    "We could not load your payment",
                    &refresh(PENDING_REFRESH_S),
                    "error",
                    "<p>This is on our side. This page tries again by itself in a few \
                     seconds.</p>",
                )),
            )
                .into_response()
        }
    }
}

/// What the buyer is told: the page's state (a `data-state` attribute), its headline and its
/// explanation with the way forward.
struct Shown {
    state: &'static str,
    headline: &'static str,
    explanation: String,
    refresh_s: Option<u32>,
}

fn money(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => format_minor(amount_minor, currency),
        Err(_) => format!("{amount_minor} {currency}"),
    }
}

/// Why a card payment failed, in the buyer's words, from the PSP's failure code.
fn failure_headline(code: Option<&str>) -> &'static str {
    match code {
        Some("card_declined" | "insufficient_funds" | "do_not_honor" | "lost_card") => {
            "Your card was declined"
        }
        Some("authentication_failed") => "Your bank could not confirm it was you",
        Some("expired_card") => "Your card has expired",
        _ => "Your payment did not go through",
    }
}

fn failure_reason(code: Option<&str>) -> &'static str {
    match code {
        Some("insufficient_funds") => {
            "Your bank declined the payment; it says the card does not have enough funds."
        }
        Some("card_declined" | "do_not_honor" | "lost_card") => {
            "Your bank declined the payment without giving a reason; your bank can tell you more."
        }
        Some("authentication_failed") => {
            "The security check with your bank (3-D Secure) was not completed."
        }
        _ => "The payment could not be completed.",
    }
}

fn shown(view: &PaymentView, returned_from_psp: bool) -> Shown {
    let amount = money(view.amount, &view.currency);
    // A shop's own return URL (not this page) is where the buyer goes to try again.
    let shop = view
        .return_url
        .as_deref()
        .filter(|url| !url.contains(&format!("/payments/{}/status", view.id)));
    let try_again = match shop {
        Some(url) => format!(
            r#"<p><a class="button" href="{}">Back to the shop to try again</a></p>"#,
            attr(url)
        ),
        None => "<p>To try again, go back to the shop's checkout and pay with another card.</p>"
            .to_owned(),
    };
    match view.status {
        PaymentStatus::RequiresPayment if returned_from_psp => Shown {
            state: "confirming",
            headline: "Confirming your payment…",
            explanation: format!(
                "<p class=\"lead\">Your bank has answered; we are recording your payment of \
                 <strong>{}</strong>. This takes a few seconds.</p>\
                 <p>Please keep this page open; it updates by itself. Do not pay again: you \
                 will not be charged twice.</p>",
                text(&amount)
            ),
            refresh_s: Some(CONFIRMING_REFRESH_S),
        },
        PaymentStatus::RequiresPayment => {
            let pay = view
                .redirect_url
                .as_deref()
                .map(|url| {
                    format!(
                        r#"<p><a class="button" href="{}">Continue to payment</a></p>"#,
                        attr(url)
                    )
                })
                .unwrap_or_default();
            Shown {
                state: "awaiting_payment",
                headline: "Your payment is not complete yet",
                explanation: format!(
                    "<p class=\"lead\">We have not received your payment of <strong>{}</strong> \
                     yet.</p>{pay}<p class=\"hint\">If you have just paid, this page updates by \
                     itself.</p>",
                    text(&amount)
                ),
                refresh_s: Some(PENDING_REFRESH_S),
            }
        }
        PaymentStatus::Processing => Shown {
            state: "in_review",
            headline: "Your payment is being checked",
            explanation: format!(
                "<p class=\"lead\">Your bank is reviewing your payment of <strong>{}</strong>. \
                 This can take a while.</p><p>You do not need to do anything or pay again. You \
                 can close this page: the shop will let you know when it is done.</p>",
                text(&amount)
            ),
            refresh_s: Some(PENDING_REFRESH_S),
        },
        PaymentStatus::Succeeded => Shown {
            state: "paid",
            headline: "Thank you, your payment went through",
            explanation: format!(
                "<p class=\"lead\">You paid <strong>{}</strong>.</p>{}<p>You can close this \
                 page; the shop will confirm your order.</p>",
                text(&amount),
                receipt_email(view)
            ),
            refresh_s: None,
        },
        PaymentStatus::Failed => Shown {
            state: "failed",
            headline: failure_headline(view.failure_code.as_deref()),
            explanation: format!(
                "<p class=\"lead\">{} You have not been charged.</p>{try_again}",
                failure_reason(view.failure_code.as_deref())
            ),
            refresh_s: None,
        },
        PaymentStatus::Expired => Shown {
            state: "expired",
            headline: "The time to pay ran out",
            explanation: format!(
                "<p class=\"lead\">This payment of <strong>{}</strong> was not completed in time. \
                 You have not been charged.</p>{try_again}",
                text(&amount)
            ),
            refresh_s: None,
        },
        PaymentStatus::PartiallyRefunded => Shown {
            state: "partially_refunded",
            headline: "Part of your payment was refunded",
            explanation: format!(
                "<p class=\"lead\">You paid <strong>{}</strong>; part of it is on its way back \
                 to your card. Banks take a few days to show a refund.</p>",
                text(&amount)
            ),
            refresh_s: None,
        },
        PaymentStatus::Refunded => Shown {
            state: "refunded",
            headline: "Your payment was refunded",
            explanation: format!(
                "<p class=\"lead\">The <strong>{}</strong> you paid is on its way back to your \
                 card. Banks take a few days to show a refund.</p>",
                text(&amount)
            ),
            refresh_s: None,
        },
    }
}

fn receipt_email(view: &PaymentView) -> String {
    view.buyer
        .email
        .as_deref()
        .map(|email| format!("<p>A receipt goes to <strong>{}</strong>.</p>", text(email)))
        .unwrap_or_default()
}

fn refresh(seconds: u32) -> String {
    format!(r#"<meta http-equiv="refresh" content="{seconds}">"#)
}

fn render(view: &PaymentView, returned_from_psp: bool) -> String {
    let shown = shown(view, returned_from_psp);
    let mut body = shown.explanation;
    body.push_str(
        "<table><caption>Your order</caption><thead><tr><th scope=\"col\">Item</th>\
<th scope=\"col\">Sold by</th><th scope=\"col\" class=\"num\">Amount</th></tr></thead><tbody>",
    );
    for order in &view.orders {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            text(&order.order_id),
            text(&order.seller_id),
            text(&money(order.amount, &view.currency)),
        ));
    }
    body.push_str(&format!(
        "</tbody><tfoot><tr><th scope=\"row\" colspan=\"2\">Total</th><td class=\"num\">{}</td>\
</tr></tfoot></table>",
        text(&money(view.amount, &view.currency))
    ));
    if shown.refresh_s.is_some() {
        body.push_str("<p class=\"hint\" aria-live=\"polite\">This page updates by itself.</p>");
    }
    body.push_str(&format!(
        "<p class=\"hint\">Payment reference <code>{}</code> — quote it if you contact the \
         shop.</p>",
        text(&view.id),
    ));
    let head = shown.refresh_s.map(refresh).unwrap_or_default();
    // The status and failure code are for tests and support tools, not shown.
    let data = format!(
        r#" data-status="{}" data-failure-code="{}""#,
        view.status.as_str(),
        attr(view.failure_code.as_deref().unwrap_or_default())
    );
    page_with(shown.headline, &head, shown.state, &data, &body)
}

fn page(title: &str, head_extra: &str, state: &str, body: &str) -> String {
    page_with(title, head_extra, state, "", body)
}

fn page_with(title: &str, head_extra: &str, state: &str, data: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">{head_extra}
<style>
body {{ font-family: system-ui, sans-serif; max-width: 34rem; margin: 2.5rem auto; padding: 0 1rem; color: #1d2330; line-height: 1.45; }}
h1 {{ font-size: 1.5rem; }}
main[data-state="paid"] h1::before {{ content: "✓ "; color: #137333; }}
main[data-state="failed"] h1, main[data-state="expired"] h1 {{ color: #a4001d; }}
main[data-state="confirming"] h1::before {{ content: ""; display: inline-block; width: .9em; height: .9em; margin-right: .4em; border: .15em solid #c8cdd8; border-top-color: #164e63; border-radius: 50%; animation: spin 1s linear infinite; vertical-align: -.1em; }}
@keyframes spin {{ to {{ transform: rotate(360deg); }} }}
.lead {{ font-size: 1.1rem; }}
.button {{ display: inline-block; background: #164e63; color: #fff; padding: .6rem 1.1rem; border-radius: 6px; text-decoration: none; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1.5rem; }}
caption {{ text-align: left; font-weight: 600; padding-bottom: .3rem; }}
td, th {{ border-bottom: 1px solid #dde; padding: .4rem; text-align: left; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.hint {{ color: #5b6372; font-size: .9rem; }}
</style></head>
<body><main data-state="{state}"{data}><h1>{title}</h1>
{body}
</main></body></html>"#,
        title = text(title),
    )
}

#[cfg(test)]
mod tests {
    use ferropay::payin::model::{BuyerView, OrderStatus, OrderView};

    use super::*;

    fn view(status: PaymentStatus, failure_code: Option<&str>) -> PaymentView {
        PaymentView {
            id: "pay_1".into(),
            checkout_id: "chk_1".into(),
            status,
            amount: 1750,
            currency: "USD".into(),
            psp: "sandbox".into(),
            redirect_url: Some("http://psp.example/pay/tok_1".into()),
            return_url: Some("http://ferropay.example/payments/pay_1/status".into()),
            failure_code: failure_code.map(str::to_owned),
            buyer: BuyerView {
                id: "buyer_7".into(),
                email: Some("b@example.com".into()),
            },
            orders: vec![OrderView {
                id: "po_1".into(),
                order_id: "ord_1".into(),
                seller_id: "seller_a".into(),
                amount: 1750,
                status: OrderStatus::Executing,
            }],
            created_at: "2026-11-24T10:00:00Z".into(),
            updated_at: "2026-11-24T10:00:00Z".into(),
        }
    }

    /// The text a buyer reads: the page without its tags, attributes and style.
    fn visible(html: &str) -> String {
        let body = html.split("<body>").nth(1).unwrap();
        let mut out = String::new();
        let mut in_tag = false;
        for c in body.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn back_from_the_psp_before_the_webhook_is_confirming_never_pay_now() {
        let html = render(&view(PaymentStatus::RequiresPayment, None), true);
        assert!(html.contains(r#"data-state="confirming""#));
        assert!(html.contains("Confirming your payment"));
        assert!(!html.contains("tok_1"), "no link to pay again");
        assert!(html.contains(r#"http-equiv="refresh" content="1""#));
    }

    #[test]
    fn not_yet_paid_offers_the_payment_page() {
        let html = render(&view(PaymentStatus::RequiresPayment, None), false);
        assert!(html.contains(r#"href="http://psp.example/pay/tok_1""#));
        assert!(html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn buyers_never_read_internal_statuses_or_codes() {
        let internal = [
            "requires_payment",
            "processing",
            "succeeded",
            "failed",
            "expired",
            "executing",
            "pending",
            "not_started",
            "card_declined",
            "insufficient_funds",
            "authentication_failed",
            "psp_rejected",
        ];
        for status in PaymentStatus::ALL {
            for code in [
                None,
                Some("card_declined"),
                Some("insufficient_funds"),
                Some("authentication_failed"),
                Some("psp_rejected"),
            ] {
                for returned in [false, true] {
                    let text = visible(&render(&view(status, code), returned));
                    for word in internal {
                        assert!(
                            !text.contains(word),
                            "{status:?}/{code:?} shows `{word}`: {text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn failures_say_why_in_plain_words_and_what_to_do() {
        let declined = visible(&render(
            &view(PaymentStatus::Failed, Some("card_declined")),
            true,
        ));
        assert!(declined.contains("Your card was declined"));
        assert!(declined.contains("You have not been charged"));
        assert!(declined.contains("try again"));
        let three_ds = visible(&render(
            &view(PaymentStatus::Failed, Some("authentication_failed")),
            true,
        ));
        assert!(three_ds.contains("Your bank could not confirm it was you"));

        let mut with_shop = view(PaymentStatus::Failed, Some("insufficient_funds"));
        with_shop.return_url = Some("https://shop.example/checkout".into());
        let html = render(&with_shop, true);
        assert!(html.contains(r#"href="https://shop.example/checkout""#));
        assert!(!html.contains("http-equiv=\"refresh\""), "final: no reload");
    }
}
