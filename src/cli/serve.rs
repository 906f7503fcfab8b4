//! `app serve`: the API (the main container), in place of the seed's Express server.

use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::server::{Server, shutdown_signal};

pub(super) const EXAMPLES: &str = "\
Examples:
  app serve                                   API on :3000, metrics on :9090, Swagger UI at /docs
  PORT=8080 APP_METRICS__ENABLED=false app serve
  APP_ENV=prod app serve                      needs a JWT secret of at least 32 bytes

Stops on SIGTERM or SIGINT: /ready turns 503 at once, requests are still served for
http.shutdown_grace, then in-flight requests get http.shutdown_timeout to finish; exit 0.
Exit codes: 13 the schema is older than this binary (run `app migrate`); 30 cannot start
(port in use, missing or weak JWT secret in prod); 3 invalid configuration.";

/// Options of `app serve` (everything else is configuration: see `app config`).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Serves until SIGTERM or SIGINT.
pub(super) async fn run(_args: Args, settings: &Settings) -> anyhow::Result<()> {
    let server = Server::bind(settings)
        .await
        .context("starting the API server")?;
    let within = settings.database.connect_timeout + settings.database.acquire_timeout;
    server
        .check_schema(within.max(Duration::from_secs(1)))
        .await
        .context("checking the database schema before serving")?;
    server
        .run(shutdown_signal())
        .await
        .context("serving the API")?;
    Ok(())
}
