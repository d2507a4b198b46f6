//! The hosted page's HTML: the card form with its test-card help box, the 3-D Secure challenge,
//! and the "not open" and "not found" pages. Everything that comes from a request or a session
//! is HTML-escaped here.
//!
//! The form is built to work without its script (`/assets/hosted-page.js`, which groups the
//! number, names the brand as it is typed and checks each field as the buyer leaves it): every
//! field has a `<label>`, the DOM order is the focus order, a field the server refused says why
//! right under it (`aria-describedby`, `aria-invalid`) and gets the focus, and nothing the buyer
//! typed is dropped when the form comes back. Placeholders show the shape of a value, never a
//! test card, so an empty form does not look filled.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::cards::{TEST_CARDS, grouped};
use crate::sessions::{Session, SessionStatus};

/// What the buyer typed, put back into the form when it is shown again.
#[derive(Debug, Default)]
pub(crate) struct Entered<'a> {
    pub(crate) card_number: &'a str,
    pub(crate) exp: &'a str,
    pub(crate) cvc: &'a str,
    pub(crate) name: &'a str,
}

/// Why the form was refused: about one field (`card_number`, `exp`, `cvc`, `name`), or about the
/// attempt as a whole (`field: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FormError {
    pub(crate) field: Option<&'static str>,
    pub(crate) message: &'static str,
    /// The failure code of a refused attempt (`processing_error`), kept in a `data-` attribute.
    pub(crate) code: Option<&'static str>,
}

impl FormError {
    pub(crate) fn field(field: &'static str, message: &'static str) -> Self {
        Self {
            field: Some(field),
            message,
            code: None,
        }
    }
}

/// What the page is about: the merchant the buyer pays and the session.
pub(crate) struct Context<'a> {
    pub(crate) merchant: &'a str,
    pub(crate) session: &'a Session,
}

fn text(raw: &str) -> Cow<'_, str> {
    html_escape::encode_text(raw)
}

