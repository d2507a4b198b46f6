//! The hosted payment page's routes: `GET`/`POST /pay/{token}` (the card form) and
//! `POST /pay/{token}/challenge` (3-D Secure). Checks the form, hands the card to the session
//! state machine, and sends the buyer back to the merchant with a 303. Also serves the page's
//! script and the favicon.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::cards::{card_digits, challenge_passes, check_cvc, check_expiry, outcome_of};
use crate::clock::unix_now_s;
use crate::html::{self, Context, Entered, FormError};
use crate::sessions::{self, Attempted, Session, SessionStatus};

/// Longest accepted cardholder name, in characters.
const NAME_MAX_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct PayForm {
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    cvc: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChallengeForm {
    #[serde(default)]
    code: String,
}

const SCRIPT: &str = include_str!("../assets/hosted-page.js");
const FAVICON: &[u8] = include_bytes!("../assets/favicon.ico");

/// `GET /assets/hosted-page.js`: formatting, brand detection and inline checks for the form.
pub(crate) async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `GET /favicon.ico`.
pub(crate) async fn favicon() -> Response {
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

fn context<'a>(app: &'a AppState, session: &'a Session) -> Context<'a> {
    Context {
        merchant: &app.config.merchant_name,
        session,
    }
}

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(html),
    )
        .into_response()
}

fn not_found() -> Response {
    page(StatusCode::NOT_FOUND, html::not_found())
}

fn conflict(app: &AppState, session: &Session) -> Response {
    page(StatusCode::CONFLICT, not_open_page(app, session))
}

/// The page for a session that can no longer be paid, linking back to the merchant with the
/// outcome, as the redirect would.
fn not_open_page(app: &AppState, session: &Session) -> String {
    let back = return_location(
        &session.return_url,
        &session.reference,
        session.status.as_str(),
    );
    html::not_open(&context(app, session), &back)
}

fn unreadable_form() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        html::bad_request("send the form as application/x-www-form-urlencoded"),
    )
}

fn snapshot(app: &AppState, token: &str) -> Option<Session> {
    app.store().sessions.get(token).cloned()
}

/// `GET /pay/{token}`.
pub(crate) async fn show(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    match snapshot(&app, &token) {
        None => not_found(),
        Some(session) if session.status != SessionStatus::Open => {
            page(StatusCode::OK, not_open_page(&app, &session))
        }
        Some(session) if session.challenge_pending => page(
            StatusCode::OK,
            html::challenge_form(&context(&app, &session), None),
        ),
        Some(session) => page(
            StatusCode::OK,
            html::payment_form(&context(&app, &session), &[], &Entered::default()),
        ),
    }
}

