//! `app migrate adopt` on a schema no history tracks: no `flyway_schema_history` table (the
//! seed's schema created by hand, or restored without it), an empty one, or one holding
//! nothing but a baseline.
//!
//! Flyway's answer is `baselineOnMigrate`: record a baseline at `baselineVersion` (default 1)
//! and migrate from there, trusting the operator that the schema is at that version. On the
//! seed's schema that is wrong twice: it is at version 5, so V2 would run again and fail, and
//! nothing checks the claim. Here the migrations are built one by one in a scratch schema and
//! the live schema is compared with each step: the version it *is* gets the baseline. Still
//! only with `--baseline-on-migrate` (or `migrate.baseline_on_migrate`), the safety net
//! Flyway keeps for a configuration mistake (the wrong database); without it the command
//! refuses, naming the version it found and the flag.

use sqlx::{Connection, PgConnection};

use super::{Change, RepairOptions, RepairReport, render};
use crate::migrate::catalog::{self, Difference};
use crate::migrate::history::{HistoryRow, Kind};
use crate::migrate::source::Migrations;
use crate::migrate::{MigrateError, scratch};

/// Whether the history tracks no migration: every row is Flyway's `SCHEMA` marker or a
/// baseline (or there are no rows, or no table).
pub(super) fn is_untracked(rows: &[HistoryRow]) -> bool {
    rows.iter()
        .all(|r| r.kind == Kind::Schema || (r.is_baseline() && r.success))
}

/// Where the live schema stands among the migrations' steps.
#[derive(Debug)]
struct Found {
    /// The step it matches (or, failing that, the one it differs from least).
    step: scratch::Step,
    /// Its differences from that step (empty: an exact match).
    differences: Vec<Difference>,
    /// Other versions it matches exactly (a migration that changes only data builds the same
    /// schema as the one before it).
    also: Vec<String>,
}

/// Proves which version the schema is and, allowed to, records a baseline there. Runs in the
/// caller's transaction, which commits (or, in a dry run, rolls back) the changes reported.
pub(super) async fn adopt(
    tx: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
    rows: &[HistoryRow],
    opts: &RepairOptions,
) -> Result<RepairReport, MigrateError> {
    let found = locate(tx, schema, migrations).await?;
    let version = found.step.version.to_string();
    if !found.also.is_empty() {
        tracing::warn!(
            schema,
            "the schema is also what the migrations build up to version(s) {} (a migration \
             that changes only data leaves the schema as it was); taking the newest, {version}: \
             check that its data changes are in the database",
            found.also.join(", ")
        );
    }
    if !found.differences.is_empty() {
        let text = render(&found.differences);
        if !opts.force && !opts.dry_run {
            return Err(MigrateError::SchemaDrift {
                schema: schema.to_owned(),
                version,
                differences: text,
            });
        }
        if opts.force {
            tracing::warn!(
                "the live schema differs from what the migrations build at every version; the \
                 closest is {version}; adopting it anyway (--force):\n{text}"
            );
        }
    }
    let baseline = rows.iter().rfind(|r| r.is_baseline());
    let current = baseline.and_then(HistoryRow::parsed_version);
    let mut changes = Vec::new();
    if current.as_ref() != Some(&found.step.version) {
        changes.push(Change::Baseline {
            old: baseline.map(|r| (r.installed_rank, r.version.clone().unwrap_or_default())),
            version: version.clone(),
            script: found.step.script.clone(),
        });
    }
    if !changes.is_empty() && !opts.baseline_on_migrate && !opts.dry_run {
        return Err(MigrateError::BaselineNeeded {
            schema: schema.to_owned(),
            version,
            script: found.step.script,
            baseline: baseline.and_then(|r| r.version.clone()),
        });
    }
    Ok(RepairReport {
        schema: schema.to_owned(),
        changes,
        verified: true,
        differences: found.differences,
        invalid_indexes: Vec::new(),
        dropped_invalid_indexes: false,
    })
}

/// Builds every migration in a scratch schema (inside a savepoint, rolled back on every
/// path) and finds the newest step the live schema matches, or the closest one.
async fn locate(
    tx: &mut PgConnection,
    schema: &str,
    migrations: &Migrations,
) -> Result<Found, MigrateError> {
    let mut sp = tx.begin().await?;
    let result = async {
        let live = catalog::snapshot(&mut sp, schema).await?;
        if live.is_empty() {
            return Err(MigrateError::NothingToAdopt {
                schema: schema.to_owned(),
            });
        }
        let steps = scratch::build(&mut sp, &scratch::name(), migrations, None).await?;
        Ok((live, steps))
    }
    .await;
    let rolled_back = sp.rollback().await;
    let (live, steps) = result?;
    rolled_back?;

    let exact: Vec<&scratch::Step> = steps.iter().filter(|s| s.snapshot == live).collect();
    if let Some((newest, older)) = exact.split_last() {
        return Ok(Found {
            step: (*newest).clone(),
            differences: Vec::new(),
            also: older.iter().map(|s| s.version.to_string()).collect(),
        });
    }
    // The fewest differences; on a tie the newer version.
    let closest = steps
        .into_iter()
        .map(|s| (catalog::diff(&s.snapshot, &live, &s.origins), s))
        .min_by(|(da, a), (db, b)| da.len().cmp(&db.len()).then(b.version.cmp(&a.version)))
        .ok_or_else(|| MigrateError::NothingToAdopt {
            schema: schema.to_owned(),
        })?;
    Ok(Found {
        differences: closest.0,
        step: closest.1,
        also: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;

    fn row(kind: Kind, success: bool) -> HistoryRow {
        HistoryRow {
            installed_rank: 1,
            version: Some("1".into()),
            description: "x".into(),
            kind,
            script: "x".into(),
            checksum: None,
            installed_on: NaiveDateTime::default(),
            success,
        }
    }

    #[test]
    fn only_schema_markers_and_baselines_leave_a_schema_untracked() {
        assert!(is_untracked(&[]));
        assert!(is_untracked(&[
            row(Kind::Schema, true),
            row(Kind::Baseline, true)
        ]));
        assert!(!is_untracked(&[
            row(Kind::Baseline, true),
            row(Kind::Sql, true)
        ]));
        assert!(!is_untracked(&[row(Kind::Sql, false)]));
    }
}
