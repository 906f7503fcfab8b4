//! The tracing subscriber: human-readable lines in dev, JSON lines in prod, written through
//! tracing-appender's non-blocking writer so logging never stalls a request.
//!
//! Logs go to stderr, leaving stdout to command output (`app config`, `app migrate info`).
//! The writer is lossless: when its buffer is full the caller waits rather than dropping a
//! line, and the returned [`Guard`] flushes everything when `main` drops it.

use std::io::BufWriter;
use std::path::Path;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, LogFormat};

/// Keeps the background writers alive; dropping it flushes every buffered line.
#[must_use = "dropping the guard stops the log writer"]
pub struct Guard {
    _guards: Vec<WorkerGuard>,
}

/// Parses a log level or per-target filter (`info`, `app=debug,sqlx=warn`).
pub fn parse_filter(level: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map_err(|e| ConfigError::Invalid {
            key: "log.level".into(),
            reason: format!(
                "`{level}` is not a log filter ({e}); use a level such as `info` or per target, \
                 `app=debug,sqlx=warn`"
            ),
        })
}

/// Installs the global subscriber. `dir`, if set, also receives daily-rotated files.
pub fn init(level: &str, format: LogFormat, dir: Option<&Path>) -> Result<Guard, ConfigError> {
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
                .map_err(|e| ConfigError::Invalid {
                    key: "log.dir".into(),
                    reason: format!("cannot write log files into {}: {e}", dir.display()),
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
