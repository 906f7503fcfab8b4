//! Everything `migrate` can fail with, one variant per thing an operator does about it.

use std::path::PathBuf;
use std::time::Duration;

/// Why migrating (or checking the schema) failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A migration file is unusable.
    #[error("migration {script} is invalid: {reason}")]
    InvalidScript {
        /// The file name.
        script: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Two files have the same version.
    #[error("version {version} is used by two migrations, {first} and {second}: rename one")]
    DuplicateVersion {
        version: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// A script mixes statements PostgreSQL refuses in a transaction with ordinary ones.
    #[error(
        "migration {script} mixes a statement that cannot run in a transaction \
         ({non_transactional}, line {non_transactional_line}) with transactional statements \
         (line {transactional_line}); move the {non_transactional} into a migration of its own"
    )]
    MixedScript {
        /// The file name.
        script: String,
        /// The first transactional statement's line.
        transactional_line: usize,
        /// The first non-transactional statement's line.
        non_transactional_line: usize,
        /// What the non-transactional statement is.
        non_transactional: &'static str,
    },
    /// `--location` could not be read.
    #[error("cannot read migrations from {}: {source}", path.display())]
    Location {
        /// The directory.
        path: PathBuf,
        source: std::io::Error,
    },
    /// `--target` or a baseline version is not a version.
    #[error("invalid version {value:?}: {reason}")]
    BadVersion {
        /// What was given.
        value: String,
        /// Why it is not a version.
        reason: String,
    },
    /// An `ignore_migration_patterns` entry is not `type:status`.
    #[error(
        "invalid ignore migration pattern {value:?} (--ignore-migration-patterns, \
         migrate.ignore_migration_patterns): {reason}"
    )]
    BadIgnorePattern {
        /// What was given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Applied migrations no longer match the files, or the files no longer match the history.
    #[error("validation failed:\n  - {}", problems.join("\n  - "))]
    Validation {
        /// One line per problem, each naming the file.
        problems: Vec<String>,
    },
    /// The schema has objects but no history: Flyway's "non-empty schema" refusal.
    #[error(
        "schema \"{schema}\" is not empty but has no flyway_schema_history table: if it is \
         the schema these migrations build (the seed's database, say), `app migrate adopt \
         --baseline-on-migrate` proves which version it is and records a baseline there; \
         otherwise record the version it holds with `app migrate baseline --version V` (or \
         run with --baseline-on-migrate / migrate.baseline_on_migrate = true, which records \
         migrate.baseline_version, default 1, unchecked)"
    )]
    NonEmptySchema { schema: String },
    /// `adopt` on a schema no history tracks proved its version, but recording a baseline
    /// there was not allowed.
    #[error(
        "schema \"{schema}\" is tracked by no migration history{}, and it is exactly what \
         this binary's migrations build up to version {version} ({script}): rerun with \
         --baseline-on-migrate (or migrate.baseline_on_migrate = true) to record a baseline at \
         version {version}, so that only newer migrations ever run. Check first that this is \
         the database you mean to adopt",
        baseline.as_deref().map_or_else(String::new, |b| format!(" (only a baseline at version {b})"))
    )]
    BaselineNeeded {
        /// The live schema.
        schema: String,
        /// The version the schema was proven to be.
        version: String,
        /// The migration that version ends with.
        script: String,
        /// The version of the baseline already recorded, if any.
        baseline: Option<String>,
    },
    /// `repair` on a schema without a history table.
    #[error(
        "schema \"{schema}\" has no flyway_schema_history table, so there is nothing to \
         repair: `app migrate adopt --baseline-on-migrate` proves which version the schema is \
         and records a baseline there (or record one yourself with `app migrate baseline \
         --version V`)"
    )]
    NoHistory { schema: String },
    /// `adopt` found nothing to adopt: the schema is empty.
    #[error(
        "nothing to adopt: schema \"{schema}\" holds no tables, views, sequences, functions \
         or types of its own. If this is a new database, `app migrate` builds it; if you \
         restored a dump into it, check that the restore succeeded and that \
         APP_DATABASE__NAME (database.name) names the restored database"
    )]
    NothingToAdopt { schema: String },
    /// `baseline` on a history that already has rows.
    #[error("cannot baseline: {reason}")]
    BaselineRefused { reason: String },
    /// The history holds a failed migration.
    #[error(
        "the schema history records a failed migration: {script} (version {version}, \
         installed_rank {installed_rank}). It may have left changes half-done. Inspect the \
         schema and undo or complete what it did, then remove the row: `delete from \
         flyway_schema_history where installed_rank = {installed_rank} and not success` \
         or run `app migrate repair` (it also names INVALID indexes left behind), and run \
         `app migrate` again"
    )]
    FailedInHistory {
        /// The file name.
        script: String,
        version: String,
        installed_rank: i32,
    },
    /// A migration's SQL failed (boxed: the details are large and this path is rare).
    #[error("{0}")]
    Failed(Box<SqlFailure>),
    /// Another migrator held the lock for too long.
    #[error(
        "timed out after {}s waiting for the migration lock, held by {holder}; if no \
         migration is running, that session is stuck: end it with pg_terminate_backend(pid), \
         or raise --lock-timeout / migrate.lock_timeout",
        waited.as_secs()
    )]
    LockTimeout {
        /// How long we waited.
        waited: Duration,
        /// Who holds it.
        holder: String,
    },
    /// The schema is older than this binary.
    #[error(
        "the database schema is at {}, older than this binary's latest migration {latest} \
         (pending: {}): run `app migrate` first (the migrate init container)",
        applied.as_deref().map_or_else(|| "no version (no history)".to_owned(), |a| format!("version {a}")),
        pending.join(", ")
    )]
    Outdated {
        /// The newest applied version.
        applied: Option<String>,
        /// This binary's newest.
        latest: String,
        /// What is not applied.
        pending: Vec<String>,
    },
    /// `repair` would realign checksums (or `adopt` was asked) but the live schema is not
    /// what the migrations build: nothing was changed.
    #[error(
        "adoption refused: the live schema \"{schema}\" differs from what this binary's \
         migrations build up to version {version}, so their checksums were not realigned and \
         the history is unchanged:\n{differences}\nMake the schema match (or ship migrations \
         that build it), or, if the differences are known and harmless, rerun with --force"
    )]
    SchemaDrift {
        /// The live schema.
        schema: String,
        /// The version the comparison was built up to.
        version: String,
        /// One line per difference: object, expected, found, migration.
        differences: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Where and how a migration's SQL failed.
#[derive(Debug)]
pub struct SqlFailure {
    /// The file name.
    pub script: String,
    /// The line in the file where the error points (or the failing statement starts).
    pub line: usize,
    /// PostgreSQL's message.
    pub message: String,
    /// PostgreSQL's SQLSTATE.
    pub sqlstate: String,
    /// PostgreSQL's detail, if any.
    pub detail: Option<String>,
    /// PostgreSQL's hint, if any.
    pub hint: Option<String>,
    /// What state the database was left in.
    pub outcome: &'static str,
}

impl std::fmt::Display for SqlFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "migration {} failed at line {}: {} (SQLSTATE {})",
            self.script, self.line, self.message, self.sqlstate
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        write!(f, "; {}", self.outcome)
    }
}
