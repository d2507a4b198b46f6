//! `GET /payments/{id}/status`: the buyer's page after the hosted page sends them back. It shows
//! the payment's status and refreshes itself while the PSP has not decided. Every value shown is
//! HTML-escaped.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::money::{Currency, format_minor};
use ferropay::payin::model::{PaymentStatus, PaymentView};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// How often a pending page reloads itself, in seconds.
const REFRESH_S: u32 = 3;

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
    Path(payment_id): Path<String>,
) -> Response {
    match service.payment(&payment_id).await {
        Ok(view) => Html(render(&view)).into_response(),
        Err(ferropay::Error::NotFound(_)) => (
            StatusCode::NOT_FOUND,
            Html(page(
                "Payment not found",
                "",
                "<p>We know no payment by that id.</p>",
            )),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "status page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(page(
                    "Something went wrong",
                    "",
                    "<p>Please reload in a moment.</p>",
                )),
            )
                .into_response()
        }
    }
}

fn money(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => format_minor(amount_minor, currency),
        Err(_) => format!("{amount_minor} {currency}"),
    }
}

fn headline(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::RequiresPayment => "Waiting for your payment",
        PaymentStatus::Processing => "Your payment is being processed",
        PaymentStatus::Succeeded => "Payment received — thank you!",
        PaymentStatus::Failed => "Your payment failed",
        PaymentStatus::Expired => "This payment expired",
        PaymentStatus::PartiallyRefunded => "Payment received, partly refunded",
        PaymentStatus::Refunded => "Payment refunded",
    }
}

fn render(view: &PaymentView) -> String {
    let pending = !view.status.is_final();
    let refresh = if pending {
        format!(r#"<meta http-equiv="refresh" content="{REFRESH_S}">"#)
    } else {
        String::new()
    };
    let mut body = format!(
        r#"<p class="status" data-status="{status}">Status: <strong>{status}</strong></p>
<p>Amount: <strong>{amount}</strong></p>"#,
        status = view.status.as_str(),
        amount = text(&money(view.amount, &view.currency)),
    );
    if let Some(code) = &view.failure_code {
        body.push_str(&format!("<p>Reason: {}</p>", text(code)));
    }
    if view.status == PaymentStatus::RequiresPayment
        && let Some(url) = &view.redirect_url
    {
        body.push_str(&format!(r#"<p><a href="{}">Pay now</a></p>"#, attr(url)));
    }
    body.push_str("<table><tr><th>Order</th><th>Seller</th><th>Amount</th><th>Status</th></tr>");
    for order in &view.orders {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&order.order_id),
            text(&order.seller_id),
            text(&money(order.amount, &view.currency)),
            order.status.as_str(),
        ));
    }
    body.push_str("</table>");
    if pending {
        body.push_str(&format!(
            "<p class=\"hint\">This page refreshes every {REFRESH_S} seconds.</p>"
        ));
    }
    body.push_str(&format!(
        "<p class=\"hint\">Payment {} · checkout {}</p>",
        text(&view.id),
        text(&view.checkout_id)
    ));
    page(headline(view.status), &refresh, &body)
}

fn page(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · ferropay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{head_extra}
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; color: #1d2330; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1rem; }}
td, th {{ border-bottom: 1px solid #dde; padding: .4rem; text-align: left; }}
.hint {{ color: #667; font-size: .9rem; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>"#,
        title = text(title),
    )
}
