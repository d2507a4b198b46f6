//! Extractors: the caller's API key from `Authorization: Bearer sk_…`, checked against the
//! scopes its route allows ([`crate::scopes`]), and a JSON body parsed into a typed value whose
//! errors name the wrong field (`orders[1].amount`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::secret::Secret;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, payload_too_large};

/// The id of the API key that authenticated the request, once the key is known to hold a scope
/// its route allows (401 for no or a bad key, 403 `insufficient_scope` for a key without one).
pub struct ApiKey(pub String);

impl FromRequestParts<Ferropay> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Ferropay) -> Result<Self, ApiError> {
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .map(|secret| Secret::new(secret.trim()))
            .ok_or(ApiError(ferropay::Error::Unauthorized))?;
        let principal = service.authenticate(&secret).await?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or("");
        principal.require(crate::scopes::allowed(&parts.method, route))?;
        Ok(Self(principal.key_id))
    }
}

/// The credentials of `Bearer <token>`; the scheme's name is case-insensitive (RFC 7235).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The `Idempotency-Key` header's value, if any (its rules are checked by the use case).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get("Idempotency-Key")
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::invalid("Idempotency-Key", "must be visible ASCII characters")
            })
        })
        .transpose()
}

/// Query parameters parsed into `T` (whose fields are strings, checked by the use case);
/// an unknown or repeated-badly parameter is a 400 naming it.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let mut object = serde_json::Map::new();
        for (name, value) in pairs {
            if name.contains('\0') || value.contains('\0') {
                return Err(ApiError::invalid(
                    name,
                    "must not contain the NUL character",
                ));
            }
            if object.contains_key(&name) {
                return Err(ApiError::invalid(name, "is given more than once"));
            }
            object.insert(name, serde_json::Value::String(value));
        }
        let typed =
            serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
                let (field, message) = describe(&e);
                ApiError::invalid(field, message)
            })?;
        Ok(Self(typed))
    }
}

/// A JSON body: both the raw value (for idempotency fingerprints) and its typed form.
pub struct JsonBody<T> {
    pub value: serde_json::Value,
    pub typed: T,
}

/// Why a body was refused: too large (413) or not what was asked for (400).
pub enum BodyRejection {
    TooLarge,
    Invalid(ApiError),
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        match self {
            Self::TooLarge => payload_too_large(),
            Self::Invalid(error) => error.into_response(),
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = BodyRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, BodyRejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    BodyRejection::TooLarge
                } else {
                    BodyRejection::Invalid(ApiError::invalid("body", rejection.body_text()))
                }
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            BodyRejection::Invalid(ApiError::invalid("body", format!("malformed JSON: {e}")))
        })?;
        if !value.is_object() {
            return Err(BodyRejection::Invalid(ApiError::invalid(
                "body",
                "must be a JSON object",
            )));
        }
        if let Some(field) = nul_in(&value, "") {
            return Err(BodyRejection::Invalid(ApiError::invalid(
                field,
                "must not contain the NUL character",
            )));
        }
        let typed = serde_path_to_error::deserialize(&value).map_err(|e| {
            let (field, message) = describe(&e);
            BodyRejection::Invalid(ApiError::invalid(field, message))
        })?;
        Ok(Self { value, typed })
    }
}

/// The path of the first string (or key) holding U+0000, which no database text column takes.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{}[{i}]", here()))),
        Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            let field = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if name.contains('\0') {
                return Some(here());
            }
            nul_in(item, &field)
        }),
        _ => None,
    }
}

/// The field a serde error is about: the path where it failed; for "missing field `x`" the
/// path is the parent, so the named field is added to it.
fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (missing, path.as_str()) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        amount: i64,
    }

    fn field_for(json: serde_json::Value) -> String {
        let error = serde_path_to_error::deserialize::<_, Outer>(&json).unwrap_err();
        describe(&error).0
    }

    #[test]
    fn errors_name_their_field() {
        assert_eq!(
            field_for(serde_json::json!({"items": [{"amount": 1.5}]})),
            "items[0].amount"
        );
        assert_eq!(
            field_for(serde_json::json!({"items": [{"amount": "7"}]})),
            "items[0].amount"
        );
        assert_eq!(
            field_for(serde_json::json!({"items": [{}]})),
            "items[0].amount"
        );
        assert_eq!(field_for(serde_json::json!({})), "items");
        assert_eq!(field_for(serde_json::json!({"items": [], "x": 1})), "x");
        assert_eq!(field_for(serde_json::json!({"items": 5})), "items");
    }

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let body = serde_json::json!({"a": "ok", "b": [{"c": "x\u{0}"}]});
        assert_eq!(nul_in(&body, "").as_deref(), Some("b[0].c"));
        assert_eq!(nul_in(&serde_json::json!({"a": ["fine"]}), ""), None);
    }
}
