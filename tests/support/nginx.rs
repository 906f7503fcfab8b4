//! nginx in front of `app serve` replicas, as ingress-nginx runs in front of pods. It listens
//! on 127.0.0.1 and every wait here is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, output_text};

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

    /// One replica's turn in a rollout, as Kubernetes replaces a pod: SIGTERM while it leaves
    /// the upstreams (the endpoints controller), exit 0 after draining, `start` puts a new one
    /// on its port, and once ready it is back in.
    pub async fn replace(
        &mut self,
        replica: &mut super::Served,
        ports: &[u16],
        i: usize,
        start: impl FnOnce() -> super::Served,
    ) {
        replica.signal(libc::SIGTERM);
        let others: Vec<u16> = ports.iter().copied().filter(|p| *p != ports[i]).collect();
        self.set_upstreams(&others);
        let code = replica.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(code, Some(0), "replica {i}: {}", replica.log_text());
        *replica = start();
        replica
            .wait_ready(&reqwest::Client::new(), Duration::from_secs(30))
            .await;
        self.set_upstreams(ports);
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
