//! Signing in to the console and what every page and form checks.
//!
//! The sign-in form takes an API key with the `operator` (or `read_only`) scope, posted in the
//! body (never in a URL; the request log has the route only), and answers a session cookie:
//! `HttpOnly`, `SameSite=Strict`, `Secure` when ferropay's public URL is https, limited to
//! `/console` and expiring with the session ([`ferropay::console::sessions`]). The sign-in form
//! itself is protected by a double-submit token (a random value in a short-lived cookie and in
//! the form). Every other form carries the session's CSRF token; the [`Act`] extractor refuses
//! a form without it (403) before its handler runs, and refuses a `read_only` session.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use ferropay::Ferropay;
use ferropay::console::sessions::{self, Operator, SESSION_TTL_MS};
use ferropay::secret::Secret;
use maud::html;
use serde::de::DeserializeOwned;

use super::error::{ConsoleError, ConsoleResult};
use super::layout;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ferropay_console";
/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "ferropay_console_login";
/// How long a sign-in form may wait before it is sent, in seconds.
const LOGIN_FORM_TTL_S: i64 = 3_600;

/// A live session: who is signed in, and the CSRF token of their forms.
pub struct Session {
    pub operator: Operator,
    pub csrf: String,
}

impl FromRequestParts<Ferropay> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, service: &Ferropay) -> ConsoleResult<Self> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE)
            .map(Secret::new)
            .ok_or(ConsoleError::SignIn)?;
        let operator = match sessions::find(&service.store, &token).await {
            Ok(operator) => operator,
            Err(ferropay::Error::Unauthorized | ferropay::Error::InsufficientScope { .. }) => {
                return Err(ConsoleError::SignIn);
            }
            Err(other) => return Err(other.into()),
        };
        Ok(Self {
            operator,
            csrf: sessions::csrf_token(&token),
        })
    }
}

/// A form that changes something: a live session that may act, the session's CSRF token in the
/// form's `csrf` field, and the other fields parsed into `T` (strings; unknown fields refused
/// with 400 naming them).
pub struct Act<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Ferropay> for Act<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, service: &Ferropay) -> ConsoleResult<Self> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, service).await?;
        let token = cookie_value(&parts.headers, SESSION_COOKIE)
            .map(Secret::new)
            .ok_or(ConsoleError::SignIn)?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), service)
            .await
            .map_err(|_| ferropay::Error::invalid("body", "must be a form of at most 64 KiB"))?;
        let mut fields = form_fields(&bytes)?;
        let csrf = fields.remove("csrf").unwrap_or_default();
        if !sessions::csrf_ok(&token, &csrf) {
            tracing::warn!(key_id = %session.operator.principal.key_id, "console form refused: CSRF token");
            return Err(ConsoleError::Csrf);
        }
        if !session.operator.may_act() {
            return Err(ConsoleError::ReadOnly);
        }
        let object = fields
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        let form = serde_path_to_error::deserialize(serde_json::Value::Object(object))
            .map_err(|e| ferropay::Error::invalid(e.path().to_string(), e.inner().to_string()))?;
        Ok(Self { session, form })
    }
}

/// A urlencoded form's fields; a field given twice or holding NUL is a 400 naming it.
fn form_fields(body: &[u8]) -> ConsoleResult<HashMap<String, String>> {
    let mut fields = HashMap::new();
    for (name, value) in form_urlencoded::parse(body).into_owned() {
        if name.contains('\0') || value.contains('\0') {
            return Err(
                ferropay::Error::invalid(name, "must not contain the NUL character").into(),
            );
        }
        if fields.insert(name.clone(), value).is_some() {
            return Err(ferropay::Error::invalid(name, "is given more than once").into());
        }
    }
    Ok(fields)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// Whether cookies must be `Secure`: ferropay is reached over https.
fn over_https(service: &Ferropay) -> bool {
    service.config.public_url.starts_with("https://")
}

fn set_cookie(response: &mut Response, cookie: Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn console_cookie<'a>(
    service: &Ferropay,
    name: &'a str,
    value: String,
    max_age_s: i64,
) -> Cookie<'a> {
    Cookie::build((name, value))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_https(service))
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build()
}

/// `GET /console/login`: the sign-in form (a signed-in operator goes to the overview).
pub async fn login_form(State(service): State<Ferropay>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && sessions::find(&service.store, &Secret::new(token))
            .await
            .is_ok()
    {
        return Redirect::to("/console").into_response();
    }
    login_page(&service, StatusCode::OK, None)
}

fn login_page(service: &Ferropay, status: StatusCode, problem: Option<&str>) -> Response {
    let nonce = sessions::nonce();
    let markup = html! {
        section.login {
            h1 { "ferropay console" }
            p.hint { "Sign in with an API key that has the " code { "operator" } " scope (or "
                code { "read_only" } " to look without acting). Make one with "
                code { "ferropay api-key create --name NAME --scope operator" } "." }
            @if let Some(problem) = problem {
                p.problem role="alert" data-error="login" { (problem) }
            }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(nonce);
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, layout::bare("Sign in", markup)).into_response();
    set_cookie(
        &mut response,
        console_cookie(service, LOGIN_COOKIE, nonce, LOGIN_FORM_TTL_S),
    );
    response
}

/// `POST /console/login`: the key in the body; a session cookie and the overview, or the form
/// again with 401 (the key is never echoed).
pub async fn login(
    State(service): State<Ferropay>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ConsoleResult<Response> {
    let fields = form_fields(&bytes)?;
    let expected = cookie_value(&headers, LOGIN_COOKIE);
    let sent = fields.get("csrf");
    if expected.is_none() || sent.is_none() || expected.as_ref() != sent {
        return Err(ConsoleError::Csrf);
    }
    let key = Secret::new(fields.get("key").map(|k| k.trim()).unwrap_or_default());
    match sessions::open(&service.store, &key).await {
        Ok(opened) => {
            let mut response = Redirect::to("/console").into_response();
            set_cookie(
                &mut response,
                console_cookie(
                    &service,
                    SESSION_COOKIE,
                    opened.token.expose().to_owned(),
                    SESSION_TTL_MS / 1_000,
                ),
            );
            set_cookie(
                &mut response,
                console_cookie(&service, LOGIN_COOKIE, String::new(), 0),
            );
            Ok(response)
        }
        Err(ferropay::Error::Unauthorized) => Ok(login_page(
            &service,
            StatusCode::UNAUTHORIZED,
            Some("That key is unknown or revoked."),
        )),
        Err(ferropay::Error::InsufficientScope { .. }) => Ok(login_page(
            &service,
            StatusCode::FORBIDDEN,
            Some("That key has neither the operator nor the read_only scope."),
        )),
        Err(other) => Err(other.into()),
    }
}

/// `POST /console/logout`: ends the session everywhere and clears the cookie.
pub async fn logout(
    State(service): State<Ferropay>,
    headers: HeaderMap,
    act: Result<Act<HashMap<String, String>>, ConsoleError>,
) -> ConsoleResult<Response> {
    match act {
        Ok(_) | Err(ConsoleError::ReadOnly) => {}
        Err(other) => return Err(other),
    }
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        sessions::close(&service.store, &Secret::new(token)).await?;
    }
    let mut response = Redirect::to("/console/login").into_response();
    set_cookie(
        &mut response,
        console_cookie(&service, SESSION_COOKIE, String::new(), 0),
    );
    Ok(response)
}
