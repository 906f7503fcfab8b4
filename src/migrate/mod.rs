//! `app migrate`: embedded SQL migrations that speak Flyway's schema history, so a database
//! moves between Flyway and `app migrate` without anything re-running, and N replicas can
//! migrate at once.
//!
//! The flow of [`migrate`]: on one dedicated connection, a lock-free read returns at once when
//! everything is applied; otherwise it takes Flyway's advisory lock (bounded polling),
//! creates the history table if needed, re-reads the history under the lock, validates it
//! against the files, and applies what is pending, each migration with its history row in
//! one transaction (or, for `concurrently` and the like, statement by statement). The lock is released on every path; if the process dies,
//! PostgreSQL releases it with the connection.

mod apply;
mod callback;
mod catalog;
mod checksum;
mod error;
mod history;
mod ignore;
mod lock;
mod placeholder;
mod plan;
mod repair;
mod scratch;
mod script;
mod source;
mod split;
mod version;

use std::time::Duration;

use sqlx::PgConnection;

pub use checksum::checksum;
pub(crate) use error::MigrateError;
pub(crate) use history::{BASELINE_DESCRIPTION, HistoryRow, Kind};
pub use ignore::IgnorePatterns;
pub(crate) use lock::flyway_key;
pub use placeholder::Placeholders;
pub(crate) use plan::{Line, Plan, State};
pub(crate) use repair::{RepairOptions, RepairReport, repair};
pub use script::Migration;
pub use source::Migrations;
pub use version::Version;

/// Where the database schema stands relative to this binary's embedded migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest successfully applied version (a baseline counts); `None` without history.
    pub applied: Option<String>,
    /// This binary's newest migration.
    pub latest: String,
    /// Versions of this binary that the database lacks (not applied, or failed).
    pub pending: Vec<String>,
}

impl SchemaStatus {
    /// Whether every migration of this binary is applied. Newer ("future") rows are fine:
    /// an older image runs on a newer schema.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }

    /// `Ok` when current, else [`MigrateError::Outdated`] telling the operator to run
    /// `app migrate` first: the server refuses to start on an older schema.
    pub fn ensure_current(&self) -> Result<(), MigrateError> {
        if self.is_current() {
            return Ok(());
        }
        Err(MigrateError::Outdated {
            applied: self.applied.clone(),
            latest: self.latest.clone(),
            pending: self.pending.clone(),
        })
    }
}

/// Compares the database's history with the embedded migrations, reading only.
pub async fn schema_status(conn: &mut PgConnection) -> Result<SchemaStatus, MigrateError> {
    let migrations = Migrations::embedded()?;
    let schema = history::current_schema(conn).await?;
    let rows = read_history(conn, &schema).await?;
    let plan = plan::plan(&migrations, &rows, None);
    let pending = plan
        .lines
        .iter()
        .filter(|l| {
            l.kind == Kind::Sql
                && matches!(l.state, State::Pending | State::Failed | State::Ignored)
                && migrations.all().iter().any(|m| m.script == l.script)
        })
        .map(|l| l.version.clone())
        .collect();
    Ok(SchemaStatus {
        applied: plan.applied.map(|v| v.to_string()),
        latest: migrations
            .latest()
            .map(|m| m.version.to_string())
            .unwrap_or_default(),
        pending,
    })
}

/// How [`migrate`] runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Apply nothing newer than this.
    pub target: Option<Version>,
    /// Give up waiting for another migrator after this long.
    pub lock_timeout: Duration,
    /// On a non-empty schema without history, record a baseline instead of refusing.
    pub baseline_on_migrate: bool,
    /// The version such a baseline records.
    pub baseline_version: Version,
    /// Work out the plan but change nothing (and take no lock).
    pub dry_run: bool,
    /// Apply pending migrations older than the newest applied one (Flyway's outOfOrder).
    pub out_of_order: bool,
    /// Problems (missing, out-of-order, future migrations) that are only warned about
    /// (Flyway's ignoreMigrationPatterns; default `*:future`).
    pub ignore_patterns: IgnorePatterns,
    /// `${name}` values, and whether to replace them (Flyway's placeholders).
    pub placeholders: Placeholders,
    /// Grant the runtime role its privileges after applying, under the lock (concurrent
    /// `grant`s on one table can fail with "tuple concurrently updated").
    pub runtime_grants: Option<RuntimeGrants>,
}

