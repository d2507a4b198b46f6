//! The console's errors as pages: the status the API would answer, and a page saying what was
//! wrong (naming the field for bad input, in words and in `data-field`), with a way back. A
//! request without a live session is sent to the sign-in page; internal details stay in the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::layout;

/// A console request that failed.
#[derive(Debug)]
pub enum ConsoleError {
    /// No session, an expired one, or one whose key was revoked.
    SignIn,
    /// A form without the session's CSRF token.
    Csrf,
    /// A session that may look but not act (a `read_only` key).
    ReadOnly,
    Domain(ferropay::Error),
}

impl From<ferropay::Error> for ConsoleError {
    fn from(error: ferropay::Error) -> Self {
        Self::Domain(error)
    }
}

pub type ConsoleResult<T> = Result<T, ConsoleError>;

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, code, field, message) = match self {
            Self::SignIn => return Redirect::to("/console/login").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf_failed".to_owned(),
                None,
                "This form was not sent from a console page of this session (its CSRF token is \
                 missing or wrong). Nothing was changed. Reload the page and try again."
                    .to_owned(),
            ),
            Self::ReadOnly => (
                StatusCode::FORBIDDEN,
                "insufficient_scope".to_owned(),
                None,
                "This session's key may read but not act: sign in with an operator key. \
                 Nothing was changed."
                    .to_owned(),
            ),
            Self::Domain(error) => {
                let status = StatusCode::from_u16(error.status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if status.is_server_error() {
                    tracing::error!(%error, "console request failed");
                }
                let body = error.to_body();
                let code = body["error"]["code"].as_str().unwrap_or("error").to_owned();
                let field = body["error"]["field"].as_str().map(str::to_owned);
                let message = body["error"]["message"]
                    .as_str()
                    .unwrap_or("error")
                    .to_owned();
                (status, code, field, message)
            }
        };
        let markup = html! {
            section.error data-code=(code) data-field=[field.as_deref()] {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                @if let Some(field) = &field {
                    p { "The field " code { (field) } " is not right: " (message) }
                } @else {
                    p { (message) }
                }
                p { a href="/console" { "Back to the overview" } }
            }
        };
        let mut response = (status, layout::bare("Error", markup)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
