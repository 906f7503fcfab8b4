//! The one support module of the integration tests: throwaway PostgreSQL clusters, a clean
//! way to run the `app` binary (bounded in time), `app serve` as a child process, and the
//! proofs' load generator and nginx.
//!
//! Every test binary (`tests/{api,cli,proof,deploy}/main.rs`) includes it the same way:
//! `#[path = "../support/mod.rs"] mod support;`, and its modules use `crate::support::...`.
#![allow(dead_code)]

pub mod fleet;
pub mod load;
pub mod nginx;
pub mod pg;
pub mod roles;
pub mod serve;

use std::io::{Read, Seek, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use pg::{Cluster, TestDb};
#[allow(unused_imports)]
pub use serve::Served;

/// The first line of an ASCII-armored age value (age's armor format, written out here rather
/// than taken from the code under test).
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The last line of an ASCII-armored age value.
pub const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

/// The `app` binary under test, with an environment cleared of anything that could steer it
/// (`APP_*`, `DATABASE_URL`, `PORT`, `LOG_LEVEL`, `PG*`), logs in plain text.
pub fn app() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_app"));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("APP_")
            || key.starts_with("PG")
            || ["DATABASE_URL", "PORT", "LOG_LEVEL"].contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("APP_LOG__FORMAT", "pretty");
    if let Ok(level) = std::env::var("TEST_LOG") {
        cmd.env("LOG_LEVEL", level);
    }
    cmd
}

/// Stdout and stderr of a finished command, as one string for assertions and messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback port nothing listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs `cmd` to completion within `limit`, feeding it `stdin` (else `/dev/null`); kills it
/// and fails the test with what it printed when it takes longer. Its output goes to files,
/// not pipes, so a chatty process (trace-level logs) never blocks on a full pipe.
pub fn run(cmd: &mut Command, stdin: Option<&str>, limit: Duration) -> Output {
    let stdout = tempfile::tempfile().expect("a file for stdout");
    let stderr = tempfile::tempfile().expect("a file for stderr");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(stdout.try_clone().unwrap())
    .stderr(stderr.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let status = wait_until(&mut child, Instant::now() + limit);
    let (stdout, stderr) = (read_back(stdout), read_back(stderr));
    let Some(status) = status else {
        panic!(
            "{cmd:?} took over {limit:?}:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits for a spawned child (its output piped) until `deadline`; kills it and fails the test
/// with what it printed when it is still running then (`what` names it: a hang is a bug).
pub fn wait_bounded(mut child: Child, deadline: Instant, what: &str) -> Output {
    let finished = wait_until(&mut child, deadline).is_some();
    let out = child.wait_with_output().unwrap();
    assert!(finished, "{what} hung (deadlock?):\n{}", output_text(&out));
    out
}

/// Polls `child` until it exits (its status) or `deadline` passes (then it is killed: `None`).
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_back(mut file: std::fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A fixture set under `tests/fixtures/migrations`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrations")
        .join(name)
}

/// `app migrate ARGS` on `db`, stdin from `/dev/null`.
fn migrate_command(db: &TestDb<'_>, args: &[&str]) -> Command {
    let mut cmd = app();
    cmd.arg("migrate")
        .args(args)
        .envs(db.app_env())
        .stdin(Stdio::null());
    cmd
}

/// `app migrate ARGS` on `db`, run to completion.
pub fn migrate(db: &TestDb<'_>, args: &[&str]) -> Output {
    migrate_command(db, args).output().expect("run app migrate")
}

/// `app migrate ARGS` on `db`, running in the background with its output piped.
pub fn spawn_migrate(db: &TestDb<'_>, args: &[&str]) -> Child {
    migrate_command(db, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn app migrate")
}

/// Migrates `db` with the real binary, as the init container does; it must succeed.
pub fn apply_migrations(db: &TestDb<'_>) {
    let out = migrate(db, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// A scratch directory under `target/proof/`, kept after the run for its logs.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/proof")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of an unlabelled metric, from the text exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}
