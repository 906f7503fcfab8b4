//! `app migrate`: apply, inspect, validate or baseline the schema, Flyway-compatibly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::migrate::{self, Line, MigrateOptions, Migrations, Report};
use crate::roles;

pub(super) const EXAMPLES: &str = "\
Examples:
  app migrate                          apply pending migrations (the init container)
  app migrate --dry-run                print the plan and the SQL, change nothing
  app migrate --target 3               apply nothing newer than version 3
  app migrate info                     every migration: version, state, checksum
  app migrate validate                 fail (exit 10) if applied migrations were edited or removed
  app migrate baseline --version 1     record an existing schema as version 1 (Flyway's baseline)
  app migrate --baseline-on-migrate    baseline a non-empty schema without history, then migrate
  app migrate --location ./migrations  read SQL files from a directory instead of the binary
  app migrate --location ./migrations  (with R__views.sql: re-applied after the V files whenever
                                       it changes, as Flyway's repeatable migrations)
  app migrate --location ./migrations  (with beforeMigrate.sql, afterEachMigrate.sql, ...: Flyway's
                                       SQL callbacks, run around the migrations, no history row)
  app migrate --out-of-order           also apply a pending version older than the newest applied
  APP_MIGRATE__PLACEHOLDERS__OWNER=app_owner app migrate
                                       replace ${owner} in the scripts (and Flyway's built-ins,
                                       ${flyway:user}, ${flyway:defaultSchema}, ...)
  app migrate validate --ignore-migration-patterns '1:missing,*:future'
                                       accept an applied V1 without a file (warned), as Flyway's
                                       ignoreMigrationPatterns (default *:future)
  app migrate repair --dry-run         print what repair would change, change nothing
  app migrate repair                   remove failed rows, realign checksums (after proving the
                                       schema), mark migrations without a file as deleted
  app migrate repair --drop-invalid-indexes
                                       also drop INVALID indexes a failed `concurrently` left
  app migrate adopt                    take over a database Flyway migrated from other files:
                                       build ours in a scratch schema, compare, then repair
  app migrate adopt --force            adopt even though the schema differs (diff is logged)
  app migrate adopt --baseline-on-migrate
                                       no history (or only a baseline): find the version the
                                       schema is, record a baseline there

Many replicas may run `app migrate` at once: they share Flyway's advisory lock (also with
Flyway itself), wait for it at most --lock-timeout (migrate.lock_timeout, default 2m), and
each migration is applied exactly once, with its flyway_schema_history row, in one
transaction. Exit codes: 10 validation, 11 a migration failed (rolled back), 12 lock timeout,
14 a failed migration in the history, 15 an unusable migration file (or an unknown
${placeholder}), 16 the live schema differs from what the migrations build (adoption
refused), 51 the login may not `set role` to migrate.owner_role (run `app db roles`).

With migrate.user / migrate.password (the sealed MIGRATE_DATABASE_USER / _PASSWORD) it logs
in as that login; with migrate.owner_role it works as that role, so every object it creates
is the owner's; with migrate.runtime_role it then grants that role the API's privileges.";

/// Options of `app migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to do; without one, apply the pending migrations.
    #[command(subcommand)]
    pub action: Option<Action>,

    /// Read migrations from this directory instead of the ones built into the binary.
    #[arg(long, value_name = "DIR", global = true)]
    pub location: Option<PathBuf>,

    /// Wait at most this long for another migrator's lock (default: migrate.lock_timeout).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    pub lock_timeout: Option<Duration>,

    /// Apply nothing newer than this version (`latest`: everything).
    #[arg(long, value_name = "VERSION")]
    pub target: Option<String>,

    /// If the schema has objects but no history table, record a baseline first (as Flyway's
    /// baselineOnMigrate; also migrate.baseline_on_migrate).
    #[arg(long)]
    pub baseline_on_migrate: bool,

    /// Print what would be applied, with its SQL, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Apply a pending migration older than the newest applied one instead of refusing it
    /// (Flyway's outOfOrder; also migrate.out_of_order).
    #[arg(long)]
    pub out_of_order: bool,

    /// Flyway's ignoreMigrationPatterns, comma-separated `type:status` (type `*`,
    /// `versioned`, `repeatable` or a version; status `missing`, `pending`, `ignored`,
    /// `future` or `*`): matching problems are warnings. Replaces
    /// migrate.ignore_migration_patterns (default `*:future`); `""` ignores nothing.
    #[arg(long, value_name = "PATTERNS", global = true)]
    pub ignore_migration_patterns: Option<String>,
}

