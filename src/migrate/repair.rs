//! `app migrate repair` and `app migrate adopt`: Flyway's `repair`, plus the proof Flyway
//! never asks for.
//!
//! Repair, as Flyway 9/10 does it: remove failed rows; realign checksum, description and type
//! of applied versioned migrations with the available files; mark applied migrations that no
//! file provides any more (and that are not "future") as deleted by appending a `DELETE` row.
//! Baselines stay. All of it under the migration lock, in one transaction.
//!
//! Realigning a checksum says "the schema is what these files build". So before any checksum
//! is realigned (and always for `adopt`) the files are built, in the same transaction, into a
//! scratch schema, and the catalog of that schema is compared with the live one. Any
//! difference refuses the repair with [`MigrateError::SchemaDrift`] unless forced.
//!
//! The scratch build is [`super::scratch`]'s. A schema no history tracks yet (no table, or
//! nothing but a baseline) is adopted by [`untracked`].

use std::fmt;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::catalog::{self, Difference};
use super::history::{self, BASELINE_DESCRIPTION, HistoryRow, Kind as HistoryKind, NewRow};
use super::source::Migrations;
use super::version::Version;
use super::{MigrateError, flyway_key, lock, scratch};

mod untracked;

/// How [`repair`] runs.
#[derive(Debug, Clone)]
pub(crate) struct RepairOptions {
    /// Give up waiting for another migrator after this long.
    pub lock_timeout: Duration,
    /// Work out and verify every change, print it, change nothing (and take no lock).
    pub dry_run: bool,
    /// Verify the schema even when no checksum changes (`app migrate adopt`).
    pub always_verify: bool,
    /// Realign even when the live schema differs from what the migrations build.
    pub force: bool,
    /// Drop INVALID indexes (left by a failed `create index concurrently`).
    pub drop_invalid_indexes: bool,
    /// `adopt` on a schema no history tracks: record a baseline at the version the schema
    /// is proven to be, instead of refusing (Flyway's baselineOnMigrate, made safe).
    pub baseline_on_migrate: bool,
}

/// One change to the history.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A failed row is deleted.
    RemoveFailed {
        installed_rank: i32,
        /// Its version (empty for a repeatable one).
        version: String,
        script: String,
    },
    /// An applied row takes the file's checksum, description and type.
    Realign {
        installed_rank: i32,
        version: String,
        /// (checksum, description, type) as recorded.
        old: (Option<i32>, String, HistoryKind),
        /// (checksum, description, type) of the file.
        new: (i32, String, HistoryKind),
    },
    /// An applied migration without a file gets a `DELETE` row.
    MarkDeleted {
        version: String,
        /// The row that applied it.
        row: HistoryRow,
    },
    /// A schema no history tracked gets a baseline at the version it was proven to be
    /// (`adopt --baseline-on-migrate`); an existing baseline row at another version is moved.
    Baseline {
        /// The existing baseline row: its rank and version.
        old: Option<(i32, String)>,
        /// The version proven.
        version: String,
        /// The migration that version ends with.
        script: String,
    },
}

impl Change {
    /// Whether this change trusts the files for a schema they may not have built.
    pub(crate) fn realigns_checksum(&self) -> bool {
        matches!(self, Change::Realign { old, new, .. } if old.0 != Some(new.0))
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::RemoveFailed {
                installed_rank,
                version,
                script,
            } => write!(
                f,
                "version {version}: remove the failed row of {script} (installed_rank \
                 {installed_rank})"
            ),
            Change::Realign {
                version, old, new, ..
            } => {
                let mut parts = Vec::new();
                if old.0 != Some(new.0) {
                    let old = old.0.map_or_else(|| "none".into(), |c| c.to_string());
                    parts.push(format!("checksum {old} -> {}", new.0));
                }
                if old.1 != new.1 {
                    parts.push(format!("description {:?} -> {:?}", old.1, new.1));
                }
                if old.2 != new.2 {
                    parts.push(format!("type {} -> {}", old.2, new.2));
                }
                write!(f, "version {version}: realign {}", parts.join(", "))
            }
            Change::MarkDeleted { version, row } => write!(
                f,
                "version {version}: {} has no file: mark it deleted (append a DELETE row)",
                row.script
            ),
            Change::Baseline {
                old: None,
                version,
                script,
            } => write!(
                f,
                "version {version}: record a baseline (the schema is what the migrations \
                 build up to {script})"
            ),
            Change::Baseline {
                old: Some((_, old)),
                version,
                script,
            } => write!(
                f,
                "version {version}: move the baseline {old} -> {version} (the schema is what \
                 the migrations build up to {script})"
            ),
        }
    }
}

