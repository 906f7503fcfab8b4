//! A role name that is safe to write into SQL.

use std::fmt;

use super::RolesError;

/// A PostgreSQL role name: lowercase letters, digits and `_`, not starting with a digit, at
/// most 63 bytes. Narrower than PostgreSQL allows, so that a name never needs quoting to mean
/// itself and `psql`, logs and `pg_stat_activity` all show it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleName(String);

impl RoleName {
    /// Checks `name`; `what` names where it came from (`DATABASE_USER`, `--adopt-from`).
    pub(crate) fn parse(name: &str, what: &str) -> Result<RoleName, RolesError> {
        let bad = |reason: &str| RolesError::BadName {
            what: what.to_owned(),
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() || name.len() > 63 {
            return Err(bad("a role name has 1 to 63 characters"));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("a role name cannot start with a digit"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(
                "use only lowercase letters, digits and `_` (e.g. discbaboons_app_a)",
            ));
        }
        if name.starts_with("pg_") {
            return Err(bad("names starting with pg_ are reserved by PostgreSQL"));
        }
        Ok(RoleName(name.to_owned()))
    }

    /// The name as text (a bind parameter or a message).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an SQL identifier.
    pub(crate) fn ident(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// The name as an SQL string literal.
    pub(crate) fn literal(&self) -> String {
        format!("'{}'", self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for good in ["discbaboons_app_a", "app_user", "postgres", "_x1"] {
            assert!(RoleName::parse(good, "t").is_ok(), "{good}");
        }
        for bad in [
            "",
            "App",
            "1abc",
            "a\"; drop role x; --",
            "a b",
            "pg_monitor",
            &"x".repeat(64),
        ] {
            let err = RoleName::parse(bad, "DATABASE_USER")
                .unwrap_err()
                .to_string();
            assert!(err.contains("DATABASE_USER"), "{err}");
        }
    }
}
