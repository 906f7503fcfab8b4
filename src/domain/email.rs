//! Email addresses, as stored in `user_profiles.email` (`varchar(255)`, unique).

use super::Invalid;

/// An email address: trimmed and lower-cased (so the unique constraint catches
/// `Alice@Example.com` against `alice@example.com`), at most 255 characters, one `@` with a
/// local part of at most 64 characters and a domain with a dot. No attempt at RFC 5322: the
/// only real check of an address is sending mail to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Email(String);

impl Email {
    /// Longest allowed address (the column's width).
    pub(crate) const MAX: usize = 255;

    /// Validates and normalizes an address.
    pub(crate) fn parse(raw: &str) -> Result<Email, Invalid> {
        let value = raw.trim().to_lowercase();
        let bad = |reason: &str| Err(Invalid::new("email", reason));
        if value.chars().count() > Self::MAX {
            return bad("must be at most 255 characters");
        }
        let Some((local, domain)) = value.split_once('@') else {
            return bad("must be an address like name@example.com");
        };
        if local.is_empty() || local.len() > 64 {
            return bad("the part before `@` must be 1 to 64 characters");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control())
            || domain.contains('@')
            || local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']'])
        {
            return bad("must be an address like name@example.com");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return bad("the domain after `@` must look like example.com");
        }
        Ok(Email(value))
    }

    /// The normalized address.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_valid_addresses() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        assert!(Email::parse("a.b+tag@sub.example.co.uk").is_ok());
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "alice@@example.com",
            "al ice@example.com",
            "alice@exa_mple.com",
            "alice@.example.com",
            "<alice>@example.com",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
