//! Compares this binary's migrations with the history: what is applied, pending, future,
//! missing or failed, and whether the applied ones still match their files. Pure logic: the
//! database is read elsewhere.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use super::history::{HistoryRow, Kind};
use super::ignore::{IgnorePatterns, Status};
use super::script::Migration;
use super::source::Migrations;
use super::version::Version;

/// Where one migration (or history row) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// In the history, succeeded.
    Applied,
    /// Not applied yet; the next `app migrate` runs it.
    Pending,
    /// Not applied and newer than `--target`.
    AboveTarget,
    /// The baseline row.
    Baseline,
    /// At or below the baseline: never run, the baseline stands for it.
    BelowBaseline,
    /// Applied, but newer than every migration of this binary (a newer image applied it).
    Future,
    /// Applied, older than this binary's latest migration, but no file for it.
    Missing,
    /// In the history with `success = false`, with a file.
    Failed,
    /// Failed, and no file of this binary has its version (older than the latest).
    FailedMissing,
    /// Failed, and newer than every migration of this binary.
    FailedFuture,
    /// Applied, but after a higher version was (with `--out-of-order`): replaying the files
    /// in order would not give the same result.
    OutOfOrder,
    /// Not applied, yet older than the newest applied migration (out of order).
    Ignored,
    /// Applied once, then marked deleted by a `DELETE` row (`app migrate repair`, or Flyway's).
    Deleted,
    /// A repeatable migration whose file changed since it was applied: it runs again.
    Outdated,
    /// An earlier run of a repeatable migration that ran again since.
    Superseded,
}

impl State {
    /// What `info` prints: Flyway's display name of the state (`MigrationState`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Applied => "Success",
            State::Pending => "Pending",
            State::AboveTarget => "Above Target",
            State::Baseline => "Baseline",
            State::BelowBaseline => "Below Baseline",
            State::Future => "Future",
            State::Missing => "Missing",
            State::Failed => "Failed",
            State::FailedMissing => "Failed (Missing)",
            State::FailedFuture => "Failed (Future)",
            State::OutOfOrder => "Out of Order",
            State::Ignored => "Ignored",
            State::Deleted => "Deleted",
            State::Outdated => "Outdated",
            State::Superseded => "Superseded",
        }
    }
}

/// One line of `app migrate info`.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub version: String,
    pub description: String,
    /// History row type, or [`Kind::Sql`] for a file not applied yet.
    pub kind: Kind,
    /// The file name.
    pub script: String,
    /// When it was applied.
    pub installed_on: Option<NaiveDateTime>,
    pub state: State,
    /// For an applied migration with a file: do checksum and description still match?
    pub checksum_ok: Option<bool>,
}

/// A failed row in the history.
#[derive(Debug, Clone)]
pub(crate) struct FailedRow {
    /// Its rank, to delete it by.
    pub installed_rank: i32,
    pub version: String,
    pub script: String,
}

/// The comparison of files and history.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Every migration and history row, by version.
    pub lines: Vec<Line>,
    /// What `app migrate` would run next, oldest first (indexes into the migrations).
    pub pending: Vec<usize>,
    /// Applied versions this binary does not know, newer than its latest: warned about.
    pub future: Vec<String>,
    /// Failed rows: they block migrating until repaired.
    pub failed: Vec<FailedRow>,
    /// Checksum or description mismatches, missing and out-of-order migrations.
    pub problems: Vec<String>,
    /// Problems an ignore migration pattern matched: logged as warnings, never an error.
    pub warnings: Vec<String>,
    /// The newest successfully applied version (a baseline counts), if any.
    pub applied: Option<Version>,
    /// Repeatable migrations to (re-)apply after the versioned ones: indexes into the
    /// repeatables given to [`plan_repeatables`].
    pub repeatable_pending: Vec<usize>,
}

/// Builds the plan. `history` is in `installed_rank` order; `target` limits what is pending.
pub(super) fn plan(
    migrations: &Migrations,
    history: &[HistoryRow],
    target: Option<&Version>,
) -> Plan {
    plan_with(
        migrations,
        history,
        target,
        false,
        &IgnorePatterns::default(),
    )
}

