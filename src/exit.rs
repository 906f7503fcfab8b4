//! The process exit codes: part of the interface, so they live in one enum here and in one
//! table in the README. Init containers, scripts and humans branch on them.
//!
//! Library errors implement [`HasExitCode`]; [`classify`] walks an `anyhow` chain and returns
//! the code of the first error that has one. Anything unclassified is a plain failure (1).

use std::fmt;

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
    /// description, a missing migration.
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
    /// The live schema differs from what the migrations build: `repair`/`adopt` refused to
    /// realign the history.
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
    /// A value is bound to another context: copied from another environment's file.
    SealedWrongContext = 25,
    /// A sealed key is missing, or an operation was refused to protect plaintext.
    SealedRefused = 26,

    /// The server could not start: port in use, weak JWT secret in prod, and the like.
    ServeStartup = 30,
}

impl ExitCode {
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

/// Implemented by every library error type that maps to a specific exit code.
pub trait HasExitCode {
    /// The exit code the process ends with when this error reaches `main`.
    fn exit_code(&self) -> ExitCode;
}

/// An error that carries its exit code explicitly, for CLI code with no library error to wrap.
#[derive(Debug)]
pub struct Coded {
    /// The exit code.
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

impl HasExitCode for Coded {
    fn exit_code(&self) -> ExitCode {
        self.code
    }
}

/// Shorthand for an `anyhow::Error` with an explicit exit code.
pub fn coded(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
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
                return Some(e.exit_code());
            }
        )+
    };
}

fn code_of(cause: &(dyn std::error::Error + 'static)) -> Option<ExitCode> {
    first_code!(
        cause,
        Coded,
        crate::config::ConfigError,
        crate::db::WaitError,
        crate::server::StartError,
        crate::auth::WeakSecret,
        crate::secrets::SealedError,
        crate::secrets::ValueError,
        crate::migrate::MigrateError,
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
}
