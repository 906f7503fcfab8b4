//! The schema V2..V5 build, Flyway compatibility, validation, baselines, dry run and target.

use super::*;
use crate::support::{Cluster, app, output_text};

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
        table.contains("<< Flyway Baseline >>") && table.contains("| Baseline "),
        "{table}"
    );
    assert_eq!(table.matches("| Success ").count(), 4, "{table}");
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
    assert_eq!(table.matches("| Pending ").count(), 2, "{table}");
}

#[tokio::test]
async fn schema_status_tells_serve_whether_to_start() {
    use app::cli::exit::ExitCode;
    use app::migrate::{Migrations, migrate, schema_status};
    use sqlx::Connection;

    let db = Cluster::shared().create_db();
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();

    let status = schema_status(&mut conn).await.unwrap();
    assert_eq!(status.applied, None);
    assert_eq!(status.latest, "5");
    assert_eq!(status.pending, ["2", "3", "4", "5"]);
    let err = status.ensure_current().unwrap_err();
    assert_eq!(ExitCode::from(&err), ExitCode::SchemaOutdated);
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
