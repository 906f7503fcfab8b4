//! `app config`: the effective configuration, as the other subcommands would see it.

use crate::config::Settings;

pub(super) const EXAMPLES: &str = "\
Examples:
  app config                                 everything, as TOML, secrets shown as <redacted>
  APP_ENV=prod app config                    what prod defaults resolve to
  app --config app.toml config > effective.toml

Precedence, lowest first: defaults < --config FILE (or APP_CONFIG) < DATABASE_URL, PORT,
LOG_LEVEL < APP_* variables (`__` nests: APP_DATABASE__HOST) < sealed secrets.";

/// Options of `app config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Prints the redacted configuration to stdout.
pub(super) async fn run(_args: Args, settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    shown.log.format = Some(settings.log.format_for(settings.env));
    print!("{}", shown.to_redacted_toml());
    Ok(())
}