/// [`plan`], with Flyway's `outOfOrder`: a pending migration older than the newest applied
/// one is pending (applied in version order) instead of a problem, and Flyway's
/// `ignoreMigrationPatterns`: a missing, out-of-order ("ignored") or future migration that a
/// pattern matches is a warning instead of a problem (future ones are a problem only when the
/// patterns leave out Flyway's default `*:future`).
pub(super) fn plan_with(
    migrations: &Migrations,
    history: &[HistoryRow],
    target: Option<&Version>,
    out_of_order: bool,
    ignore: &IgnorePatterns,
) -> Plan {
    // The effective history: the last word on each version wins; DELETE and UNDO rows take a
    // version back out, as Flyway's `repair` and `undo` mean them to.
    let mut applied: BTreeMap<VersionKey, &HistoryRow> = BTreeMap::new();
    let mut baseline: Option<&HistoryRow> = None;
    // Ranks of rows applied after a higher version was (Flyway's "Out of Order").
    let mut out_of_order_ranks: Vec<i32> = Vec::new();
    let mut highest: Option<Version> = None;
    // Rows a DELETE took out, for `info` to show as deleted.
    let mut deleted: Vec<&HistoryRow> = Vec::new();
    for row in history {
        let Some(version) = row.parsed_version() else {
            continue; // SCHEMA markers and repeatable migrations carry no version.
        };
        if row.success && !row.kind.is_removal() {
            if highest.as_ref().is_some_and(|h| version < *h) {
                if !row.is_baseline() {
                    out_of_order_ranks.push(row.installed_rank);
                }
            } else {
                highest = Some(version.clone());
            }
        }
        if matches!(row.kind, Kind::Delete) {
            deleted.extend(applied.remove(&VersionKey(version)));
        } else if row.kind.is_removal() {
            applied.remove(&VersionKey(version));
        } else if row.is_baseline() {
            baseline = Some(row);
        } else {
            applied.insert(VersionKey(version), row);
        }
    }
    let baseline_version = baseline.and_then(HistoryRow::parsed_version);
    let newest_applied = applied
        .keys()
        .map(|k| k.0.clone())
        .chain(baseline_version.clone())
        .max();
    let latest_local = migrations.latest().map(|m| m.version.clone());

    let newest_success = applied
        .iter()
        .filter(|(_, row)| row.success)
        .map(|(k, _)| k.0.clone())
        .chain(baseline_version.clone())
        .max();
    let mut out = Plan {
        applied: newest_success,
        ..Plan::default()
    };
    if let Some(row) = baseline {
        out.lines.push(line_of(row, State::Baseline, None));
    }
    for row in deleted {
        out.lines.push(line_of(row, State::Deleted, None));
    }
    for (index, m) in migrations.all().iter().enumerate() {
        let key = VersionKey(m.version.clone());
        if let Some(row) = applied.remove(&key) {
            if !row.success {
                out.failed.push(failed_row(row));
                out.lines.push(line_of(row, State::Failed, None));
                continue;
            }
            let ok = check_applied(m, row, &mut out.problems);
            let state = if out_of_order_ranks.contains(&row.installed_rank) {
                State::OutOfOrder
            } else {
                State::Applied
            };
            out.lines.push(line_of(row, state, Some(ok)));
            continue;
        }
        // Flyway's order: below the baseline, above the target, then ignored.
        let state = if baseline_version.as_ref().is_some_and(|b| m.version <= *b) {
            State::BelowBaseline
        } else if target.is_some_and(|t| m.version > *t) {
            State::AboveTarget
        } else if !out_of_order && newest_applied.as_ref().is_some_and(|n| m.version < *n) {
            let ignored = ignore.ignores(Some(&m.version), Status::Ignored);
            let list = if ignored {
                &mut out.warnings
            } else {
                &mut out.problems
            };
            list.push(format!(
                "{} (version {}) is not applied but is older than the newest applied \
                 version {}: it would run out of order. Give it a version above {} \
                 (rename the file), or apply its changes by hand and record them",
                m.script,
                m.version,
                newest_applied
                    .as_ref()
                    .map(Version::to_string)
                    .unwrap_or_default(),
                newest_applied
                    .as_ref()
                    .map(Version::to_string)
                    .unwrap_or_default(),
            ));
            State::Ignored
        } else {
            out.pending.push(index);
            State::Pending
        };
        out.lines.push(Line {
            version: m.version.to_string(),
            description: m.description.clone(),
            kind: Kind::Sql,
            script: m.script.clone(),
            installed_on: None,
            state,
            checksum_ok: None,
        });
    }
    // History rows with no file of this binary.
    for (key, row) in applied {
        let future = latest_local.as_ref().is_none_or(|l| key.0 > *l);
        let state = if !row.success {
            out.failed.push(failed_row(row));
            if future {
                State::FailedFuture
            } else {
                State::FailedMissing
            }
        } else if future {
            if ignore.ignores(Some(&key.0), Status::Future) {
                out.future.push(key.0.to_string());
            } else {
                out.problems.push(format!(
                    "{} (version {}) is applied in the database but newer than every \
                     migration of this binary (a newer image applied it); this is refused \
                     because the ignore migration patterns leave out Flyway's default \
                     `*:future`",
                    row.script, key.0
                ));
            }
            State::Future
        } else {
            let list = if ignore.ignores(Some(&key.0), Status::Missing) {
                &mut out.warnings
            } else {
                &mut out.problems
            };
            list.push(format!(
                "{} (version {}) is applied in the database but this binary has no such \
                 migration: restore the file, or if it was removed on purpose (or this \
                 database comes from Flyway and other files), run `app migrate adopt`, which \
                 proves the schema and then records it as deleted, as `app migrate repair` \
                 does",
                row.script, key.0
            ));
            State::Missing
        };
        out.lines.push(line_of(row, state, None));
    }
    sort_lines(&mut out.lines);
    out
}

