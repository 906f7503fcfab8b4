//! `app migrate adopt` on a schema no history tracks: the seed's schema with no
//! `flyway_schema_history` at all, or with nothing but a baseline at the wrong version.
//! Flyway's `baselineOnMigrate` would record version 1 and run V2 again on it; adopt proves
//! which version the schema is and baselines there, and only with `--baseline-on-migrate`.

use super::*;
use crate::support::{Cluster, TestDb, output_text};

/// The seed's schema and data as our migrations build them (up to `target`), with no
/// history table: created by hand, or restored without it.
fn untracked_schema(db: &TestDb<'_>, target: &str) {
    let out = migrate(db, &["--target", target]);
    assert!(out.status.success(), "{}", output_text(&out));
    db.psql("drop table flyway_schema_history");
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn no_history(db: &TestDb<'_>) -> bool {
    db.psql("select to_regclass('flyway_schema_history') is null") == "t"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_seed_schema_is_proven_at_version_5_and_baselined_only_with_the_flag() {
    let db = Cluster::shared().create_db();
    untracked_schema(&db, "latest");

    // As Flyway: a non-empty schema without history is refused, naming baseline.
    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(text.contains("--baseline-on-migrate"), "{text}");

    // Adopt proves the version but does not baseline without being told to.
    let out = migrate(&db, &["adopt"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    for part in [
        "up to version 5 (V5__cleanup_users_table.sql)",
        "--baseline-on-migrate",
        "migrate.baseline_on_migrate",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(no_history(&db), "a refused adopt created the history");

    let out = migrate(&db, &["adopt", "--dry-run"]);
    let printed = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        printed.contains("would change version 5: record a baseline"),
        "{printed}"
    );
    assert!(no_history(&db), "the dry run created the history");

    let out = migrate(&db, &["adopt", "--baseline-on-migrate"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("repaired: version 5: record a baseline"),
        "{text}"
    );
    assert!(text.contains("users\t3"), "row counts: {text}");
    assert_eq!(
        history(&db),
        ["5|<< Flyway Baseline >>|BASELINE|<< Flyway Baseline >>|t"]
    );
    assert_eq!(
        db.psql("select count(*) from pg_namespace where nspname like 'app_adopt_%'"),
        "0"
    );

    let out = migrate(&db, &[]);
    assert!(
        output_text(&out).contains("up to date at version 5"),
        "{}",
        output_text(&out)
    );
    assert!(migrate(&db, &["validate"]).status.success());
    let info = stdout(&migrate(&db, &["info"]));
    assert_eq!(info.matches("| Below Baseline ").count(), 4, "{info}");
    assert_eq!(info.matches("| Baseline ").count(), 1, "{info}");
    serve_reads_user(&db, "bob").await;
}

#[test]
fn flyway_style_baseline_on_migrate_would_rerun_v2_which_is_why_adopt_proves_the_version() {
    let db = Cluster::shared().create_db();
    untracked_schema(&db, "latest");
    // Flyway's baselineOnMigrate: a baseline at baselineVersion (1), then V2.. run again.
    let out = migrate(&db, &["--baseline-on-migrate"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(11), "{text}");
    assert!(
        text.contains("V2__create_users_table.sql") && text.contains("already exists"),
        "{text}"
    );
}

#[test]
fn a_schema_at_version_3_is_baselined_at_3_and_migrate_applies_v4_and_v5() {
    let db = Cluster::shared().create_db();
    untracked_schema(&db, "3");
    db.psql("insert into users (username, email, password_hash) values ('carol', 'carol@example.com', '!locked')");
    let out = app_env(
        &db,
        &["adopt"],
        &[("APP_MIGRATE__BASELINE_ON_MIGRATE", "true")],
    );
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "the setting does what the flag does: {text}"
    );
    assert_eq!(
        history(&db),
        ["3|<< Flyway Baseline >>|BASELINE|<< Flyway Baseline >>|t"]
    );
    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert!(
        text.contains("successfully applied 2 migration(s)"),
        "{text}"
    );
    assert_eq!(db.psql("select count(*) from user_profiles"), "4");
    assert!(migrate(&db, &["adopt"]).status.success());
}

#[test]
fn a_baseline_only_history_at_the_wrong_version_is_named_then_moved_with_the_flag() {
    let db = Cluster::shared().create_db();
    let out = migrate(&db, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // The seed's "baseline conflict": Flyway's baseline at 1 over the whole schema.
    db.psql(
        "delete from flyway_schema_history;
         insert into flyway_schema_history values
           (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', null,
            'app_user', now(), 0, true)",
    );
    let out = migrate(&db, &["adopt"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("(only a baseline at version 1)") && text.contains("up to version 5"),
        "{text}"
    );

    let out = migrate(&db, &["adopt", "--baseline-on-migrate"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("move the baseline 1 -> 5"), "{text}");
    assert_eq!(
        history(&db),
        ["5|<< Flyway Baseline >>|BASELINE|<< Flyway Baseline >>|t"]
    );
    let out = migrate(&db, &[]);
    assert!(
        output_text(&out).contains("up to date at version 5"),
        "{}",
        output_text(&out)
    );
    // A baseline that is right needs nothing.
    let out = migrate(&db, &["adopt"]);
    assert!(
        output_text(&out).contains("needs no repair"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn an_untracked_drifted_schema_is_refused_with_the_diff_and_an_empty_one_has_nothing_to_adopt() {
    let db = Cluster::shared().create_db();
    untracked_schema(&db, "latest");
    db.psql("alter table user_profiles add column nickname text");
    let out = migrate(&db, &["adopt", "--baseline-on-migrate"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(16), "{text}");
    assert!(
        text.contains("up to version 5") && text.contains("column user_profiles.nickname"),
        "{text}"
    );
    assert!(no_history(&db));

    let empty = Cluster::shared().create_db();
    let out = migrate(&empty, &["adopt", "--baseline-on-migrate"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("nothing to adopt") && text.contains("APP_DATABASE__NAME"),
        "{text}"
    );

    // Repair has no history to work on and says what to run instead.
    let out = migrate(&db, &["repair"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("app migrate adopt --baseline-on-migrate"),
        "{text}"
    );
}

/// `app migrate ARGS` on `db` with extra environment.
fn app_env(db: &TestDb<'_>, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    crate::support::app()
        .arg("migrate")
        .args(args)
        .envs(db.app_env())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
