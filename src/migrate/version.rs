//! Flyway migration versions: dot-separated numbers, compared numerically part by part.
//!
//! `V2_1__x.sql` is version `2.1`; `1.10` is newer than `1.9`; `1.0` and `1` are the same
//! version (trailing zero parts do not count), exactly as Flyway's `MigrationVersion`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed migration version. Equality and order ignore leading zeros and trailing `.0`s.
#[derive(Debug, Clone)]
pub struct Version {
    /// As written (with `_` turned into `.`): what the history's `version` column stores.
    text: String,
    /// The numeric parts without leading zeros, trailing zero parts removed.
    parts: Vec<String>,
}

impl Version {
    /// Parses `2`, `2.1` or `2_1`. Every part must be a non-empty run of ASCII digits.
    pub fn parse(raw: &str) -> Result<Version, String> {
        let text = raw.replace('_', ".");
        if text.is_empty() {
            return Err("the version is empty".into());
        }
        let mut parts = Vec::new();
        for part in text.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{raw}` is not a version: use digits separated by `.` or `_` (2, 2.1, 2_1)"
                ));
            }
            let trimmed = part.trim_start_matches('0');
            parts.push(if trimmed.is_empty() { "0" } else { trimmed }.to_owned());
        }
        while parts.len() > 1 && parts.last().is_some_and(|p| p == "0") {
            parts.pop();
        }
        Ok(Version { text, parts })
    }

    /// The version as stored in `flyway_schema_history.version`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compares two digit strings without leading zeros, as unbounded integers.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        for i in 0..len {
            let a = self.parts.get(i).map_or("0", String::as_str);
            let b = other.parts.get(i).map_or("0", String::as_str);
            match cmp_digits(a, b) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn underscores_become_dots() {
        assert_eq!(v("2_1").as_str(), "2.1");
        assert_eq!(v("2_1"), v("2.1"));
    }

    #[test]
    fn parts_compare_as_numbers() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("10") > v("9"));
        assert!(v("2") > v("1.99"));
        assert!(v("1.0.1") > v("1"));
        assert!(v("12345678901234567890123") > v("12345678901234567890122"));
    }

    #[test]
    fn trailing_zeros_and_leading_zeros_do_not_count() {
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1.0.0"), v("1"));
        assert_eq!(v("001"), v("1"));
        assert_eq!(v("0"), v("0.0"));
        assert_eq!(v("001").as_str(), "001", "the text is kept as written");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "a", "1..2", "1.", ".1", "1-2", "1.x", "v1"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