/// Who gets the API's privileges after `migrate` (`migrate.runtime_role`), and whose future
/// objects the default privileges are about (`migrate.owner_role`; none: the login's).
#[derive(Debug, Clone)]
pub struct RuntimeGrants {
    pub(crate) owner: Option<crate::roles::RoleName>,
    pub(crate) runtime: crate::roles::RoleName,
}

/// What [`migrate`] did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct Report {
    /// The schema migrated.
    pub schema: String,
    /// The history table did not exist (and was created, unless dry run).
    pub created_history: bool,
    /// A baseline row was written (or would be) with this version.
    pub baselined: Option<String>,
    /// The comparison under the lock, before applying.
    pub(crate) plan: Plan,
    /// Applied migrations: index into the migrations and execution time in ms.
    pub applied: Vec<(usize, i32)>,
    /// The pending migrations, parallel to `plan.pending`, placeholders replaced: what runs.
    pub(crate) ready: Vec<Migration>,
    /// The repeatable migrations to (re-)apply after them, placeholders replaced.
    pub(crate) ready_repeatables: Vec<Migration>,
    /// Repeatable migrations applied: script and execution time in ms.
    pub repeated: Vec<(String, i32)>,
}

/// Migrates the schema to the newest (or `target`) version. See the module docs.
pub async fn migrate(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &MigrateOptions,
) -> Result<Report, MigrateError> {
    let server = server_version_num(conn).await?;
    for m in migrations.all() {
        m.in_transaction(server)?;
    }
    label(conn).await?;
    let schema = history::current_schema(conn).await?;
    if opts.dry_run {
        return prepare(conn, &schema, migrations, opts).await;
    }
    // With callbacks, every run takes the lock: Flyway runs beforeMigrate and afterMigrate on
    // each migrate, pending work or not. So do the runtime grants (a few ms under the lock).
    if migrations.callbacks().is_empty()
        && opts.runtime_grants.is_none()
        && let Some(report) = up_to_date(conn, &schema, migrations, opts).await?
    {
        return Ok(report);
    }
    let key = flyway_key(&history::qualified(&schema));
    tracing::debug!(schema, key, "taking the migration lock");
    let lock = lock::Lock::acquire(conn, key, opts.lock_timeout).await?;
    let mut result = with_callbacks(conn, &schema, migrations, opts, server).await;
    if let (Ok(_), Some(grants)) = (&result, &opts.runtime_grants) {
        let granted = crate::roles::session::grant_runtime(
            conn,
            &schema,
            grants.owner.as_ref(),
            &grants.runtime,
        )
        .await;
        match granted {
            Ok(()) => tracing::info!(schema, role = %grants.runtime, "granted the runtime role"),
            Err(e) => result = Err(e.into()),
        }
    }
    if let Err(e) = lock.release(conn).await {
        // The session is gone with its lock, or will be when this process exits.
        tracing::warn!(error = %e, "could not release the migration lock explicitly");
    }
    result
}

/// The common case of every replica after the first: a lock-free read shows everything
/// applied and valid, so there is nothing to wait for. Rows are committed together with
/// their migration's effects, so what this read sees complete is complete. Anything else
/// (work to do, or a problem) goes through the lock and a fresh read.
async fn up_to_date(
    conn: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    opts: &MigrateOptions,
) -> Result<Option<Report>, MigrateError> {
    if !history::exists(conn, schema).await? {
        return Ok(None);
    }
    let rows = history::read(conn, schema).await?;
    let mut plan = plan_for(migrations, &rows, opts);
    // Every replica passes here: no extra query unless there are repeatables to check.
    if !migrations.repeatables().is_empty() {
        let builtins = builtins(conn, schema).await?;
        let repeatables = ready_repeatables(migrations, &opts.placeholders, &builtins)?;
        plan::plan_repeatables(&mut plan, &repeatables, &rows);
    }
    if !plan.pending.is_empty()
        || !plan.repeatable_pending.is_empty()
        || !plan.failed.is_empty()
        || !plan.problems.is_empty()
    {
        return Ok(None);
    }
    tracing::debug!(schema, "nothing pending: the migration lock is not needed");
    Ok(Some(Report {
        schema: schema.to_owned(),
        created_history: false,
        baselined: None,
        plan: check(plan)?,
        applied: Vec::new(),
        ready: Vec::new(),
        ready_repeatables: Vec::new(),
        repeated: Vec::new(),
    }))
}

