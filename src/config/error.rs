//! Configuration errors, rendered so that they name the setting and where it came from, and
//! never print a value: figment's own messages quote the offending value, which may be a
//! password.

use std::path::PathBuf;

use figment::Figment;
use figment::error::{Actual, Kind};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` / `APP_CONFIG` names a file that does not exist.
    #[error("config file {0} does not exist (from --config or APP_CONFIG)")]
    FileMissing(PathBuf),
    /// One or more settings are invalid; each line names the key and its source.
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Figment(Vec<String>),
    /// A setting has a value of the right type that cannot be used.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// Dotted setting path.
        key: String,
        /// What is wrong and how to fix it; never the value itself when it may be secret.
        reason: String,
    },
    /// The database URL does not parse; the URL is shown with its password masked.
    #[error(
        "the database URL (database.url / DATABASE_URL) is not valid: {reason}\n  \
         URL (password masked): {masked}\n  \
         Likely cause: the password contains a character with a meaning in URLs \
         (@ : / ? # & % + =) and is not percent-encoded.\n  \
         Fix: percent-encode the password, or leave it out of the URL and set it alone as \
         APP_DATABASE__PASSWORD (or the sealed DATABASE_PASSWORD), which needs no encoding."
    )]
    DatabaseUrl {
        /// What the parser said.
        reason: String,
        /// The URL with the password replaced by `****`.
        masked: String,
    },
    /// The log filter or the log directory cannot be used.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

impl ConfigError {
    /// Re-renders figment's errors without the values they carry.
    pub(super) fn from_figment(err: figment::Error, figment: &Figment) -> Self {
        let lines = err
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let source = e
                    .metadata
                    .as_ref()
                    .or_else(|| figment.find_metadata(&key))
                    .map(|md| match &md.source {
                        // figment shortens paths relative to the working directory; the
                        // path as given is what the user can find.
                        Some(figment::Source::File(path)) => path.display().to_string(),
                        Some(src) => src.to_string(),
                        None => {
                            let name =
                                md.interpolate(&e.profile.clone().unwrap_or_default(), &e.path);
                            format!("{} {name}", md.name)
                        }
                    })
                    .unwrap_or_else(|| "defaults".into());
                let what = describe(&e.kind);
                if key.is_empty() {
                    format!("  - {what} (in {source})")
                } else {
                    format!("  - `{key}`: {what} (from {source})")
                }
            })
            .collect();
        ConfigError::Figment(lines)
    }
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", actual_kind(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("expected {expected}, found {}", actual_kind(actual))
        }
        Kind::UnknownField(field, expected) => format!(
            "unknown key `{field}`; known keys here: {}",
            expected.join(", ")
        ),
        Kind::UnknownVariant(_, expected) => {
            format!("unknown value; expected one of: {}", expected.join(", "))
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        Kind::DuplicateField(field) => format!("key `{field}` given twice"),
        Kind::InvalidLength(len, expected) => format!("expected {expected}, found length {len}"),
        Kind::Message(msg) => sanitize_message(msg),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Unsupported(actual) => format!("unsupported value: {}", actual_kind(actual)),
        Kind::UnsupportedKey(actual, _) => format!("unsupported key: {}", actual_kind(actual)),
    }
}

/// The kind of a value, never its content: a number may be a PIN, a string a password.
fn actual_kind(actual: &Actual) -> String {
    match actual {
        Actual::Bool(_) => "a boolean".into(),
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number".into(),
        Actual::Char(_) | Actual::Str(_) => "a string".into(),
        Actual::Bytes(_) => "bytes".into(),
        Actual::Unit => "nothing".into(),
        Actual::Option => "an optional value".into(),
        Actual::NewtypeStruct => "a newtype".into(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Enum => "an enum".into(),
        Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant => "an enum variant".into(),
        Actual::Other(_) => "another kind of value".into(),
    }
}

/// Custom messages come from our own deserializers (durations, addresses) and from TOML
/// syntax errors; they may quote input, so only their first clause is kept.
fn sanitize_message(msg: &str) -> String {
    let first = msg.split(['"', '`', '\'']).next().unwrap_or(msg).trim_end();
    let first = first.trim_end_matches([':', ',', ' ']);
    if first.is_empty() {
        "invalid value".into()
    } else {
        first.to_owned()
    }
}
