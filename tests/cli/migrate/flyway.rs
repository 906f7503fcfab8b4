//! Flyway features a migrating team relies on, each against Flyway's documented behaviour:
//! ignore migration patterns, placeholders, repeatable migrations and SQL callbacks.

use super::*;
use crate::support::{Cluster, app, output_text};

/// The seed's history after our V2..V5: an applied V1 we have no file for.
fn with_v1_applied_without_a_file(db: &TestDb<'_>) {
    let out = migrate(db, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    db.psql(
        "insert into flyway_schema_history values
           (100, '1', 'create users table', 'SQL', 'V1__create_users_table.sql', 1234567,
            'app_user', now(), 9, true)",
    );
}

#[test]
fn a_missing_v1_passes_validate_and_migrate_when_a_pattern_ignores_it() {
    let db = Cluster::shared().create_db();
    with_v1_applied_without_a_file(&db);

    let out = migrate(&db, &["validate"]);
    assert_eq!(out.status.code(), Some(10), "{}", output_text(&out));

    for pattern in ["1:missing", "versioned:missing", "*:missing", "*:*"] {
        for args in [vec!["validate"], vec![]] {
            let mut args = args;
            args.extend(["--ignore-migration-patterns", pattern]);
            let out = migrate(&db, &args);
            let text = output_text(&out);
            assert!(out.status.success(), "{args:?}: {text}");
            assert!(
                text.contains("ignored by the ignore migration patterns")
                    && text.contains("V1__create_users_table.sql"),
                "{args:?}: the ignored problem is warned about: {text}"
            );
        }
    }
    // A pattern for another version, or for repeatables, does not cover V1.
    for pattern in ["2:missing", "repeatable:missing", "versioned:future"] {
        let out = migrate(&db, &["validate", "--ignore-migration-patterns", pattern]);
        assert_eq!(
            out.status.code(),
            Some(10),
            "{pattern}: {}",
            output_text(&out)
        );
    }
    // The setting, as Flyway's comma-separated environment variable; `info` still shows it.
    let out = app()
        .args(["migrate", "validate"])
        .envs(db.app_env())
        .env(
            "APP_MIGRATE__IGNORE_MIGRATION_PATTERNS",
            "*:future, 1:missing",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let out = migrate(&db, &["info", "--ignore-migration-patterns", "1:missing"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.contains("| 1 ") && l.contains("| Missing ")),
        "{text}"
    );
}

#[test]
fn future_rows_pass_by_default_and_fail_when_the_patterns_leave_out_star_future() {
    let db = Cluster::shared().create_db();
    assert!(migrate(&db, &[]).status.success());
    db.psql(
        "insert into flyway_schema_history values
           (100, '9', 'newer', 'SQL', 'V9__newer.sql', 1, 'app_user', now(), 9, true)",
    );
    let out = migrate(&db, &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let out = migrate(&db, &["--ignore-migration-patterns", "versioned:missing"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("V9__newer.sql (version 9)") && text.contains("*:future"),
        "{text}"
    );
    let out = migrate(&db, &["validate", "--ignore-migration-patterns", ""]);
    assert_eq!(out.status.code(), Some(10), "{}", output_text(&out));
    for pattern in ["*:future", "9:future", "versioned:*,repeatable:missing"] {
        let out = migrate(&db, &["--ignore-migration-patterns", pattern]);
        assert!(out.status.success(), "{pattern}: {}", output_text(&out));
    }
}

#[test]
fn an_ignored_out_of_order_file_is_warned_about_and_not_applied() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("V1__one.sql"), "create table one (id int);").unwrap();
    std::fs::write(
        dir.path().join("V3__three.sql"),
        "create table three (id int);",
    )
    .unwrap();
    assert!(migrate(&db, &["--location", location]).status.success());
    std::fs::write(dir.path().join("V2__two.sql"), "create table two (id int);").unwrap();

    let out = migrate(
        &db,
        &[
            "--location",
            location,
            "--ignore-migration-patterns",
            "*:ignored",
        ],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ignored by the ignore migration patterns") && text.contains("V2__two.sql"),
        "{text}"
    );
    assert_eq!(db.psql("select to_regclass('two') is null"), "t");
    assert_eq!(history(&db).len(), 2);
}

#[test]
fn a_malformed_pattern_is_a_usage_error_naming_it() {
    let db = Cluster::shared().create_db();
    for pattern in ["missing", "*:gone", "x1:missing"] {
        let out = migrate(&db, &["validate", "--ignore-migration-patterns", pattern]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            text.contains(&format!("invalid ignore migration pattern {pattern:?}")),
            "{text}"
        );
    }
}

#[test]
fn placeholders_are_replaced_the_checksum_is_of_the_file_and_an_unknown_one_is_exit_15() {
    let db = Cluster::shared().create_db();
    let dir = fixture("placeholders");
    let location = dir.to_str().unwrap();

    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(15), "{text}");
    assert!(
        text.contains("V1__placeholders.sql")
            && text.contains("line 2")
            && text.contains("${table_name}"),
        "file, line and placeholder are named: {text}"
    );
    assert_eq!(db.psql("select to_regclass('flyway_schema_history') is null or (select count(*) = 0 from flyway_schema_history)"), "t");

    let with = |value: &str, args: &[&str]| {
        app()
            .arg("migrate")
            .args(["--location", location])
            .args(args)
            .envs(db.app_env())
            .env("APP_MIGRATE__PLACEHOLDERS__TABLE_NAME", value)
            .output()
            .unwrap()
    };
    let out = with("things", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        db.psql(
            "select concat_ws('|', made_by = current_user, in_db = current_database(), \
             in_schema, history, at ~ '^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$', file, dollars) \
             from things"
        ),
        "t|t|public|flyway_schema_history|t|V1__placeholders.sql| ${ not a placeholder }"
    );
    // Flyway's checksum of a versioned migration is of the file as written, before replacement:
    // another value later does not make the applied migration "changed".
    let bytes = std::fs::read(dir.join("V1__placeholders.sql")).unwrap();
    let rows = history(&db);
    assert!(
        rows[0].starts_with(&format!(
            "1|placeholders|SQL|V1__placeholders.sql|{}|t",
            flyway_checksum(&bytes)
        )),
        "{rows:#?}"
    );
    let out = with("other_things", &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn without_placeholder_replacement_the_text_runs_as_written() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__literal.sql"),
        "create table t (s text default '${kept}');\ninsert into t default values;",
    )
    .unwrap();
    let out = app()
        .args(["migrate", "--location", dir.path().to_str().unwrap()])
        .envs(db.app_env())
        .env("APP_MIGRATE__PLACEHOLDER_REPLACEMENT", "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(db.psql("select s from t"), "${kept}");
}

/// `info`'s states of the lines of the repeatable migration described as `description`, in
/// order, comma-separated (Flyway shows every run, and the file again when it is pending).
fn info_state(db: &TestDb<'_>, location: &str, description: &str) -> String {
    let out = migrate(db, &["--location", location, "info"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let states: Vec<String> = text
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() > 5 && cells[1].is_empty() && cells[2] == description)
        .map(|cells| cells[5].to_owned())
        .collect();
    assert!(!states.is_empty(), "{description} not in info: {text}");
    states.join(", ")
}

#[test]
fn repeatables_run_after_the_versioned_ones_and_again_when_their_checksum_changes() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("repeatable")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let location = dir.path().to_str().unwrap();
    assert_eq!(info_state(&db, location, "item views"), "Pending");

    let out = migrate(&db, &["--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    // Flyway's rows: null version, type SQL, in description order after the versioned ones;
    // the checksum of a repeatable is of its text with placeholders replaced.
    let rows = |db: &TestDb<'_>| -> Vec<String> {
        db.psql(
            "select concat_ws('|', coalesce(version, 'null'), description, type, script, \
             checksum, success) from flyway_schema_history order by installed_rank",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let function = String::from_utf8(read("R__a_function.sql"))
        .unwrap()
        .replace("${flyway:defaultSchema}", "public");
    let first = rows(&db);
    assert_eq!(first.len(), 3, "{first:#?}");
    assert!(first[0].starts_with("1|create items|SQL|V1__create_items.sql|"));
    assert_eq!(
        first[1],
        format!(
            "null|a function|SQL|R__a_function.sql|{}|t",
            flyway_checksum(function.as_bytes())
        )
    );
    assert_eq!(
        first[2],
        format!(
            "null|item views|SQL|R__item_views.sql|{}|t",
            flyway_checksum(&read("R__item_views.sql"))
        )
    );
    assert_eq!(db.psql("select item_count()"), "1");
    assert_eq!(info_state(&db, location, "item views"), "Success");

    // Unchanged: nothing runs again.
    let out = migrate(&db, &["--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(rows(&db).len(), 3);

    // Changed: outdated, re-applied with a new row; the old row stays, validate passes.
    std::fs::write(
        dir.path().join("R__item_views.sql"),
        "create or replace view item_names as select name, id from items;\n",
    )
    .unwrap();
    assert_eq!(info_state(&db, location, "item views"), "Outdated, Pending");
    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("applied 1 repeatable migration(s): R__item_views.sql"),
        "{text}"
    );
    let after = rows(&db);
    assert_eq!(after.len(), 4, "{after:#?}");
    assert!(after[3].starts_with("null|item views|SQL|R__item_views.sql|"));
    assert_eq!(db.psql("select count(*) from item_names where id = 1"), "1");
    assert_eq!(
        info_state(&db, location, "item views"),
        "Superseded, Success"
    );
    assert!(
        migrate(&db, &["--location", location, "validate"])
            .status
            .success()
    );
}

#[test]
fn sql_callbacks_run_when_flyway_runs_them_and_write_no_history() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("callbacks")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let location = dir.path().to_str().unwrap();
    let log = |db: &TestDb<'_>| -> Vec<String> {
        db.psql("select event from callback_log order by n")
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let out = migrate(&db, &["--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        log(&db),
        [
            "beforeMigrate",
            "beforeEach",
            "afterEach afterEachMigrate.sql",
            "beforeEach",
            "afterEach afterEachMigrate.sql",
            "afterMigrate"
        ]
    );
    let rows = history(&db);
    assert_eq!(rows.len(), 2, "callbacks get no history row: {rows:#?}");

    // Nothing pending: beforeMigrate and afterMigrate still run, as in Flyway.
    assert!(migrate(&db, &["--location", location]).status.success());
    assert_eq!(log(&db)[6..], ["beforeMigrate", "afterMigrate"]);

    // A failing migration: rolled back with its beforeEach; afterMigrateError runs.
    std::fs::write(dir.path().join("V3__broken.sql"), "select nope;\n").unwrap();
    let out = migrate(&db, &["--location", location]);
    assert_eq!(out.status.code(), Some(11), "{}", output_text(&out));
    assert_eq!(log(&db)[8..], ["beforeMigrate", "afterMigrateError"]);
    assert_eq!(history(&db).len(), 2);
}

/// `info`'s state per version (repeatables: per description), in order.
fn info_states(db: &TestDb<'_>, location: &str, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["--location", location, "info"];
    all.extend(args);
    let out = migrate(db, &all);
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() > 5 && cells[1] != "Version")
        .map(|cells| {
            let key = if cells[1].is_empty() {
                cells[2]
            } else {
                cells[1]
            };
            (key.to_owned(), cells[5].to_owned())
        })
        .collect()
}

#[test]
fn info_shows_every_state_flyway_shows_with_its_names() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    let write = |name: &str, sql: &str| std::fs::write(dir.path().join(name), sql).unwrap();
    write("V1__a.sql", "create table a (id int);");
    write("V3__c.sql", "create table c (id int);");
    write("R__r.sql", "create or replace view r as select 1 as x;");
    assert!(migrate(&db, &["--location", location]).status.success());
    // A late branch applied out of order, and the repeatable changed: it runs again.
    write("V2__b.sql", "create table b (id int);");
    write("R__r.sql", "create or replace view r as select 2 as x;");
    let out = migrate(&db, &["--location", location, "--out-of-order"]);
    assert!(out.status.success(), "{}", output_text(&out));
    // Changed again, not applied yet; files below the baseline, failed, ignored, pending and
    // above the target; rows without files, failed and deleted.
    write("R__r.sql", "create or replace view r as select 3 as x;");
    write("V0_1__z.sql", "select 1;");
    write("V2_2__f.sql", "select 1;");
    write("V2_5__i.sql", "select 1;");
    write("V4__d.sql", "select 1;");
    write("V5__e.sql", "select 1;");
    db.psql(
        "insert into flyway_schema_history values
           (100, '0.5', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', null,
            'u', now(), 0, true),
           (101, '1.5', 'gone', 'SQL', 'V1_5__gone.sql', 1, 'u', now(), 0, true),
           (102, '1.6', 'gone failed', 'SQL', 'V1_6__gone_failed.sql', 1, 'u', now(), 0, false),
           (103, '1.7', 'deleted', 'SQL', 'V1_7__deleted.sql', 1, 'u', now(), 0, true),
           (104, '1.7', 'deleted', 'DELETE', 'V1_7__deleted.sql', 1, 'u', now(), 0, true),
           (105, '2.2', 'f', 'SQL', 'V2_2__f.sql', 1, 'u', now(), 0, false)",
    );
    let states = info_states(&db, location, &["--target", "4"]);
    let expected = [
        ("0.1", "Below Baseline"),
        ("0.5", "Baseline"),
        ("1", "Success"),
        ("1.5", "Missing"),
        ("1.6", "Failed (Missing)"),
        ("1.7", "Deleted"),
        ("2", "Out of Order"),
        ("2.2", "Failed"),
        ("2.5", "Ignored"),
        ("3", "Success"),
        ("4", "Pending"),
        ("5", "Above Target"),
        ("r", "Superseded"),
        ("r", "Outdated"),
        ("r", "Pending"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(states, expected);

    // Rows newer than every file: future, succeeded or failed.
    db.psql(
        "insert into flyway_schema_history values
           (106, '9', 'newer', 'SQL', 'V9__newer.sql', 1, 'u', now(), 0, true),
           (107, '10', 'newer failed', 'SQL', 'V10__newer_failed.sql', 1, 'u', now(), 0, false)",
    );
    let states = info_states(&db, location, &[]);
    let tail: Vec<&str> = states
        .iter()
        .filter(|(k, _)| k == "9" || k == "10")
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(tail, ["Future", "Failed (Future)"]);
}