/// Prepares (history created, validated), then applies between the `beforeMigrate` and
/// `afterMigrate` (or, on failure, `afterMigrateError`) SQL callbacks, in Flyway's order: a
/// validation failure happens before any callback runs.
async fn with_callbacks(
    conn: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    opts: &MigrateOptions,
    server: u32,
) -> Result<Report, MigrateError> {
    let report = prepare(conn, schema, migrations, opts).await?;
    if migrations.callbacks().is_empty() {
        return migrate_prepared(conn, schema, report, server, &Default::default()).await;
    }
    let builtins = builtins(conn, schema).await?;
    let callbacks = migrations
        .callbacks()
        .ready(&opts.placeholders, &builtins)?;
    let result = async {
        apply::run_callbacks(conn, &callbacks.before_migrate).await?;
        let report = migrate_prepared(conn, schema, report, server, &callbacks).await?;
        apply::run_callbacks(conn, &callbacks.after_migrate).await?;
        Ok(report)
    }
    .await;
    if result.is_err()
        && let Err(e) = apply::run_callbacks(conn, &callbacks.after_migrate_error).await
    {
        tracing::warn!(error = %e, "the afterMigrateError callback failed too");
    }
    result
}

/// Applies what `report` (from [`prepare`]) has ready: versioned, then repeatable.
async fn migrate_prepared(
    conn: &mut PgConnection,
    schema: &str,
    mut report: Report,
    server: u32,
    callbacks: &callback::Callbacks,
) -> Result<Report, MigrateError> {
    let ready = std::mem::take(&mut report.ready);
    for (&index, m) in report.plan.pending.iter().zip(&ready) {
        tracing::info!(
            schema,
            version = %m.version,
            script = %m.script,
            "migrating to version {} - {}",
            m.version,
            m.description
        );
        let ms = apply::apply(conn, schema, m, m.in_transaction(server)?, callbacks).await?;
        tracing::info!(version = %m.version, execution_ms = ms, "applied {}", m.script);
        report.applied.push((index, ms));
    }
    for m in std::mem::take(&mut report.ready_repeatables) {
        tracing::info!(schema, script = %m.script, "migrating (repeatable) - {}", m.description);
        let ms = apply::apply(conn, schema, &m, m.in_transaction(server)?, callbacks).await?;
        tracing::info!(execution_ms = ms, "applied {}", m.script);
        report.repeated.push((m.script.clone(), ms));
    }
    Ok(report)
}

/// Creates the history (or baseline) if needed, reads it, validates, warns about future
/// rows, and plans. In a dry run it only reads.
async fn prepare(
    conn: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    opts: &MigrateOptions,
) -> Result<Report, MigrateError> {
    let mut created_history = false;
    let mut baselined = None;
    if !history::exists(conn, schema).await? {
        created_history = true;
        if !history::schema_is_empty(conn, schema).await? {
            if !opts.baseline_on_migrate {
                return Err(MigrateError::NonEmptySchema {
                    schema: schema.to_owned(),
                });
            }
            baselined = Some(opts.baseline_version.to_string());
        }
        if !opts.dry_run {
            history::create(conn, schema).await?;
            if let Some(version) = &baselined {
                insert_baseline(conn, schema, version).await?;
                tracing::info!(schema, version, "baselined the non-empty schema");
            }
        }
    }
    let mut rows = read_history(conn, schema).await?;
    if opts.dry_run
        && let Some(version) = &baselined
    {
        rows.push(dry_baseline_row(version));
    }
    let mut plan = plan_for(migrations, &rows, opts);
    // Every pending script is made ready before any runs: an unknown placeholder in the
    // last one fails before the first is applied.
    let builtins = builtins(conn, schema).await?;
    let repeatables = ready_repeatables(migrations, &opts.placeholders, &builtins)?;
    plan::plan_repeatables(&mut plan, &repeatables, &rows);
    let plan = check(plan)?;
    let ready_repeatables = plan
        .repeatable_pending
        .iter()
        .map(|&i| repeatables[i].clone())
        .collect();
    let ready = plan
        .pending
        .iter()
        .map(|&i| migrations.all()[i].with_placeholders(&opts.placeholders, &builtins))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        schema: schema.to_owned(),
        created_history,
        baselined,
        plan,
        applied: Vec::new(),
        ready,
        ready_repeatables,
        repeated: Vec::new(),
    })
}

