//! Reading `/v1/*` request bodies: a JSON object, and its fields checked one by one so that a
//! 400 names the field that is wrong.

use serde_json::{Map, Value};

use crate::errors::ApiError;

/// Longest accepted reference, destination or other identifier, in characters.
pub(crate) const TEXT_MAX_CHARS: usize = 255;
/// Longest accepted URL, in characters.
const URL_MAX_CHARS: usize = 2_048;

/// The body parsed as a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::invalid_request(
            "invalid_json",
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

/// The fields of a JSON object body.
pub(crate) struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The fields of `body`; an error if it is not an object (`json_object` refuses that first).
    pub(crate) fn of(body: &'a Value) -> Result<Self, ApiError> {
        body.as_object().map(Fields).ok_or_else(|| {
            ApiError::invalid_request("invalid_json", "the body must be a JSON object")
        })
    }

    /// An amount in minor units: an integer > 0 that fits in i64.
    pub(crate) fn amount(&self, name: &str) -> Result<i64, ApiError> {
        match self.0.get(name).and_then(Value::as_i64) {
            Some(amount) if amount > 0 => Ok(amount),
            _ => Err(ApiError::invalid_field(format!(
                "{name} must be an integer count of minor units > 0"
            ))),
        }
    }

    /// An ISO 4217-shaped currency code: three uppercase ASCII letters.
    pub(crate) fn currency(&self, name: &str) -> Result<String, ApiError> {
        match self.0.get(name).and_then(Value::as_str) {
            Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
                Ok(code.to_owned())
            }
            _ => Err(ApiError::invalid_field(format!(
                "{name} must be a currency code of three uppercase letters"
            ))),
        }
    }

    /// A required string of 1..=TEXT_MAX_CHARS characters.
    pub(crate) fn text(&self, name: &str) -> Result<String, ApiError> {
        self.optional_text(name)?
            .ok_or_else(|| ApiError::invalid_field(format!("{name} is required")))
    }

    /// An optional string of 1..=TEXT_MAX_CHARS characters (`null` counts as absent).
    pub(crate) fn optional_text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text))
                if !text.is_empty() && text.chars().count() <= TEXT_MAX_CHARS =>
            {
                Ok(Some(text.clone()))
            }
            Some(_) => Err(ApiError::invalid_field(format!(
                "{name} must be a string of 1 to {TEXT_MAX_CHARS} characters"
            ))),
        }
    }

    /// An absolute http(s) URL of visible ASCII (it ends up in a `Location` header).
    pub(crate) fn url(&self, name: &str) -> Result<String, ApiError> {
        match self.0.get(name).and_then(Value::as_str) {
            Some(url)
                if (url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() <= URL_MAX_CHARS
                    && url.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(url.to_owned())
            }
            _ => Err(ApiError::invalid_field(format!(
                "{name} must be an absolute http:// or https:// URL without spaces"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_checked_and_named() {
        let body = json!({
            "amount": 1500, "float": 1.5, "zero": 0, "currency": "USD", "lower": "usd",
            "reference": "pay_1", "empty": "", "url": "https://shop.example/a?b=c",
            "spaced": "https://shop.example/a b", "relative": "/thanks"
        });
        let fields = Fields::of(&body).unwrap();
        assert_eq!(fields.amount("amount").unwrap(), 1500);
        for bad in ["float", "zero", "missing", "currency"] {
            let error = format!("{:?}", fields.amount(bad).unwrap_err());
            assert!(error.contains(bad), "{error}");
        }
        assert_eq!(fields.currency("currency").unwrap(), "USD");
        assert!(fields.currency("lower").is_err());
        assert_eq!(fields.text("reference").unwrap(), "pay_1");
        assert!(fields.text("empty").is_err());
        assert!(fields.text("missing").is_err());
        assert_eq!(fields.optional_text("missing").unwrap(), None);
        assert!(fields.url("url").is_ok());
        assert!(fields.url("spaced").is_err());
        assert!(fields.url("relative").is_err());
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert!(json_object(b"{\"a\":1}").is_ok());
        assert!(json_object(b"[1]").is_err());
        assert!(json_object(b"{nope").is_err());
    }
}
