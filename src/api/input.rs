//! Request fields that may be left out, validated by the domain types.
//!
//! Registration and the profile patch both take optional text fields; how a missing, `null`
//! or present value turns into a checked one is decided here, once. (Reading the JSON value
//! itself, strictly as a string, is `strict`'s part.)

use poem_openapi::types::MaybeUndefined;

use crate::domain::Invalid;

/// Validates an optional field.
pub(crate) fn optional<T>(
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Result<Option<T>, Invalid> {
    value.map(|v| parse(&v)).transpose()
}

/// Whether a patch touches a field, and its validated new value.
pub(crate) fn patch<T>(
    value: MaybeUndefined<String>,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Result<(bool, Option<T>), Invalid> {
    match value {
        MaybeUndefined::Undefined => Ok((false, None)),
        MaybeUndefined::Null => Ok((true, None)),
        MaybeUndefined::Value(v) => Ok((true, Some(parse(&v)?))),
    }
}
