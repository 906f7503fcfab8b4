//! The process exit codes, and the one place that decides them. They are part of the
//! interface (init containers, scripts and humans branch on them), so they live in one enum
//! here and in one table in the README, and a test keeps the two equal.
//!
//! Library errors know nothing of exit codes (as in uv and ripgrep): each library error type
//! gets one exhaustive `match` here, so a variant nobody mapped does not compile. [`classify`]
//! walks an `anyhow` chain and returns the code of the outermost error it knows; anything else
//! is a plain failure (1).

use std::fmt;

use crate::auth::WeakSecret;
use crate::backup::BackupError;
use crate::config::ConfigError;
use crate::db::{NotReady, WaitError};
use crate::migrate::MigrateError;
use crate::roles::RolesError;
use crate::secrets::{SealedError, ValueError};
use crate::server::StartError;
use crate::telemetry::TelemetryError;

/// Every exit code `app` uses. Values are stable: never renumber, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An unexpected error: a bug, or an I/O error with no better classification. Also what
    /// `app healthcheck` answers for "not ready": Docker's `HEALTHCHECK` knows only 0 and 1.
    Failure = 1,
    /// The command line is wrong (clap's own code for usage errors).
    Usage = 2,
    /// The configuration is invalid: file, environment, database URL or a setting's value.
    Config = 3,
    /// The database could not be reached or did not become ready in time.
    DatabaseUnavailable = 4,
    /// The database refused our credentials (wrong user or password, pg_hba.conf).
    DatabaseAuth = 5,

    /// `migrate validate` (or the validation before `migrate`) found a mismatch: checksum,
    /// description, a missing migration. Also a non-empty schema without history, and
    /// `adopt` on an untracked schema that it may only baseline with `--baseline-on-migrate`
    /// (or that is empty).
    MigrationValidation = 10,
    /// A migration's SQL failed; it was rolled back and no history row was written.
    MigrationFailed = 11,
    /// Another migrator held the lock for longer than the lock timeout.
    MigrationLockTimeout = 12,
    /// The schema is older than this binary's migrations: run `app migrate` first.
    SchemaOutdated = 13,
    /// The history holds a failed migration (left by Flyway or a crash) that needs repair.
    MigrationHistoryFailed = 14,
    /// A migration file is unusable: bad name, not UTF-8, mixes transactional and
    /// non-transactional statements.
    MigrationInvalid = 15,
    /// The live schema differs from what the migrations build: adoption (`migrate repair` or
    /// `adopt`) was refused, and the diff names each object.
    SchemaDrift = 16,

    /// The sealed secrets file is malformed (not YAML, bad armor, unknown version, duplicate key).
    SealedMalformed = 20,
    /// No identity (private key) was found, or it could not be read.
    IdentityMissing = 21,
    /// None of the identities can decrypt a value: wrong key, or not re-sealed after rotation.
    IdentityMismatch = 22,
    /// A value failed age's integrity check: the ciphertext was altered.
    SealedTampered = 23,
    /// A value is bound to another key name: values were swapped or copied between keys.
    SealedWrongKey = 24,
    /// The file or a value is bound to another context than the deployment expects
    /// (`sealed.context`): another environment's file, or a value copied from one.
    SealedWrongContext = 25,
    /// A sealed key is missing, or an operation was refused to protect plaintext.
    SealedRefused = 26,

    /// The server could not start: port in use, weak JWT secret in prod, and the like.
    ServeStartup = 30,

    /// The backup volume is full; the partial backup was removed.
    BackupNoSpace = 40,
    /// The dump did not complete (pg_dump failed or was cut short, or the stream is not
    /// `pg_dump --format=custom`); no backup was written.
    BackupDumpFailed = 41,
    /// A backup failed verification: checksum, age's integrity check, truncation, not a dump.
    BackupCorrupt = 42,
    /// No backup where one was asked for: a missing file, or no complete backup in the directory.
    BackupNotFound = 43,
    /// The restore drill restored a backup that differs from its manifest, or fails
    /// `migrate validate`.
    RestoreDrillFailed = 44,

    /// `db roles`: unusable input: a sealed key it needs is missing, a role name is invalid
    /// or clashes with another, or `--adopt-from` names no role.
    RolesInput = 50,
    /// `migrate`'s login may not `set role` to `migrate.owner_role` (not a member, or no such
    /// role): run `app db roles`.
    RolesNotMember = 51,
    /// `db roles retire` refused: the sealed file still names that login, or it is no login
    /// of a pair (a group role, a superuser, no such role).
    RolesRetireRefused = 52,
    /// The admin login of `db roles` may not create roles or grant.
    RolesAdminPrivilege = 53,
    /// `db roles --print-sql` refused to print password verifiers to a terminal.
    RolesTerminal = 54,
}