/// The repeatable migrations with placeholders replaced, so with the checksum Flyway gives
/// them (of the replaced text).
fn ready_repeatables(
    migrations: &Migrations,
    placeholders: &Placeholders,
    builtins: &placeholder::Builtins,
) -> Result<Vec<Migration>, MigrateError> {
    migrations
        .repeatables()
        .iter()
        .map(|r| r.with_placeholders(placeholders, builtins))
        .collect()
}

/// The values of Flyway's built-in placeholders for this session.
async fn builtins(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<placeholder::Builtins, MigrateError> {
    // language=PostgreSQL
    let (user, database): (String, String) =
        sqlx::query_as("select session_user::text, current_database()::text")
            .fetch_one(&mut *conn)
            .await?;
    Ok(placeholder::Builtins {
        default_schema: schema.to_owned(),
        user,
        database,
        timestamp: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        table: history::TABLE.to_owned(),
    })
}

/// Fails on failed rows first (they need a human), then on any other problem; warns about
/// future rows.
fn check(plan: Plan) -> Result<Plan, MigrateError> {
    if let Some(failed) = plan.failed.first() {
        return Err(MigrateError::FailedInHistory {
            script: failed.script.clone(),
            version: failed.version.clone(),
            installed_rank: failed.installed_rank,
        });
    }
    if !plan.problems.is_empty() {
        return Err(MigrateError::Validation {
            problems: plan.problems.clone(),
        });
    }
    for warning in &plan.warnings {
        tracing::warn!("ignored by the ignore migration patterns: {warning}");
    }
    if !plan.future.is_empty() {
        tracing::warn!(
            versions = %plan.future.join(", "),
            "the schema history has migrations newer than this binary knows (applied by a \
             newer version); ignoring them"
        );
    }
    Ok(plan)
}

/// `app migrate validate`: the files against the history, without changing anything.
pub(crate) async fn validate(
    conn: &mut PgConnection,
    migrations: &Migrations,
    ignore: &IgnorePatterns,
    placeholders: &Placeholders,
) -> Result<Plan, MigrateError> {
    let plan = info(conn, migrations, None, ignore, placeholders).await?;
    check(plan)
}

/// `app migrate info`: every migration and history row with its state.
pub(crate) async fn info(
    conn: &mut PgConnection,
    migrations: &Migrations,
    target: Option<&Version>,
    ignore: &IgnorePatterns,
    placeholders: &Placeholders,
) -> Result<Plan, MigrateError> {
    let schema = history::current_schema(conn).await?;
    let rows = read_history(conn, &schema).await?;
    let mut plan = plan::plan_with(migrations, &rows, target, false, ignore);
    let builtins = builtins(conn, &schema).await?;
    let repeatables = ready_repeatables(migrations, placeholders, &builtins)?;
    plan::plan_repeatables(&mut plan, &repeatables, &rows);
    Ok(plan)
}

/// `app migrate baseline`: records that the schema already is at `version`, so migrations
/// up to it never run. Refused when the history already holds migrations.
pub(crate) async fn baseline(
    conn: &mut PgConnection,
    version: &Version,
    lock_timeout: Duration,
) -> Result<bool, MigrateError> {
    label(conn).await?;
    let schema = history::current_schema(conn).await?;
    let key = flyway_key(&history::qualified(&schema));
    let lock = lock::Lock::acquire(conn, key, lock_timeout).await?;
    let result = baseline_locked(conn, &schema, version).await;
    if let Err(e) = lock.release(conn).await {
        tracing::warn!(error = %e, "could not release the migration lock explicitly");
    }
    result
}

/// Returns whether a row was written (false: the same baseline was already there).
async fn baseline_locked(
    conn: &mut PgConnection,
    schema: &str,
    version: &Version,
) -> Result<bool, MigrateError> {
    if history::exists(conn, schema).await? {
        let rows = read_history(conn, schema).await?;
        let relevant: Vec<&HistoryRow> = rows.iter().filter(|r| r.kind != Kind::Schema).collect();
        match relevant.as_slice() {
            [] => {}
            [only] if only.is_baseline() && only.parsed_version().as_ref() == Some(version) => {
                return Ok(false);
            }
            _ => {
                return Err(MigrateError::BaselineRefused {
                    reason: format!(
                        "the schema history of \"{schema}\" already has {} row(s); a baseline \
                         only initialises an empty history (see `app migrate info`)",
                        relevant.len()
                    ),
                });
            }
        }
    } else {
        history::create(conn, schema).await?;
    }
    insert_baseline(conn, schema, version.as_str()).await?;
    Ok(true)
}

async fn insert_baseline(
    conn: &mut PgConnection,
    schema: &str,
    version: &str,
) -> Result<(), MigrateError> {
    let row = history::NewRow {
        version,
        description: BASELINE_DESCRIPTION,
        kind: Kind::Baseline,
        script: BASELINE_DESCRIPTION,
        checksum: None,
        execution_time: 0,
        success: true,
    };
    history::insert(conn, schema, &row).await?;
    Ok(())
}

/// The plan `opts` asks for: its target, out-of-order and ignore patterns.
fn plan_for(migrations: &Migrations, rows: &[HistoryRow], opts: &MigrateOptions) -> Plan {
    plan::plan_with(
        migrations,
        rows,
        opts.target.as_ref(),
        opts.out_of_order,
        &opts.ignore_patterns,
    )
}

fn dry_baseline_row(version: &str) -> HistoryRow {
    HistoryRow {
        installed_rank: 1,
        version: Some(version.to_owned()),
        description: BASELINE_DESCRIPTION.into(),
        kind: Kind::Baseline,
        script: BASELINE_DESCRIPTION.into(),
        checksum: None,
        installed_on: chrono::Utc::now().naive_utc(),
        success: true,
    }
}

/// The history, or nothing when the table does not exist.
async fn read_history(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<HistoryRow>, MigrateError> {
    if !history::exists(conn, schema).await? {
        return Ok(Vec::new());
    }
    Ok(history::read(conn, schema).await?)
}

/// `server_version_num`, e.g. 150004 for PostgreSQL 15.4.
async fn server_version_num(conn: &mut PgConnection) -> Result<u32, MigrateError> {
    // language=PostgreSQL
    let v: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut *conn)
        .await?;
    Ok(v.parse().unwrap_or(u32::MAX))
}

/// How often the migrator's backend checks that its client is still there while a
/// statement runs (PostgreSQL 14+), so a killed migrator's session, and its lock, end within
/// about this long instead of when the statement finishes.
const CLIENT_CHECK_INTERVAL: &str = "1s";

/// Names the session, so whoever waits for our lock sees who holds it, and makes it end
/// promptly if this process dies (SIGKILL, node loss) in the middle of a statement.
async fn label(conn: &mut PgConnection) -> Result<(), MigrateError> {
    // language=PostgreSQL
    sqlx::query("select set_config('application_name', 'app migrate', false)")
        .execute(&mut *conn)
        .await?;
    if server_version_num(conn).await? >= 140_000 {
        // language=PostgreSQL
        sqlx::query("select set_config('client_connection_check_interval', $1, false)")
            .bind(CLIENT_CHECK_INTERVAL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every table of the current schema but the history, with its exact row count, by name.
pub(crate) async fn row_counts(
    conn: &mut PgConnection,
) -> Result<Vec<(String, i64)>, MigrateError> {
    let schema = history::current_schema(conn).await?;
    Ok(catalog::row_counts(conn, &schema).await?)
}

/// Parses a version given on the command line or in settings.
pub fn parse_version(value: &str) -> Result<Version, MigrateError> {
    Version::parse(value).map_err(|reason| MigrateError::BadVersion {
        value: value.to_owned(),
        reason,
    })
}
