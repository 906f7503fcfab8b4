//! `app wait-db`: the first init container, in place of a `pg_isready` loop.

use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::db::{self, WaitPolicy};

pub(super) const EXAMPLES: &str = "\
Examples:
  app wait-db                      wait up to 60 s for the configured database
  app wait-db --timeout 2m         wait longer (e.g. a cold PersistentVolume)
  APP_DATABASE__HOST=postgres app wait-db --timeout 10s

With migrate.user set (the sealed MIGRATE_DATABASE_USER), both logins must work.
Exit codes: 0 ready; 4 not ready before the timeout (the last reason is printed);
3 invalid configuration.";

/// Options of `app wait-db`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Give up after this long (e.g. `60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Longest pause between attempts; pauses start at 100 ms and double up to this.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
}

/// Waits until the database answers `select 1` as the configured user, and then (when
/// `migrate` has a login of its own) as `migrate.user` too, within the one timeout: the pod
/// proves every login it will run as before `migrate` and `serve` start. A failed login is
/// retried like any other reason: on a first deploy the roles may be created moments later.
pub(super) async fn run(args: Args, settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let policy = |timeout| WaitPolicy {
        timeout,
        initial_backoff: Duration::from_millis(100).min(args.max_backoff),
        max_backoff: args.max_backoff,
        attempt_timeout: settings.database.connect_timeout,
    };
    db::wait_until_ready(&settings.database, policy(args.timeout)).await?;
    if settings.migrate.user.is_some() {
        let left = args.timeout.saturating_sub(started.elapsed());
        db::wait_until_ready(&settings.migrate_database(), policy(left)).await?;
    }
    Ok(())
}
