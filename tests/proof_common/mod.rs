//! Shared parts of the `proof_*` tests: `app serve` replicas as child processes, a bounded
//! load generator that records every request, and nginx in front of the replicas.
//!
//! Everything listens on 127.0.0.1 and every loop here is bounded in count and in time.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{TestDb, app, output_text};

/// The JWT secret shared by every replica, so a token from one works on all.
pub const JWT_SECRET: &str = "proof-jwt-secret-0123456789abcdef-0123456789";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Migrates `db` with the real binary, as the init container does.
pub fn migrate(db: &TestDb<'_>) {
    let out = app()
        .arg("migrate")
        .envs(db.app_env())
        .output()
        .expect("run app migrate");
    assert!(out.status.success(), "{}", output_text(&out));
}

/// One `app serve` process on a fixed loopback port, its output kept in a file.
pub struct Replica {
    child: Option<Child>,
    /// The API port.
    pub port: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts `app serve` for `db` on `port` with the extra settings.
    pub fn start(db: &TestDb<'_>, port: u16, log: &Path, extra: &[(&str, &str)]) -> Replica {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the replica log");
        let child = app()
            .arg("serve")
            .envs(db.app_env())
            .env("APP_HTTP__HOST", "127.0.0.1")
            .env("APP_HTTP__PORT", port.to_string())
            .env("APP_METRICS__ENABLED", "false")
            .env("APP_LOG__REQUESTS", "false")
            .env("APP_JWT__SECRET", JWT_SECRET)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn app serve");
        Replica {
            child: Some(child),
            port,
            log: log.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&mut self, client: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let status = client
                .get(self.url("/ready"))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            if status == Some(200) {
                return;
            }
            assert!(
                self.is_running(),
                "replica on {} exited while starting: {}",
                self.port,
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "replica on {} not ready within {within:?} (last /ready: {status:?})",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
                    "replica on {} did not exit within {within:?}: {}",
                    self.port,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request the load generator sent.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent.
    pub sent: Instant,
    /// How long until the whole body was read (or the error).
    pub latency: Duration,
    /// `METHOD path`.
    pub what: String,
    /// The status, or `None` for a connection-level failure.
    pub status: Option<u16>,
    /// The body (or the error).
    pub body: String,
    /// nginx's `X-Upstream` header: which replica answered.
    pub upstream: Option<String>,
}

impl Sample {
    /// A connection error or a 5xx.
    pub fn failed(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

/// A request the load generator can make.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: reqwest::Method,
    /// Path and query.
    pub path: String,
    /// A bearer token.
    pub token: Option<String>,
    /// A JSON body.
    pub body: Option<serde_json::Value>,
}

impl Call {
    /// `GET path`.
    pub fn get(path: &str) -> Call {
        Call {
            method: reqwest::Method::GET,
            path: path.to_owned(),
            token: None,
            body: None,
        }
    }
}

/// Limits of a load run: whichever comes first ends it.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Concurrent workers.
    pub workers: usize,
    /// Most requests in total.
    pub max_requests: usize,
    /// Longest run.
    pub max_time: Duration,
    /// Pause between two requests of one worker.
    pub pause: Duration,
    /// Reuse connections (HTTP keep-alive), or open one per request.
    pub keep_alive: bool,
}

/// A running load generator.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `bounds.workers` workers cycling through `calls` against `base`.
    pub fn start(base: &str, calls: Vec<Call>, bounds: Bounds) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(if bounds.keep_alive { bounds.workers } else { 0 })
            .build()
            .unwrap();
        let calls = Arc::new(calls);
        let started = Instant::now();
        let tasks = (0..bounds.workers)
            .map(|w| {
                let (stop, samples, client, calls) =
                    (stop.clone(), samples.clone(), client.clone(), calls.clone());
                let base = base.to_owned();
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < bounds.max_time
                        && samples.lock().unwrap().len() < bounds.max_requests
                    {
                        let call = &calls[i % calls.len()];
                        i += 1;
                        let sample = send(&client, &base, call).await;
                        samples.lock().unwrap().push(sample);
                        tokio::time::sleep(bounds.pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Stops the workers and returns every sample, in the order they finished.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load worker panicked");
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Sample {
    let sent = Instant::now();
    let mut req = client.request(call.method.clone(), format!("{base}{}", call.path));
    if let Some(token) = &call.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = &call.body {
        req = req.json(body);
    }
    let what = format!("{} {}", call.method, call.path);
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let upstream = resp
                .headers()
                .get("x-upstream")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = match resp.text().await {
                Ok(body) => body,
                Err(e) => {
                    return Sample {
                        sent,
                        latency: sent.elapsed(),
                        what,
                        status: None,
                        body: format!("body not read after {status}: {e}"),
                        upstream,
                    };
                }
            };
            Sample {
                sent,
                latency: sent.elapsed(),
                what,
                status: Some(status),
                body,
                upstream,
            }
        }
        Err(e) => Sample {
            sent,
            latency: sent.elapsed(),
            what,
            status: None,
            body: format!("{e:?}"),
            upstream: None,
        },
    }
}

/// The first few failures, for an assertion message.
pub fn describe_failures(samples: &[Sample], start: Instant) -> String {
    samples
        .iter()
        .filter(|s| s.failed())
        .take(10)
        .map(|s| {
            format!(
                "  t={:?} {} -> {:?} after {:?}: {}",
                s.sent.duration_since(start),
                s.what,
                s.status,
                s.latency,
                s.body.chars().take(300).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Registers a user through `base` and logs in; returns (username, token).
pub async fn sign_up(base: &str, tag: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let username = format!("{tag}_{}", std::process::id());
    let password = "proof-password-long-enough";
    let resp = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": password,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = client
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    (username, body["token"].as_str().unwrap().to_owned())
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

/// nginx in front of upstream ports, from `proof/nginx/upstream.conf.template`: round robin
/// with passive health checks (`max_fails`/`fail_timeout`) and `proxy_next_upstream`, as
/// ingress-nginx configures it.
pub struct Nginx {
    child: Option<Child>,
    /// The port nginx listens on.
    pub port: u16,
    dir: PathBuf,
    generation: usize,
}

/// Writes `dir/nginx.conf` for `upstreams` and checks it with `nginx -t`.
fn write_conf(dir: &Path, port: u16, upstreams: &[u16]) {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("proof/nginx/upstream.conf.template"),
    )
    .expect("read proof/nginx/upstream.conf.template");
    let servers: String = upstreams
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    // As root, nginx's workers switch to `nobody` unless told otherwise; they need the
    // temp directories here.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;"
    } else {
        ""
    };
    let conf = template
        .replace("@USER@", user)
        .replace("@PREFIX@", dir.to_str().unwrap())
        .replace("@PORT@", &port.to_string())
        .replace("@UPSTREAMS@", servers.trim_end());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let test = Command::new(nginx_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(test.status.success(), "nginx -t: {}", output_text(&test));
}

/// The nginx binary: `NGINX` or `/usr/sbin/nginx`.
pub fn nginx_bin() -> PathBuf {
    let bin = std::env::var_os("NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        bin.exists(),
        "{} not found: run scripts/setup.sh (it installs Debian's nginx)",
        bin.display()
    );
    bin
}

impl Nginx {
    /// Starts nginx in the foreground with its files under `dir`.
    pub fn start(dir: &Path, upstreams: &[u16]) -> Nginx {
        let port = free_port();
        let conf_path = dir.join("nginx.conf");
        write_conf(dir, port, upstreams);
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx {
            child: Some(child),
            port,
            dir: dir.to_owned(),
            generation: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// Replaces the upstream servers, as ingress-nginx does when a Service's endpoints change
    /// (a terminating pod leaves them at once, a new one joins when ready): the configuration
    /// is rewritten and nginx reloaded (SIGHUP; old workers finish what they have in flight).
    /// Returns once the new workers answer.
    pub fn set_upstreams(&mut self, upstreams: &[u16]) {
        self.generation += 1;
        write_conf(&self.dir, self.port, upstreams);
        let pid = self.child.as_ref().expect("running").id() as i32;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        // The master logs each reload it starts; new workers follow at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.error_log().matches("reconfiguring").count() < self.generation {
            assert!(Instant::now() < deadline, "nginx did not reload");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// nginx's error log (upstream failures it retried are logged there).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: graceful shutdown of master and workers.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
