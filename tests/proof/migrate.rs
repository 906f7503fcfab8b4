//! Migrations under races and crashes, as N init containers and node failures produce them.
//!
//! - 10 `app migrate` processes started together, 20 times, each time on a fresh database:
//!   every version applied exactly once, every process succeeds, none hangs, no lock is left.
//! - A migrator killed with SIGKILL in the middle of a slow migration: nothing of it is left
//!   (no table, no history row, no lock), and the next run completes it.
//!
//! `tests/cli/migrate/concurrency.rs` has the single-shot cases (8 racers once, lock timeout,
//! waiting behind a slow migrator); this file repeats the race and adds the crash.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{Cluster, TestDb, fixture, output_text, spawn_migrate, wait_bounded};

const RACERS: usize = 10;
const ROUNDS: usize = 20;
/// No round may take longer than this: a deadlock or a lost wake-up shows up as a hang.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// The embedded migrations, as each process logs `applied <script>`.
const SCRIPTS: [&str; 4] = [
    "V2__create_users_table.sql",
    "V3__add_authentication_fields.sql",
    "V4__create_user_profiles_table.sql",
    "V5__cleanup_users_table.sql",
];

/// Advisory locks held by any session on `db`.
fn advisory_locks(db: &TestDb<'_>) -> String {
    db.psql(
        "select count(*) from pg_locks where locktype = 'advisory'
            and database = (select oid from pg_database where datname = current_database())",
    )
}

#[test]
fn ten_racing_migrators_twenty_times_apply_each_version_exactly_once() {
    let cluster = Cluster::shared();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let db = cluster.create_db();
        let t = Instant::now();
        let deadline = t + ROUND_LIMIT;
        let racers: Vec<Child> = (0..RACERS).map(|_| spawn_migrate(&db, &[])).collect();
        let mut appliers = [0usize; 4];
        for (i, child) in racers.into_iter().enumerate() {
            let out = wait_bounded(child, deadline, &format!("round {round} migrator {i}"));
            let text = output_text(&out);
            assert!(out.status.success(), "round {round} migrator {i}: {text}");
            for (n, script) in SCRIPTS.iter().enumerate() {
                appliers[n] += usize::from(text.contains(&format!("applied {script}")));
            }
        }
        slowest = slowest.max(t.elapsed());
        assert_eq!(
            db.psql(
                "select string_agg(version || 'x' || n || ':' || ok, ' ' order by version)
                   from (select version, count(*) as n, bool_and(success) as ok
                           from flyway_schema_history group by version) c"
            ),
            "2x1:true 3x1:true 4x1:true 5x1:true",
            "round {round}"
        );
        assert_eq!(
            db.psql("select string_agg(installed_rank::text, ',' order by installed_rank) from flyway_schema_history"),
            "1,2,3,4",
            "round {round}: ranks are dense"
        );
        // The seed's three users, inserted once by V2.
        assert_eq!(db.psql("select count(*) from users"), "3", "round {round}");
        assert_eq!(advisory_locks(&db), "0", "round {round}: a lock was left");
        assert_eq!(
            appliers, [1; 4],
            "round {round}: processes that applied each script"
        );
    }
    println!(
        "migration races: {ROUNDS} rounds x {RACERS} concurrent `app migrate` = {} processes in \
         {:.1?}, slowest round {slowest:.1?}; every version applied exactly once",
        ROUNDS * RACERS,
        started.elapsed()
    );
}

/// The `app migrate` session running `pg_sleep`, as its backend pid, once there is one.
fn wait_for_sleeping_migrator(db: &TestDb<'_>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid = db.psql(
            "select pid from pg_stat_activity
              where datname = current_database() and application_name = 'app migrate'
                and query like '%pg_sleep%' and state = 'active'",
        );
        if !pid.is_empty() {
            return pid;
        }
        assert!(Instant::now() < deadline, "the slow migration never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_migrator_killed_mid_migration_leaves_nothing_half_applied_and_the_next_run_completes() {
    let db = Cluster::shared().create_db();
    let location = fixture("slow");
    let location = location.to_str().unwrap();

    let mut victim = spawn_migrate(&db, &["--location", location]);
    let backend = wait_for_sleeping_migrator(&db);
    // The migration's transaction has created the table and holds the lock.
    assert_eq!(advisory_locks(&db), "1");
    victim.kill().unwrap(); // SIGKILL: no unlock, no rollback, no goodbye
    let status = victim.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    // PostgreSQL ends the orphaned backend (at the latest when pg_sleep returns and it finds
    // the socket closed), rolling its transaction back and dropping its lock.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.psql(&format!(
        "select count(*) from pg_stat_activity where pid = {backend}"
    )) != "0"
    {
        assert!(
            Instant::now() < deadline,
            "the killed migrator's backend lingers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        db.psql("select to_regclass('public.slow') is null"),
        "t",
        "the half-run migration's table survived"
    );
    let rows = db.psql("select count(*) from flyway_schema_history where version = '1'");
    assert_eq!(rows, "0", "a history row of the killed migration survived");
    assert_eq!(
        advisory_locks(&db),
        "0",
        "the killed migrator's lock survived"
    );

    let out = wait_bounded(
        spawn_migrate(&db, &["--location", location]),
        Instant::now() + Duration::from_secs(60),
        "the next migrator",
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(db.psql("select count(*) from slow"), "1");
    assert_eq!(
        db.psql("select string_agg(version || ':' || success, ' ') from flyway_schema_history"),
        "1:true"
    );
}

#[test]
fn a_migrator_waiting_behind_a_killed_one_takes_over_and_completes() {
    let db = Cluster::shared().create_db();
    let location = fixture("slow");
    let location = location.to_str().unwrap();

    let mut victim = spawn_migrate(&db, &["--location", location]);
    wait_for_sleeping_migrator(&db);
    let waiter = spawn_migrate(&db, &["--location", location, "--lock-timeout", "60s"]);
    // Let the waiter reach the lock and start polling for it.
    std::thread::sleep(Duration::from_millis(500));
    victim.kill().unwrap();
    let _ = victim.wait();

    let out = wait_bounded(
        waiter,
        Instant::now() + Duration::from_secs(60),
        "the waiting migrator",
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("waiting for the migration lock"), "{text}");
    assert_eq!(db.psql("select count(*) from slow"), "1");
    assert_eq!(
        db.psql("select string_agg(version || ':' || success, ' ') from flyway_schema_history"),
        "1:true"
    );
    assert_eq!(advisory_locks(&db), "0");
}
