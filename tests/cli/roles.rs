//! `app db roles` and the role model: the runtime login can do what the API does and nothing
//! more, `migrate` works as the owner role whichever login runs it, the seed's database
//! (a superuser owns everything) moves onto the model, and every refusal names its fix.

use std::process::Output;
use std::time::Duration;

use crate::support::roles::{Roles, Sealed, connect, login_error, sql_error};
use crate::support::{Cluster, Served, TestDb, free_port, output_text, run};

fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    let text = output_text(out);
    assert_eq!(out.status.code(), Some(code), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// The one value of a query, as the cluster's superuser sees it.
fn owners(db: &TestDb<'_>) -> String {
    db.psql(
        "select string_agg(distinct pg_get_userbyid(relowner), ',') from pg_class \
         where relnamespace = 'public'::regnamespace and relkind in ('r', 'S')",
    )
}

/// A fresh database with the model in place and migrated by `migrate[0]`.
fn migrated(db: &TestDb<'_>, roles: &Roles) -> Sealed {
    let sealed = roles.seal(0, 0);
    let out = roles.db_roles(db, &[]);
    assert!(out.status.success(), "db roles: {}", output_text(&out));
    roles.migrate(db, &sealed, &[]);
    sealed
}

/// `app serve` as the API's login of `sealed`, ready; the log lives as long as the directory.
async fn serve_ready(
    db: &TestDb<'_>,
    roles: &Roles,
    sealed: &Sealed,
) -> (reqwest::Client, Served, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut served = roles.serve(db, sealed, free_port(), &dir.path().join("serve.log"), &[]);
    let client = reqwest::Client::new();
    served.wait_ready(&client, Duration::from_secs(30)).await;
    (client, served, dir)
}

#[tokio::test]
async fn the_runtime_login_does_what_the_api_does_and_nothing_else() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = migrated(&db, &roles);

    // migrate created everything as the owner role; Flyway's installed_by names the login.
    assert_eq!(owners(&db), roles.owner);
    assert_eq!(
        db.psql("select string_agg(distinct installed_by, ',') from flyway_schema_history"),
        sealed.migrate_user
    );

    let mut conn = connect(&db, &sealed.app_user, &sealed.app_password)
        .await
        .expect("the API's login logs in");
    // What the API does: rows in, read, changed, gone; the history read by /ready.
    sqlx::raw_sql(
        "insert into users (username, password_hash) values ('rt_user', '!x');
         insert into user_profiles (user_id, email)
           select id, 'rt@example.com' from users where username = 'rt_user';
         update user_profiles set bio = 'b' where email = 'rt@example.com';
         select u.username, p.bio from users u join user_profiles p on p.user_id = u.id;
         select * from users where username = 'rt_user' for update;
         select count(*) from flyway_schema_history;
         delete from users where username = 'rt_user';",
    )
    .execute(&mut conn)
    .await
    .expect("the API's statements");
    // And nothing else, each refused with PostgreSQL's privilege error.
    let app = &sealed.app_user;
    for (sql, message) in [
        ("drop table users", "must be owner of table users"),
        (
            "create table x (id int)",
            "permission denied for schema public",
        ),
        // PostgreSQL 15 says "must be superuser to alter superuser roles ..."; 16 and later
        // "permission denied to alter role".
        (
            &format!("alter role {app} superuser") as &str,
            "must be superuser|permission denied to alter role",
        ),
        ("alter role current_user createrole", "permission denied"),
        ("create role intruder", "permission denied to create role"),
        (
            "select rolpassword from pg_authid",
            "permission denied for table pg_authid",
        ),
        (
            "delete from flyway_schema_history",
            "permission denied for table flyway_schema_history",
        ),
        ("truncate users", "permission denied for table users"),
    ] {
        let (code, text) = sql_error(&mut conn, sql).await;
        assert_eq!(code, "42501", "{sql}: {text}");
        assert!(
            message.split('|').any(|m| text.contains(m)),
            "{sql}: {text}"
        );
    }

    // serve runs as that login: ready (it reads the history) and serving.
    let (client, served, _log) = serve_ready(&db, &roles, &sealed).await;
    let status = client
        .get(served.url("/api/users?limit=5"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "{}", served.log_text());
}

#[test]
fn the_migrate_pair_both_create_objects_the_owner_owns_and_db_roles_is_idempotent() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let first = migrated(&db, &roles);
    // The other login of the pair applies a migration that creates a table: owned by the
    // owner role too, and reachable by the API's login through the default privileges.
    let second = roles.seal(1, 1);
    let out = roles.db_roles(&db, &[]);
    assert!(
        out.status.success(),
        "db roles again: {}",
        output_text(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::migrate::migrations_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("V6__create_rounds.sql"),
        "create table rounds (id serial primary key, name text not null);\n",
    )
    .unwrap();
    roles.migrate(&db, &second, &["--location", dir.path().to_str().unwrap()]);
    assert_eq!(owners(&db), roles.owner);
    assert_eq!(
        db.psql("select installed_by from flyway_schema_history where version = '6'"),
        second.migrate_user
    );
    let grants = db.psql(&format!(
        "select has_table_privilege('{0}', 'rounds', 'insert') \
            and has_sequence_privilege('{0}', 'rounds_id_seq', 'usage') \
            and not has_table_privilege('{0}', 'flyway_schema_history', 'insert')",
        second.app_user
    ));
    assert_eq!(grants, "t");
    // Both logins of each pair work (nothing retired yet).
    for (user, password) in [
        (&first.app_user, &first.app_password),
        (&second.app_user, &second.app_password),
    ] {
        let db_ref = &db;
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                connect(db_ref, user, password)
                    .await
                    .unwrap_or_else(|e| panic!("{user}: {e}"));
            });
    }
}

