//! Many migrators at once: the advisory lock, waiting, timing out, and releasing it.

use super::*;
use crate::support::{Cluster, output_text};

#[test]
fn eight_migrators_started_together_apply_each_version_exactly_once() {
    let db = Cluster::shared().create_db();
    let children: Vec<Child> = (0..8).map(|_| spawn_migrate(&db, &[])).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    assert_eq!(
        db.psql(
            "select string_agg(version || 'x' || n, ' ' order by version)
               from (select version, count(*) as n from flyway_schema_history group by version) c"
        ),
        "2x1 3x1 4x1 5x1"
    );
    assert_eq!(db.psql("select count(*) from users"), "3");
}

#[test]
fn create_index_concurrently_completes_while_a_second_migrator_waits() {
    let db = Cluster::shared().create_db();
    let location = fixture("concurrently-index");
    let location = location.to_str().unwrap();
    let first = spawn_migrate(&db, &["--location", location]);
    wait_for_lock_holder(&db);
    let second = spawn_migrate(&db, &["--location", location, "--lock-timeout", "60s"]);

    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let (one, two) = (output_text(&first), output_text(&second));
    assert!(first.status.success(), "{one}");
    assert!(second.status.success(), "{two}");
    assert!(two.contains("waiting for the migration lock"), "{two}");
    assert!(two.contains("app migrate"), "the holder is named: {two}");
    assert!(two.contains("up to date at version 2"), "{two}");
    assert_eq!(
        db.psql(
            "select string_agg(c.relname || ':' || i.indisvalid, ' ' order by c.relname)
               from pg_index i join pg_class c on c.oid = i.indexrelid
              where c.relname in ('events_kind_idx', 'events_at_id_idx')"
        ),
        "events_at_id_idx:true events_kind_idx:true"
    );
    assert_eq!(history(&db).len(), 2);
}

#[test]
fn lock_timeout_has_its_own_exit_code_and_names_the_holder() {
    let db = Cluster::shared().create_db();
    let mut holder = hold_lock(&db);

    let started = Instant::now();
    let out = migrate(&db, &["--lock-timeout", "1s"]);
    let elapsed = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();

    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(12), "{text}");
    assert!(elapsed < Duration::from_secs(1 + 10), "took {elapsed:?}");
    assert!(text.contains("lock-hog"), "the holder is named: {text}");
    assert_eq!(
        db.psql("select to_regclass('flyway_schema_history') is null"),
        "t"
    );
}

#[test]
fn a_slow_migrator_makes_others_wait_and_they_then_find_nothing_to_do() {
    let db = Cluster::shared().create_db();
    let location = fixture("slow");
    let location = location.to_str().unwrap();
    let first = spawn_migrate(&db, &["--location", location]);
    wait_for_lock_holder(&db);
    let out = migrate(&db, &["--location", location]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("waiting for the migration lock"), "{text}");
    assert!(text.contains("up to date at version 1"), "{text}");
    assert!(first.wait_with_output().unwrap().status.success());
    assert_eq!(db.psql("select count(*) from slow"), "1");
}

#[test]
fn an_up_to_date_schema_needs_no_lock() {
    let db = Cluster::shared().create_db();
    assert!(migrate(&db, &[]).status.success());
    let mut holder = hold_lock(&db);
    let out = migrate(&db, &["--lock-timeout", "0s"]);
    let _ = holder.kill();
    let _ = holder.wait();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("up to date at version 5"), "{text}");
}

#[tokio::test]
async fn the_lock_is_released_on_success_and_on_every_failure() {
    use app::cli::exit::ExitCode;
    use app::migrate::{Migrations, migrate};
    use sqlx::Connection;

    let db = Cluster::shared().create_db();
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let opts = options(Duration::from_secs(5));

    let failing = Migrations::from_dir(&fixture("failing")).unwrap();
    let err = migrate(&mut conn, &failing, &opts).await.unwrap_err();
    assert_eq!(ExitCode::from(&err), ExitCode::MigrationFailed, "{err}");
    assert_eq!(
        locks_held(&mut conn).await,
        0,
        "lock kept after a failed migration"
    );

    // Same history, other files: a validation error (V1's description and checksum differ).
    let other = Migrations::from_files(vec![(
        "V1__something_else.sql".into(),
        b"select 1;".to_vec(),
    )])
    .unwrap();
    let err = migrate(&mut conn, &other, &opts).await.unwrap_err();
    assert_eq!(ExitCode::from(&err), ExitCode::MigrationValidation, "{err}");
    assert_eq!(
        locks_held(&mut conn).await,
        0,
        "lock kept after a validation error"
    );

    let report = migrate(&mut conn, &Migrations::embedded().unwrap(), &opts).await;
    // The failing fixture's V1 is in the history and unknown to the embedded set (older
    // than V5): that is a validation error too, and again the lock goes.
    assert!(report.is_err());
    assert_eq!(locks_held(&mut conn).await, 0);

    let fresh = Cluster::shared().create_db();
    let mut conn = sqlx::PgConnection::connect(&fresh.url()).await.unwrap();
    let report = migrate(&mut conn, &Migrations::embedded().unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(report.applied.len(), 4);
    assert_eq!(locks_held(&mut conn).await, 0, "lock kept after success");
}