/// An index PostgreSQL keeps but does not use: what a failed `create index concurrently`
/// leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidIndex {
    pub name: String,
    /// The statement that drops it.
    pub drop: String,
}

/// What [`repair`] did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub(crate) struct RepairReport {
    /// The schema repaired.
    pub schema: String,
    /// Every change to the history, in the order applied.
    pub changes: Vec<Change>,
    /// Whether the live schema was compared with a scratch build of the migrations.
    pub verified: bool,
    /// The differences found (non-empty only when forced, or in a dry run).
    pub differences: Vec<Difference>,
    /// INVALID indexes in the schema.
    pub invalid_indexes: Vec<InvalidIndex>,
    /// Whether they were dropped.
    pub dropped_invalid_indexes: bool,
}

/// Repairs the history of the connection's current schema. See the module docs.
pub(crate) async fn repair(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &RepairOptions,
) -> Result<RepairReport, MigrateError> {
    super::label(conn).await?;
    let schema = history::current_schema(conn).await?;
    if opts.dry_run {
        return repair_locked(conn, &schema, migrations, opts).await;
    }
    let key = flyway_key(&history::qualified(&schema));
    let lock = lock::Lock::acquire(conn, key, opts.lock_timeout).await?;
    let result = repair_locked(conn, &schema, migrations, opts).await;
    if let Err(e) = lock.release(conn).await {
        tracing::warn!(error = %e, "could not release the migration lock explicitly");
    }
    result
}

async fn repair_locked(
    conn: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    opts: &RepairOptions,
) -> Result<RepairReport, MigrateError> {
    let mut tx = conn.begin().await?;
    let exists = history::exists(&mut tx, schema).await?;
    let rows = if exists {
        history::read(&mut tx, schema).await?
    } else {
        Vec::new()
    };
    let mut report = if opts.always_verify && untracked::is_untracked(&rows) {
        untracked::adopt(&mut tx, schema, migrations, &rows, opts).await?
    } else if !exists {
        return Err(MigrateError::NoHistory {
            schema: schema.to_owned(),
        });
    } else {
        verified_repair(&mut tx, schema, migrations, &rows, opts).await?
    };
    if opts.dry_run {
        tx.rollback().await?;
    } else {
        for change in &report.changes {
            write_change(&mut tx, schema, change).await?;
            tracing::info!(schema, "repaired: {change}");
        }
        tx.commit().await?;
    }
    indexes(conn, schema, opts, &mut report).await?;
    Ok(report)
}

/// Repair of a tracked history: plans the changes and, before any checksum is realigned (or
/// always, for `adopt`), proves the schema.
async fn verified_repair(
    tx: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    rows: &[HistoryRow],
    opts: &RepairOptions,
) -> Result<RepairReport, MigrateError> {
    let mut report = RepairReport {
        schema: schema.to_owned(),
        changes: plan_changes(migrations, rows),
        verified: false,
        differences: Vec::new(),
        invalid_indexes: Vec::new(),
        dropped_invalid_indexes: false,
    };
    if opts.always_verify || report.changes.iter().any(Change::realigns_checksum) {
        let up_to = applied_up_to(rows, &report.changes);
        let differences = verify(tx, schema, migrations, up_to.as_ref()).await?;
        report.verified = true;
        if !differences.is_empty() {
            let text = render(&differences);
            if !opts.force && !opts.dry_run {
                return Err(MigrateError::SchemaDrift {
                    schema: schema.to_owned(),
                    version: up_to.map_or_else(|| "none".into(), |v| v.to_string()),
                    differences: text,
                });
            }
            if opts.force {
                tracing::warn!(
                    "the live schema differs from what the migrations build; adopting anyway \
                     (--force):\n{text}"
                );
            }
        }
        report.differences = differences;
    }
    Ok(report)
}

/// Names the INVALID indexes of `schema` in the report, and drops them when asked.
async fn indexes(
    conn: &mut PgConnection,
    schema: &str,
    opts: &RepairOptions,
    report: &mut RepairReport,
) -> Result<(), MigrateError> {
    report.invalid_indexes = invalid_indexes(conn, schema).await?;
    if opts.drop_invalid_indexes && !opts.dry_run {
        for index in &report.invalid_indexes {
            // Outside any transaction (drop index concurrently refuses one), still under the
            // migration lock.
            sqlx::raw_sql(AssertSqlSafe(index.drop.as_str()))
                .execute(&mut *conn)
                .await?;
            tracing::info!(schema, index = %index.name, "dropped the INVALID index: {}", index.drop);
        }
        report.dropped_invalid_indexes = !report.invalid_indexes.is_empty();
    } else {
        for index in &report.invalid_indexes {
            tracing::warn!(
                schema,
                index = %index.name,
                "index {} is INVALID (left by a failed `create index concurrently`): drop it \
                 with `{}` before running the migration again, or run `app migrate repair \
                 --drop-invalid-indexes`",
                index.name,
                index.drop
            );
        }
    }
    Ok(())
}

