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
