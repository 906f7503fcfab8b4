//! What can go wrong with a backup. Messages name the file or directory and the fix, and never
//! a byte of the dump.

use std::path::PathBuf;

/// Why a backup could not be made, found, verified, opened or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup volume has no room left; the partial file was removed.
    #[error(
        "the backup volume {dir} is full (after {written} bytes of this backup): the partial file \
         was removed; prune old backups (`app backup prune`) or grow the volume"
    )]
    NoSpace {
        /// The backup directory.
        dir: PathBuf,
        /// How many encrypted bytes were written before the volume filled up.
        written: u64,
    },
    /// The dump did not complete: the dumper failed, stopped early or is not `pg_dump -Fc`.
    #[error("the dump did not complete, no backup was written: {reason}")]
    DumpFailed {
        /// What the dumper reported or what was wrong with its stream.
        reason: String,
    },
    /// A backup file failed a check: checksum, age's integrity check, truncation, not a dump.
    #[error("backup {file} is damaged: {reason}")]
    Corrupt {
        /// The backup file.
        file: PathBuf,
        /// What failed, and what to do.
        reason: String,
    },
    /// No backup where one was asked for.
    #[error("no backup: {reason}")]
    NotFound {
        /// Where we looked and what to do.
        reason: String,
    },
    /// None of the identities is a recipient of the backup.
    #[error(
        "none of the {count} identities ({sources}) can decrypt {file}: use the cluster's \
         identity or the offline recovery key it was encrypted to"
    )]
    NoMatchingIdentity {
        /// The backup file.
        file: PathBuf,
        /// How many identities were tried.
        count: usize,
        /// Where they came from.
        sources: String,
    },
    /// The restore drill found the restored database different from the backup's manifest.
    #[error("restore drill failed for {file}: {}", problems.join("; "))]
    DrillFailed {
        /// The backup that was restored.
        file: PathBuf,
        /// Each difference found.
        problems: Vec<String>,
    },
    /// An operation was refused because it would put plaintext where it must not go, or
    /// the arguments do not fit together.
    #[error("refused: {0}")]
    Refused(String),
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// An I/O error while doing `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BackupError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Whether an I/O error means the filesystem (or the quota) is full.
pub(crate) fn is_no_space(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
