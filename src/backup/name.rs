//! Backup file names: `backup-<UTC time>-v<schema version>.pgdump.age`, so that a listing
//! sorts by time and says which schema a backup needs, with the manifest beside it as
//! `<name>.json` and the file being written as `<name>.partial`.

use chrono::{DateTime, NaiveDateTime, Utc};

const PREFIX: &str = "backup-";
/// The suffix of a backup file.
pub(crate) const SUFFIX: &str = ".pgdump.age";
/// What a file being written carries after its final name.
pub(crate) const PARTIAL: &str = ".partial";
/// What the manifest carries after the backup's name.
pub(crate) const MANIFEST: &str = ".json";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The parts of a backup's file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupName {
    /// When the dump's snapshot was taken (to the second).
    pub time: DateTime<Utc>,
    /// The newest applied schema version, `none` for a database without history.
    pub version: String,
}

impl BackupName {
    /// A name for a backup taken at `time` of a schema at `version` (`None`: no history).
    pub(crate) fn new(time: DateTime<Utc>, version: Option<&str>) -> Self {
        let version = match version {
            Some(v) => v
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
            None => "none".to_owned(),
        };
        BackupName {
            time: time.with_nanosecond_zero(),
            version,
        }
    }

    /// The backup file's name.
    pub(crate) fn file_name(&self) -> String {
        format!(
            "{PREFIX}{}-v{}{SUFFIX}",
            self.time.format(TIME_FORMAT),
            self.version
        )
    }

    /// Parses a backup file's name (without `.partial` or `.json`).
    pub(crate) fn parse(file_name: &str) -> Option<Self> {
        let rest = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (time, version) = rest.split_once("-v")?;
        let time = NaiveDateTime::parse_from_str(time, TIME_FORMAT).ok()?;
        if version.is_empty() {
            return None;
        }
        Some(BackupName {
            time: time.and_utc(),
            version: version.to_owned(),
        })
    }
}

trait NanosZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanosZero for DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T03:15:07.5Z")
            .unwrap()
            .to_utc();
        let name = BackupName::new(t, Some("3"));
        assert_eq!(name.file_name(), "backup-20261202T031507Z-v3.pgdump.age");
        assert_eq!(BackupName::parse(&name.file_name()), Some(name));
        let none = BackupName::new(t, None);
        assert_eq!(none.file_name(), "backup-20261202T031507Z-vnone.pgdump.age");
        let odd = BackupName::new(t, Some("1.2/../x"));
        assert_eq!(odd.version, "1.2_.._x");
        assert!(BackupName::parse("backup-2026-v3.pgdump.age").is_none());
        assert!(BackupName::parse("notes.txt").is_none());
    }
}
