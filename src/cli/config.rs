//! `app config`: the effective configuration, as the other subcommands would see it.

use crate::config::Settings;

pub(super) const EXAMPLES: &str = "\
Examples:
  app config                                 everything, as TOML, secrets shown as <redacted>
  APP_ENV=prod app config                    what prod defaults resolve to
  app --config app.toml config > effective.toml
  kubectl -n discbaboons exec deploy/app -- /app config   what a pod runs with (no shell, no env)

Precedence, lowest first: defaults < --config FILE (or APP_CONFIG) < DATABASE_URL, PORT,
LOG_LEVEL < APP_* variables (`__` nests: APP_DATABASE__HOST) < sealed secrets.";

/// Options of `app config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Prints the redacted configuration to stdout, after a TOML comment naming the process's
/// user and groups: an image `FROM scratch` has no `id` or `whoami` to ask.
pub(super) async fn run(_args: Args, settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    shown.log.format = Some(settings.log.format_for(settings.env));
    println!("# process: {}", process_ids());
    print!("{}", shown.to_redacted_toml());
    Ok(())
}

/// `uid=U gid=G groups=G1,G2`, as `id -u`, `id -g` and `id -G` would say (numbers only: the
/// image has no /etc/passwd to name them).
fn process_ids() -> String {
    // SAFETY: getuid and getgid have no preconditions; getgroups writes at most `len`
    // entries into `groups` and returns how many it wrote, or -1.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = vec![0 as libc::gid_t; 256];
    let len = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(len).unwrap_or(0));
    if groups.is_empty() {
        groups.push(gid);
    }
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    format!("uid={uid} gid={gid} groups={}", groups.join(","))
}
