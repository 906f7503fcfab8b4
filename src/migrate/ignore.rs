//! Flyway's `ignoreMigrationPatterns`: which validation problems are only warned about.
//!
//! A pattern is `type:status`. The type is `*`, `versioned`, `repeatable`, or one version
//! (`1`, `2.1`: our extension, to ignore exactly the migration an operator knows about); the
//! status is `missing` (applied, no file, older than the newest file), `pending` (a file not
//! applied), `ignored` (a file not applied but older than the newest applied version),
//! `future` (applied, newer than every file) or `*`. Both parts are case-insensitive. As in
//! Flyway, the default is `*:future`, and a configured list replaces the default: an operator
//! who sets `versioned:missing` and still wants an older image to start on a newer schema
//! lists `*:future` too.

use super::MigrateError;
use super::version::Version;

/// The states a pattern can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Applied, no file, not newer than this binary's newest migration.
    Missing,
    /// A file not applied yet.
    Pending,
    /// A file not applied, older than the newest applied version (out of order).
    Ignored,
    /// Applied, newer than every file of this binary.
    Future,
}

impl Status {
    fn parse(word: &str) -> Option<Option<Status>> {
        Some(match word {
            "*" => None,
            "missing" => Some(Status::Missing),
            "pending" => Some(Status::Pending),
            "ignored" => Some(Status::Ignored),
            "future" => Some(Status::Future),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Which {
    Any,
    Versioned,
    Repeatable,
    Exactly(Version),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    which: Which,
    /// `None` for `*`.
    status: Option<Status>,
}

/// A parsed `ignore_migration_patterns` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePatterns {
    patterns: Vec<Pattern>,
}

impl Default for IgnorePatterns {
    /// Flyway's default, `*:future`: an older image still starts on a newer schema.
    fn default() -> Self {
        IgnorePatterns {
            patterns: vec![Pattern {
                which: Which::Any,
                status: Some(Status::Future),
            }],
        }
    }
}

impl IgnorePatterns {
    /// The patterns Flyway applies when none are configured (`*:future`).
    pub const DEFAULT: &'static str = "*:future";

    /// Parses patterns such as `*:future`, `versioned:missing`, `1:missing`. Each entry may
    /// itself be a comma-separated list (Flyway's command-line and environment form); blank
    /// entries are skipped, so an empty string means "ignore nothing".
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<IgnorePatterns, MigrateError> {
        let mut patterns = Vec::new();
        for raw in list.iter().flat_map(|s| s.as_ref().split(',')) {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            patterns.push(parse_one(raw)?);
        }
        Ok(IgnorePatterns { patterns })
    }

    /// Whether a problem of `status` about a versioned migration (`Some(version)`) or a
    /// repeatable one (`None`) is to be ignored.
    pub(crate) fn ignores(&self, version: Option<&Version>, status: Status) -> bool {
        self.patterns.iter().any(|p| {
            let which = match (&p.which, version) {
                (Which::Any, _) => true,
                (Which::Versioned, v) => v.is_some(),
                (Which::Repeatable, v) => v.is_none(),
                (Which::Exactly(want), Some(v)) => want == v,
                (Which::Exactly(_), None) => false,
            };
            which && p.status.is_none_or(|s| s == status)
        })
    }
}

fn parse_one(raw: &str) -> Result<Pattern, MigrateError> {
    let bad = |reason: String| MigrateError::BadIgnorePattern {
        value: raw.to_owned(),
        reason,
    };
    let Some((which, status)) = raw.split_once(':') else {
        return Err(bad(
            "a pattern has the form <type>:<status>, e.g. *:future, \
                        versioned:missing, 1:missing"
                .into(),
        ));
    };
    let which = match which.trim().to_ascii_lowercase().as_str() {
        "*" => Which::Any,
        "versioned" => Which::Versioned,
        "repeatable" => Which::Repeatable,
        other => Which::Exactly(Version::parse(other).map_err(|e| {
            bad(format!(
                "the type must be *, versioned, repeatable or a version ({e})"
            ))
        })?),
    };
    let status = Status::parse(&status.trim().to_ascii_lowercase())
        .ok_or_else(|| bad("the status must be missing, pending, ignored, future or *".into()))?;
    Ok(Pattern { which, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn the_default_ignores_only_future_migrations() {
        let d = IgnorePatterns::default();
        assert_eq!(
            d,
            IgnorePatterns::parse(&[IgnorePatterns::DEFAULT]).unwrap()
        );
        assert!(d.ignores(Some(&v("9")), Status::Future));
        assert!(d.ignores(None, Status::Future));
        assert!(!d.ignores(Some(&v("1")), Status::Missing));
    }

    #[test]
    fn types_and_statuses_match_as_flyway_documents() {
        let p = IgnorePatterns::parse(&["versioned:missing, repeatable:*", "2.1:ignored"]).unwrap();
        assert!(p.ignores(Some(&v("1")), Status::Missing));
        assert!(!p.ignores(None, Status::Missing) || p.ignores(None, Status::Pending));
        assert!(p.ignores(None, Status::Missing) && p.ignores(None, Status::Future));
        assert!(!p.ignores(Some(&v("1")), Status::Future));
        assert!(p.ignores(Some(&v("2.1.0")), Status::Ignored));
        assert!(!p.ignores(Some(&v("2")), Status::Ignored));

        let p = IgnorePatterns::parse(&["1:MISSING"]).unwrap();
        assert!(p.ignores(Some(&v("1")), Status::Missing));
        assert!(!p.ignores(Some(&v("2")), Status::Missing));
        assert!(!p.ignores(Some(&v("1")), Status::Future));

        let none = IgnorePatterns::parse(&[""]).unwrap();
        assert!(!none.ignores(Some(&v("9")), Status::Future));
    }

    #[test]
    fn bad_patterns_name_themselves_and_the_form() {
        for raw in ["missing", "*:gone", "v1:missing", "sometimes:*"] {
            let err = IgnorePatterns::parse(&[raw]).unwrap_err().to_string();
            assert!(err.contains(raw), "{err}");
        }
    }
}
