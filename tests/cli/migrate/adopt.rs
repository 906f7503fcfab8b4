//! Adopting the seed's database: `app migrate repair` and `app migrate adopt` against a
//! history written by Flyway from other files (V1 as an SQL row or a baseline, V2..V5 with
//! other checksums), over the same schema and over drifted ones; failed rows; racing
//! migrators; and a killed migrator that must not wedge the next one.

use super::*;
use crate::support::{Cluster, TestDb, app, output_text};
use std::process::Output;

/// The seed's live database as far as we know it: the schema our migrations build, a history
/// whose V2..V5 checksums are not ours (the seed's own files differ byte for byte), and a V1
/// we have no file for: applied as SQL (`V1__create_users_table.sql`, Week 3 Day 4) or, after
/// the seed's "baseline conflict" lesson, as Flyway's baseline.
pub(super) fn prepare_like_seed(db: &TestDb<'_>, v1_as_baseline: bool) {
    let out = migrate(db, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // Two steps: the primary key is checked row by row.
    db.psql(
        "update flyway_schema_history
            set installed_rank = installed_rank + 1000, checksum = checksum # 1431655765,
                installed_by = 'app_user'",
    );
    db.psql("update flyway_schema_history set installed_rank = installed_rank - 999");
    let v1 = if v1_as_baseline {
        "(1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', null"
    } else {
        "(1, '1', 'create users table', 'SQL', 'V1__create_users_table.sql', 1234567"
    };
    db.psql(&format!(
        "insert into flyway_schema_history values {v1}, 'app_user', now(), 9, true)"
    ));
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_seed_history_is_refused_naming_repair_then_repaired_and_adopted() {
    for (v1_as_baseline, command) in [(false, "repair"), (true, "adopt")] {
        let db = Cluster::shared().create_db();
        prepare_like_seed(&db, v1_as_baseline);
        let case = format!("V1 as baseline: {v1_as_baseline}, {command}");

        let out = migrate(&db, &[]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(10), "{case}: {text}");
        assert!(text.contains("app migrate adopt"), "{case}: {text}");
        assert!(text.contains("app migrate repair"), "{case}: {text}");
        assert!(!text.contains("flyway repair"), "{case}: {text}");

        let before = history(&db);
        let out = migrate(&db, &[command, "--dry-run"]);
        let text = output_text(&out);
        assert!(out.status.success(), "{case}: {text}");
        let printed = stdout(&out);
        assert!(
            printed.contains("is what the migrations build"),
            "{case}: {printed}"
        );
        for version in 2..=5 {
            assert!(
                printed.contains(&format!("would change version {version}: realign checksum")),
                "{case}: {printed}"
            );
        }
        assert_eq!(
            printed.contains("would change version 1: V1__create_users_table.sql has no file"),
            !v1_as_baseline,
            "{case}: {printed}"
        );
        assert_eq!(
            history(&db),
            before,
            "{case}: the dry run changed the history"
        );
        assert_eq!(
            db.psql("select count(*) from pg_namespace where nspname like 'app_adopt_%'"),
            "0",
            "{case}: the scratch schema was left behind"
        );

        let out = migrate(&db, &[command]);
        let text = output_text(&out);
        assert!(out.status.success(), "{case}: {text}");
        assert!(
            text.contains("repaired: version 2: realign checksum"),
            "{case}: {text}"
        );
        let rows = history(&db);
        if v1_as_baseline {
            assert_eq!(rows.len(), 5, "{case}: {rows:#?}");
            assert!(
                rows[0].contains("|BASELINE|"),
                "{case}: the baseline stays: {rows:#?}"
            );
        } else {
            assert_eq!(rows.len(), 6, "{case}: {rows:#?}");
            assert_eq!(
                rows[5], "1|create users table|DELETE|V1__create_users_table.sql|1234567|t",
                "{case}: Flyway's DELETE row: {rows:#?}"
            );
        }

        let out = migrate(&db, &[]);
        let text = output_text(&out);
        assert!(out.status.success(), "{case}: {text}");
        assert!(text.contains("up to date at version 5"), "{case}: {text}");
        let out = migrate(&db, &["validate"]);
        assert!(out.status.success(), "{case}: {}", output_text(&out));
        let info = stdout(&migrate(&db, &["info"]));
        assert_eq!(
            info.contains("| Deleted "),
            !v1_as_baseline,
            "{case}: {info}"
        );
        assert!(!info.contains("MISMATCH"), "{case}: {info}");
        // The data is untouched, and a second repair has nothing to do.
        assert_eq!(db.psql("select count(*) from user_profiles"), "3");
        let out = migrate(&db, &["repair"]);
        assert!(output_text(&out).contains("needs no repair"), "{case}");
        assert_eq!(history(&db).len(), rows.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_and_reads_a_user_after_adopt_and_after_repair() {
    for (v1_as_baseline, command) in [(false, "adopt"), (true, "repair")] {
        let db = Cluster::shared().create_db();
        prepare_like_seed(&db, v1_as_baseline);
        let case = format!("V1 as baseline: {v1_as_baseline}, {command}");
        let out = migrate(&db, &[command]);
        assert!(out.status.success(), "{case}: {}", output_text(&out));
        // The init container's `app migrate`, then the main container.
        let out = migrate(&db, &[]);
        assert!(out.status.success(), "{case}: {}", output_text(&out));
        let alice = serve_reads_user(&db, "alice").await;
        assert_eq!(alice["user_profiles"]["location"], "Seattle, WA", "{case}");
    }
}

#[test]
fn a_drifted_schema_is_refused_with_a_diff_naming_the_object() {
    let drifts = [
        (
            "alter table user_profiles add column nickname text",
            &[
                "column user_profiles.nickname",
                "not created by the migrations",
            ][..],
        ),
        (
            "alter table user_profiles drop constraint user_profiles_email_key",
            &[
                "index user_profiles_email_key (created by V4__create_user_profiles_table.sql)",
                "found nothing",
            ][..],
        ),
        (
            "alter table users alter column created_at set default now()",
            &[
                "column users.created_at (created by V2__create_users_table.sql)",
                "default CURRENT_TIMESTAMP",
                "default now()",
            ][..],
        ),
        (
            "alter table user_profiles drop constraint user_profiles_user_id_fkey;
             alter table user_profiles add constraint user_profiles_user_id_fkey
               foreign key (user_id) references users (id)",
            &[
                "constraint user_profiles.user_profiles_user_id_fkey",
                "ON DELETE CASCADE",
            ][..],
        ),
    ];
    for (i, (drift, names)) in drifts.iter().enumerate() {
        let db = Cluster::shared().create_db();
        prepare_like_seed(&db, false);
        db.psql(drift);
        let before = history(&db);
        for command in ["repair", "adopt"] {
            let out = migrate(&db, &[command]);
            let text = output_text(&out);
            assert_eq!(out.status.code(), Some(16), "{drift} / {command}: {text}");
            assert!(text.contains("adoption refused"), "{drift}: {text}");
            for name in *names {
                assert!(text.contains(name), "{drift}: {name:?} not in {text}");
            }
            assert_eq!(history(&db), before, "{drift}: the history changed");
        }
        let out = migrate(&db, &["adopt", "--dry-run"]);
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stdout(&out).contains(names[0]), "{}", stdout(&out));
        assert_eq!(history(&db), before);
        assert_eq!(
            db.psql("select count(*) from pg_namespace where nspname like 'app_adopt_%'"),
            "0"
        );
        if i == 0 {
            // Forced: adopted, the difference logged.
            let out = migrate(&db, &["adopt", "--force"]);
            let text = output_text(&out);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("adopting anyway"), "{text}");
            assert!(text.contains("user_profiles.nickname"), "{text}");
            assert!(migrate(&db, &["validate"]).status.success());
        }
    }
}

#[test]
fn a_failed_row_of_a_transactional_migration_is_removed_and_migrate_goes_on() {
    let db = Cluster::shared().create_db();
    assert!(migrate(&db, &["--target", "3"]).status.success());
    db.psql(
        "insert into flyway_schema_history
           (installed_rank, version, description, type, script, checksum, installed_by,
            execution_time, success)
         values (3, '4', 'create user profiles table', 'SQL',
                 'V4__create_user_profiles_table.sql', 1, current_user, 5, false)",
    );
    assert_eq!(migrate(&db, &[]).status.code(), Some(14));

    let out = migrate(&db, &["repair"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("version 4: remove the failed row of V4__create_user_profiles_table.sql"),
        "{text}"
    );
    assert_eq!(history(&db).len(), 2);
    let out = migrate(&db, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        db.psql("select string_agg(version || ':' || success, ' ' order by installed_rank) from flyway_schema_history"),
        "2:true 3:true 4:true 5:true"
    );
}

#[test]
fn a_failed_concurrent_index_is_repaired_and_its_invalid_index_named_then_dropped() {
    let db = Cluster::shared().create_db();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__dupes.sql"),
        "create table dupes (v int);\ninsert into dupes values (1), (1);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V2__unique_concurrently.sql"),
        "create unique index concurrently dupes_v on dupes (v);",
    )
    .unwrap();
    let location = dir.path().to_str().unwrap();
    assert_eq!(
        migrate(&db, &["--location", location]).status.code(),
        Some(11)
    );
    let invalid = "select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid
                    where c.relname = 'dupes_v' and not i.indisvalid";
    assert_eq!(db.psql(invalid), "1");

    let out = migrate(&db, &["--location", location, "repair", "--dry-run"]);
    let printed = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        printed.contains("remove the failed row of V2__unique_concurrently.sql"),
        "{printed}"
    );
    assert!(
        printed.contains(
            "index dupes_v is INVALID; drop it with: drop index concurrently public.dupes_v;"
        ),
        "{printed}"
    );
    assert_eq!(history(&db).len(), 2);

    let out = migrate(&db, &["--location", location, "repair"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("drop index concurrently public.dupes_v"),
        "{text}"
    );
    assert_eq!(history(&db).len(), 1, "the failed row is gone");
    assert_eq!(db.psql(invalid), "1", "named, not dropped without the flag");

    let out = migrate(
        &db,
        &["--location", location, "repair", "--drop-invalid-indexes"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(db.psql("select to_regclass('dupes_v') is null"), "t");

    db.psql("truncate dupes");
    let out = migrate(&db, &["--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(db.psql(invalid), "0");
    assert_eq!(history(&db).len(), 2);
}

#[test]
fn repair_racing_migrate_on_eight_processes_repairs_once_and_applies_nothing_twice() {
    let db = Cluster::shared().create_db();
    prepare_like_seed(&db, false);
    let children: Vec<(bool, Child)> = (0..8)
        .map(|i| {
            let repair = i % 2 == 0;
            let args: &[&str] = if repair { &["repair"] } else { &[] };
            (repair, spawn_migrate(&db, args))
        })
        .collect();
    let mut repaired = 0;
    for (repair, child) in children {
        let out = child.wait_with_output().unwrap();
        let text = output_text(&out);
        if repair {
            assert!(out.status.success(), "{text}");
            if text.contains("repaired the schema history") {
                repaired += 1;
            } else {
                assert!(text.contains("needs no repair"), "{text}");
            }
        } else {
            // Before the repair: refused (10); after it: nothing to apply.
            assert!(matches!(out.status.code(), Some(0 | 10)), "{text}");
            assert!(!text.contains("successfully applied"), "{text}");
        }
    }
    assert_eq!(repaired, 1);
    assert_eq!(
        db.psql(
            "select string_agg(version || type || n, ' ' order by version, type)
               from (select version, type, count(*) as n from flyway_schema_history
                      group by version, type) c"
        ),
        "1DELETE1 1SQL1 2SQL1 3SQL1 4SQL1 5SQL1"
    );
    assert!(migrate(&db, &["validate"]).status.success());
    assert_eq!(db.psql("select count(*) from users"), "3");
}

#[test]
fn a_killed_migrator_does_not_wedge_the_next_one() {
    let db = Cluster::shared().create_db();
    let slow = tempfile::tempdir().unwrap();
    std::fs::write(
        slow.path().join("V1__very_slow.sql"),
        "create table very_slow (id int);\nselect pg_sleep(120);\ninsert into very_slow values (1);",
    )
    .unwrap();
    let quick = tempfile::tempdir().unwrap();
    std::fs::write(
        quick.path().join("V1__very_slow.sql"),
        "create table very_slow (id int);\ninsert into very_slow values (1);",
    )
    .unwrap();

    let mut first = spawn_migrate(&db, &["--location", slow.path().to_str().unwrap()]);
    wait_for_lock_holder(&db);
    // Let the migration reach its long statement, then kill the process without warning.
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap();
    let _ = first.wait();

    // Without the client check the killed session sleeps on for two minutes, holding the
    // lock, and this times out after one (exit 12).
    let started = Instant::now();
    let out = migrate(
        &db,
        &[
            "--location",
            quick.path().to_str().unwrap(),
            "--lock-timeout",
            "60s",
        ],
    );
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "after {:?}: {text}",
        started.elapsed()
    );
    eprintln!(
        "the next migrator completed {:?} after the kill",
        started.elapsed()
    );
    assert_eq!(db.psql("select count(*) from very_slow"), "1");
    assert_eq!(history(&db).len(), 1);
}

#[test]
fn out_of_order_applies_an_older_pending_version_instead_of_refusing_it() {
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
    // A branch merged late: version 2 arrives after 3 was applied.
    std::fs::write(dir.path().join("V2__two.sql"), "create table two (id int);").unwrap();

    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("V2__two.sql (version 2) is not applied"),
        "{text}"
    );

    let out = migrate(&db, &["--location", location, "--out-of-order"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("successfully applied 1 migration(s)"),
        "{text}"
    );
    assert_eq!(db.psql("select to_regclass('two') is not null"), "t");
    let rows = history(&db);
    assert!(rows[2].starts_with("2|two|SQL|V2__two.sql|"), "{rows:#?}");
    // Applied after version 3: Flyway's info calls it "Out of Order".
    let info = stdout(&migrate(&db, &["--location", location, "info"]));
    assert!(
        info.lines()
            .any(|l| l.starts_with("| 2 ") && l.contains("| Out of Order ")),
        "{info}"
    );

    // The setting does the same; nothing is left to apply, and validate passes.
    let out = app()
        .args(["migrate", "--location", location])
        .envs(db.app_env())
        .env("APP_MIGRATE__OUT_OF_ORDER", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        migrate(&db, &["--location", location, "validate"])
            .status
            .success()
    );
}
