//! `app migrate` against real PostgreSQL: fresh apply matching the DBML, idempotence, eight
//! racing migrators, a database left by Flyway, edited files, failing and non-transactional
//! migrations, future rows and the lock timeout.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Cluster, TestDb, app, output_text};

/// The repository's migrations directory.
fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// A fixture set under tests/fixtures/migrations.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrations")
        .join(name)
}

fn migrate(db: &TestDb<'_>, args: &[&str]) -> Output {
    app()
        .arg("migrate")
        .args(args)
        .envs(db.app_env())
        .output()
        .unwrap()
}

fn spawn_migrate(db: &TestDb<'_>, args: &[&str]) -> Child {
    app()
        .arg("migrate")
        .args(args)
        .envs(db.app_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `version|description|type|script|checksum|success` per history row, by rank.
fn history(db: &TestDb<'_>) -> Vec<String> {
    db.psql(
        "select concat_ws('|', version, description, type, script, checksum, success)
           from flyway_schema_history order by installed_rank",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn fresh_database_gets_v2_to_v5_matching_the_dbml_and_a_second_run_is_a_no_op() {
    let db = Cluster::shared().create_db();

    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("successfully applied 4 migration(s)"),
        "{text}"
    );

    let rows = history(&db);
    let versions: Vec<&str> = rows.iter().map(|r| r.split('|').next().unwrap()).collect();
    assert_eq!(versions, ["2", "3", "4", "5"], "{rows:#?}");
    assert!(rows[0].starts_with("2|create users table|SQL|V2__create_users_table.sql|"));
    assert!(rows.iter().all(|r| r.ends_with("|t")), "{rows:#?}");
    assert_eq!(
        db.psql("select count(*) from flyway_schema_history where installed_by = current_user"),
        "4"
    );

    // Columns: name, type, nullable, default present.
    let columns = |table: &str| {
        db.psql(&format!(
            "select string_agg(concat_ws(':', column_name,
                        coalesce(data_type || '(' || character_maximum_length || ')', data_type),
                        is_nullable, case when column_default is null then 'no-default' else 'default' end), ' ' order by column_name)
               from information_schema.columns
              where table_schema = 'public' and table_name = '{table}'"
        ))
    };
    assert_eq!(
        columns("users"),
        "created_at:timestamp without time zone:YES:default \
         id:integer:NO:default \
         last_password_change:timestamp without time zone:YES:default \
         password_hash:text:NO:no-default \
         username:character varying(50):NO:no-default"
    );
    assert_eq!(
        columns("user_profiles"),
        "bio:text:YES:no-default \
         created_at:timestamp without time zone:YES:default \
         email:character varying(255):NO:no-default \
         id:integer:NO:default \
         location:character varying(100):YES:no-default \
         name:character varying(100):YES:no-default \
         personality_type:character varying(50):YES:no-default \
         updated_at:timestamp without time zone:YES:default \
         user_id:integer:NO:no-default"
    );
    // Primary keys and uniques, per table and column.
    let constraints = db.psql(
        "select string_agg(tc.table_name || '.' || kcu.column_name || ':' || tc.constraint_type,
                           ' ' order by tc.table_name, kcu.column_name, tc.constraint_type)
           from information_schema.table_constraints tc
           join information_schema.key_column_usage kcu
             on kcu.constraint_name = tc.constraint_name and kcu.table_schema = tc.table_schema
          where tc.table_schema = 'public'
            and tc.table_name in ('users', 'user_profiles')
            and tc.constraint_type in ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')",
    );
    assert_eq!(
        constraints,
        "user_profiles.email:UNIQUE user_profiles.id:PRIMARY KEY \
         user_profiles.user_id:FOREIGN KEY user_profiles.user_id:UNIQUE \
         users.id:PRIMARY KEY users.username:UNIQUE"
    );
    // The foreign key points at users.id and cascades deletes.
    let fk = db.psql(
        "select ccu.table_name || '.' || ccu.column_name || ':' || rc.delete_rule
           from information_schema.referential_constraints rc
           join information_schema.constraint_column_usage ccu
             on ccu.constraint_name = rc.unique_constraint_name
          where rc.constraint_schema = 'public'",
    );
    assert_eq!(fk, "users.id:CASCADE");
    // No other tables besides the history.
    assert_eq!(
        db.psql(
            "select string_agg(table_name, ',' order by table_name) from information_schema.tables
              where table_schema = 'public'"
        ),
        "flyway_schema_history,user_profiles,users"
    );
    // The sample users kept their profiles, and none has a usable password.
    assert_eq!(
        db.psql(
            "select string_agg(u.username || ':' || p.email || ':' || p.personality_type, ' '
                               order by u.username)
               from users u join user_profiles p on p.user_id = u.id"
        ),
        "alice:alice@example.com:Analytical alpha_baboon:alpha@example.com:Driver \
         bob:bob@example.com:Expressive"
    );
    assert_eq!(
        db.psql("select count(*) from users where password_hash like '$%'"),
        "0",
        "a sample user has something that looks like a PHC hash"
    );

    let again = migrate(&db, &[]);
    let text = output_text(&again);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("is up to date at version 5"), "{text}");
    assert_eq!(history(&db).len(), 4);
}

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

