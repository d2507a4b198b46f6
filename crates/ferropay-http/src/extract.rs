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
/// its route allows (401 for no or a bad key, 403 `insufficient_scope` for a key without one)
/// and is within its rate (429 with `Retry-After` past it, [`crate::limits`]).
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
        if let Some(limiter) = parts.extensions.get::<crate::limits::KeyRateLimiter>() {
            limiter.check(&principal.key_id).map_err(|retry_after_s| {
                ApiError(ferropay::Error::RateLimited { retry_after_s })
            })?;
        }
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
                let field = if name.contains('\0') { "query" } else { &name };
                return Err(ApiError::invalid(
                    field,
                    "must not contain the NUL character (%00)",
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
        if !is_json(request.headers()) {
            return Err(BodyRejection::Invalid(ApiError(
                ferropay::Error::UnsupportedMediaType {
                    field: "Content-Type".into(),
                    message: "must be application/json".into(),
                },
            )));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    BodyRejection::TooLarge
                } else {
                    BodyRejection::Invalid(ApiError::invalid("body", rejection.body_text()))
                }
            })?;
        let value = crate::json::parse_strict(&bytes).map_err(|refusal| {
            BodyRejection::Invalid(ApiError::invalid(refusal.field, refusal.message))
        })?;
        if !value.is_object() {
            return Err(BodyRejection::Invalid(ApiError::invalid(
                "body",
                "must be a JSON object",
            )));
        }
        let typed = serde_path_to_error::deserialize(&value).map_err(|e| {
            let (field, message) = describe(&e);
            BodyRejection::Invalid(ApiError::invalid(field, message))
        })?;
        Ok(Self { value, typed })
    }
}

/// Whether the request says its body is JSON: `application/json` or `application/…+json`, with
/// any parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The one path parameter of a route (`{id}`, `{seller_id}`, …; no route of ours has two),
/// checked at the edge: valid UTF-8 once percent-decoded, 1 to [`PATH_ID_MAX_CHARS`]
/// characters, no control character (U+0000 included, which no database text column takes).
/// A refusal is 400 naming the parameter.
pub struct PathId(pub String);

/// The longest path parameter accepted; no id, seller id or date of ours is longer.
pub const PATH_ID_MAX_CHARS: usize = 255;

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::Path;
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let Path(pairs) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(error) => match error.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        ApiError::invalid(key.clone(), "is not valid UTF-8 once percent-decoded")
                    }
                    _ => ApiError::invalid("path", error.body_text()),
                },
                other => ApiError::invalid("path", other.body_text()),
            })?;
        let Ok([(name, value)]) = <[(String, String); 1]>::try_from(pairs) else {
            return Err(ApiError(ferropay::Error::Internal(
                "a route with PathId has exactly one path parameter".into(),
            )));
        };
        check_path_id(&name, &value)?;
        Ok(Self(value))
    }
}

/// The two path parameters of a route that has two (`/v1/sellers/{seller_id}/psp_accounts/{psp}`),
/// each checked as [`PathId`] checks its one.
pub struct PathIds(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::Path;
        let Path(pairs) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid("path", rejection.body_text()))?;
        let Ok([(first_name, first), (second_name, second)]) =
            <[(String, String); 2]>::try_from(pairs)
        else {
            return Err(ApiError(ferropay::Error::Internal(
                "a route with PathIds has exactly two path parameters".into(),
            )));
        };
        check_path_id(&first_name, &first)?;
        check_path_id(&second_name, &second)?;
        Ok(Self(first, second))
    }
}

fn check_path_id(name: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid(
            name,
            "must not contain the NUL character (%00)",
        ));
    }
    if value.is_empty()
        || value.chars().count() > PATH_ID_MAX_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            name,
            format!("must be 1 to {PATH_ID_MAX_CHARS} characters, without control characters"),
        ));
    }
    Ok(())
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
}