impl ExitCode {
    /// Every exit code, in numeric order. The test `all_lists_every_variant` matches on the
    /// enum exhaustively, so a new variant does not compile until it is listed there and here.
    pub const ALL: [ExitCode; 31] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Config,
        ExitCode::DatabaseUnavailable,
        ExitCode::DatabaseAuth,
        ExitCode::MigrationValidation,
        ExitCode::MigrationFailed,
        ExitCode::MigrationLockTimeout,
        ExitCode::SchemaOutdated,
        ExitCode::MigrationHistoryFailed,
        ExitCode::MigrationInvalid,
        ExitCode::SchemaDrift,
        ExitCode::SealedMalformed,
        ExitCode::IdentityMissing,
        ExitCode::IdentityMismatch,
        ExitCode::SealedTampered,
        ExitCode::SealedWrongKey,
        ExitCode::SealedWrongContext,
        ExitCode::SealedRefused,
        ExitCode::ServeStartup,
        ExitCode::BackupNoSpace,
        ExitCode::BackupDumpFailed,
        ExitCode::BackupCorrupt,
        ExitCode::BackupNotFound,
        ExitCode::RestoreDrillFailed,
        ExitCode::RolesInput,
        ExitCode::RolesNotMember,
        ExitCode::RolesRetireRefused,
        ExitCode::RolesAdminPrivilege,
        ExitCode::RolesTerminal,
    ];

    /// The numeric code handed to the operating system.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

impl From<&ConfigError> for ExitCode {
    fn from(err: &ConfigError) -> Self {
        match err {
            ConfigError::FileMissing(_)
            | ConfigError::Figment(_)
            | ConfigError::Invalid { .. }
            | ConfigError::DatabaseUrl { .. }
            | ConfigError::Telemetry(_) => ExitCode::Config,
        }
    }
}

impl From<&TelemetryError> for ExitCode {
    fn from(err: &TelemetryError) -> Self {
        match err {
            // Both are settings (`log.level`, `log.dir`) or `LOG_LEVEL`.
            TelemetryError::Filter { .. } | TelemetryError::Dir { .. } => ExitCode::Config,
        }
    }
}

impl From<&NotReady> for ExitCode {
    /// What a final failed attempt to reach the database means.
    fn from(reason: &NotReady) -> Self {
        match reason {
            NotReady::AuthFailed(_) | NotReady::NotAllowed(_) => ExitCode::DatabaseAuth,
            NotReady::Configuration(_) => ExitCode::Config,
            NotReady::ConnectionRefused
            | NotReady::Dns(_)
            | NotReady::Timeout
            | NotReady::DatabaseMissing(_)
            | NotReady::StartingUp
            | NotReady::TooManyConnections
            | NotReady::Tls(_)
            | NotReady::Other(_) => ExitCode::DatabaseUnavailable,
        }
    }
}

impl From<&WaitError> for ExitCode {
    fn from(err: &WaitError) -> Self {
        match err {
            // A timeout is "unavailable" whatever the last reason was: the reason is in the
            // message, and init-container tooling branches on the timeout.
            WaitError::Timeout { .. } => ExitCode::DatabaseUnavailable,
            WaitError::Unreachable { reason, .. } | WaitError::Unusable { reason, .. } => {
                reason.into()
            }
        }
    }
}

