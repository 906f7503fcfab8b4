//! The command line: one module per subcommand, each with its clap `Args` and a `run`.
//!
//! [`main`] is everything `src/main.rs` does: load the settings once, start telemetry,
//! dispatch, and turn the outcome into an exit code (see [`crate::exit`]).

mod config;
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
use crate::exit::{self, ExitCode};

/// discbaboons `app`: one static binary that waits for PostgreSQL, migrates it, serves the
/// API, and keeps its secrets sealed with age.
#[derive(Debug, Parser)]
#[command(name = "app", version = build_info::VERSION_LONG, propagate_version = true)]
#[command(after_help = "Exit codes are listed in the README. Configuration: `app config --help`.")]
pub struct Cli {
    /// TOML configuration file (lower precedence than the environment).
    #[arg(long, global = true, env = "APP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
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
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> std::process::ExitCode {
    // `app seal` runs on a laptop: it needs no settings and must not fail for want of them.
    let command = match cli.command {
        Command::Seal(args) => return seal::main(args),
        other => other,
    };
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
        file: cli.config.clone(),
        env,
        sealed: Some(&sealed_loader),
    };
    let Loaded { settings, warnings } = match crate::config::load(&sources) {
        Ok(loaded) => loaded,
        Err(err) => return fail(&err),
    };
    let guard = match crate::telemetry::init(
        &settings.log.level,
        settings.log.format_for(settings.env),
        settings.log.dir.as_deref(),
    ) {
        Ok(guard) => guard,
        Err(err) => return fail(&err.into()),
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
    let outcome = run(command, &settings);
    let code = match &outcome {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            let code = exit::classify(err);
            tracing::error!(exit_code = code.code(), "{err:#}");
            code
        }
    };
    // Flush every buffered log line before the process ends.
    drop(guard);
    if let Err(err) = &outcome {
        eprintln!("error: {err:#}");
    }
    code.into()
}

fn run(command: Command, settings: &Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::WaitDb(args) => wait_db::run(args, settings).await,
            Command::Config(args) => config::run(args, settings).await,
            Command::Serve(args) => serve::run(args, settings).await,
            Command::Healthcheck(args) => healthcheck::run(args, settings).await,
            Command::Openapi(args) => openapi::run(args, settings).await,
            Command::Seal(args) => seal::run(args),
            Command::Migrate(args) => migrate::run(args, settings).await,
        }
    })
}

/// Reports an error that happened before telemetry existed.
fn fail(err: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {err:#}");
    exit::classify(err).into()
}
