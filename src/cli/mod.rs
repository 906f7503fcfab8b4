//! The command line: one module per subcommand, each with its clap `Args` and a `run`.
//!
//! [`main`] is everything `src/main.rs` does: load the settings once (for the commands that
//! need them), start telemetry, dispatch, and turn the outcome into an exit code ([`exit`]
//! owns the codes and which error gets which).

mod backup;
mod config;
mod db;
pub mod exit;
mod healthcheck;
mod migrate;
mod openapi;
mod seal;
mod serve;
mod wait_db;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::build_info;
use crate::config::{Loaded, Settings, Sources};
use crate::telemetry::{self, LogFormat};

use exit::ExitCode;

/// discbaboons `app`: one static binary that waits for PostgreSQL, migrates it, serves the
/// API, and keeps its secrets sealed with age.
#[derive(Debug, Parser)]
#[command(name = "app", version = build_info::VERSION_LONG, propagate_version = true)]
#[command(after_help = "Exit codes are listed in the README. Configuration: `app config --help`.")]
pub struct Cli {
    /// TOML configuration file (lower precedence than the environment).
    #[arg(long, global = true, env = "APP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Wait until PostgreSQL accepts an authenticated `select 1` (the first init container).
    #[command(after_help = wait_db::EXAMPLES)]
    WaitDb(wait_db::Args),
    /// Apply the embedded SQL migrations, Flyway-compatible (the second init container).
    #[command(after_help = migrate::EXAMPLES)]
    Migrate(migrate::Args),
    /// Print the effective configuration, every secret redacted.
    #[command(after_help = config::EXAMPLES)]
    Config(config::Args),
    /// Serve the API, Swagger UI (/docs), probes (/health, /ready) and metrics (the main container).
    #[command(after_help = serve::EXAMPLES)]
    Serve(serve::Args),
    /// Ask a running server whether it is ready (for a Docker HEALTHCHECK without curl).
    #[command(after_help = healthcheck::EXAMPLES)]
    Healthcheck(healthcheck::Args),
    /// Print the OpenAPI spec this binary serves.
    #[command(hide = true)]
    Openapi(openapi::Args),
    /// Age-encrypted secrets in git: keygen, set, rm, list, verify, rekey, get, open.
    #[command(after_help = seal::EXAMPLES)]
    Seal(seal::Args),
    /// Database roles: the owner, runtime and login roles (`roles`), and retiring a login
    /// after a rotation (`roles retire`).
    Db(db::Args),
    /// Encrypted database backups: create, list, prune, verify, open, drill.
    #[command(after_help = backup::EXAMPLES)]
    Backup(backup::Args),
}

/// Runs the parsed command line; returns the process exit code.
///
/// Commands that serve the cluster load the settings once and log as the settings say; the
/// ones run on a laptop or in a build (`seal`, `openapi`) need no settings and must not fail
/// for want of them. Every command ends the same way: `finish`.
pub fn main(cli: Cli) -> std::process::ExitCode {
    let Cli { config, command } = cli;
    match command {
        Command::Seal(args) => standalone(|| seal::run(args)),
        Command::Openapi(args) => standalone(|| openapi::run(args)),
        Command::Backup(args) if args.needs_settings() => {
            configured(config, async |s| backup::run_configured(args, s).await)
        }
        Command::Backup(args) => standalone(|| backup::run_standalone(args)),
        Command::Db(args) => configured(config, async |s| db::run(args, s).await),
        Command::WaitDb(args) => configured(config, async |s| wait_db::run(args, s).await),
        Command::Migrate(args) => configured(config, async |s| migrate::run(args, s).await),
        Command::Config(args) => configured(config, async |s| config::run(args, s).await),
        Command::Serve(args) => configured(config, async |s| serve::run(args, s).await),
        Command::Healthcheck(args) => configured(config, async |s| healthcheck::run(args, s).await),
    }
    .into()
}

/// Runs a command that needs no settings, with a stderr log of its own (`LOG_LEVEL`, default
/// `warn`). Its errors are printed, not logged: the log is the same terminal.
fn standalone(command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let guard = match telemetry::init(&level, LogFormat::Pretty, None) {
        Ok(guard) => guard,
        Err(err) => return finish(Err(err.into()), None),
    };
    finish(
        command(),
        Some(Log {
            guard,
            errors: false,
        }),
    )
}

/// Loads the settings once, starts telemetry as they say, and runs the command on a tokio
/// runtime. Its errors also go into the log, where the cluster collects them.
fn configured(
    file: Option<PathBuf>,
    command: impl AsyncFnOnce(&Settings) -> anyhow::Result<()>,
) -> ExitCode {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // Warnings of the sealed layer wait here until telemetry is up.
    let sealed_warnings = std::cell::RefCell::new(Vec::new());
    let sealed_loader = |s: &Settings| -> anyhow::Result<crate::config::SealedValues> {
        let mounted = crate::secrets::open_mounted(&s.sealed, s.env)?;
        sealed_warnings.borrow_mut().extend(mounted.warnings);
        Ok(mounted.values)
    };
    let sources = Sources {
        file,
        env,
        sealed: Some(&sealed_loader),
    };
    let Loaded { settings, warnings } = match crate::config::load(&sources) {
        Ok(loaded) => loaded,
        Err(err) => return finish(Err(err), None),
    };
    let guard = match telemetry::init(
        &settings.log.level,
        settings.log.format_for(settings.env),
        settings.log.dir.as_deref(),
    ) {
        Ok(guard) => guard,
        Err(err) => return finish(Err(err.into()), None),
    };
    for warning in warnings.iter().chain(sealed_warnings.borrow().iter()) {
        tracing::warn!("{warning}");
    }
    if !settings.loaded_secrets.is_empty() {
        tracing::debug!(
            file = %settings.sealed.file.display(),
            names = ?settings.loaded_secrets,
            "sealed secrets loaded"
        );
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(command(&settings)));
    finish(
        outcome,
        Some(Log {
            guard,
            errors: true,
        }),
    )
}

/// The log of a running command.
struct Log {
    /// Flushes the log when dropped.
    guard: telemetry::Guard,
    /// Whether an error also goes into the log (besides stderr).
    errors: bool,
}

/// The one way every command ends: the error, if any, is classified, logged with its code when
/// the command logs its errors, the log flushed, and the error printed last on stderr. `log`
/// is `None` when the command failed before telemetry was up.
fn finish(outcome: anyhow::Result<()>, log: Option<Log>) -> ExitCode {
    let code = match &outcome {
        Ok(()) => ExitCode::Ok,
        Err(err) => exit::classify(err),
    };
    if let Some(log) = log {
        if let Err(err) = &outcome
            && log.errors
        {
            tracing::error!(exit_code = code.code(), "{err:#}");
        }
        // Flush every buffered log line before the process ends.
        drop(log.guard);
    }
    if let Err(err) = &outcome {
        eprintln!("error: {err:#}");
    }
    code
}