impl From<&MigrateError> for ExitCode {
    fn from(err: &MigrateError) -> Self {
        match err {
            MigrateError::InvalidScript { .. }
            | MigrateError::DuplicateVersion { .. }
            | MigrateError::MixedScript { .. }
            | MigrateError::Location { .. } => ExitCode::MigrationInvalid,
            MigrateError::BadVersion { .. } | MigrateError::BadIgnorePattern { .. } => {
                ExitCode::Usage
            }
            MigrateError::Validation { .. }
            | MigrateError::NonEmptySchema { .. }
            | MigrateError::BaselineNeeded { .. }
            | MigrateError::NothingToAdopt { .. }
            | MigrateError::NoHistory { .. }
            | MigrateError::BaselineRefused { .. } => ExitCode::MigrationValidation,
            MigrateError::FailedInHistory { .. } => ExitCode::MigrationHistoryFailed,
            MigrateError::Failed(_) => ExitCode::MigrationFailed,
            MigrateError::LockTimeout { .. } => ExitCode::MigrationLockTimeout,
            MigrateError::Outdated { .. } => ExitCode::SchemaOutdated,
            MigrateError::SchemaDrift { .. } => ExitCode::SchemaDrift,
            MigrateError::Database(e) if crate::db::is_unavailable(e) => {
                ExitCode::DatabaseUnavailable
            }
            MigrateError::Database(_) => ExitCode::Failure,
        }
    }
}

impl From<&SealedError> for ExitCode {
    fn from(err: &SealedError) -> Self {
        match err {
            SealedError::Malformed { .. } => ExitCode::SealedMalformed,
            SealedError::FileMissing { .. } | SealedError::KeyMissing { .. } => {
                ExitCode::SealedRefused
            }
            SealedError::Value { error, .. } => error.into(),
            SealedError::WrongContext { .. } => ExitCode::SealedWrongContext,
            SealedError::NoIdentity { .. } | SealedError::BadIdentity { .. } => {
                ExitCode::IdentityMissing
            }
            SealedError::BadRecipient { .. } | SealedError::BadName { .. } => ExitCode::Usage,
            SealedError::Refused(_) => ExitCode::SealedRefused,
            SealedError::Io { .. } => ExitCode::Failure,
        }
    }
}

impl From<&ValueError> for ExitCode {
    fn from(err: &ValueError) -> Self {
        match err {
            ValueError::Malformed(_) | ValueError::NotText => ExitCode::SealedMalformed,
            ValueError::NoMatchingIdentity { .. } => ExitCode::IdentityMismatch,
            ValueError::Tampered => ExitCode::SealedTampered,
            ValueError::IdentityLocked => ExitCode::IdentityMissing,
            ValueError::Unbound | ValueError::WrongKey { .. } => ExitCode::SealedWrongKey,
            ValueError::WrongContext { .. } => ExitCode::SealedWrongContext,
        }
    }
}

impl From<&WeakSecret> for ExitCode {
    fn from(_: &WeakSecret) -> Self {
        ExitCode::ServeStartup
    }
}

impl From<&StartError> for ExitCode {
    fn from(err: &StartError) -> Self {
        match err {
            StartError::Config(e) => e.into(),
            StartError::Schema(e) => e.into(),
            StartError::Bind { .. } | StartError::Jwt(_) => ExitCode::ServeStartup,
        }
    }
}