/// After an adoption: `migrate` as migrate's login, then `serve` as the API's reads a user the
/// seed's database had. The server, for more requests.
async fn migrate_and_read_a_seeded_user(
    db: &TestDb<'_>,
    roles: &Roles,
    sealed: &Sealed,
) -> (reqwest::Client, Served, tempfile::TempDir) {
    roles.migrate(db, sealed, &[]);
    let (client, served, log) = serve_ready(db, roles, sealed).await;
    let got = client
        .get(served.url("/api/users/seeded_1"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "{}", served.log_text());
    (client, served, log)
}

#[tokio::test]
async fn the_seeds_database_moves_onto_the_model() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    // The seed's database: Flyway's history and schema, everything owned by a superuser
    // login (POSTGRES_USER=app_user), a few users.
    crate::migrate::prepare_like_flyway(&db);
    let app_user = format!("{}_seed", roles.owner);
    db.psql(&format!(
        "create role {app_user} superuser login password 'old-seed-pw'"
    ));
    db.psql(&format!(
        "do $$ declare t record; begin for t in select tablename from pg_tables \
         where schemaname = 'public' loop execute format('alter table %I owner to {app_user}', \
         t.tablename); end loop; end $$"
    ));
    db.seed_users(3);
    assert_eq!(owners(&db), app_user);

    let sealed = roles.seal(0, 0);
    let out = roles.db_roles(&db, &["--adopt-from", &app_user, "--superuser", &app_user]);
    assert!(out.status.success(), "adopt: {}", output_text(&out));
    assert_eq!(owners(&db), roles.owner, "every table and sequence moved");
    // The old password opens nothing now; the superuser has the sealed POSTGRES_PASSWORD.
    let (code, _) = login_error(&db, &app_user, "old-seed-pw").await;
    assert_eq!(code, "28P01");

    let (client, served, _log) = migrate_and_read_a_seeded_user(&db, &roles, &sealed).await;
    let registered = client
        .post(served.url("/api/auth/register"))
        .json(&serde_json::json!({
            "username": "adopted_new", "email": "adopted@example.com",
            "password": "Adopted-Passw0rd!"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201, "{}", served.log_text());
    // Nobody logs in as the old superuser any more.
    let sessions = db.psql(&format!(
        "select count(*) from pg_stat_activity where usename = '{app_user}'"
    ));
    assert_eq!(sessions, "0");
}

#[test]
fn a_login_granted_another_group_by_hand_is_a_member_of_its_own_only_again() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = migrated(&db, &roles);
    // Someone "fixes" a permission error by hand: the API's login joins the owner role.
    db.psql(&format!("grant {} to {}", roles.owner, sealed.app_user));
    let member = |role: &str| {
        db.psql(&format!(
            "select pg_has_role('{}', '{role}', 'member')",
            sealed.app_user
        ))
    };
    assert_eq!(member(&roles.owner), "t");

    let out = roles.db_roles(&db, &[]);
    assert!(out.status.success(), "db roles: {}", output_text(&out));
    assert_eq!(
        member(&roles.owner),
        "f",
        "the hand-made membership is gone"
    );
    assert_eq!(member(&roles.runtime), "t");
}

#[tokio::test]
async fn objects_of_the_bootstrap_superuser_move_too() {
    // The seed's real case: `POSTGRES_USER=app_user` makes app_user the *bootstrap* superuser
    // (the one initdb created), which PostgreSQL treats apart (`reassign owned` refuses it).
    // Here the test cluster's own bootstrap superuser created and owns the schema.
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    crate::migrate::prepare_like_flyway(&db);
    db.seed_users(2);
    let bootstrap = db.psql("select rolname from pg_roles where oid = 10");
    assert_eq!(owners(&db), bootstrap);

    let sealed = roles.seal(0, 0);
    let out = roles.db_roles(&db, &["--adopt-from", &bootstrap]);
    assert!(out.status.success(), "adopt: {}", output_text(&out));
    assert_eq!(owners(&db), roles.owner, "every table and sequence moved");
    assert_eq!(
        db.psql("select rolsuper from pg_roles where oid = 10"),
        "t",
        "the bootstrap superuser stays one"
    );

    migrate_and_read_a_seeded_user(&db, &roles, &sealed).await;
}

// ---- every refusal: its exit code, the input it names and the fix ---------------------------

#[test]
fn a_sealed_file_without_the_logins_or_with_bad_names_is_50() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    roles.seal_values(&[("DATABASE_PASSWORD", "x")]);
    let out = roles.db_roles(&db, &["--print-sql"]);
    assert_exit(&out, 50, &["DATABASE_USER", "app seal set"]);

    roles.seal_values(&[("DATABASE_USER", "Bad-Name"), ("DATABASE_PASSWORD", "x")]);
    let out = roles.db_roles(&db, &["--print-sql"]);
    assert_exit(&out, 50, &["DATABASE_USER", "Bad-Name", "lowercase"]);

    let same = roles.app[0].as_str();
    roles.seal_values(&[
        ("DATABASE_USER", same),
        ("DATABASE_PASSWORD", "x"),
        ("MIGRATE_DATABASE_USER", same),
        ("MIGRATE_DATABASE_PASSWORD", "y"),
    ]);
    let out = roles.db_roles(&db, &["--print-sql"]);
    assert_exit(&out, 50, &["MIGRATE_DATABASE_USER must differ"]);

    roles.seal(0, 0);
    let out = roles.db_roles(&db, &["--adopt-from", "nobody_owns_this"]);
    assert_exit(&out, 50, &["--adopt-from nobody_owns_this", "no such role"]);
}