fn attr(raw: &str) -> Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(raw)
}

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;\
color:#1a1a2e;background:#f5f6f8;line-height:1.4}main{max-width:28rem;margin:0 auto;padding:1rem}\
.sandbox{display:inline-block;background:#fff3cd;color:#6b4e00;padding:.2rem .5rem;\
border-radius:4px;font-size:.8rem}.card{background:#fff;border:1px solid #dde1e7;\
border-radius:10px;padding:1.1rem;margin-top:.8rem}.merchant{font-size:1rem;color:#4a5260;\
margin:0}.amount{font-size:1.8rem;font-weight:650;margin:.1rem 0 .2rem}.ref{font-size:.8rem;\
color:#5b6372;margin:0}h1{font-size:1.25rem;margin:.2rem 0 .6rem}label{display:block;\
font-weight:550;margin-top:.9rem;font-size:.95rem}.field{position:relative;margin-top:.3rem}\
input{width:100%;padding:.65rem .7rem;font-size:1.05rem;border:1px solid #b9c0cb;\
border-radius:6px;background:#fff}input:focus{outline:3px solid #9cc3ff;border-color:#2f6fdb}\
input[aria-invalid=true]{border-color:#c5221f}.brand{position:absolute;right:.6rem;top:50%;\
transform:translateY(-50%);font-size:.75rem;font-weight:700;color:#2f4a7a;background:#e8eefb;\
padding:.15rem .4rem;border-radius:4px}.brand:empty{display:none}.row{display:grid;\
grid-template-columns:1fr 1fr;gap:.8rem}.field-error{color:#b3261e;font-size:.85rem;\
margin:.3rem 0 0}.field-error:empty{display:none}button{width:100%;margin-top:1.2rem;\
padding:.8rem;font-size:1.05rem;font-weight:600;border:0;border-radius:6px;background:#2f6fdb;\
color:#fff;cursor:pointer}button:disabled{opacity:.7}.errors{color:#8c1d18;background:#fde8ec;\
border:1px solid #f3b8c2;padding:.6rem .8rem;border-radius:6px;margin-top:.8rem}\
.errors p{margin:0}.help{margin-top:1rem;font-size:.82rem;background:#eef1f5;padding:.6rem .8rem;\
border-radius:6px}.help summary{cursor:pointer;font-weight:600}.help table{margin-top:.4rem;\
border-collapse:collapse}.help td{padding:.15rem .6rem .15rem 0;vertical-align:top}\
code{font-size:.85rem;white-space:nowrap}.hint{color:#5b6372;font-size:.85rem}.link{display:inline-block;\
margin-top:1rem;color:#2f6fdb}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<link rel=\"icon\" href=\"/favicon.ico\"><style>{STYLE}</style></head>\
<body><main><p class=\"sandbox\">Sandbox: no real money moves</p>{body}</main></body></html>\n",
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

fn summary(context: &Context<'_>) -> String {
    let session = context.session;
    format!(
        "<section class=\"summary\" aria-label=\"What you pay\"><p class=\"merchant\">Pay \
<strong>{merchant}</strong></p><p class=\"amount\">{amount}</p><p class=\"ref\">Order \
reference <code>{reference}</code></p></section>",
        merchant = text(context.merchant),
        amount = text(&format_amount(session.amount, &session.currency)),
        reference = text(&session.reference),
    )
}

/// The errors that are about no single field, in a box read out as soon as it appears.
fn errors_box(errors: &[FormError]) -> String {
    let general: Vec<&FormError> = errors.iter().filter(|e| e.field.is_none()).collect();
    if general.is_empty() {
        return String::new();
    }
    let failure_code = general.iter().find_map(|e| e.code);
    let mut out = format!(
        "<div class=\"errors\" id=\"form-errors\" role=\"alert\" tabindex=\"-1\" \
data-failure-code=\"{}\">",
        attr(failure_code.unwrap_or_default())
    );
    for error in general {
        let _ = write!(out, "<p>{}</p>", text(error.message));
    }
    out.push_str("</div>");
    out
}

fn test_cards_help() -> String {
    let mut out = String::from(
        "<details class=\"help\" open><summary>Sandbox test cards</summary>\
<p class=\"hint\">Any future expiry date and any CVC.</p><table>",
    );
    for card in &TEST_CARDS {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            text(&grouped(card.number)),
            text(card.does)
        );
    }
    out.push_str("</table></details>");
    out
}

/// One labelled input, with the place for its error right under it.
struct Input<'a> {
    name: &'static str,
    label: &'static str,
    value: &'a str,
    /// Extra attributes, already escaped.
    attributes: &'static str,
    /// Shown inside the field, right-aligned (the card brand).
    badge: bool,
}

fn input(field: &Input<'_>, errors: &[FormError], autofocus: bool) -> String {
    let error = errors
        .iter()
        .find(|e| e.field == Some(field.name))
        .map(|e| e.message);
    let badge = if field.badge {
        "<span class=\"brand\" id=\"card-brand\" aria-live=\"polite\"></span>"
    } else {
        ""
    };
    format!(
        "<label for=\"{name}\">{label}</label><div class=\"field\"><input id=\"{name}\" \
name=\"{name}\" value=\"{value}\" {attributes} aria-describedby=\"{name}-error\"{invalid}{focus}>\
{badge}</div><p class=\"field-error\" id=\"{name}-error\">{error}</p>",
        name = field.name,
        label = field.label,
        value = attr(field.value),
        attributes = field.attributes,
        invalid = if error.is_some() {
            " aria-invalid=\"true\""
        } else {
            ""
        },
        focus = if autofocus { " autofocus" } else { "" },
        error = text(error.unwrap_or_default()),
    )
}

/// The card form; it posts to the page's own URL.
pub(crate) fn payment_form(
    context: &Context<'_>,
    errors: &[FormError],
    entered: &Entered<'_>,
) -> String {
    let session = context.session;
    // A message about the whole attempt is read first (the script focuses it); else the first
    // field the server refused gets the focus; with none, the card number does.
    let general = errors.iter().any(|e| e.field.is_none());
    let first_bad = errors.iter().find_map(|e| e.field);
    let focus = |name: &str| !general && first_bad.map_or(name == "card_number", |bad| bad == name);
    let card_number = input(
        &Input {
            name: "card_number",
            label: "Card number",
            value: entered.card_number,
            attributes: "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-number\" \
placeholder=\"1234 1234 1234 1234\" maxlength=\"23\" spellcheck=\"false\" required",
            badge: true,
        },
        errors,
        focus("card_number"),
    );
    let exp = input(
        &Input {
            name: "exp",
            label: "Expiry date",
            value: entered.exp,
            attributes: "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-exp\" \
placeholder=\"MM/YY\" maxlength=\"5\" required",
            badge: false,
        },
        errors,
        focus("exp"),
    );
    let cvc = input(
        &Input {
            name: "cvc",
            label: "Security code",
            value: entered.cvc,
            attributes: "type=\"text\" inputmode=\"numeric\" autocomplete=\"cc-csc\" \
placeholder=\"3 or 4 digits\" maxlength=\"4\" required",
            badge: false,
        },
        errors,
        focus("cvc"),
    );
    let name = input(
        &Input {
            name: "name",
            label: "Name on card",
            value: entered.name,
            attributes: "type=\"text\" autocomplete=\"cc-name\" placeholder=\"As printed on \
the card\"",
            badge: false,
        },
        errors,
        focus("name"),
    );
    let body = format!(
        "{summary}<div class=\"card\"><h1>Pay by card</h1>{errors}\
<form method=\"post\">{card_number}<div class=\"row\"><div>{exp}</div><div>{cvc}</div></div>\
{name}<button type=\"submit\">Pay {amount}</button></form></div>{help}\
<script src=\"/assets/hosted-page.js\" defer></script>",
        summary = summary(context),
        errors = errors_box(errors),
        amount = text(&format_amount(session.amount, &session.currency)),
        help = test_cards_help(),
    );
    layout(&format!("Pay {}", context.merchant), &body)
}

/// The 3-D Secure challenge; it posts to `/pay/{token}/challenge`.
pub(crate) fn challenge_form(context: &Context<'_>, error: Option<&'static str>) -> String {
    let errors: Vec<FormError> = error
        .map(|message| FormError::field("code", message))
        .into_iter()
        .collect();
    let code = input(
        &Input {
            name: "code",
            label: "Six-digit code",
            value: "",
            attributes: "type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
pattern=\"[0-9]{6}\" maxlength=\"6\" placeholder=\"6 digits\" required",
            badge: false,
        },
        &errors,
        true,
    );
    let body = format!(
        "{summary}<div class=\"card\"><h1>Confirm it's you</h1>\
<p>Your bank sent you a six-digit code to confirm this payment.</p>\
<form method=\"post\" action=\"/pay/{token}/challenge\">{code}\
<button type=\"submit\">Confirm</button></form>\
<p class=\"hint\">Sandbox: <code>000000</code> fails, any other six digits pass.</p></div>",
        summary = summary(context),
        token = attr(&context.session.token),
    );
    layout("Confirm it's you", &body)
}

/// For a session that can no longer be paid, with the way back to the merchant.
pub(crate) fn not_open(context: &Context<'_>, back_url: &str) -> String {
    let session = context.session;
    let (headline, explanation) = match session.status {
        SessionStatus::Succeeded => (
            "This payment is complete",
            "It has been paid already; you will not be charged again.",
        ),
        SessionStatus::Processing => (
            "This payment is being checked",
            "Your bank is reviewing it. You do not need to pay again.",
        ),
        SessionStatus::Failed => (
            "This payment did not go through",
            "You have not been charged. To try again, go back to the shop.",
        ),
        SessionStatus::Expired => (
            "This payment link has expired",
            "You have not been charged. To pay, go back to the shop and start again.",
        ),
        SessionStatus::Open => ("This payment is still open", "Reload the page to pay."),
    };
    let body = format!(
        "{summary}<div class=\"card\" data-status=\"{status}\"><h1>{headline}</h1>\
<p>{explanation}</p><a class=\"link\" href=\"{back}\">Back to {merchant}</a></div>",
        summary = summary(context),
        status = session.status.as_str(),
        back = attr(back_url),
        merchant = text(context.merchant),
    );
    layout(headline, &body)
}

pub(crate) fn not_found() -> String {
    layout(
        "Payment link not found",
        "<div class=\"card\"><h1>We could not find this payment</h1><p>The link may be \
incomplete or old. Go back to the shop and start the payment again.</p></div>",
    )
}

/// For a request the page cannot read at all (not a form).
pub(crate) fn bad_request(message: &str) -> String {
    layout(
        "Bad request",
        &format!(
            "<div class=\"card\"><h1>Bad request</h1><p>{}</p></div>",
            text(message)
        ),
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
