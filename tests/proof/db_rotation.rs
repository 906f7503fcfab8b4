//! Rotating the database passwords, three times in a row, under load, fails no request.
//!
//! docs/secrets.md's playbook, step by step: seal the other login of each pair with a new
//! password, `app db roles`, roll the replicas one by one onto the new logins (old and new
//! serve side by side meanwhile), then `app db roles retire` the old logins. Between the
//! first and the second rotation a migration creates a table (the seed's playbook broke
//! there: the table belonged to the login that created it). After each rotation every table
//! is reachable by the API's new login, and the retired logins can no longer log in.

use std::time::{Duration, Instant};

use crate::support::load::{Bounds, Load, api_mix, assert_none_failed, sign_up};
use crate::support::nginx::Nginx;
use crate::support::roles::{Roles, Sealed, connect, login_error};
use crate::support::{Cluster, Served, TestDb, free_port, output_text, scratch};

const SETTINGS: [(&str, &str); 3] = [
    ("APP_HTTP__SHUTDOWN_GRACE", "1s"),
    ("APP_HTTP__SHUTDOWN_TIMEOUT", "10s"),
    ("APP_DATABASE__ACQUIRE_TIMEOUT", "8s"),
];

fn replica(
    db: &TestDb<'_>,
    roles: &Roles,
    sealed: &Sealed,
    port: u16,
    log: &std::path::Path,
) -> Served {
    roles.serve(db, sealed, port, log, &SETTINGS)
}

/// Every table of `public` answers the API's login: rows read, and (but the history) written.
async fn every_table_reachable(db: &TestDb<'_>, sealed: &Sealed) -> Vec<String> {
    let mut conn = connect(db, &sealed.app_user, &sealed.app_password)
        .await
        .unwrap_or_else(|e| panic!("{} cannot log in: {e}", sealed.app_user));
    let tables = db.psql("select tablename from pg_tables where schemaname = 'public' order by 1");
    let tables: Vec<String> = tables.lines().map(str::to_owned).collect();
    for table in &tables {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{} cannot read {table}: {e}", sealed.app_user));
    }
    if tables.iter().any(|t| t == "rounds") {
        sqlx::raw_sql("insert into rounds (name) values ('after rotation')")
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{} cannot write rounds: {e}", sealed.app_user));
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_database_password_rotations_under_load_fail_no_request() {
    let db = Cluster::shared().create_db();
    let roles = Roles::new();
    let dir = scratch("db-rotation");
    // Our migrations plus a V6 that creates a table, applied between rotations 1 and 2.
    let migrations = dir.join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(ours).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, migrations.join(path.file_name().unwrap())).unwrap();
    }

    let mut sealed = roles.seal(0, 0);
    let out = roles.db_roles(&db, &[]);
    assert!(out.status.success(), "db roles: {}", output_text(&out));
    roles.migrate(&db, &sealed, &[]);

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client = reqwest::Client::new();
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut r = replica(
            &db,
            &roles,
            &sealed,
            *port,
            &dir.join(format!("replica-{i}.log")),
        );
        r.wait_ready(&client, Duration::from_secs(30)).await;
        replicas.push(r);
    }
    let mut nginx = Nginx::start(&dir, &ports);
    let (username, token) = sign_up(&nginx.base(), "dbrot").await;
    let calls = api_mix(&username, &token, "rotating");
    let started = Instant::now();
    let load = Load::start(
        &nginx.base(),
        calls,
        Bounds {
            workers: 4,
            max_requests: 200_000,
            max_time: Duration::from_secs(150),
            pause: Duration::from_millis(5),
            keep_alive: false,
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    for rotation in 1..=3 {
        // 1. Seal the other login of each pair, with new passwords; 2. `app db roles`.
        let old = sealed.clone();
        let next = rotation % 2;
        sealed = roles.seal(next, next);
        let out = roles.db_roles(&db, &[]);
        assert!(out.status.success(), "db roles: {}", output_text(&out));
        // 3. The rollout: each replica in turn onto the new logins; migrate (an init
        //    container) runs as the new migrate login, after the first rotation with V6.
        if rotation == 2 {
            std::fs::write(
                migrations.join("V6__create_rounds.sql"),
                "create table rounds (id serial primary key, name text not null);\n",
            )
            .unwrap();
        }
        roles.migrate(&db, &sealed, &["--location", migrations.to_str().unwrap()]);
        for (i, r) in replicas.iter_mut().enumerate() {
            let log = dir.join(format!("replica-{i}.log"));
            nginx
                .replace(r, &ports, i, || {
                    replica(&db, &roles, &sealed, ports[i], &log)
                })
                .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // 4. After the rollout: retire the old logins; they can no longer log in.
        for login in [&old.app_user, &old.migrate_user] {
            let out = roles.db_roles(&db, &["retire", login]);
            assert!(
                out.status.success(),
                "retire {login}: {}",
                output_text(&out)
            );
        }
        for (user, password) in [
            (&old.app_user, &old.app_password),
            (&old.migrate_user, &old.migrate_password),
        ] {
            let (code, message) = login_error(&db, user, password).await;
            assert!(
                code == "28P01" || code == "28000",
                "retired {user}: {code} {message}"
            );
        }
        let tables = every_table_reachable(&db, &sealed).await;
        eprintln!(
            "rotation {rotation}: now {} / {}; {} tables reachable; {} requests so far",
            sealed.app_user,
            sealed.migrate_user,
            tables.len(),
            load.sent()
        );
        if rotation >= 2 {
            assert!(tables.iter().any(|t| t == "rounds"), "{tables:?}");
        }
    }
    let samples = load.finish().await;
    assert_none_failed(
        &samples,
        started,
        500,
        "db rotation through nginx (3 rotations of both login pairs, 3 replicas rolled each)",
        &nginx.error_log(),
    );
    for s in &samples {
        assert_eq!(s.status, Some(200), "{s:?}");
    }
    assert_eq!(
        db.psql(
            "select string_agg(distinct pg_get_userbyid(relowner), ',') from pg_class \
                 where relnamespace = 'public'::regnamespace and relkind in ('r', 'S')"
        ),
        roles.owner,
        "no rotation changed who owns what"
    );
}