#[test]
fn a_migrate_login_outside_the_owner_role_is_51_naming_db_roles() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = roles.seal(0, 0);
    assert!(roles.db_roles(&db, &[]).status.success());
    // A login of the API's pair is no member of the owner role.
    let wrong = Sealed {
        migrate_user: sealed.app_user.clone(),
        migrate_password: sealed.app_password.clone(),
        ..sealed.clone()
    };
    let mut cmd = crate::support::app();
    cmd.arg("migrate").envs(roles.login_env(&db, &wrong));
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_exit(
        &out,
        51,
        &[
            &sealed.app_user,
            &roles.owner,
            "not a member",
            "app db roles",
        ],
    );
    assert_eq!(db.psql("select to_regclass('users') is null"), "t");
}

#[test]
fn retiring_the_login_the_sealed_file_names_is_52() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = roles.seal(0, 0);
    assert!(roles.db_roles(&db, &[]).status.success());
    let out = roles.db_roles(&db, &["retire", &sealed.app_user]);
    assert_exit(
        &out,
        52,
        &[&sealed.app_user, "DATABASE_USER", "seal the other login"],
    );
    let out = roles.db_roles(&db, &["retire", &roles.owner]);
    assert_exit(&out, 52, &["group role"]);
    let out = roles.db_roles(&db, &["retire", "postgres"]);
    assert_exit(&out, 52, &["superuser"]);
}

#[test]
fn an_admin_login_that_may_not_create_roles_is_53() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = roles.seal(0, 0);
    assert!(roles.db_roles(&db, &[]).status.success());
    // The API's own login as the admin.
    let mut cmd = roles.db_roles_command(&db, &[]);
    cmd.env("APP_DATABASE__USER", &sealed.app_user)
        .env("APP_DATABASE__PASSWORD", &sealed.app_password);
    let out = run(&mut cmd, None, Duration::from_secs(60));
    assert_exit(
        &out,
        53,
        &[&sealed.app_user, "--admin-user postgres", "--print-sql"],
    );
}

#[test]
fn print_sql_refuses_a_terminal_with_54() {
    let roles = Roles::new();
    roles.seal(0, 0);
    // `script` gives the command a pseudo-terminal as stdout.
    let line = format!(
        "{} db roles --print-sql -f {} -i {}",
        env!("CARGO_BIN_EXE_app"),
        roles.file().display(),
        roles.identity.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    let out = run(&mut cmd, None, Duration::from_secs(30));
    assert_exit(&out, 54, &["terminal", "kubectl exec -i"]);
    assert!(
        !output_text(&out).contains("SCRAM"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn wait_db_proves_both_logins_and_names_the_one_that_fails() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let sealed = roles.seal(0, 0);
    assert!(roles.db_roles(&db, &[]).status.success());
    let wait = |sealed: &Sealed| {
        let mut cmd = crate::support::app();
        cmd.args(["wait-db", "--timeout", "2s", "--max-backoff", "200ms"])
            .envs(roles.login_env(&db, sealed));
        run(&mut cmd, None, Duration::from_secs(30))
    };
    let out = wait(&sealed);
    assert!(out.status.success(), "{}", output_text(&out));
    let wrong = Sealed {
        migrate_password: "not the sealed one".into(),
        ..sealed.clone()
    };
    let out = wait(&wrong);
    assert_exit(
        &out,
        4,
        &[
            &format!("{}@127.0.0.1", sealed.migrate_user),
            "authentication failed",
        ],
    );
}
