//! Usernames: what `/api/users/{username}` is addressed by.

use super::Invalid;

/// A username: 3 to 50 characters (the column is `varchar(50)`), ASCII letters, digits, `_`,
/// `-` and `.`, starting with a letter or digit. `me` is reserved for `/api/users/me`.
/// Case is kept as given; `Alice` and `alice` are different users, as in the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Username(String);

impl Username {
    /// Shortest allowed username.
    pub(crate) const MIN: usize = 3;
    /// Longest allowed username (the column's width).
    pub(crate) const MAX: usize = 50;

    /// Validates a username.
    pub(crate) fn parse(raw: &str) -> Result<Username, Invalid> {
        let len = raw.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(Invalid::new(
                "username",
                format!("must be {} to {} characters long", Self::MIN, Self::MAX),
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Invalid::new(
                "username",
                "may contain only ASCII letters, digits, `_`, `-` and `.`",
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(Invalid::new(
                "username",
                "must start with a letter or a digit",
            ));
        }
        if raw.eq_ignore_ascii_case("me") {
            return Err(Invalid::new("username", "`me` is reserved"));
        }
        Ok(Username(raw.to_owned()))
    }

    /// The username.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_usernames() {
        for ok in [
            "alice",
            "bob",
            "alpha_baboon",
            "A.b-c_9",
            "abc",
            &"x".repeat(50),
        ] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_usernames_naming_the_rule() {
        for (bad, rule) in [
            ("ab", "3 to 50"),
            (&"x".repeat(51), "3 to 50"),
            ("al ice", "only ASCII"),
            ("ålice", "only ASCII"),
            ("robert'); drop table users;--", "only ASCII"),
            ("_alice", "start with"),
            ("", "3 to 50"),
        ] {
            let err = Username::parse(bad).unwrap_err();
            assert_eq!(err.field, "username");
            assert!(err.reason.contains(rule), "{bad:?}: {err}");
        }
        assert!(Username::parse("ME").is_err());
    }
}