/// Versions in order, repeatable migrations (no version) after them, as Flyway's `info`;
/// at the baseline's version, the file below the baseline before the baseline row.
fn sort_lines(lines: &mut [Line]) {
    let key = |l: &Line| {
        (
            l.version.is_empty(),
            Version::parse(&l.version).ok(),
            l.state == State::Baseline,
        )
    };
    lines.sort_by_key(key);
}

/// Adds Flyway's repeatable migrations to `plan`: one never applied is pending, one whose
/// latest successful row has another checksum is outdated (both run again, after every
/// versioned migration), one with the same checksum is applied. `repeatables` carry their
/// effective checksum (placeholders replaced); rows are matched by description, as Flyway
/// does. As in Flyway's `info`: earlier runs show as superseded, an outdated run is followed
/// by the file's pending line, a failed run shows as failed, and a repeatable row with no
/// file shows as missing (and is tolerated, as before).
pub(super) fn plan_repeatables(plan: &mut Plan, repeatables: &[Migration], history: &[HistoryRow]) {
    let mut runs: BTreeMap<&str, Vec<&HistoryRow>> = BTreeMap::new();
    for row in history {
        if row.version.is_none() && row.kind == Kind::Sql {
            if row.success {
                runs.entry(row.description.as_str()).or_default().push(row);
            } else {
                plan.lines.push(line_of(row, State::Failed, None));
            }
        }
    }
    let pending_line = |r: &Migration| Line {
        version: String::new(),
        description: r.description.clone(),
        kind: Kind::Sql,
        script: r.script.clone(),
        installed_on: None,
        state: State::Pending,
        checksum_ok: None,
    };
    for (index, r) in repeatables.iter().enumerate() {
        let rows = runs.remove(r.description.as_str()).unwrap_or_default();
        let Some((latest, earlier)) = rows.split_last() else {
            plan.repeatable_pending.push(index);
            plan.lines.push(pending_line(r));
            continue;
        };
        for row in earlier {
            plan.lines.push(line_of(row, State::Superseded, None));
        }
        if latest.checksum == Some(r.checksum) {
            plan.lines.push(line_of(latest, State::Applied, None));
        } else {
            plan.repeatable_pending.push(index);
            plan.lines.push(line_of(latest, State::Outdated, None));
            plan.lines.push(pending_line(r));
        }
    }
    for row in runs.into_values().flatten() {
        plan.lines.push(line_of(row, State::Missing, None));
    }
    sort_lines(&mut plan.lines);
}

