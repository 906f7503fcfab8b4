//! Moving the seed's database into the new StatefulSet, as `docs/migrations.md` ("Switching
//! from Flyway", path B) tells the operator: `pg_dump -Fc` of a database that looks like the
//! seed's (the Flyway history with other checksums and a V1 without a file, a few hundred
//! users), `pg_restore` into a fresh database, `app migrate adopt`, then the verification:
//! rows per table equal, `app migrate validate` passes, `app serve` reads a user.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::adopt::prepare_like_seed;
use super::*;
use crate::support::pg::{SUPERUSER, SUPERUSER_PASSWORD, pg_bin};
use crate::support::{Cluster, TestDb, output_text, run};

/// `pg_dump` or `pg_restore` of the test cluster, as the superuser, for `db`.
fn pg_tool(tool: &str, db: &TestDb<'_>) -> Command {
    let mut cmd = Command::new(pg_bin().join(tool));
    cmd.args(["-h", "127.0.0.1", "-p", &db.cluster.port.to_string()])
        .args(["-U", SUPERUSER, "-d", &db.name])
        .env("PGPASSWORD", SUPERUSER_PASSWORD);
    cmd
}

/// `table<TAB>rows` for every table of `public` (the history too when `with_history`), by
/// name, counted here with psql rather than by the code under test.
fn row_counts(db: &TestDb<'_>, with_history: bool) -> Vec<String> {
    let tables =
        db.psql("select tablename from pg_tables where schemaname = 'public' order by tablename");
    tables
        .lines()
        .filter(|t| with_history || *t != "flyway_schema_history")
        .map(|t| format!("{t}\t{}", db.psql(&format!("select count(*) from {t}"))))
        .collect()
}

/// The `table<TAB>rows` lines `app migrate adopt` prints after its header.
fn printed_counts(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("-- rows per table"))
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn dump_and_restore(source: &TestDb<'_>, target: &TestDb<'_>, dir: &Path) {
    let dump = dir.join("seed.dump");
    let limit = Duration::from_secs(120);
    let out = run(
        pg_tool("pg_dump", source)
            .args(["-Fc", "--no-owner", "--no-privileges", "-f"])
            .arg(&dump),
        None,
        limit,
    );
    assert!(out.status.success(), "pg_dump: {}", output_text(&out));
    let out = run(
        pg_tool("pg_restore", target)
            .args(["--no-owner", "--no-privileges", "--exit-on-error"])
            .arg(&dump),
        None,
        limit,
    );
    assert!(out.status.success(), "pg_restore: {}", output_text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_database_dumped_restored_and_adopted_keeps_every_row_and_serves() {
    let cluster = Cluster::shared();
    let source = cluster.create_db();
    prepare_like_seed(&source, false);
    source.psql(
        "insert into users (username, password_hash)
         select 'user' || n, '!locked' from generate_series(1, 300) n;
         insert into user_profiles (user_id, email, name)
         select id, username || '@example.com', 'User ' || id
           from users where username like 'user%'",
    );
    let before = row_counts(&source, true);
    assert!(before.contains(&"users\t303".to_owned()), "{before:#?}");

    let target = cluster.create_db();
    let dir = tempfile::tempdir().unwrap();
    dump_and_restore(&source, &target, dir.path());
    assert_eq!(
        row_counts(&target, true),
        before,
        "the restore carried everything over, the history included"
    );

    // As on the seed's database: refused until adopted.
    let out = migrate(&target, &[]);
    assert_eq!(out.status.code(), Some(10), "{}", output_text(&out));

    // The documented way back from `adopt`: the history as it was, saved with psql's \copy
    // (nothing new in the schema, which adopt would count as drift), put back in one
    // transaction.
    let saved = dir.path().join("history-before-adopt.csv");
    let copy = |direction: &str| {
        format!(
            "\\copy flyway_schema_history {direction} '{}' csv header",
            saved.display()
        )
    };
    let psql = |args: &[String]| {
        let out = run(
            target.psql_command().args(args),
            None,
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "psql {args:?}: {}", output_text(&out));
    };
    psql(&["-c".into(), copy("to")]);
    let seed_history = history(&target);
    assert!(migrate(&target, &["adopt"]).status.success());
    assert_ne!(history(&target), seed_history);
    psql(&[
        "-1".into(),
        "-c".into(),
        "truncate flyway_schema_history".into(),
        "-c".into(),
        copy("from"),
    ]);
    assert_eq!(
        history(&target),
        seed_history,
        "the rollback restored the history"
    );

    let out = migrate(&target, &["adopt"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("repaired the schema history"), "{text}");
    let printed = printed_counts(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        printed,
        row_counts(&source, false),
        "adopt prints the rows per table, equal to the source's"
    );

    let out = migrate(&target, &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = migrate(&target, &[]);
    assert!(
        output_text(&out).contains("no migration necessary"),
        "{}",
        output_text(&out)
    );
    // The sequences came along: the next user gets an id no restored row has.
    assert_eq!(
        target.psql("select nextval('users_id_seq') > (select max(id) from users)"),
        "t"
    );
    let user = serve_reads_user(&target, "user150").await;
    assert_eq!(user["user_profiles"]["name"], format!("User {}", 153));
    // The source is untouched: the rollback of this path is to keep using it.
    assert_eq!(row_counts(&source, true), before);
}