/// The subcommands of `app migrate`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// Show every migration and history row: version, description, type, installed on,
    /// state and whether the checksum still matches.
    Info {
        /// Mark migrations newer than this version as above target.
        #[arg(long, value_name = "VERSION")]
        target: Option<String>,
    },
    /// Check applied migrations against the files: checksum or description changed, file
    /// missing, failed migration. Exits non-zero naming the file.
    Validate,
    /// Record that the existing schema already is at a version, so older migrations never
    /// run (Flyway's baseline; only on an empty history).
    #[command(disable_version_flag = true)]
    Baseline {
        /// The version to record (default: migrate.baseline_version, 1).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// Flyway's repair: remove failed rows, realign checksum, description and type of
    /// applied migrations with the files, mark applied migrations without a file as deleted.
    /// Before any checksum is realigned, the schema is proven (as `adopt` does).
    Repair(RepairArgs),
    /// Take over a database migrated from other files (by Flyway): build this binary's
    /// migrations in a scratch schema, compare with the live schema, and only if they are the
    /// same, repair the history. Exit 16 with a diff when they differ. A schema no history
    /// tracks (no table, or only a baseline) is compared with every version, and with
    /// --baseline-on-migrate gets a baseline at the one it is. Last, prints the exact row
    /// count of every table, to compare with the source database after a dump and restore.
    Adopt(AdoptArgs),
}

/// Options of `app migrate adopt`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdoptArgs {
    #[command(flatten)]
    pub repair: RepairArgs,
    /// With no history (or only a baseline): record a baseline at the version the schema is
    /// proven to be (Flyway's baselineOnMigrate, checked; also migrate.baseline_on_migrate).
    #[arg(long)]
    pub baseline_on_migrate: bool,
}

/// Options of `app migrate repair` and `app migrate adopt`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    /// Print every change (and the schema comparison) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Realign the history even when the live schema differs from what the migrations build.
    #[arg(long)]
    pub force: bool,
    /// Drop INVALID indexes left by a failed `create index concurrently`
    /// (with `drop index concurrently`); without it they are only named.
    #[arg(long)]
    pub drop_invalid_indexes: bool,
}

