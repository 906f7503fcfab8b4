//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! Each test binary starts one shared cluster on first use (scram-sha-256 auth, a random
//! port on 127.0.0.1, no Unix socket); each test creates a fresh database in it. Tests that
//! stop or kill the server start a [`Cluster::private`] one. Clusters die with the test
//! process (parent-death signal and an `atexit` hook) and their directories are removed;
//! leftovers of a crashed run are swept at the next start. Nothing here touches a PostgreSQL
//! that happens to run on the machine.
//!
//! A cluster's files (data, password file, log) live in a private directory of their own
//! under the system temp directory, `<tmp>/discbaboons-pg-test-<uid>/<pid>-<n>`, mode 0700
//! and owned by the user the server runs as, never inside the clone: as root, `initdb` runs
//! as `postgres`, which cannot reach a clone under a private directory (`/root/...`, any
//! `mktemp -d`). The server's processes also start in that directory, not in ours.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::free_port;

/// The superuser's password in every test cluster. Tests that check secrets never leak use
/// passwords of their own.
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "test-superuser-pw";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static LIVE: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

/// A running PostgreSQL server owned by this test process.
pub struct Cluster {
    pub port: u16,
    /// The cluster's private directory (see the module docs).
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    owner: Option<(u32, u32)>,
}

/// The directory holding PostgreSQL's server binaries.
pub fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/setup.sh",
        )
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin: run scripts/setup.sh")
        .1
}

/// uid/gid of the `postgres` user when we are root (initdb refuses to run as root).
fn postgres_owner() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root needs a `postgres` user to run the test cluster: run scripts/setup.sh"
    );
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// `<tmp>/discbaboons-pg-test-<uid>`: one per user of the machine, so that test runs of
/// different users neither collide nor sweep each other's clusters.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join(format!("discbaboons-pg-test-{}", unsafe {
        libc::geteuid()
    }))
}

/// Creates [`base_dir`], or checks the one that is there: ours, a real directory (not a link
/// someone else planted in the shared temp directory), traversable by the `postgres` user
/// but listable by nobody else (0711).
fn ensure_base_dir() -> PathBuf {
    let base = base_dir();
    match std::fs::DirBuilder::new().mode(0o711).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("create {}: {e}", base.display()),
    }
    let meta = std::fs::symlink_metadata(&base).expect("stat the test cluster base directory");
    assert!(
        meta.is_dir() && meta.uid() == unsafe { libc::geteuid() },
        "{} is not a directory of ours: remove it",
        base.display()
    );
    // The umask may have narrowed the mode it was created with.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
    base
}

/// Removes directories of clusters whose test process is gone.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next()?.parse::<i32>().ok())
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown test cluster dir");
    }
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

