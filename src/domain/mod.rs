//! The domain's values, each with a constructor that validates: once a `Username` exists it
//! is a valid one, so handlers and SQL never check again.
//!
//! Errors name the field and the rule, and never echo a password.

mod email;
mod password;
mod profile;
mod username;

pub(crate) use email::Email;
pub(crate) use password::Password;
pub(crate) use profile::{Bio, Location, Name, PersonalityType};
pub(crate) use username::Username;

/// A value that breaks a rule: which field, and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct Invalid {
    /// The JSON field name.
    pub field: &'static str,
    /// The rule, phrased for the client.
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Trims surrounding whitespace and checks a length in characters, for the free-text fields.
pub(crate) fn bounded_text(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    let value = raw.trim();
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}