/// The repairs the history needs, as Flyway's `repair` makes them: failed rows first, then
/// missing migrations, then realignments.
pub(super) fn plan_changes(migrations: &Migrations, rows: &[HistoryRow]) -> Vec<Change> {
    let mut changes = Vec::new();
    for row in rows.iter().filter(|r| !r.success) {
        changes.push(Change::RemoveFailed {
            installed_rank: row.installed_rank,
            version: row.version.clone().unwrap_or_default(),
            script: row.script.clone(),
        });
    }
    let latest = migrations.latest().map(|m| m.version.clone());
    let mut realign = Vec::new();
    for (version, row) in effective_applied(rows) {
        match migrations.all().iter().find(|m| m.version == version) {
            Some(m) => {
                let new = (m.checksum, m.description.clone(), HistoryKind::Sql);
                if row.checksum != Some(new.0) || row.description != new.1 || row.kind != new.2 {
                    realign.push(Change::Realign {
                        installed_rank: row.installed_rank,
                        version: row.version.clone().unwrap_or_default(),
                        old: (row.checksum, row.description.clone(), row.kind.clone()),
                        new,
                    });
                }
            }
            // Newer than every file: applied by a newer image, not missing.
            None if latest.as_ref().is_none_or(|l| version > *l) => {}
            None => changes.push(Change::MarkDeleted {
                version: row.version.clone().unwrap_or_default(),
                row: row.clone(),
            }),
        }
    }
    changes.extend(realign);
    changes
}