/// Compares an applied row with its file; records mismatches.
fn check_applied(m: &Migration, row: &HistoryRow, problems: &mut Vec<String>) -> bool {
    let mut ok = true;
    if row.checksum != Some(m.checksum) {
        ok = false;
        problems.push(format!(
            "{}: checksum mismatch for version {}: applied with {}, the file now has {}. \
             An applied migration must not change; put the change in a new migration (or, \
             if the edit is harmless or the database was migrated by Flyway from other \
             files, run `app migrate adopt` (or `app migrate repair`): it builds the files in \
             a scratch schema, compares, and only then accepts the new checksums)",
            m.script,
            m.version,
            row.checksum
                .map_or_else(|| "none".into(), |c| c.to_string()),
            m.checksum
        ));
    }
    if row.description != m.description {
        ok = false;
        problems.push(format!(
            "{}: description mismatch for version {}: applied as {:?}, the file says {:?}",
            m.script, m.version, row.description, m.description
        ));
    }
    if row.kind != Kind::Sql {
        ok = false;
        problems.push(format!(
            "{}: type mismatch for version {}: applied as {}, the file is SQL",
            m.script, m.version, row.kind
        ));
    }
    ok
}

fn failed_row(row: &HistoryRow) -> FailedRow {
    FailedRow {
        installed_rank: row.installed_rank,
        version: row.version.clone().unwrap_or_default(),
        script: row.script.clone(),
    }
}

fn line_of(row: &HistoryRow, state: State, checksum_ok: Option<bool>) -> Line {
    Line {
        version: row.version.clone().unwrap_or_default(),
        description: row.description.clone(),
        kind: row.kind.clone(),
        script: row.script.clone(),
        installed_on: Some(row.installed_on),
        state,
        checksum_ok,
    }
}

