//! `app migrate` against real PostgreSQL: fresh apply matching the DBML, idempotence, eight
//! racing migrators, a database left by Flyway, edited files, failing and non-transactional
//! migrations, future rows and the lock timeout. Shared helpers live here (with those of
//! `crate::support`).

mod adopt;
mod concurrency;
mod failures;
mod flyway;
mod r#move;
mod schema;
mod untracked;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub use crate::support::{Served, TestDb, fixture, migrate, spawn_migrate};

/// The repository's migrations directory.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// `version|description|type|script|checksum|success` per history row, by rank.
pub fn history(db: &TestDb<'_>) -> Vec<String> {
    db.psql(
        "select concat_ws('|', version, description, type, script, checksum, success)
           from flyway_schema_history order by installed_rank",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Flyway's checksum, computed here from the rule rather than with the code under test:
/// drop one leading BOM, drop every CR and LF, CRC-32, as a signed 32-bit integer.
pub fn flyway_checksum(bytes: &[u8]) -> i32 {
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
pub fn prepare_like_flyway(db: &TestDb<'_>) {
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

/// Waits until some session holds Flyway's lock for the public schema.
pub fn wait_for_lock_holder(db: &TestDb<'_>) {
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

/// A psql session that takes Flyway's lock for the public schema and sits on it; kill it to
/// let go.
pub fn hold_lock(db: &TestDb<'_>) -> Child {
    let holder = db
        .psql_command()
        .args(["-c", "set application_name = 'lock-hog'"])
        .args(["-c", "select pg_advisory_lock(77433833903597)"])
        .args(["-c", "select pg_sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock_holder(db);
    holder
}

/// Advisory locks this session still holds.
pub async fn locks_held(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

pub fn options(lock_timeout: Duration) -> app::migrate::MigrateOptions {
    app::migrate::MigrateOptions {
        target: None,
        lock_timeout,
        baseline_on_migrate: false,
        baseline_version: app::migrate::parse_version("1").unwrap(),
        dry_run: false,
        out_of_order: false,
        ignore_patterns: Default::default(),
        placeholders: Default::default(),
        runtime_grants: None,
    }
}

/// Starts `app serve` on `db` as the main container would after the init containers, waits
/// for `/ready` and reads `GET /api/users/{username}`: the schema is one the server accepts
/// and the data is there. Returns the user's JSON.
pub async fn serve_reads_user(db: &TestDb<'_>, username: &str) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut served = Served::start(db, &[]);
    served.wait_ready(&client, Duration::from_secs(30)).await;
    let reply = client
        .get(served.url(&format!("/api/users/{username}")))
        .send()
        .await
        .expect("GET /api/users/{username}");
    let status = reply.status().as_u16();
    let body: serde_json::Value = reply.json().await.expect("a JSON body");
    assert_eq!(status, 200, "{body}: {}", served.log_text());
    assert_eq!(body["data"]["username"], username, "{body}");
    body["data"].clone()
}