/// The successful versioned rows still in effect (no later DELETE or UNDO), by version;
/// baselines are left out: they stay as they are.
fn effective_applied(rows: &[HistoryRow]) -> Vec<(Version, &HistoryRow)> {
    let mut out: Vec<(Version, &HistoryRow)> = Vec::new();
    for row in rows {
        let Some(version) = row.parsed_version() else {
            continue;
        };
        if row.kind.is_removal() {
            out.retain(|(v, _)| *v != version);
        } else if row.success && !row.is_baseline() {
            out.retain(|(v, _)| *v != version);
            out.push((version, row));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The newest version the schema holds once repaired: what the scratch build goes up to.
fn applied_up_to(rows: &[HistoryRow], changes: &[Change]) -> Option<Version> {
    let deleted: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::MarkDeleted { version, .. } => Some(version.as_str()),
            _ => None,
        })
        .collect();
    let baseline = rows
        .iter()
        .filter(|r| r.is_baseline() && r.success)
        .filter_map(HistoryRow::parsed_version);
    effective_applied(rows)
        .into_iter()
        .filter(|(_, r)| !deleted.contains(&r.version.as_deref().unwrap_or_default()))
        .map(|(v, _)| v)
        .chain(baseline)
        .max()
}

/// Builds the migrations up to `up_to` in a scratch schema inside a savepoint, compares it
/// with `schema`, rolls the savepoint back (the scratch schema goes with it) and returns
/// the differences.
async fn verify(
    tx: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    up_to: Option<&Version>,
) -> Result<Vec<Difference>, MigrateError> {
    let Some(up_to) = up_to else {
        // Nothing applied: the expected schema is empty.
        let mut sp = tx.begin().await?;
        let found = catalog::snapshot(&mut sp, schema).await;
        sp.rollback().await?;
        return Ok(catalog::diff(
            &Default::default(),
            &found?,
            &Default::default(),
        ));
    };
    let mut sp = tx.begin().await?;
    let result = async {
        let steps = scratch::build(&mut sp, &scratch::name(), migrations, Some(up_to)).await?;
        let found = catalog::snapshot(&mut sp, schema).await?;
        Ok::<_, MigrateError>(match steps.last() {
            Some(last) => catalog::diff(&last.snapshot, &found, &last.origins),
            None => catalog::diff(&Default::default(), &found, &Default::default()),
        })
    }
    .await;
    // On every path: the scratch schema and the search_path change go with the savepoint.
    let rolled_back = sp.rollback().await;
    let differences = result?;
    rolled_back?;
    Ok(differences)
}

/// The differences, one per line, for messages.
pub(super) fn render(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(|d| format!("  - {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn write_change(
    conn: &mut PgConnection,
    schema: &str,
    change: &Change,
) -> Result<(), MigrateError> {
    let table = history::qualified(schema);
    match change {
        Change::RemoveFailed { installed_rank, .. } => {
            // language=PostgreSQL
            let sql = format!("delete from {table} where installed_rank = $1 and not success");
            sqlx::query(AssertSqlSafe(sql))
                .bind(*installed_rank)
                .execute(&mut *conn)
                .await?;
        }
        Change::Realign {
            installed_rank,
            new,
            ..
        } => {
            // language=PostgreSQL
            let sql = format!(
                "update {table} set checksum = $1, description = $2, type = $3
                  where installed_rank = $4"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(new.0)
                .bind(&new.1)
                .bind(new.2.as_str())
                .bind(*installed_rank)
                .execute(&mut *conn)
                .await?;
        }
        Change::MarkDeleted { version, row } => {
            // Flyway's JdbcTableSchemaHistory.delete: a new row repeating the applied one's
            // version, description, script and checksum, type DELETE, execution time 0.
            let new = NewRow {
                version: version.as_str(),
                description: &row.description,
                kind: HistoryKind::Delete,
                script: &row.script,
                checksum: row.checksum,
                execution_time: 0,
                success: row.success,
            };
            history::insert(conn, schema, &new).await?;
        }
        Change::Baseline {
            old: Some((installed_rank, _)),
            version,
            ..
        } => {
            // language=PostgreSQL
            let sql = format!("update {table} set version = $1 where installed_rank = $2");
            sqlx::query(AssertSqlSafe(sql))
                .bind(version)
                .bind(*installed_rank)
                .execute(&mut *conn)
                .await?;
        }
        Change::Baseline {
            old: None, version, ..
        } => {
            history::create(conn, schema).await?;
            let row = NewRow {
                version,
                description: BASELINE_DESCRIPTION,
                kind: HistoryKind::Baseline,
                script: BASELINE_DESCRIPTION,
                checksum: None,
                execution_time: 0,
                success: true,
            };
            history::insert(conn, schema, &row).await?;
        }
    }
    Ok(())
}

/// INVALID indexes in `schema`, each with the statement that drops it.
async fn invalid_indexes(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<InvalidIndex>, sqlx::Error> {
    // language=PostgreSQL
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select c.relname::text, format('drop index concurrently %I.%I', n.nspname, c.relname)
           from pg_catalog.pg_index i
           join pg_catalog.pg_class c on c.oid = i.indexrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where not i.indisvalid and n.nspname = $1
          order by c.relname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, drop)| InvalidIndex { name, drop })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;

    fn migrations() -> Migrations {
        Migrations::from_files(vec![
            ("V2__a.sql".into(), b"select 2;".to_vec()),
            ("V3__b.sql".into(), b"select 3;".to_vec()),
        ])
        .unwrap()
    }

    fn row(
        rank: i32,
        version: &str,
        kind: &str,
        checksum: Option<i32>,
        success: bool,
    ) -> HistoryRow {
        HistoryRow {
            installed_rank: rank,
            version: Some(version.into()),
            description: if version == "2" { "a" } else { "b" }.into(),
            kind: HistoryKind::from(kind.to_owned()),
            script: format!("V{version}__x.sql"),
            checksum,
            installed_on: NaiveDateTime::default(),
            success,
        }
    }

    #[test]
    fn seed_history_needs_a_delete_and_two_realignments() {
        let m = migrations();
        let rows = [
            row(1, "1", "SQL", Some(7), true),
            row(2, "2", "SQL", Some(8), true),
            row(3, "3", "SQL", Some(m.all()[1].checksum), true),
            row(4, "9", "SQL", Some(1), true),
        ];
        let changes = plan_changes(&m, &rows);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(changes.len(), 2, "{text:#?}");
        assert!(
            text[0].starts_with("version 1: V1__x.sql has no file"),
            "{text:#?}"
        );
        assert_eq!(
            text[1],
            format!("version 2: realign checksum 8 -> {}", m.all()[0].checksum)
        );
        assert!(changes[1].realigns_checksum());
        assert_eq!(
            applied_up_to(&rows, &changes).map(|v| v.to_string()),
            Some("9".into())
        );
    }

    #[test]
    fn baselines_stay_failed_rows_go_and_deleted_rows_are_not_deleted_twice() {
        let m = migrations();
        let rows = [
            row(1, "1", "BASELINE", None, true),
            row(2, "2", "SQL", Some(m.all()[0].checksum), true),
            row(3, "1.5", "SQL", Some(3), true),
            row(4, "1.5", "DELETE", Some(3), true),
            row(5, "3", "SQL", Some(m.all()[1].checksum), false),
        ];
        let changes = plan_changes(&m, &rows);
        assert!(
            matches!(
                &changes[..],
                [Change::RemoveFailed { installed_rank: 5, version, script }]
                    if version == "3" && script == "V3__x.sql"
            ),
            "{changes:#?}"
        );
        assert!(!changes[0].realigns_checksum());
    }
}
