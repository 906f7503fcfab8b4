//! `app serve` as a child process, as a pod runs it: signals, readiness, exit code, and
//! everything it printed (kept in a file, so a chatty server never blocks on a full pipe).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{TestDb, app, free_port};

/// The JWT secret [`Served::replica`] gives every replica, so a token from one works on all.
pub const REPLICA_JWT_SECRET: &str = "proof-jwt-secret-0123456789abcdef-0123456789";

/// One `app serve` process on a loopback port.
pub struct Served {
    child: Option<Child>,
    /// The API port.
    pub port: u16,
    log: PathBuf,
    /// Holds the log of a server started with [`Served::start`] until it goes.
    _scratch: Option<tempfile::TempDir>,
}

impl Served {
    /// `app serve` for `db` on a free port with the extra settings (metrics off), its output
    /// in a temporary file.
    pub fn start(db: &TestDb<'_>, extra: &[(&str, &str)]) -> Served {
        let scratch = tempfile::tempdir().expect("a directory for the server's log");
        let mut served =
            Served::start_logged(db, free_port(), &scratch.path().join("serve.log"), extra);
        served._scratch = Some(scratch);
        served
    }

    /// A replica of the proofs: `app serve` for `db` on `port`, its output appended to `log`
    /// (kept after the run), request logs off and the JWT secret every replica shares.
    pub fn replica(db: &TestDb<'_>, port: u16, log: &Path, extra: &[(&str, &str)]) -> Served {
        let mut settings = vec![
            ("APP_LOG__REQUESTS", "false"),
            ("APP_JWT__SECRET", REPLICA_JWT_SECRET),
        ];
        settings.extend_from_slice(extra);
        Served::start_logged(db, port, log, &settings)
    }

    /// `app serve` for `db` on `port` with the extra settings (metrics off), its output
    /// appended to `log`.
    pub fn start_logged(db: &TestDb<'_>, port: u16, log: &Path, extra: &[(&str, &str)]) -> Served {
        Served::spawn(db, port, log, extra, None)
    }

    /// Like [`Served::start_logged`], with the process limited to `nofile` open files.
    pub fn start_nofile(
        db: &TestDb<'_>,
        port: u16,
        log: &Path,
        extra: &[(&str, &str)],
        nofile: u64,
    ) -> Served {
        Served::spawn(db, port, log, extra, Some(nofile))
    }

    fn spawn(
        db: &TestDb<'_>,
        port: u16,
        log: &Path,
        extra: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Served {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the server's log");
        let mut cmd = app();
        if let Some(nofile) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .arg("serve")
            .envs(db.app_env())
            .env("APP_HTTP__HOST", "127.0.0.1")
            .env("APP_HTTP__PORT", port.to_string())
            .env("APP_METRICS__ENABLED", "false")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn app serve");
        Served {
            child: Some(child),
            port,
            log: log.to_owned(),
            _scratch: None,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status of `GET path`, or `None` when the request failed.
    pub async fn status(&self, client: &reqwest::Client, path: &str) -> Option<u16> {
        client
            .get(self.url(path))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Waits until `/ready` answers 200; fails at once, with the log, if the process exits.
    pub async fn wait_ready(&mut self, client: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(client, "/ready").await;
            if status == Some(200) {
                return;
            }
            assert!(
                self.is_running(),
                "app serve on {} exited while starting: {}",
                self.port,
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "app serve on {} not ready within {within:?} (last /ready: {status:?})",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A field of `/proc/PID/status` in KiB (`VmHWM`, the peak resident set, or `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// CPU time the process has used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "app serve on {} did not exit within {within:?}: {}",
                    self.port,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit by itself; returns its code and everything it printed.
    pub async fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let code = self.wait_exit(within).await;
        (code, self.log_text())
    }

    /// Everything the process printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