/// Runs `app migrate` and its subcommands on one dedicated connection.
pub(super) async fn run(args: Args, settings: &Settings) -> anyhow::Result<()> {
    let migrations = match &args.location {
        Some(dir) => Migrations::from_dir(dir)?,
        None => Migrations::embedded()?,
    };
    let lock_timeout = args.lock_timeout.unwrap_or(settings.migrate.lock_timeout);
    let placeholders = migrate::Placeholders {
        replacement: settings.migrate.placeholder_replacement,
        custom: settings.migrate.placeholders.clone(),
    };
    let ignore_patterns = match &args.ignore_migration_patterns {
        Some(flag) => migrate::IgnorePatterns::parse(&[flag])?,
        None => migrate::IgnorePatterns::parse(&settings.migrate.ignore_migration_patterns)?,
    };
    let mut conn = crate::db::connect(&settings.migrate_database()).await?;
    let owner = role_setting(settings.migrate.owner_role.as_deref(), "migrate.owner_role")?;
    if let Some(owner) = &owner {
        roles::session::assume_owner(&mut conn, owner).await?;
    }
    let runtime_grants = role_setting(
        settings.migrate.runtime_role.as_deref(),
        "migrate.runtime_role",
    )?
    .map(|runtime| migrate::RuntimeGrants { owner, runtime });
    match args.action {
        None => {
            let target = parse_target(args.target.as_deref())?;
            let opts = MigrateOptions {
                target,
                lock_timeout,
                baseline_on_migrate: args.baseline_on_migrate
                    || settings.migrate.baseline_on_migrate,
                baseline_version: migrate::parse_version(&settings.migrate.baseline_version)
                    .context("migrate.baseline_version")?,
                dry_run: args.dry_run,
                out_of_order: args.out_of_order || settings.migrate.out_of_order,
                ignore_patterns,
                placeholders,
                runtime_grants,
            };
            let report = migrate::migrate(&mut conn, &migrations, &opts).await?;
            if opts.dry_run {
                print_dry_run(&report);
            } else {
                log_outcome(&report, &migrations);
            }
        }
        Some(Action::Info { target }) => {
            let target = parse_target(target.or(args.target).as_deref())?;
            let plan = migrate::info(
                &mut conn,
                &migrations,
                target.as_ref(),
                &ignore_patterns,
                &placeholders,
            )
            .await?;
            print!("{}", render_table(&plan.lines));
        }
        Some(Action::Validate) => {
            let plan =
                migrate::validate(&mut conn, &migrations, &ignore_patterns, &placeholders).await?;
            let pending = plan.pending.len();
            tracing::info!(
                applied = plan
                    .applied
                    .map(|v| v.to_string())
                    .as_deref()
                    .unwrap_or("none"),
                pending,
                "successfully validated {} migrations",
                migrations.all().len()
            );
        }
        Some(Action::Baseline { version }) => {
            let raw = version.unwrap_or_else(|| settings.migrate.baseline_version.clone());
            let version = migrate::parse_version(&raw)?;
            if migrate::baseline(&mut conn, &version, lock_timeout).await? {
                tracing::info!(version = %version, "baselined the schema at version {version}");
            } else {
                tracing::info!(version = %version, "the schema is already baselined at {version}");
            }
        }
        Some(Action::Repair(repair)) => {
            let opts = repair_options(repair, lock_timeout, false, false);
            run_repair(&mut conn, &migrations, &opts).await?
        }
        Some(Action::Adopt(adopt)) => {
            let baseline = adopt.baseline_on_migrate || settings.migrate.baseline_on_migrate;
            let opts = repair_options(adopt.repair, lock_timeout, true, baseline);
            run_repair(&mut conn, &migrations, &opts).await?;
            print_row_counts(&mut conn).await?;
        }
    }
    // The lock is already released; closing says goodbye to the server politely.
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

/// A role named by a setting, checked.
fn role_setting(value: Option<&str>, key: &str) -> anyhow::Result<Option<roles::RoleName>> {
    Ok(value.map(|v| roles::RoleName::parse(v, key)).transpose()?)
}

fn repair_options(
    args: RepairArgs,
    lock_timeout: Duration,
    adopt: bool,
    baseline_on_migrate: bool,
) -> migrate::RepairOptions {
    migrate::RepairOptions {
        lock_timeout,
        dry_run: args.dry_run,
        always_verify: adopt,
        force: args.force,
        drop_invalid_indexes: args.drop_invalid_indexes,
        baseline_on_migrate,
    }
}

/// After `adopt`: every table of the schema with its exact row count, for comparing with
/// the source database after a dump and restore (`docs/migrations.md`).
async fn print_row_counts(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let counts = migrate::row_counts(conn).await?;
    println!("-- rows per table (compare with the source database):");
    for (table, rows) in counts {
        println!("{table}\t{rows}");
    }
    Ok(())
}

async fn run_repair(
    conn: &mut sqlx::PgConnection,
    migrations: &Migrations,
    opts: &migrate::RepairOptions,
) -> anyhow::Result<()> {
    let report = migrate::repair(conn, migrations, opts).await?;
    if opts.dry_run {
        print_repair_dry_run(&report);
    } else if report.changes.is_empty() {
        tracing::info!(
            schema = %report.schema,
            verified = report.verified,
            "the schema history of \"{}\" needs no repair",
            report.schema
        );
    } else {
        tracing::info!(
            schema = %report.schema,
            changes = report.changes.len(),
            verified = report.verified,
            "repaired the schema history of \"{}\": {} change(s)",
            report.schema,
            report.changes.len()
        );
    }
    Ok(())
}

fn print_repair_dry_run(report: &migrate::RepairReport) {
    println!("-- dry run: nothing below is changed");
    if report.verified {
        if report.differences.is_empty() {
            println!(
                "-- the live schema \"{}\" is what the migrations build",
                report.schema
            );
        } else {
            println!(
                "-- the live schema \"{}\" differs from what the migrations build; repair \
                 would be refused (exit 16) without --force:",
                report.schema
            );
            for d in &report.differences {
                println!("--   {d}");
            }
        }
    }
    if report.changes.is_empty() {
        println!("-- the schema history needs no repair");
    }
    for change in &report.changes {
        println!("-- would change {change}");
    }
    for index in &report.invalid_indexes {
        println!(
            "-- index {} is INVALID; drop it with: {};",
            index.name, index.drop
        );
    }
}

fn parse_target(raw: Option<&str>) -> anyhow::Result<Option<migrate::Version>> {
    match raw {
        None | Some("latest") => Ok(None),
        Some(v) => Ok(Some(migrate::parse_version(v).context("--target")?)),
    }
}

fn log_outcome(report: &Report, migrations: &Migrations) {
    let now = report
        .applied
        .last()
        .map(|(i, _)| migrations.all()[*i].version.to_string())
        .or_else(|| report.plan.applied.as_ref().map(ToString::to_string));
    let now = now.as_deref().unwrap_or("none");
    if !report.repeated.is_empty() {
        tracing::info!(
            schema = %report.schema,
            repeatable = report.repeated.len(),
            "applied {} repeatable migration(s): {}",
            report.repeated.len(),
            report
                .repeated
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if report.applied.is_empty() {
        tracing::info!(
            schema = %report.schema,
            version = now,
            "schema \"{}\" is up to date at version {now}; no migration necessary",
            report.schema
        );
    } else {
        let total: i64 = report.applied.iter().map(|(_, ms)| i64::from(*ms)).sum();
        tracing::info!(
            schema = %report.schema,
            version = now,
            applied = report.applied.len(),
            execution_ms = total,
            "successfully applied {} migration(s) to schema \"{}\", now at version {now}",
            report.applied.len(),
            report.schema
        );
    }
}

fn print_dry_run(report: &Report) {
    println!("-- dry run: nothing below is executed");
    if report.created_history {
        println!(
            "-- would create \"{}\".flyway_schema_history",
            report.schema
        );
    }
    if let Some(v) = &report.baselined {
        println!("-- would record a baseline at version {v}");
    }
    if report.plan.pending.is_empty() && report.ready_repeatables.is_empty() {
        println!(
            "-- schema \"{}\" is up to date: nothing to apply",
            report.schema
        );
    }
    for m in report.ready.iter().chain(&report.ready_repeatables) {
        let mode = if m.in_transaction(u32::MAX).unwrap_or(true) {
            "in one transaction"
        } else {
            "outside a transaction, statement by statement"
        };
        if m.repeatable {
            println!("\n-- repeatable - {} ({}), {mode}", m.description, m.script);
        } else {
            println!(
                "\n-- version {} - {} ({}), {mode}",
                m.version, m.description, m.script
            );
        }
        for stmt in &m.statements {
            println!("{};", stmt.sql);
        }
    }
}

/// A plain-text table for `info`.
fn render_table(lines: &[Line]) -> String {
    let header = [
        "Version",
        "Description",
        "Type",
        "Installed on",
        "State",
        "Checksum",
    ];
    let rows: Vec<[String; 6]> = lines
        .iter()
        .map(|l| {
            [
                l.version.clone(),
                l.description.clone(),
                l.kind.to_string(),
                l.installed_on
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                l.state.as_str().to_owned(),
                match l.checksum_ok {
                    Some(true) => "ok".into(),
                    Some(false) => "MISMATCH".into(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let fmt_row = |cells: &[String]| {
        let mut s = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            s.push_str(&format!(" {cell:<w$} |"));
        }
        s.push('\n');
        s
    };
    let rule = {
        let mut s = String::from("+");
        for w in widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push_str(&fmt_row(&header.map(String::from)));
    out.push_str(&rule);
    if rows.is_empty() {
        out.push_str("| no migrations\n");
    }
    for row in &rows {
        out.push_str(&fmt_row(row));
    }
    out.push_str(&rule);
    out
}