/// A version as a map key (ordered, with 1.0 == 1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VersionKey(Version);

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations(names: &[&str]) -> Migrations {
        Migrations::from_files(
            names
                .iter()
                .map(|n| (n.to_string(), format!("select '{n}';").into_bytes()))
                .collect(),
        )
        .unwrap()
    }

    fn row(
        rank: i32,
        version: &str,
        kind: Kind,
        m: Option<&Migration>,
        success: bool,
    ) -> HistoryRow {
        HistoryRow {
            installed_rank: rank,
            version: Some(version.into()),
            description: m.map_or("x".into(), |m| m.description.clone()),
            kind,
            script: m.map_or(format!("V{version}__x.sql"), |m| m.script.clone()),
            checksum: m.map(|m| m.checksum),
            installed_on: NaiveDateTime::default(),
            success,
        }
    }

    #[test]
    fn repeatables_are_pending_applied_or_outdated_by_checksum() {
        let m = migrations(&["V1__a.sql", "R__new.sql", "R__same.sql", "R__changed.sql"]);
        let r = m.repeatables();
        let rep = |rank, m: &Migration, checksum| HistoryRow {
            version: None,
            checksum: Some(checksum),
            ..row(rank, "x", Kind::Sql, Some(m), true)
        };
        let history = [
            row(1, "1", Kind::Sql, Some(&m.all()[0]), true),
            rep(2, &r[2], r[2].checksum),
            rep(3, &r[0], 1),
            rep(4, &r[0], 2),
        ];
        let mut p = plan(&m, &history, None);
        plan_repeatables(&mut p, r, &history);
        let states: Vec<(&str, State)> = p
            .lines
            .iter()
            .map(|l| (l.description.as_str(), l.state))
            .collect();
        assert_eq!(
            states,
            [
                ("a", State::Applied),
                ("changed", State::Superseded),
                ("changed", State::Outdated),
                ("changed", State::Pending),
                ("new", State::Pending),
                ("same", State::Applied)
            ]
        );
        assert_eq!(p.repeatable_pending, [0, 1]);
    }

    #[test]
    fn a_version_applied_after_a_higher_one_is_out_of_order_and_failed_rows_say_why() {
        let m = migrations(&["V1__a.sql", "V2__b.sql", "V3__c.sql"]);
        let history = [
            row(1, "1", Kind::Sql, Some(&m.all()[0]), true),
            row(2, "3", Kind::Sql, Some(&m.all()[2]), true),
            row(3, "2", Kind::Sql, Some(&m.all()[1]), true),
            row(4, "2.5", Kind::Sql, None, false),
            row(5, "9", Kind::Sql, None, false),
        ];
        let p = plan(&m, &history, None);
        let states: Vec<(&str, &str)> = p
            .lines
            .iter()
            .map(|l| (l.version.as_str(), l.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("1", "Success"),
                ("2", "Out of Order"),
                ("2.5", "Failed (Missing)"),
                ("3", "Success"),
                ("9", "Failed (Future)")
            ]
        );
    }

    #[test]
    fn fresh_database_has_everything_pending() {
        let m = migrations(&["V2__a.sql", "V3__b.sql"]);
        let p = plan(&m, &[], None);
        assert_eq!(p.pending, [0, 1]);
        assert!(p.problems.is_empty() && p.applied.is_none());
    }

    #[test]
    fn baseline_hides_older_versions_and_target_limits() {
        let m = migrations(&["V1__old.sql", "V2__a.sql", "V3__b.sql"]);
        let history = [row(1, "1", Kind::Baseline, None, true)];
        let p = plan(&m, &history, Some(&Version::parse("2").unwrap()));
        assert_eq!(p.pending, [1]);
        let states: Vec<State> = p.lines.iter().map(|l| l.state).collect();
        assert!(states.contains(&State::BelowBaseline) && states.contains(&State::AboveTarget));
    }

    #[test]
    fn edits_missing_and_out_of_order_are_problems() {
        let m = migrations(&["V2__a.sql", "V3__b.sql", "V4__c.sql"]);
        let mut edited = row(1, "2", Kind::Sql, Some(&m.all()[0]), true);
        edited.checksum = Some(12345);
        let history = [
            edited,
            row(2, "2.5", Kind::Sql, None, true),
            row(3, "4", Kind::Sql, Some(&m.all()[2]), true),
        ];
        let p = plan(&m, &history, None);
        let all = p.problems.join("\n");
        assert!(all.contains("V2__a.sql: checksum mismatch"), "{all}");
        assert!(
            all.contains("V2.5__x.sql (version 2.5) is applied"),
            "{all}"
        );
        assert!(
            all.contains("V3__b.sql (version 3) is not applied"),
            "{all}"
        );
        assert!(p.pending.is_empty());
    }

    #[test]
    fn a_renamed_description_is_a_problem() {
        let m = migrations(&["V2__new_name.sql"]);
        let mut r = row(1, "2", Kind::Sql, Some(&m.all()[0]), true);
        r.description = "old name".into();
        let p = plan(&m, &[r], None);
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].contains("V2__new_name.sql: description mismatch"));
        assert_eq!(p.lines[0].checksum_ok, Some(false));
    }

    #[test]
    fn future_rows_are_noted_not_problems_and_failed_rows_block() {
        let m = migrations(&["V2__a.sql"]);
        let history = [
            row(1, "2", Kind::Sql, Some(&m.all()[0]), true),
            row(2, "7", Kind::Sql, None, true),
        ];
        let p = plan(&m, &history, None);
        assert_eq!(p.future, ["7"]);
        assert!(p.problems.is_empty() && p.pending.is_empty());

        let history = [row(1, "2", Kind::Sql, Some(&m.all()[0]), false)];
        let p = plan(&m, &history, None);
        assert_eq!(p.failed.len(), 1);
        assert!(p.pending.is_empty());
    }

    #[test]
    fn flyway_schema_markers_and_repeatables_are_tolerated() {
        let m = migrations(&["V2__a.sql"]);
        let mut schema = row(0, "x", Kind::Schema, None, true);
        schema.version = None;
        schema.script = "\"public\"".into();
        let mut repeatable = row(1, "x", Kind::Sql, None, true);
        repeatable.version = None;
        let p = plan(&m, &[schema, repeatable], None);
        assert_eq!(p.pending, [0]);
        assert!(p.problems.is_empty() && p.failed.is_empty());
    }

    #[test]
    fn versions_match_numerically_and_deletes_undo_rows() {
        let m = migrations(&["V1.0__a.sql"]);
        let mut r = row(1, "1", Kind::Sql, Some(&m.all()[0]), true);
        r.version = Some("1".into());
        let p = plan(&m, &[r.clone()], None);
        assert!(
            p.pending.is_empty() && p.problems.is_empty(),
            "{:?}",
            p.problems
        );

        let mut deleted = r.clone();
        deleted.installed_rank = 2;
        deleted.kind = Kind::Delete;
        let p = plan(&m, &[r, deleted], None);
        assert_eq!(p.pending, [0]);
    }
}