/// Flyway's checksum, computed here from the rule rather than with the code under test:
/// drop one leading BOM, drop every CR and LF, CRC-32, as a signed 32-bit integer.
fn flyway_checksum(bytes: &[u8]) -> i32 {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let kept: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    crc32fast::hash(&kept) as i32
}

/// Prepares `db` the way Flyway leaves a database migrated by the seed: Flyway's DDL, a
/// baseline at 1 and V2..V5 with Flyway's checksums, and the schema those scripts built.
fn prepare_like_flyway(db: &TestDb<'_>) {
    // Flyway's createMetaDataTable.sql for PostgreSQL, verbatim.
    db.psql(
        r#"CREATE TABLE "public"."flyway_schema_history" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "public"."flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");"#,
    );
    db.psql(
        "insert into flyway_schema_history values
           (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', null,
            'app_user', now(), 0, true)",
    );
    let files = [
        ("2", "create users table", "V2__create_users_table.sql"),
        (
            "3",
            "add authentication fields",
            "V3__add_authentication_fields.sql",
        ),
        (
            "4",
            "create user profiles table",
            "V4__create_user_profiles_table.sql",
        ),
        ("5", "cleanup users table", "V5__cleanup_users_table.sql"),
    ];
    for (rank, (version, description, script)) in files.iter().enumerate() {
        let bytes = std::fs::read(migrations_dir().join(script)).unwrap();
        db.psql(&String::from_utf8(bytes.clone()).unwrap());
        db.psql(&format!(
            "insert into flyway_schema_history values
               ({}, '{version}', '{description}', 'SQL', '{script}', {}, 'app_user', now(), 12,
                true)",
            rank + 2,
            flyway_checksum(&bytes)
        ));
    }
}

