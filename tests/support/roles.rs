//! The role model in tests: role names of their own per test (roles are cluster-wide, and
//! tests share a cluster), a sealed file naming the logins, and `app db roles` on it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Served, TestDb, app, output_text, run};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's roles: the two group roles and two login pairs, and a sealed file for them.
pub struct Roles {
    pub owner: String,
    pub runtime: String,
    /// `serve`'s pair.
    pub app: [String; 2],
    /// `migrate`'s pair.
    pub migrate: [String; 2],
    dir: tempfile::TempDir,
    pub identity: PathBuf,
    recipient: String,
}

/// The logins and passwords one sealed file names.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub app_user: String,
    pub app_password: String,
    pub migrate_user: String,
    pub migrate_password: String,
}

impl Roles {
    /// Fresh names (`r<pid>_<n>_...`) and an identity to seal with.
    pub fn new() -> Roles {
        let prefix = format!(
            "r{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("test.identity");
        let out = run(
            app().args(["seal", "keygen", "-o"]).arg(&identity),
            None,
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "keygen: {}", output_text(&out));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Roles {
            owner: format!("{prefix}_owner"),
            runtime: format!("{prefix}_runtime"),
            app: [format!("{prefix}_app_a"), format!("{prefix}_app_b")],
            migrate: [format!("{prefix}_migrate_a"), format!("{prefix}_migrate_b")],
            dir,
            identity,
            recipient,
        }
    }

    /// The sealed file.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("secrets.sealed.yaml")
    }

    /// Writes the sealed file anew with exactly `values` (plaintext files in the test's
    /// private directory, then `app seal set --from-file`).
    pub fn seal_values(&self, values: &[(&str, &str)]) {
        let file = self.file();
        let _ = std::fs::remove_file(&file);
        let mut cmd = app();
        cmd.args(["seal", "set"]).arg(&file).args([
            "--context",
            "discbaboons/dev",
            "-r",
            &self.recipient,
        ]);
        for (key, value) in values {
            let path = self.dir.path().join(format!("value-{key}"));
            std::fs::write(&path, value).unwrap();
            cmd.arg("--from-file")
                .arg(format!("{key}={}", path.display()));
        }
        let out = run(&mut cmd, None, Duration::from_secs(30));
        assert!(out.status.success(), "seal set: {}", output_text(&out));
    }

    /// Seals `app[a]` and `migrate[m]` with fresh passwords (with the characters that once
    /// needed URL-encoding and a quote) and a superuser password.
    pub fn seal(&self, a: usize, m: usize) -> Sealed {
        let fresh = |what: &str| format!("{what} p@ss:'/{}", uuid::Uuid::new_v4().simple());
        let sealed = Sealed {
            app_user: self.app[a].clone(),
            app_password: fresh("app"),
            migrate_user: self.migrate[m].clone(),
            migrate_password: fresh("migrate"),
        };
        self.seal_values(&[
            ("DATABASE_USER", &sealed.app_user),
            ("DATABASE_PASSWORD", &sealed.app_password),
            ("MIGRATE_DATABASE_USER", &sealed.migrate_user),
            ("MIGRATE_DATABASE_PASSWORD", &sealed.migrate_password),
            ("POSTGRES_PASSWORD", &fresh("superuser")),
        ]);
        sealed
    }

    /// `migrate.owner_role` and `migrate.runtime_role` naming this test's group roles.
    pub fn group_env(&self) -> Vec<(String, String)> {
        vec![
            ("APP_MIGRATE__OWNER_ROLE".into(), self.owner.clone()),
            ("APP_MIGRATE__RUNTIME_ROLE".into(), self.runtime.clone()),
        ]
    }

    /// `app db roles -f FILE -i IDENTITY ARGS`, connecting as the cluster's superuser.
    pub fn db_roles_command(&self, db: &TestDb<'_>, args: &[&str]) -> Command {
        let mut cmd = app();
        cmd.args(["db", "roles"])
            .args(args)
            .arg("-f")
            .arg(self.file())
            .arg("-i")
            .arg(&self.identity)
            .envs(db.app_env())
            .envs(self.group_env());
        cmd
    }

    /// [`Self::db_roles_command`], run to completion.
    pub fn db_roles(&self, db: &TestDb<'_>, args: &[&str]) -> Output {
        run(
            &mut self.db_roles_command(db, args),
            None,
            Duration::from_secs(60),
        )
    }

    /// The pods' environment for `sealed`: the API's login as `database.*`, migrate's as
    /// `migrate.*`, and the group roles.
    pub fn login_env(&self, db: &TestDb<'_>, sealed: &Sealed) -> Vec<(String, String)> {
        let mut env = db.app_env();
        env.retain(|(k, _)| k != "APP_DATABASE__USER" && k != "APP_DATABASE__PASSWORD");
        env.extend([
            ("APP_DATABASE__USER".into(), sealed.app_user.clone()),
            ("APP_DATABASE__PASSWORD".into(), sealed.app_password.clone()),
            ("APP_MIGRATE__USER".into(), sealed.migrate_user.clone()),
            (
                "APP_MIGRATE__PASSWORD".into(),
                sealed.migrate_password.clone(),
            ),
        ]);
        env.extend(self.group_env());
        env
    }

    /// `app serve` as the pod runs it with `sealed` (plus `extra`), on `port`, logging to
    /// `log`; not yet ready.
    pub fn serve(
        &self,
        db: &TestDb<'_>,
        sealed: &Sealed,
        port: u16,
        log: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Served {
        let env = self.login_env(db, sealed);
        let mut settings: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        settings.extend_from_slice(extra);
        Served::replica(db, port, log, &settings)
    }

    /// `app migrate ARGS` as the pod runs it with `sealed`; must succeed.
    pub fn migrate(&self, db: &TestDb<'_>, sealed: &Sealed, args: &[&str]) -> Output {
        let mut cmd = app();
        cmd.arg("migrate")
            .args(args)
            .envs(self.login_env(db, sealed));
        let out = run(&mut cmd, None, Duration::from_secs(60));
        assert!(out.status.success(), "migrate: {}", output_text(&out));
        out
    }
}

/// A connection to `db` as `user` with `password`.
pub async fn connect(
    db: &TestDb<'_>,
    user: &str,
    password: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(db.cluster.port)
        .username(user)
        .password(password)
        .database(&db.name)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .connect()
        .await
}

/// The SQLSTATE and message of a failed statement (panics if it succeeded).
pub async fn sql_error(conn: &mut sqlx::PgConnection, sql: &str) -> (String, String) {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => panic!("{sql:?} succeeded"),
        Err(sqlx::Error::Database(e)) => (
            e.code().unwrap_or_default().into_owned(),
            e.message().to_owned(),
        ),
        Err(e) => panic!("{sql:?}: not a database error: {e}"),
    }
}

/// The SQLSTATE of a failed connection attempt (panics if it succeeded).
pub async fn login_error(db: &TestDb<'_>, user: &str, password: &str) -> (String, String) {
    match connect(db, user, password).await {
        Ok(_) => panic!("{user} could still log in"),
        Err(sqlx::Error::Database(e)) => (
            e.code().unwrap_or_default().into_owned(),
            e.message().to_owned(),
        ),
        Err(e) => panic!("logging in as {user}: not a database error: {e}"),
    }
}
