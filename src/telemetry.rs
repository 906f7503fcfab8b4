//! The tracing subscriber: human-readable lines in dev, JSON lines in prod, written through
//! tracing-appender's non-blocking writer so logging never stalls a request.
//!
//! Logs go to stderr, leaving stdout to command output (`app config`, `app migrate info`).
//! The writer is lossless: when its buffer is full the caller waits rather than dropping a
//! line, and the returned [`Guard`] flushes everything when `main` drops it.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal (dev default).
    Pretty,
    /// One JSON object per line (prod default).
    Json,
}

/// Why logging could not be set up. The messages name the setting (`log.level`, `log.dir`)
/// the value comes from; `config` reports the same errors when it checks the settings.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level is not a tracing filter.
    #[error(
        "invalid setting `log.level`: `{level}` is not a log filter ({reason}); use a level such \
         as `info` or per target, `app=debug,sqlx=warn`"
    )]
    Filter {
        /// The filter as given.
        level: String,
        /// What the parser said.
        reason: String,
    },
    /// The log directory cannot take files.
    #[error("invalid setting `log.dir`: cannot write log files into {}: {reason}", dir.display())]
    Dir {
        /// The `log.dir` setting's value.
        dir: PathBuf,
        /// Why it cannot be created or written.
        reason: String,
    },
}

/// Keeps the background writers alive; dropping it flushes every buffered line.
#[must_use = "dropping the guard stops the log writer"]
pub struct Guard {
    _guards: Vec<WorkerGuard>,
}

/// Parses a log level or per-target filter (`info`, `app=debug,sqlx=warn`).
pub(crate) fn parse_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map_err(|e| TelemetryError::Filter {
            level: level.to_owned(),
            reason: e.to_string(),
        })
}

/// Installs the global subscriber. `dir`, if set, also receives daily-rotated files.
pub fn init(level: &str, format: LogFormat, dir: Option<&Path>) -> Result<Guard, TelemetryError> {
    let filter = parse_filter(level)?;
    let (stderr, stderr_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        // The worker flushes whenever its queue runs empty, so buffering only merges the lines
        // that queued up together into one write: one syscall per burst, not per line.
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let mut guards = vec![stderr_guard];

    let file = match dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("app")
                .filename_suffix("log")
                .build(dir)
                .map_err(|e| TelemetryError::Dir {
                    dir: dir.to_owned(),
                    reason: e.to_string(),
                })?;
            let (file, guard) = NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("log-file-writer")
                .finish(BufWriter::with_capacity(64 * 1024, appender));
            guards.push(guard);
            Some(file)
        }
        None => None,
    };

    let registry = tracing_subscriber::registry().with(filter);
    // One type for both shapes: stderr alone, or stderr and the file.
    let writer = match file {
        Some(file) => BoxMakeWriter::new(stderr.and(file)),
        None => BoxMakeWriter::new(stderr),
    };
    let ansi = matches!(format, LogFormat::Pretty) && dir.is_none() && is_terminal();
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_target(true)
                    .with_writer(writer),
            )
            .try_init(),
    };
    // A second init (tests running several commands in one process) keeps the first.
    drop(result);
    Ok(Guard { _guards: guards })
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_name_the_setting() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("app=debug,sqlx=warn").is_ok());
        let err = parse_filter("app=loud").unwrap_err().to_string();
        assert!(err.contains("log.level"), "{err}");
    }
}