impl From<&BackupError> for ExitCode {
    fn from(err: &BackupError) -> Self {
        match err {
            BackupError::NoSpace { .. } => ExitCode::BackupNoSpace,
            BackupError::DumpFailed { .. } => ExitCode::BackupDumpFailed,
            BackupError::Corrupt { .. } => ExitCode::BackupCorrupt,
            BackupError::NotFound { .. } => ExitCode::BackupNotFound,
            BackupError::NoMatchingIdentity { .. } => ExitCode::IdentityMismatch,
            BackupError::DrillFailed { .. } => ExitCode::RestoreDrillFailed,
            BackupError::Refused(_) => ExitCode::Usage,
            BackupError::Io { .. } => ExitCode::Failure,
        }
    }
}

impl From<&RolesError> for ExitCode {
    fn from(err: &RolesError) -> Self {
        match err {
            RolesError::BadName { .. }
            | RolesError::Missing { .. }
            | RolesError::Clash { .. }
            | RolesError::NoSuchRole { .. } => ExitCode::RolesInput,
            RolesError::NotMember { .. } => ExitCode::RolesNotMember,
            RolesError::RetireRefused { .. } => ExitCode::RolesRetireRefused,
            RolesError::AdminPrivilege { .. } => ExitCode::RolesAdminPrivilege,
            RolesError::Terminal => ExitCode::RolesTerminal,
            RolesError::Database(e) if crate::db::is_unavailable(e) => {
                ExitCode::DatabaseUnavailable
            }
            RolesError::Database(_) => ExitCode::Failure,
        }
    }
}

