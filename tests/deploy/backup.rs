//! The backup CronJob's and the restore drill's pods, as the simulation runs the app's: init
//! containers in order, then the main containers side by side, each as its rendered uid with
//! its rendered command, environment and volumes. Our image's containers run this binary; the
//! postgres image's run their rendered command with Debian's PostgreSQL client tools of the
//! test cluster (the image's own `pg_dump` and `pg_restore`, in a cluster). Both Jobs must
//! succeed: a complete backup appears on the `backups` volume, and the drill passes on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use super::support::pg::pg_bin;
use super::support::{Cluster, output_text, run, wait_bounded};
use super::{APP, App, Pod, TestSeal, find, seq, str_of};

/// Longest a Job's containers may take here.
const LIMIT: Duration = Duration::from_secs(120);

pub(super) fn simulate(docs: &[Value], seal: &TestSeal, overlay: &str, cluster: &Cluster) {
    let backup = Pod::new(docs, "CronJob", "backup", seal);
    run_job(&backup, overlay, cluster, &[]);
    let dir = backup_dir(&backup);
    let listed = run(
        Command::new(APP)
            .args(["backup", "list", "--dir"])
            .arg(&dir),
        None,
        LIMIT,
    );
    let text = output_text(&listed);
    assert!(
        text.contains("1 complete, 0 incomplete"),
        "{overlay}: the backup Job left no complete backup:\n{text}"
    );

    // The drill creates its scratch database as the API's login: `app db roles --createdb`
    // (main.rs) let it, and nothing more.
    let drill = Pod::new(docs, "CronJob", "restore-drill", seal);
    let outputs = run_job(&drill, overlay, cluster, &[(dir, backup_dir(&drill))]);
    let text = outputs_text(&outputs);
    assert!(
        text.contains("restore drill passed"),
        "{overlay}: the drill did not report success:\n{text}"
    );
}

/// Where the pod's `backups` volume is, here.
fn backup_dir(pod: &Pod<'_>) -> PathBuf {
    pod.volumes
        .get("backups")
        .unwrap_or_else(|| panic!("{} has no backups volume", pod.name))
        .path()
        .to_owned()
}

fn outputs_text(outputs: &[(String, Output)]) -> String {
    outputs
        .iter()
        .map(|(name, out)| format!("--- {name}:\n{}", output_text(out)))
        .collect()
}

/// Copies every file of `from` into `to`, keeping owner and mode (one volume, two pods).
fn copy_volume(from: &Path, to: &Path) {
    use std::os::unix::fs::MetadataExt;
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).unwrap();
        let meta = entry.metadata().unwrap();
        if super::as_root() {
            std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid())).unwrap();
        }
    }
}

/// Runs one Job's pod: the init containers in order, then every main container at once; each
/// must exit 0. `copies` are (from, to) directories copied first (the PVC of an earlier pod).
/// Returns what each main container printed.
fn run_job(
    pod: &Pod<'_>,
    overlay: &str,
    cluster: &Cluster,
    copies: &[(PathBuf, PathBuf)],
) -> Vec<(String, Output)> {
    for (from, to) in copies {
        copy_volume(from, to);
    }
    for init in seq(&pod.spec["initContainers"]) {
        let name = str_of(&init["name"]);
        let out = run(&mut command(pod, init, overlay, cluster), None, LIMIT);
        assert!(
            out.status.success(),
            "{overlay}: {} init container {name} failed:\n{}",
            pod.name,
            output_text(&out)
        );
    }
    let deadline = Instant::now() + LIMIT;
    let children: Vec<(String, std::process::Child)> = seq(&pod.spec["containers"])
        .iter()
        .map(|c| {
            let child = command(pod, c, overlay, cluster)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (str_of(&c["name"]), child)
        })
        .collect();
    let outputs: Vec<(String, Output)> = children
        .into_iter()
        .map(|(name, child)| {
            let out = wait_bounded(child, deadline, &format!("{} container {name}", pod.name));
            (name, out)
        })
        .collect();
    for (name, out) in &outputs {
        assert!(
            out.status.success(),
            "{overlay}: {} container {name} failed ({}):\n{}",
            pod.name,
            out.status,
            outputs_text(&outputs)
        );
    }
    outputs
}

/// The process of one container: this binary for our image, the rendered command with the
/// machine's PostgreSQL client tools for the postgres image. The environment as rendered,
/// with the simulation's rewrites: paths under a mount into that volume, the database Service
/// to the test cluster.
fn command(pod: &Pod<'_>, container: &Value, overlay: &str, cluster: &Cluster) -> Command {
    let image = str_of(&container["image"]);
    let ours = image.starts_with("discbaboons-app") || image.contains("/discbaboons-app");
    let mut env = pod.env(container);
    if ours {
        let defaults = App::defaults();
        for (var, key) in [
            ("APP_SEALED__FILE", "file"),
            ("APP_SEALED__IDENTITY_DIR", "identity_dir"),
        ] {
            if !env.contains_key(var) {
                let default = super::str_of_toml(&defaults["sealed"][key]);
                env.insert(var.to_owned(), default);
            }
        }
    }
    let rewritten: BTreeMap<String, String> = env
        .iter()
        .filter(|(_, v)| v.starts_with('/'))
        .filter_map(|(k, v)| {
            let here = pod.rewrite_path(container, v)?;
            Some((k.clone(), here.display().to_string()))
        })
        .collect();
    env.extend(rewritten);
    for var in ["APP_DATABASE__HOST", "PGHOST"] {
        if let Some(host) = env.get(var) {
            let service = host.split('.').next().unwrap();
            assert!(
                find(pod.docs, "Service", service).is_some(),
                "{overlay}: {} {var}={host} is no rendered Service",
                pod.name
            );
            env.insert(var.to_owned(), "127.0.0.1".into());
        }
    }
    for var in ["APP_DATABASE__PORT", "PGPORT"] {
        if env.contains_key(var) {
            env.insert(var.to_owned(), cluster.port.to_string());
        }
    }
    if ours {
        return pod.command(container, &env);
    }
    env.insert(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", pg_bin().display()),
    );
    let words: Vec<String> = seq(&container["command"])
        .iter()
        .chain(seq(&container["args"]))
        .map(|w| rewrite_mounts(pod, container, &str_of(w)))
        .collect();
    assert!(
        !words.is_empty(),
        "{}: the postgres image's containers name their command",
        pod.name
    );
    pod.exec_program(container, Path::new(&words[0]), &words[1..], &env)
}

/// `text` with every mount path in it (a script's file names) pointing into its volume.
fn rewrite_mounts(pod: &Pod<'_>, container: &Value, text: &str) -> String {
    let mut mounts: Vec<String> = seq(&container["volumeMounts"])
        .iter()
        .map(|m| str_of(&m["mountPath"]))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let mut out = String::new();
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for mount in &mounts {
            if let Some(after) = rest.strip_prefix(mount.as_str())
                && after
                    .chars()
                    .next()
                    .is_none_or(|c| matches!(c, '/' | '"' | '\'' | ' ' | '\n' | ';'))
            {
                let here = pod.rewrite_path(container, mount).unwrap();
                out.push_str(&here.display().to_string());
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}
