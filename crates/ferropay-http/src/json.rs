//! Request bodies read strictly: JSON parsed into a [`serde_json::Value`] by serde_json's own
//! parser, refusing what it would take silently: a key given twice in one object (serde_json
//! keeps the last, so `"amount":100,"amount":100000` would move the second) and a string or key
//! holding U+0000 (no database text column takes it). Each refusal names the field, as
//! `orders[1].amount`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body was refused: the field and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

/// Parses `bytes` as one JSON value. A syntax error is refused as the field `body`.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, Refusal> {
    let refusal = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        path: String::new(),
        refusal: &refusal,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(error) => Err(refusal.into_inner().unwrap_or_else(|| Refusal {
            field: "body".to_owned(),
            message: format!("malformed JSON: {error}"),
        })),
    }
}

/// One value being read at `path`; a refusal is kept in `refusal` (serde's error type only
/// carries text) and the parse stops.
struct Strict<'r> {
    path: String,
    refusal: &'r RefCell<Option<Refusal>>,
}

impl Strict<'_> {
    fn field(&self) -> String {
        if self.path.is_empty() {
            "body".to_owned()
        } else {
            self.path.clone()
        }
    }

    fn refuse<E: de::Error>(&self, field: String, message: &str) -> E {
        let error = E::custom(format!("`{field}` {message}"));
        *self.refusal.borrow_mut() = Some(Refusal {
            field,
            message: message.to_owned(),
        });
        error
    }

    fn child(&self, path: String) -> Strict<'_> {
        Strict {
            path,
            refusal: self.refusal,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const NUL: &str = "must not contain the NUL character (U+0000)";

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so every number it parses is finite.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        if value.contains('\0') {
            return Err(self.refuse(self.field(), NUL));
        }
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        if value.contains('\0') {
            return Err(self.refuse(self.field(), NUL));
        }
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) =
            items.next_element_seed(self.child(format!("{}[{}]", self.field(), values.len())))?
        {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if key.contains('\0') {
                return Err(self.refuse(self.field(), "has a key holding the NUL character"));
            }
            if object.contains_key(&key) {
                return Err(self.refuse(path, "is given more than once in the same object"));
            }
            let value = entries.next_value_seed(self.child(path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Refusal {
        parse_strict(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_key_given_twice_is_refused_by_its_path() {
        let refusal = refused(r#"{"order_id":"o","amount":100,"amount":100000}"#);
        assert_eq!(refusal.field, "amount");
        let nested = refused(r#"{"orders":[{"a":1},{"a":1,"b":2,"a":3}]}"#);
        assert_eq!(nested.field, "orders[1].a");
        // The same key in two objects is fine.
        assert!(parse_strict(br#"{"x":{"a":1},"y":{"a":1}}"#).is_ok());
    }

    #[test]
    fn a_nul_is_refused_where_it_is() {
        assert_eq!(refused(r#"{"a":{"b":["ok","x\u0000"]}}"#).field, "a.b[1]");
        assert_eq!(refused(r#"{"a\u0000":1}"#).field, "body");
        assert_eq!(refused(r#""\u0000""#).field, "body");
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"n":-1,"u":18446744073709551615,"f":1e30,"s":"é\n","z":null,"t":[true,false],"o":{}}"#;
        let strict = parse_strict(text.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, plain);
        assert_eq!(refused("{\"a\": 1").field, "body");
        assert_eq!(refused("{} {}").field, "body");
        assert_eq!(refused("").field, "body");
    }
}