/// `POST /pay/{token}` with `card_number`, `exp`, `cvc`, `name`.
pub(crate) async fn pay(
    State(app): State<AppState>,
    Path(token): Path<String>,
    form: Result<Form<PayForm>, FormRejection>,
) -> Response {
    let Some(session) = snapshot(&app, &token) else {
        return not_found();
    };
    if session.status != SessionStatus::Open {
        return conflict(&app, &session);
    }
    let Ok(Form(form)) = form else {
        return unreadable_form();
    };
    // Everything typed comes back, the CVC too: nothing is cleared behind the buyer's back.
    let entered = Entered {
        card_number: &form.card_number,
        exp: &form.exp,
        cvc: &form.cvc,
        name: &form.name,
    };
    let mut errors = Vec::new();
    let digits = card_digits(&form.card_number)
        .map_err(|error| errors.push(FormError::field("card_number", error)))
        .ok();
    if let Err(error) = check_expiry(&form.exp, unix_now_s()) {
        errors.push(FormError::field("exp", error));
    }
    if let Err(error) = check_cvc(&form.cvc) {
        errors.push(FormError::field("cvc", error));
    }
    if form.name.chars().count() > NAME_MAX_CHARS {
        errors.push(FormError::field(
            "name",
            "The name on the card is at most 200 characters",
        ));
    }
    let (Some(digits), true) = (digits, errors.is_empty()) else {
        let html = html::payment_form(&context(&app, &session), &errors, &entered);
        return page(StatusCode::BAD_REQUEST, html);
    };
    let Some(outcome) = outcome_of(&digits) else {
        let errors = [FormError::field(
            "card_number",
            "This is not a sandbox test card: use one of the cards listed below",
        )];
        let html = html::payment_form(&context(&app, &session), &errors, &entered);
        return page(StatusCode::BAD_REQUEST, html);
    };
    let last4 = digits
        .get(digits.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned();
    match sessions::attempt_card(&app, &token, outcome, last4) {
        Attempted::Missing => not_found(),
        Attempted::NotOpen(session) => conflict(&app, &session),
        Attempted::Decided(session) => back_to_merchant(&app, &session),
        Attempted::ChallengeAsked(session) => page(
            StatusCode::OK,
            html::challenge_form(&context(&app, &session), None),
        ),
        Attempted::ProcessingError(session) => {
            let errors = [FormError {
                field: None,
                message: "Your card could not be processed this time, and you have not been \
                          charged. Try again, or use another card.",
                code: Some("processing_error"),
            }];
            let html = html::payment_form(&context(&app, &session), &errors, &entered);
            // The page itself is served fine: the buyer reads why and tries again (CONTRACT.md).
            page(StatusCode::OK, html)
        }
    }
}

/// `POST /pay/{token}/challenge` with `code`.
pub(crate) async fn challenge(
    State(app): State<AppState>,
    Path(token): Path<String>,
    form: Result<Form<ChallengeForm>, FormRejection>,
) -> Response {
    let Some(session) = snapshot(&app, &token) else {
        return not_found();
    };
    if session.status != SessionStatus::Open {
        return conflict(&app, &session);
    }
    if !session.challenge_pending {
        let errors = [FormError {
            field: None,
            message: "There is no code to confirm: enter your card first.",
            code: None,
        }];
        let html = html::payment_form(&context(&app, &session), &errors, &Entered::default());
        return page(StatusCode::CONFLICT, html);
    }
    let Ok(Form(form)) = form else {
        return unreadable_form();
    };
    let passed = match challenge_passes(&form.code) {
        Ok(passed) => passed,
        Err(error) => {
            let html = html::challenge_form(&context(&app, &session), Some(error));
            return page(StatusCode::BAD_REQUEST, html);
        }
    };
    match sessions::answer_challenge(&app, &token, passed) {
        Attempted::Missing => not_found(),
        Attempted::Decided(session) => back_to_merchant(&app, &session),
        Attempted::NotOpen(session)
        | Attempted::ChallengeAsked(session)
        | Attempted::ProcessingError(session) => conflict(&app, &session),
    }
}

/// 303 to the merchant's return URL with `payment=<reference>&status=<status>`.
fn back_to_merchant(app: &AppState, session: &Session) -> Response {
    let location = return_location(
        &session.return_url,
        &session.reference,
        session.status.as_str(),
    );
    match HeaderValue::from_str(&location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        // `return_url` was checked to be visible ASCII, so this is not expected; show the
        // outcome rather than fail.
        Err(_) => page(StatusCode::OK, not_open_page(app, session)),
    }
}

/// `return_url` with `payment` and `status` added to its query, before any fragment.
fn return_location(return_url: &str, reference: &str, status: &str) -> String {
    let (base, fragment) = match return_url.split_once('#') {
        Some((base, fragment)) => (base, format!("#{fragment}")),
        None => (return_url, String::new()),
    };
    let separator = match base.rfind('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!(
        "{base}{separator}payment={}&status={}{fragment}",
        percent_encode(reference),
        percent_encode(status)
    )
}

/// Percent-encodes all but the unreserved characters of RFC 3986.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_location_adds_the_query() {
        assert_eq!(
            return_location("https://shop.example/thanks", "pay_1", "succeeded"),
            "https://shop.example/thanks?payment=pay_1&status=succeeded"
        );
        assert_eq!(
            return_location("https://shop.example/t?x=1", "pay 1&2", "failed"),
            "https://shop.example/t?x=1&payment=pay%201%262&status=failed"
        );
        assert_eq!(
            return_location("https://shop.example/t?#top", "é", "processing"),
            "https://shop.example/t?payment=%C3%A9&status=processing#top"
        );
    }
}