extern "C" fn stop_all_at_exit() {
    let live = match LIVE.lock() {
        Ok(live) => live.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for (pid, dir) in live {
        unsafe {
            libc::kill(pid as i32, libc::SIGQUIT);
            let mut status = 0;
            libc::waitpid(pid as i32, &mut status, 0);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Cluster {
    /// The cluster shared by every test of this binary.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::private)
    }

    /// A cluster of its own, for tests that stop, kill or restart the server.
    pub fn private() -> Cluster {
        static HOOK: OnceLock<()> = OnceLock::new();
        HOOK.get_or_init(|| unsafe {
            libc::atexit(stop_all_at_exit);
        });
        let base = ensure_base_dir();
        sweep_stale(&base);
        let owner = postgres_owner();
        let dir = base.join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        // A leftover of an earlier process that had our pid: not swept, as the pid lives.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_tree(&dir, owner);
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        chown_tree(&pwfile, owner);

        let mut initdb = Command::new(pg_bin().join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--no-sync", "--no-instructions", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb, owner);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = Cluster {
            port: free_port(),
            dir,
            child: Mutex::new(None),
            owner,
        };
        cluster.start_on_free_port();
        cluster
    }

    fn start_on_free_port(&mut self) {
        for _ in 0..5 {
            if self.try_start() {
                return;
            }
            self.port = free_port();
        }
        panic!(
            "could not start the test PostgreSQL; see {}",
            self.log_path().display()
        );
    }

    /// uid and gid the server runs as: `postgres` when we are root, else ourselves.
    pub fn server_user(&self) -> (u32, u32) {
        self.owner
            .unwrap_or_else(|| unsafe { (libc::geteuid(), libc::getegid()) })
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn try_start(&self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        chown_tree(&self.log_path(), self.owner);
        let mut cmd = Command::new(pg_bin().join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .args(["-c", "shared_buffers=32MB"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_owner(&mut cmd, self.owner);
        unsafe {
            // Dies with the test process even if it is killed.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        // The parent-death signal follows the spawning *thread*: spawn from one that lives
        // as long as the process.
        let child = spawn_from_immortal_thread(cmd);
        let pid = child.id();
        *self.child.lock().unwrap() = Some(child);
        LIVE.lock().unwrap().push((pid, self.dir.clone()));

        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                LIVE.lock().unwrap().retain(|(p, _)| *p != pid);
                eprintln!("test postgres exited early ({status}); retrying on another port");
                return false;
            }
            if self.accepts_connections() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "test PostgreSQL did not start in 30 s; see {}",
            self.log_path().display()
        );
    }

    fn accepts_connections(&self) -> bool {
        let out = Command::new(pg_bin().join("pg_isready"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-q",
            ])
            .status();
        matches!(out, Ok(s) if s.success())
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
            let pid = child.id();
            LIVE.lock().unwrap().retain(|(p, _)| *p != pid);
        }
    }

    /// Starts a stopped server again on the same port and data.
    pub fn start(&self) {
        assert!(
            self.child.lock().unwrap().is_none(),
            "cluster already running"
        );
        assert!(
            self.try_start(),
            "test postgres did not restart on port {}",
            self.port
        );
    }

    /// A connection URL as the superuser to `db`.
    pub fn superuser_url(&self, db: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Runs SQL as the superuser through `psql`, panicking on failure. For setup only.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .psql_command(db)
            .args(["-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A quiet `psql` connected to `db` as the superuser; add `-c` arguments and run or spawn
    /// it (for sessions that must hold a lock while a test goes on).
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(pg_bin().join("psql"));
        cmd.args(["-X", "-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db])
            .env("PGPASSWORD", SUPERUSER_PASSWORD);
        cmd
    }

    /// Creates a fresh, uniquely named database, dropped again when the guard goes.
    pub fn create_db(&self) -> TestDb<'_> {
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            Instant::now().elapsed().subsec_nanos() % 1000
        );
        self.psql("postgres", &format!("create database {name}"));
        TestDb {
            cluster: self,
            name,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
            let pid = child.id();
            LIVE.lock().unwrap().retain(|(p, _)| *p != pid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_from_immortal_thread(mut cmd: Command) -> Child {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Keep the thread (and so the parent-death signal) alive forever.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        Mutex::new(tx)
    });
    let (reply, result) = std::sync::mpsc::channel();
    cmd.stdin(Stdio::null());
    spawner.lock().unwrap().send((cmd, reply)).unwrap();
    result.recv().unwrap().expect("spawn postgres")
}

/// A fresh database in a test cluster.
pub struct TestDb<'c> {
    pub cluster: &'c Cluster,
    pub name: String,
}

impl TestDb<'_> {
    /// Superuser URL to this database.
    pub fn url(&self) -> String {
        self.cluster.superuser_url(&self.name)
    }

    /// Environment for the `app` binary pointing at this database as the superuser, with
    /// discrete fields.
    pub fn app_env(&self) -> Vec<(String, String)> {
        vec![
            ("APP_DATABASE__HOST".into(), "127.0.0.1".into()),
            ("APP_DATABASE__PORT".into(), self.cluster.port.to_string()),
            ("APP_DATABASE__USER".into(), SUPERUSER.into()),
            ("APP_DATABASE__PASSWORD".into(), SUPERUSER_PASSWORD.into()),
            ("APP_DATABASE__NAME".into(), self.name.clone()),
            ("APP_DATABASE__SSLMODE".into(), "disable".into()),
        ]
    }

    /// Runs SQL in this database through psql.
    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }

    /// Adds `n` users (`seeded_1`...) with profiles of a realistic size, straight into the
    /// (migrated) database: a page of 500 of them is over 100 KB of JSON.
    pub fn seed_users(&self, n: u32) {
        self.psql(&format!(
            "insert into users (username, password_hash) \
             select 'seeded_' || g, '!locked' from generate_series(1, {n}) g; \
             insert into user_profiles (user_id, email, name, location, bio, personality_type) \
             select id, username || '@example.com', 'Seeded ' || id, 'Somewhere, XY', \
                    repeat('A bio of some length. ', 10), 'Analytical' \
               from users where username like 'seeded\\_%';"
        ));
    }

    /// A quiet `psql` connected to this database (see [`Cluster::psql_command`]).
    pub fn psql_command(&self) -> Command {
        self.cluster.psql_command(&self.name)
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .psql_command("postgres")
            .arg("-c")
            .arg(format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