/// An error that carries its exit code explicitly, for CLI code with no library error to wrap.
#[derive(Debug)]
pub struct Coded {
    /// The code the process ends with.
    pub code: ExitCode,
    /// What went wrong, for the user.
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Shorthand for an `anyhow::Error` with an explicit exit code.
pub(crate) fn coded(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// Tries each listed error type against one link of an error chain.
macro_rules! first_code {
    ($cause:expr, $($ty:ty),+ $(,)?) => {
        $(
            if let Some(e) = $cause.downcast_ref::<$ty>() {
                return Some(ExitCode::from(e));
            }
        )+
    };
}

impl From<&Coded> for ExitCode {
    fn from(err: &Coded) -> Self {
        err.code
    }
}

/// The code of one link of an error chain, if it is an error this file maps. Every type with a
/// `From<&T> for ExitCode` above belongs in this list (the test `every_mapped_type_is_found`
/// checks one value of each).
fn code_of(cause: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    first_code!(
        cause,
        Coded,
        ConfigError,
        TelemetryError,
        WaitError,
        StartError,
        WeakSecret,
        SealedError,
        ValueError,
        MigrateError,
        BackupError,
        RolesError,
    );
    None
}

/// The exit code for an error that reached `main`: that of the outermost error in the chain
/// that has one, else [`ExitCode::Failure`].
pub fn classify(err: &anyhow::Error) -> ExitCode {
    err.chain().find_map(code_of).unwrap_or(ExitCode::Failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_finds_a_code_under_context() {
        let err = coded(ExitCode::SchemaOutdated, "schema is at V3").context("starting serve");
        assert_eq!(classify(&err), ExitCode::SchemaOutdated);
    }

    #[test]
    fn unclassified_errors_are_plain_failures() {
        let err = anyhow::anyhow!("boom");
        assert_eq!(classify(&err), ExitCode::Failure);
    }

    #[test]
    fn every_mapped_type_is_found() {
        let errors: Vec<(anyhow::Error, ExitCode)> = vec![
            (
                ConfigError::FileMissing("x.toml".into()).into(),
                ExitCode::Config,
            ),
            (
                TelemetryError::Filter {
                    level: "x".into(),
                    reason: "y".into(),
                }
                .into(),
                ExitCode::Config,
            ),
            (
                WaitError::Unreachable {
                    target: "t".into(),
                    reason: NotReady::AuthFailed("no".into()),
                }
                .into(),
                ExitCode::DatabaseAuth,
            ),
            (
                StartError::Schema(MigrateError::Validation { problems: vec![] }).into(),
                ExitCode::MigrationValidation,
            ),
            (
                SealedError::Refused("no".into()).into(),
                ExitCode::SealedRefused,
            ),
            (ValueError::Tampered.into(), ExitCode::SealedTampered),
            (
                MigrateError::LockTimeout {
                    waited: std::time::Duration::ZERO,
                    holder: "h".into(),
                }
                .into(),
                ExitCode::MigrationLockTimeout,
            ),
            (
                BackupError::NoSpace {
                    dir: "/backups".into(),
                    written: 1,
                }
                .into(),
                ExitCode::BackupNoSpace,
            ),
            (RolesError::Terminal.into(), ExitCode::RolesTerminal),
        ];
        for (err, code) in errors {
            let err = err.context("while testing");
            assert_eq!(classify(&err), code, "{err:#}");
        }
        // WeakSecret has no public constructor; it reaches `main` inside StartError::Jwt.
    }

    #[test]
    fn all_lists_every_variant() {
        for (index, code) in ExitCode::ALL.into_iter().enumerate() {
            // Exhaustive on purpose: a new variant does not compile until it is given its
            // place here, and then this test fails until it is in ALL at that place too.
            let position = match code {
                ExitCode::Ok => 0,
                ExitCode::Failure => 1,
                ExitCode::Usage => 2,
                ExitCode::Config => 3,
                ExitCode::DatabaseUnavailable => 4,
                ExitCode::DatabaseAuth => 5,
                ExitCode::MigrationValidation => 6,
                ExitCode::MigrationFailed => 7,
                ExitCode::MigrationLockTimeout => 8,
                ExitCode::SchemaOutdated => 9,
                ExitCode::MigrationHistoryFailed => 10,
                ExitCode::MigrationInvalid => 11,
                ExitCode::SchemaDrift => 12,
                ExitCode::SealedMalformed => 13,
                ExitCode::IdentityMissing => 14,
                ExitCode::IdentityMismatch => 15,
                ExitCode::SealedTampered => 16,
                ExitCode::SealedWrongKey => 17,
                ExitCode::SealedWrongContext => 18,
                ExitCode::SealedRefused => 19,
                ExitCode::ServeStartup => 20,
                ExitCode::BackupNoSpace => 21,
                ExitCode::BackupDumpFailed => 22,
                ExitCode::BackupCorrupt => 23,
                ExitCode::BackupNotFound => 24,
                ExitCode::RestoreDrillFailed => 25,
                ExitCode::RolesInput => 26,
                ExitCode::RolesNotMember => 27,
                ExitCode::RolesRetireRefused => 28,
                ExitCode::RolesAdminPrivilege => 29,
                ExitCode::RolesTerminal => 30,
            };
            assert_eq!(position, index, "{code:?} is out of place in ExitCode::ALL");
        }
        let mut codes: Vec<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), ExitCode::ALL.len(), "ALL lists a code twice");
        assert!(codes.is_sorted(), "ALL is in numeric order");
    }

    /// The `| code | meaning |` rows under the README's `## Exit codes`.
    fn readme_codes() -> Vec<u8> {
        const README: &str = include_str!("../../README.md");
        let section = README
            .split("\n## Exit codes\n")
            .nth(1)
            .expect("the README has a `## Exit codes` section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|line| line.strip_prefix('|'))
            .filter_map(|row| row.split('|').next())
            .filter_map(|cell| cell.trim().parse::<u8>().ok())
            .collect()
    }

    #[test]
    fn the_readme_table_lists_exactly_the_enum() {
        let table = readme_codes();
        assert!(
            !table.is_empty(),
            "no rows found in the README's exit-code table"
        );
        for code in ExitCode::ALL {
            assert!(
                table.contains(&code.code()),
                "exit code {code} ({code:?}) is missing from the README's table"
            );
        }
        for row in &table {
            assert!(
                ExitCode::ALL.iter().any(|c| c.code() == *row),
                "the README's table lists exit code {row}, which ExitCode does not have"
            );
        }
        let mut unique = table.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), table.len(), "the README lists a code twice");
    }
}
