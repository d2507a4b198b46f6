//! The hosted page's HTML: the card form with its test-card help box, the 3-D Secure challenge,
//! and the "not open" and "not found" pages. Everything that comes from a request or a session
//! is HTML-escaped here.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::cards::{TEST_CARDS, grouped};
use crate::sessions::Session;

/// What the buyer typed, put back into the form when it is shown again (never the CVC).
#[derive(Debug, Default)]
pub(crate) struct Entered<'a> {
    pub(crate) card_number: &'a str,
    pub(crate) exp: &'a str,
    pub(crate) name: &'a str,
}

fn text(raw: &str) -> Cow<'_, str> {
    html_escape::encode_text(raw)
}

fn attr(raw: &str) -> Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(raw)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;\
padding:0 1rem;color:#1a1a2e}h1{font-size:1.3rem}.sandbox{background:#fff3cd;padding:.3rem .6rem;\
border-radius:4px;font-size:.8rem}.summary{border:1px solid #ddd;border-radius:6px;padding:.8rem}\
.amount{font-size:1.6rem;font-weight:600}label{display:block;margin-top:.7rem}input{width:100%;\
padding:.4rem;box-sizing:border-box;font-size:1rem}button{margin-top:1rem;padding:.6rem 1.2rem;\
font-size:1rem}.errors{color:#a4001d;background:#fde8ec;padding:.5rem .8rem;border-radius:4px}\
.help{margin-top:1.5rem;font-size:.8rem;background:#f4f6f8;padding:.6rem;border-radius:4px}\
.help td{padding:.1rem .5rem .1rem 0}code{font-size:.85rem}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>{STYLE}</style></head>\
<body><p><span class=\"sandbox\">SANDBOX PSP: no real money moves</span></p>{body}</body></html>\n",
        title = text(title),
    )
}

/// How many minor-unit digits a currency has (ISO 4217); 2 unless known otherwise.
fn minor_digits(currency: &str) -> u32 {
    const ZERO: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    if ZERO.contains(&currency) {
        0
    } else if THREE.contains(&currency) {
        3
    } else {
        2
    }
}

/// `1500` `USD` as `15.00 USD`, with integer arithmetic only.
pub(crate) fn format_amount(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if amount < 0 { "-" } else { "" };
    let units = amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{units} {currency}");
    }
    let scale = 10u64.pow(digits);
    let width = digits as usize;
    format!(
        "{sign}{}.{:0width$} {currency}",
        units / scale,
        units % scale
    )
}

fn summary(session: &Session) -> String {
    format!(
        "<div class=\"summary\"><div class=\"amount\">{amount}</div>\
<div>Merchant reference: <code>{reference}</code></div></div>",
        amount = text(&format_amount(session.amount, &session.currency)),
        reference = text(&session.reference),
    )
}

fn errors_box(errors: &[&str]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"errors\" role=\"alert\"><ul>");
    for error in errors {
        let _ = write!(out, "<li>{}</li>", text(error));
    }
    out.push_str("</ul></div>");
    out
}

fn test_cards_help() -> String {
    let mut out = String::from(
        "<div class=\"help\"><strong>Test cards</strong> (any future expiry, any CVC)<table>",
    );
    for card in &TEST_CARDS {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            text(&grouped(card.number)),
            text(card.does)
        );
    }
    out.push_str("</table></div>");
    out
}

/// The card form; it posts to the page's own URL.
pub(crate) fn payment_form(session: &Session, errors: &[&str], entered: &Entered<'_>) -> String {
    let body = format!(
        "<h1>Pay</h1>{summary}{errors}\
<form method=\"post\">\
<label>Card number<input name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\" \
placeholder=\"4242 4242 4242 4242\" value=\"{card_number}\" required></label>\
<label>Expiry (MM/YY)<input name=\"exp\" autocomplete=\"cc-exp\" placeholder=\"12/34\" \
value=\"{exp}\" required></label>\
<label>CVC<input name=\"cvc\" inputmode=\"numeric\" autocomplete=\"cc-csc\" placeholder=\"123\" \
required></label>\
<label>Name on card<input name=\"name\" autocomplete=\"cc-name\" value=\"{name}\"></label>\
<button type=\"submit\">Pay {amount}</button></form>{help}",
        summary = summary(session),
        errors = errors_box(errors),
        card_number = attr(entered.card_number),
        exp = attr(entered.exp),
        name = attr(entered.name),
        amount = text(&format_amount(session.amount, &session.currency)),
        help = test_cards_help(),
    );
    layout("Pay", &body)
}

/// The 3-D Secure challenge; it posts to `/pay/{token}/challenge`.
pub(crate) fn challenge_form(session: &Session, error: Option<&str>) -> String {
    let errors: Vec<&str> = error.into_iter().collect();
    let body = format!(
        "<h1>Confirm it's you</h1>{summary}{errors}\
<p>Your bank asks for the six-digit code it sent you (sandbox: <code>000000</code> fails, any \
other six digits pass).</p>\
<form method=\"post\" action=\"/pay/{token}/challenge\">\
<label>Code<input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
maxlength=\"6\" required autofocus></label>\
<button type=\"submit\">Confirm</button></form>",
        summary = summary(session),
        errors = errors_box(&errors),
        token = attr(&session.token),
    );
    layout("3-D Secure", &body)
}

/// For a session that can no longer be paid.
pub(crate) fn not_open(session: &Session) -> String {
    let failure = session
        .failure_code
        .map(|code| format!(" (<code>{}</code>)", text(code)))
        .unwrap_or_default();
    let body = format!(
        "<h1>This payment is {status}</h1>{summary}<p>Status: <strong>{status}</strong>{failure}. \
It can no longer be paid on this page.</p>",
        status = text(session.status.as_str()),
        summary = summary(session),
    );
    layout("Payment not open", &body)
}

pub(crate) fn not_found() -> String {
    layout(
        "Not found",
        "<h1>No such payment</h1><p>This payment link is not known to the sandbox PSP.</p>",
    )
}

/// For a request the page cannot read at all (not a form).
pub(crate) fn bad_request(message: &str) -> String {
    layout(
        "Bad request",
        &format!("<h1>Bad request</h1><p>{}</p>", text(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::format_amount;

    #[test]
    fn amounts_use_the_currency_exponent() {
        assert_eq!(format_amount(1_750, "USD"), "17.50 USD");
        assert_eq!(format_amount(5, "EUR"), "0.05 EUR");
        assert_eq!(format_amount(1_750, "JPY"), "1750 JPY");
        assert_eq!(format_amount(1_750, "KWD"), "1.750 KWD");
        assert_eq!(format_amount(-5, "USD"), "-0.05 USD");
        assert_eq!(format_amount(i64::MIN, "USD"), "-92233720368547758.08 USD");
    }
}
