//! Passwords, checked for length only (OWASP ASVS: at least 8 characters, long ones allowed,
//! no composition rules). The value is zeroed when dropped and never printed.

use zeroize::Zeroizing;

use super::Invalid;

/// A candidate password that meets the length rules. `Debug` prints `<redacted>`.
pub(crate) struct Password(Zeroizing<String>);

impl Password {
    /// Fewest characters accepted.
    pub(crate) const MIN: usize = 8;
    /// Most characters accepted: long enough for any passphrase, short enough that hashing
    /// cannot be used to burn CPU.
    pub(crate) const MAX: usize = 128;

    /// Checks the length of a new password. `field` names it in the error (`password`,
    /// `new_password`).
    pub(crate) fn parse(field: &'static str, raw: &str) -> Result<Password, Invalid> {
        let len = raw.chars().count();
        if len < Self::MIN {
            return Err(Invalid::new(
                field,
                format!("must be at least {} characters", Self::MIN),
            ));
        }
        if len > Self::MAX {
            return Err(Invalid::new(
                field,
                format!("must be at most {} characters", Self::MAX),
            ));
        }
        Ok(Password(Zeroizing::new(raw.to_owned())))
    }

    /// The plaintext, for the hasher only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules_and_redaction() {
        assert!(Password::parse("password", "1234567").is_err());
        assert!(Password::parse("password", "12345678").is_ok());
        assert!(Password::parse("password", &"x".repeat(129)).is_err());
        let err = Password::parse("new_password", "short").unwrap_err();
        assert_eq!(err.field, "new_password");
        assert!(!err.to_string().contains("short"));
        let p = Password::parse("password", "hunter2hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "<redacted>");
    }
}
