//! Strict JSON strings for request bodies.
//!
//! poem-openapi's `String` also accepts a JSON number or boolean and turns it into text
//! (`"personality_type": false` would be stored as `"false"`), which the spec's
//! `type: string` does not allow. Request fields use these instead, through
//! `#[oai(deserialize_with = "...")]`: anything but a string (or, where the field may be
//! left out, `null`) is the usual 400 `invalid_json`.

use poem_openapi::types::{MaybeUndefined, ParseError, ParseResult};
use serde_json::Value;

/// A required string.
pub(crate) fn string(value: Option<Value>) -> ParseResult<String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        other => Err(ParseError::expected_type(other.unwrap_or_default())),
    }
}

/// An optional string: left out or `null` is `None`.
pub(crate) fn optional(value: Option<Value>) -> ParseResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ParseError::expected_type(other)),
    }
}

/// A string that may be left out (unchanged) or `null` (cleared).
pub(crate) fn maybe(value: Option<Value>) -> ParseResult<MaybeUndefined<String>> {
    match value {
        None => Ok(MaybeUndefined::Undefined),
        Some(Value::Null) => Ok(MaybeUndefined::Null),
        Some(Value::String(s)) => Ok(MaybeUndefined::Value(s)),
        Some(other) => Err(ParseError::expected_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_strings_are_strings() {
        assert_eq!(string(Some(json!("x"))).unwrap(), "x");
        for bad in [json!(false), json!(12), json!(null), json!([]), json!({})] {
            assert!(string(Some(bad.clone())).is_err(), "{bad}");
        }
        assert!(string(None).is_err());
        assert_eq!(optional(None).unwrap(), None);
        assert_eq!(optional(Some(json!(null))).unwrap(), None);
        assert!(optional(Some(json!(1))).is_err());
        assert!(matches!(maybe(None).unwrap(), MaybeUndefined::Undefined));
        assert!(matches!(
            maybe(Some(json!(null))).unwrap(),
            MaybeUndefined::Null
        ));
        assert!(maybe(Some(json!(true))).is_err());
    }
}