#[test]
fn a_database_migrated_by_flyway_needs_nothing_and_validates() {
    let db = Cluster::shared().create_db();
    prepare_like_flyway(&db);
    let before = history(&db);

    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("up to date at version 5"), "{text}");
    assert_eq!(history(&db), before, "migrate changed the history");

    let out = migrate(&db, &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let out = migrate(&db, &["info"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("<< Flyway Baseline >>") && table.contains("baseline"),
        "{table}"
    );
    assert_eq!(table.matches("| applied ").count(), 4, "{table}");
    assert_eq!(table.matches(" ok ").count(), 4, "{table}");
}

#[test]
fn an_edited_migration_fails_validation_naming_the_file() {
    let db = Cluster::shared().create_db();
    prepare_like_flyway(&db);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(migrations_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let location = dir.path().to_str().unwrap();
    // Line endings alone do not change Flyway's checksum...
    let v4 = dir.path().join("V4__create_user_profiles_table.sql");
    let crlf = std::fs::read_to_string(&v4).unwrap().replace('\n', "\r\n");
    std::fs::write(&v4, crlf).unwrap();
    let out = migrate(&db, &["validate", "--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));

    // ...any other byte does.
    let v3 = dir.path().join("V3__add_authentication_fields.sql");
    let edited = std::fs::read_to_string(&v3)
        .unwrap()
        .replace("'!locked'", "'!locked2'");
    std::fs::write(&v3, edited).unwrap();
    let out = migrate(&db, &["validate", "--location", location]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(
        text.contains("V3__add_authentication_fields.sql: checksum mismatch"),
        "{text}"
    );

    // Migrating validates first and refuses too.
    let out = migrate(&db, &["--location", location]);
    assert_eq!(out.status.code(), Some(10), "{}", output_text(&out));

    let out = migrate(&db, &["info", "--location", location]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
}

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
    assert!(String::from_utf8_lossy(&out.stdout).contains("future"));
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

/// Waits until some session holds Flyway's lock for the public schema.
fn wait_for_lock_holder(db: &TestDb<'_>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let held = db.psql(
            "select count(*) from pg_locks
              where locktype = 'advisory' and granted and objsubid = 1
                and database = (select oid from pg_database where datname = current_database())
                and ((classid::bigint << 32) | objid::bigint) = 77433833903597",
        );
        if held == "1" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nobody took the migration lock within 30 s");
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

/// A psql session that takes Flyway's lock for the public schema and sits on it; kill it to
/// let go.
fn hold_lock(db: &TestDb<'_>) -> Child {
    let holder = std::process::Command::new(support::pg::pg_bin().join("psql"))
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &db.cluster.port.to_string(),
        ])
        .args(["-U", support::pg::SUPERUSER, "-d", &db.name])
        .args(["-c", "set application_name = 'lock-hog'"])
        .args(["-c", "select pg_advisory_lock(77433833903597)"])
        .args(["-c", "select pg_sleep(120)"])
        .env("PGPASSWORD", support::pg::SUPERUSER_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock_holder(db);
    holder
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
fn a_non_empty_schema_without_history_needs_a_baseline() {
    let db = Cluster::shared().create_db();
    db.psql("create table legacy (id int)");
    let out = migrate(&db, &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(10), "{text}");
    assert!(text.contains("baseline"), "{text}");

    // Baseline at 3: V2 and V3 are never run, V4 and V5 are pending.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V2__two.sql"),
        "create table never_two (id int);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V3__three.sql"),
        "create table never_three (id int);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V4__four.sql"),
        "create table four (id int);",
    )
    .unwrap();
    let location = dir.path().to_str().unwrap();
    let out = migrate(&db, &["baseline", "--version", "3", "--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = migrate(&db, &["baseline", "--version", "2", "--location", location]);
    assert_eq!(
        out.status.code(),
        Some(10),
        "a second, different baseline is refused"
    );

    let out = migrate(&db, &["--location", location]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        history(&db),
        [
            "3|<< Flyway Baseline >>|BASELINE|<< Flyway Baseline >>|t".to_string(),
            format!(
                "4|four|SQL|V4__four.sql|{}|t",
                flyway_checksum(b"create table four (id int);")
            )
        ]
    );
    assert_eq!(db.psql("select to_regclass('never_two') is null"), "t");
}

#[test]
fn baseline_on_migrate_records_the_configured_version_then_migrates() {
    let db = Cluster::shared().create_db();
    db.psql("create table legacy (id int)");
    let out = app()
        .args(["migrate", "--dry-run"])
        .envs(db.app_env())
        .env("APP_MIGRATE__BASELINE_ON_MIGRATE", "true")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("would record a baseline at version 1"),
        "{text}"
    );
    assert!(
        text.contains("create table users"),
        "the SQL is printed: {text}"
    );
    assert_eq!(
        db.psql("select to_regclass('flyway_schema_history') is null"),
        "t"
    );

    let out = migrate(&db, &["--baseline-on-migrate"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let rows = history(&db);
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert!(
        rows[0].starts_with("1|<< Flyway Baseline >>|BASELINE|"),
        "{rows:#?}"
    );
}

#[test]
fn dry_run_and_target_change_only_what_they_say() {
    let db = Cluster::shared().create_db();
    let out = migrate(&db, &["--dry-run", "--target", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(stdout.contains("V2__create_users_table.sql"), "{stdout}");
    assert!(
        stdout.contains("V3__add_authentication_fields.sql"),
        "{stdout}"
    );
    assert!(!stdout.contains("V4__"), "{stdout}");
    assert_eq!(
        db.psql("select to_regclass('flyway_schema_history') is null"),
        "t"
    );

    assert!(migrate(&db, &["--target", "3"]).status.success());
    assert_eq!(history(&db).len(), 2);
    let out = migrate(&db, &["info"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(table.matches("| pending ").count(), 2, "{table}");
}

/// Advisory locks this session still holds.
async fn locks_held(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

fn options(lock_timeout: Duration) -> app::migrate::MigrateOptions {
    app::migrate::MigrateOptions {
        target: None,
        lock_timeout,
        baseline_on_migrate: false,
        baseline_version: app::migrate::parse_version("1").unwrap(),
        dry_run: false,
    }
}

#[tokio::test]
async fn the_lock_is_released_on_success_and_on_every_failure() {
    use app::exit::{ExitCode, HasExitCode};
    use app::migrate::{Migrations, migrate};
    use sqlx::Connection;

    let db = Cluster::shared().create_db();
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let opts = options(Duration::from_secs(5));

    let failing = Migrations::from_dir(&fixture("failing")).unwrap();
    let err = migrate(&mut conn, &failing, &opts).await.unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::MigrationFailed, "{err}");
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
    assert_eq!(err.exit_code(), ExitCode::MigrationValidation, "{err}");
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

#[tokio::test]
async fn schema_status_tells_serve_whether_to_start() {
    use app::exit::{ExitCode, HasExitCode};
    use app::migrate::{Migrations, migrate, schema_status};
    use sqlx::Connection;

    let db = Cluster::shared().create_db();
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();

    let status = schema_status(&mut conn).await.unwrap();
    assert_eq!(status.applied, None);
    assert_eq!(status.latest, "5");
    assert_eq!(status.pending, ["2", "3", "4", "5"]);
    let err = status.ensure_current().unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::SchemaOutdated);
    assert!(err.to_string().contains("run `app migrate`"), "{err}");

    let mut opts = options(Duration::from_secs(5));
    opts.target = Some(app::migrate::parse_version("3").unwrap());
    migrate(&mut conn, &Migrations::embedded().unwrap(), &opts)
        .await
        .unwrap();
    let status = schema_status(&mut conn).await.unwrap();
    assert_eq!(status.applied.as_deref(), Some("3"));
    assert_eq!(status.pending, ["4", "5"]);
    assert!(!status.is_current());

    opts.target = None;
    migrate(&mut conn, &Migrations::embedded().unwrap(), &opts)
        .await
        .unwrap();
    assert!(schema_status(&mut conn).await.unwrap().is_current());

    // A newer image's migration does not make this one outdated.
    db.psql(
        "insert into flyway_schema_history
           (installed_rank, version, description, type, script, checksum, installed_by,
            execution_time, success)
         values (9, '7', 'later', 'SQL', 'V7__later.sql', 1, current_user, 1, true)",
    );
    let status = schema_status(&mut conn).await.unwrap();
    assert!(status.is_current(), "{status:?}");
    assert_eq!(status.applied.as_deref(), Some("7"));
    status.ensure_current().unwrap();
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
