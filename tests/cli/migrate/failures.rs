//! Failing, failed, mixed and future migrations: what is left behind and which exit code.

use super::*;
use crate::support::{Cluster, output_text};

#[test]
fn a_failing_migration_rolls_back_completely_and_writes_no_row() {
    let db = Cluster::shared().create_db();
    let location = fixture("failing");
    let out = migrate(&db, &["--location", location.to_str().unwrap()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(11), "{text}");
    assert!(
        text.contains("migration V2__break_half_way.sql failed at line 9"),
        "{text}"
    );
    assert!(text.contains("no_such_column"), "{text}");
    assert!(text.contains("SQLSTATE 42703"), "{text}");
    assert!(text.contains("rolled back"), "{text}");

    assert_eq!(
        history(&db).len(),
        1,
        "only V1 is recorded: {:?}",
        history(&db)
    );
    assert!(history(&db)[0].starts_with("1|create things|"));
    assert_eq!(db.psql("select to_regclass('half_done') is null"), "t");
    assert_eq!(
        db.psql(
            "select count(*) from information_schema.columns
              where table_name = 'things' and column_name = 'colour'"
        ),
        "0"
    );
    assert_eq!(db.psql("select count(*) from things"), "1");
    // The lock was released: an immediate retry does not wait for it.
    let out = migrate(
        &db,
        &[
            "--location",
            location.to_str().unwrap(),
            "--lock-timeout",
            "0s",
        ],
    );
    assert_eq!(out.status.code(), Some(11), "{}", output_text(&out));
}

#[test]
fn a_failed_row_blocks_with_instructions() {
    let db = Cluster::shared().create_db();
    assert!(migrate(&db, &["--target", "3"]).status.success());
    assert_eq!(history(&db).len(), 2);
    db.psql(
        "insert into flyway_schema_history
           (installed_rank, version, description, type, script, checksum, installed_by,
            execution_time, success)
         values (3, '4', 'create user profiles table', 'SQL',
                 'V4__create_user_profiles_table.sql', 1, current_user, 5, false)",
    );
    for args in [&[][..], &["validate"][..]] {
        let out = migrate(&db, args);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(14), "{text}");
        assert!(
            text.contains("V4__create_user_profiles_table.sql"),
            "{text}"
        );
        assert!(text.contains("installed_rank = 3"), "{text}");
    }
}

#[test]
fn a_script_mixing_concurrent_and_transactional_statements_is_refused() {
    let db = Cluster::shared().create_db();
    let out = migrate(&db, &["--location", fixture("mixed").to_str().unwrap()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(15), "{text}");
    assert!(text.contains("V1__mixed_kinds.sql mixes"), "{text}");
    assert!(text.contains("line 3"), "{text}");
    assert_eq!(
        db.psql("select to_regclass('flyway_schema_history') is null"),
        "t"
    );
}

#[test]
fn a_failed_concurrent_index_leaves_a_failed_row_that_blocks() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__dupes.sql"),
        "create table dupes (v int);\ninsert into dupes values (1), (1);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V2__unique_concurrently.sql"),
        "-- fails: the values are not unique\ncreate unique index concurrently dupes_v on dupes (v);",
    )
    .unwrap();
    let location = dir.path().to_str().unwrap();

    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(11), "{text}");
    assert!(
        text.contains("V2__unique_concurrently.sql failed at line 2"),
        "{text}"
    );
    assert!(text.contains("SQLSTATE 23505"), "{text}");
    assert!(text.contains("outside a transaction"), "{text}");
    let rows = history(&db);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows[1].starts_with("2|unique concurrently|SQL|") && rows[1].ends_with("|f"));

    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(14), "{text}");
    assert!(text.contains("installed_rank = 2"), "{text}");
}

#[test]
fn a_future_row_is_ignored_with_a_warning() {
    let db = Cluster::shared().create_db();
    assert!(migrate(&db, &[]).status.success());
    db.psql(
        "insert into flyway_schema_history
           (installed_rank, version, description, type, script, checksum, installed_by,
            execution_time, success)
         values (99, '6', 'from a newer image', 'SQL', 'V6__from_a_newer_image.sql', 42,
                 current_user, 5, true)",
    );
    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("newer than this binary"), "{text}");
    assert!(text.contains('6'), "{text}");
    let out = migrate(&db, &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = migrate(&db, &["info"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| Future "));
}
