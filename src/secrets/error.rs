//! What can go wrong with sealed secrets. Every message names the file and the key and how to
//! fix it, and never the content: not a value, not a line of an identity file.

use std::path::PathBuf;

/// Why a sealed file, an identity or a command could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// The sealed file is not what `app seal` writes.
    #[error("sealed file {file} is malformed: {reason}")]
    Malformed {
        /// The sealed file.
        file: PathBuf,
        /// What is wrong, without quoting the content.
        reason: String,
    },
    /// The sealed file does not exist where it is required.
    #[error("sealed file {file} does not exist{hint}")]
    FileMissing {
        /// The path looked at.
        file: PathBuf,
        /// Where the path came from and how to fix it.
        hint: String,
    },
    /// A value could not be opened or is bound elsewhere; the cause says which.
    #[error("sealed file {file}, key {key}")]
    Value {
        /// The sealed file.
        file: PathBuf,
        /// The key whose value failed.
        key: String,
        /// What failed.
        #[source]
        error: ValueError,
    },
    /// The sealed file was written for another context than the one this deployment expects
    /// (`sealed.context`): another environment's file was mounted.
    #[error(
        "sealed file {file} was sealed for context {found}, but this deployment expects \
         {expected} ({expected_by}): mount {expected}'s own sealed file (the app-sealed ConfigMap of \
         that overlay); if the deployment is wrong instead, fix {fix}"
    )]
    WrongContext {
        /// The sealed file.
        file: PathBuf,
        /// The context the file says it was sealed for.
        found: String,
        /// The context the deployment expects.
        expected: String,
        /// Where the expectation came from.
        expected_by: &'static str,
        /// What to change when the expectation is what is wrong.
        fix: &'static str,
    },
    /// The key is not in the sealed file.
    #[error("sealed file {file} has no key {key} (present: {present})")]
    KeyMissing {
        /// The sealed file.
        file: PathBuf,
        /// The key asked for.
        key: String,
        /// The keys the file has, comma-separated.
        present: String,
    },
    /// No identity (private key) could be found or read.
    #[error("no age identity: {reason}")]
    NoIdentity {
        /// Where we looked and what to do.
        reason: String,
    },
    /// An identity file exists but cannot be used.
    #[error("identity file {file} cannot be used: {reason}")]
    BadIdentity {
        /// The identity file.
        file: PathBuf,
        /// What is wrong, never a line of the file.
        reason: String,
    },
    /// A recipient (public key) given on the command line or in a recipients file is invalid.
    #[error("invalid recipient {what}: {reason}")]
    BadRecipient {
        /// The recipient, or the file and line it came from (public keys are not secret).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A key name or a context that `app seal` does not accept.
    #[error("invalid {what} `{name}`: {reason}")]
    BadName {
        /// `key name` or `context`.
        what: &'static str,
        /// The name (names are not secret).
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// An operation was refused because it would put plaintext where it must not go.
    #[error("refused: {0}")]
    Refused(String),
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What we were doing (`reading`, `writing`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why one sealed value could not be used. Wrapped in [`SealedError::Value`], which names the
/// file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Not an ASCII-armored age file.
    #[error("the value is not an ASCII-armored age file ({0}); re-seal it with `app seal set`")]
    Malformed(String),
    /// None of the identities is a recipient of the value.
    #[error(
        "none of the {count} identities ({sources}) can decrypt it: wrong key, or the file was \
         not re-sealed to this key after a rotation (`app seal rekey`){hint}"
    )]
    NoMatchingIdentity {
        /// How many identities were tried.
        count: usize,
        /// Where they came from.
        sources: String,
        /// A note from the (unverified) binding in the header, when it points elsewhere.
        hint: String,
    },
    /// age's integrity check failed.
    #[error(
        "the value failed age's integrity check: it was altered after sealing (edited by hand, \
         or damaged in a merge); restore it from git or seal it again"
    )]
    Tampered,
    /// An identity file was found but could not be unlocked.
    #[error("an identity could not be unlocked (wrong passphrase?)")]
    IdentityLocked,
    /// The value carries no binding stanza: it was not written by `app seal`.
    #[error(
        "the value is not bound to a context and key (sealed with plain `age`?); seal it with \
         `app seal set` so it cannot be moved between keys or files"
    )]
    Unbound,
    /// The value was sealed for another key name of the same file.
    #[error(
        "the value was sealed for key {found}, not {expected}: values were swapped or copied \
         between keys; seal it again under its own name with `app seal set`"
    )]
    WrongKey {
        /// The key it is listed under.
        expected: String,
        /// The key it was sealed for.
        found: String,
    },
    /// The value was sealed for another context (environment).
    #[error(
        "the value was sealed for context {found}, not {expected}: it was copied from another \
         environment's file; seal this environment's own value with `app seal set`"
    )]
    WrongContext {
        /// The context of this file.
        expected: String,
        /// The context it was sealed for.
        found: String,
    },
    /// The plaintext is not UTF-8 text.
    #[error("the decrypted value is not UTF-8 text")]
    NotText,
}

impl SealedError {
    /// An I/O error while reading `path`.
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SealedError::Io {
            action: "cannot read",
            path: path.into(),
            source,
        }
    }

    /// An I/O error while writing `path`.
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SealedError::Io {
            action: "cannot write",
            path: path.into(),
            source,
        }
    }
}
