//! `app backup` against real PostgreSQL and Debian's pg_dump, pg_restore and age: a backup
//! restores the same rows and schema (with our binary, and with only the recovery key and the
//! stock tools), the CronJob's two-container protocol (a FIFO, an exported snapshot, a status
//! file), damaged backups refused, retention on dated files, a killed or failed dump, a full
//! volume, and the restore drill against a good and a damaged backup. Every command is bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::pg::pg_bin;
use crate::support::{Cluster, TestDb, app, apply_migrations, output_text, run};

/// Longest any one command of these tests may take.
const LIMIT: Duration = Duration::from_secs(120);

/// A scratch directory with two identities (the cluster's and the offline recovery key) and
/// a sealed file that lists both as its recipients, as a real overlay's does.
struct Lab {
    dir: tempfile::TempDir,
    cluster_key: PathBuf,
    recovery_key: PathBuf,
    sealed: PathBuf,
    backups: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let path = dir.path().join(name);
            let out = run(app().args(["seal", "keygen", "-o"]).arg(&path), None, LIMIT);
            assert!(out.status.success(), "{}", output_text(&out));
            (
                path,
                String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            )
        };
        let (cluster_key, cluster_recipient) = keygen("cluster.key");
        let (recovery_key, recovery_recipient) = keygen("recovery.key");
        let sealed = dir.path().join("secrets.yaml");
        let out = run(
            app()
                .args(["seal", "set"])
                .arg(&sealed)
                .args(["JWT_SECRET", "--context", "discbaboons/dev"])
                .args(["-r", &cluster_recipient, "-r", &recovery_recipient]),
            Some("not-the-point\n"),
            LIMIT,
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let backups = dir.path().join("backups");
        std::fs::create_dir(&backups).unwrap();
        // The pod's identity directory: the cluster key only.
        let identity = dir.path().join("identity");
        std::fs::create_dir(&identity).unwrap();
        std::fs::copy(&cluster_key, identity.join("cluster.key")).unwrap();
        Lab {
            dir,
            cluster_key,
            recovery_key,
            sealed,
            backups,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `app backup ARGS` with the settings of `db` and the lab's sealed file.
    fn backup(&self, db: &TestDb<'_>, args: &[&str]) -> Command {
        let mut cmd = app();
        cmd.arg("backup")
            .args(args)
            .envs(db.app_env())
            .env("APP_SEALED__FILE", &self.sealed)
            .env("APP_SEALED__IDENTITY_DIR", self.path("identity"))
            .env("BACKUP_DIR", &self.backups);
        cmd
    }

    /// `app backup ARGS` with no database settings.
    fn offline(&self, args: &[&str]) -> Output {
        let mut cmd = app();
        cmd.arg("backup")
            .args(args)
            .env("BACKUP_DIR", &self.backups);
        run(&mut cmd, None, LIMIT)
    }

    /// `app backup create` running pg_dump itself: the path of the new backup.
    fn create(&self, db: &TestDb<'_>) -> PathBuf {
        let pg_dump = pg_bin().join("pg_dump");
        let out = run(
            &mut self.backup(db, &["create", "--pg-dump", pg_dump.to_str().unwrap()]),
            None,
            LIMIT,
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(path.starts_with(&self.backups), "{}", path.display());
        path
    }
}

/// A migrated database with `users` rows and a table of incompressible filler.
fn seeded(cluster: &Cluster, users: u32, filler: u32) -> TestDb<'_> {
    let db = cluster.create_db();
    apply_migrations(&db);
    db.psql(&format!(
        "insert into users (username, password_hash) \
         select 'user_' || g, '$argon2id$fake' || g from generate_series(1, {users}) g"
    ));
    db.psql(&format!(
        "create table filler (id int primary key, junk text); \
         insert into filler select g, md5(random()::text) || md5(random()::text) \
         from generate_series(1, {filler}) g"
    ));
    db
}

/// Everything a restore must bring back: the rows of every table and the schema.
fn fingerprint(db: &TestDb<'_>) -> (String, String) {
    let rows = db.psql(
        "select string_agg(t, E'\\n' order by t) from ( \
           select 'users ' || id || ' ' || username || ' ' || password_hash as t from users \
           union all select 'profile ' || user_id || ' ' || email from user_profiles \
           union all select 'filler ' || id || ' ' || junk from filler \
           union all select 'history ' || version || ' ' || checksum from flyway_schema_history \
             where version is not null) x",
    );
    let out = pg_tool("pg_dump", db)
        .args(["--schema-only", "--no-owner"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let schema = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // pg_dump 17 prints a random \restrict key in every dump.
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n");
    (rows, schema)
}

/// A PostgreSQL client tool connected to `db` as the superuser.
fn pg_tool(tool: &str, db: &TestDb<'_>) -> Command {
    let mut cmd = Command::new(pg_bin().join(tool));
    cmd.args(["-h", "127.0.0.1", "-p", &db.cluster.port.to_string()])
        .args(["-U", crate::support::pg::SUPERUSER, "-d", &db.name])
        .env("PGPASSWORD", crate::support::pg::SUPERUSER_PASSWORD);
    cmd
}

/// `pg_restore --no-owner` into `db`, reading the dump from `producer`'s stdout.
fn restore_from(mut producer: Command, db: &TestDb<'_>) -> (Output, Output) {
    let mut source = producer
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = source.stdout.take().unwrap();
    let restore = pg_tool("pg_restore", db)
        .args(["--no-owner", "--exit-on-error"])
        .stdin(stdout)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let restored = crate::support::wait_bounded(restore, deadline, "pg_restore");
    let produced = crate::support::wait_bounded(source, deadline, "the dump's producer");
    (produced, restored)
}

fn migrate_validate(db: &TestDb<'_>) {
    let out = crate::support::migrate(db, &["validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// A shell running `script` with `sh -c`, as the CronJob's and the drill's postgres containers do.
fn shell(script: &str, env: &[(&str, &Path)], db: &TestDb<'_>) -> std::process::Child {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .env("PATH", format!("{}:/usr/bin:/bin", pg_bin().display()))
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", db.cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", crate::support::pg::SUPERUSER_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// What the CronJob's pg-dump container runs (deploy/base/backup.yaml): wait for the snapshot,
/// dump on it into the FIFO, then write the exit status.
const DUMP_SCRIPT: &str = r#"
for _ in $(seq 1 600); do [ -s "$SNAPSHOT" ] && break; sleep 0.1; done
pg_dump --format=custom --snapshot="$(cat "$SNAPSHOT")" -d "$PGDATABASE" >"$FIFO"
status=$?
echo "$status" >"$STATUS"
exit "$status"
"#;

/// What the drill's restore container runs: pg_restore from the FIFO, then its exit status.
const RESTORE_SCRIPT: &str = r#"
pg_restore --no-owner --exit-on-error -d "$PGDATABASE" <"$FIFO"
status=$?
echo "$status" >"$STATUS"
exit "$status"
"#;

#[test]
fn backup_drop_restore_gives_the_same_rows_and_schema_and_validates() {
    let lab = Lab::new();
    let cluster = Cluster::shared();
    let db = seeded(cluster, 200, 500);
    let before = fingerprint(&db);

    // The CronJob's protocol: pg_dump in another process, through a FIFO, on our snapshot.
    let (fifo, snapshot, status) = (lab.path("dump"), lab.path("snapshot"), lab.path("status"));
    mkfifo(&fifo);
    let mut create = lab.backup(
        &db,
        &[
            "create",
            "--input",
            fifo.to_str().unwrap(),
            "--snapshot-file",
            snapshot.to_str().unwrap(),
            "--status-file",
            status.to_str().unwrap(),
        ],
    );
    let dumper = shell(
        DUMP_SCRIPT,
        &[
            ("FIFO", &fifo),
            ("SNAPSHOT", &snapshot),
            ("STATUS", &status),
            ("PGDATABASE", Path::new(&db.name)),
        ],
        &db,
    );
    let out = run(&mut create, None, LIMIT);
    let dumped = crate::support::wait_bounded(dumper, Instant::now() + LIMIT, "pg_dump");
    assert!(dumped.status.success(), "{}", output_text(&dumped));
    assert!(out.status.success(), "{}", output_text(&out));
    let file = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("backup-") && name.ends_with("-v5.pgdump.age"),
        "{name}: time and schema version in the name"
    );

    // The manifest: counts in the dump's snapshot, the encrypted file's checksum and size.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", file.display())).unwrap())
            .unwrap();
    assert_eq!(manifest["tables"]["public.users"], 203, "{manifest}");
    assert_eq!(manifest["tables"]["public.filler"], 500, "{manifest}");
    assert_eq!(manifest["schema_version"], "5", "{manifest}");
    assert_eq!(manifest["same_snapshot"], true, "{manifest}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(manifest["encrypted_bytes"], size, "{manifest}");
    let sha = Command::new("sha256sum").arg(&file).output().unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    assert_eq!(
        manifest["encrypted_sha256"].as_str().unwrap(),
        sha.split_whitespace().next().unwrap()
    );
    // Encrypted: no row of the database is in the file.
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(8).any(|w| w == b"user_100"));

    let list = lab.offline(&["list"]);
    assert!(list.status.success(), "{}", output_text(&list));
    let text = output_text(&list);
    assert!(text.contains(&name) && text.contains("complete"), "{text}");
    assert!(text.contains("1 complete, 0 incomplete"), "{text}");
    let verify = lab.offline(&["verify", "-i", lab.cluster_key.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", output_text(&verify));
    assert!(
        output_text(&verify).contains("checksum matches"),
        "{}",
        output_text(&verify)
    );

    // Drop the database, create it again empty, restore from `app backup open`.
    cluster.psql(
        "postgres",
        &format!("drop database {} with (force)", db.name),
    );
    cluster.psql("postgres", &format!("create database {}", db.name));
    let mut open = app();
    open.args(["backup", "open"])
        .arg(&file)
        .arg("-i")
        .arg(&lab.cluster_key);
    let (opened, restored) = restore_from(open, &db);
    assert!(opened.status.success(), "{}", output_text(&opened));
    assert!(restored.status.success(), "{}", output_text(&restored));
    assert_eq!(fingerprint(&db), before);
    migrate_validate(&db);
}

#[test]
fn the_recovery_key_and_the_stock_age_cli_restore_it_alone() {
    let lab = Lab::new();
    let cluster = Cluster::shared();
    let db = seeded(cluster, 50, 50);
    let before = fingerprint(&db);
    let file = lab.create(&db);
    let manifest = std::fs::read_to_string(format!("{}.json", file.display())).unwrap();
    assert!(manifest.contains("\"same_snapshot\": true"), "{manifest}");

    // Nothing of ours: Debian's age with the offline recovery key, into pg_restore.
    let target = cluster.create_db();
    let mut age = Command::new("age");
    age.arg("-d").arg("-i").arg(&lab.recovery_key).arg(&file);
    let (decrypted, restored) = restore_from(age, &target);
    assert!(decrypted.status.success(), "{}", output_text(&decrypted));
    assert!(restored.status.success(), "{}", output_text(&restored));
    assert_eq!(fingerprint(&target), before);
    migrate_validate(&target);
}

/// A copy of `file` (and its manifest, unless `manifest` is false) under `name`, changed by
/// `damage`.
fn damaged_copy(
    lab: &Lab,
    file: &Path,
    name: &str,
    manifest: bool,
    damage: impl Fn(&mut Vec<u8>),
) -> PathBuf {
    let dir = lab.path(&format!("damaged-{name}"));
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join(file.file_name().unwrap());
    let mut bytes = std::fs::read(file).unwrap();
    damage(&mut bytes);
    std::fs::write(&copy, bytes).unwrap();
    if manifest {
        std::fs::copy(
            format!("{}.json", file.display()),
            format!("{}.json", copy.display()),
        )
        .unwrap();
    }
    copy
}

/// Runs `cmd` with its stdout a pipe (as into pg_restore), read to the end; bounded.
fn into_pipe(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    rx.recv_timeout(LIMIT).expect("app backup open hung")
}

#[test]
fn tampered_and_truncated_backups_are_refused_by_verify_and_open() {
    let lab = Lab::new();
    let db = seeded(Cluster::shared(), 100, 6000);
    let file = lab.create(&db);
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    assert!(len > 140_000, "several age chunks: {len}");
    let flip = |b: &mut Vec<u8>| {
        let at = b.len() / 2;
        b[at] ^= 0x01;
    };
    let cut_mid = |b: &mut Vec<u8>| b.truncate(b.len() / 2);
    // At a 64 KiB chunk boundary of the payload: only age's last-chunk flag can tell.
    let cut_chunk = |b: &mut Vec<u8>| {
        let header = b.windows(4).position(|w| w == b"\n---").unwrap();
        let header_end = header + b[header + 1..].iter().position(|c| *c == b'\n').unwrap() + 2;
        let payload_start = header_end + 16;
        b.truncate(payload_start + 65536 + 16);
    };
    let key = lab.cluster_key.to_str().unwrap().to_owned();
    for (name, with_manifest, damage) in [
        ("flip", true, &flip as &dyn Fn(&mut Vec<u8>)),
        ("flip-bare", false, &flip),
        ("cut", true, &cut_mid),
        ("cut-bare", false, &cut_mid),
        ("chunk-bare", false, &cut_chunk),
    ] {
        let copy = damaged_copy(&lab, &file, name, with_manifest, damage);
        let verify = lab.offline(&["verify", copy.to_str().unwrap(), "-i", &key]);
        let text = output_text(&verify);
        assert_eq!(verify.status.code(), Some(42), "{name}: {text}");
        assert!(text.contains("damaged"), "{name}: {text}");
        let mut cmd = app();
        cmd.args(["backup", "open"]).arg(&copy).args(["-i", &key]);
        let opened = into_pipe(cmd);
        assert_eq!(
            opened.status.code(),
            Some(42),
            "{name}: {}",
            output_text(&opened)
        );
        if with_manifest {
            // The checksum is checked before a single byte goes out.
            assert!(
                opened.stdout.is_empty(),
                "{name}: open wrote before failing"
            );
        }
    }
    // The wrong key is its own error, and names the fix.
    let (other, _) = {
        let path = lab.path("other.key");
        let out = run(app().args(["seal", "keygen", "-o"]).arg(&path), None, LIMIT);
        assert!(out.status.success());
        (path, ())
    };
    let verify = lab.offline(&[
        "verify",
        file.to_str().unwrap(),
        "-i",
        other.to_str().unwrap(),
    ]);
    assert_eq!(verify.status.code(), Some(22), "{}", output_text(&verify));
    assert!(
        output_text(&verify).contains("recovery key"),
        "{}",
        output_text(&verify)
    );
    // A terminal or a file on disk never receives the plaintext.
    let disk = crate::support::scratch("backup-open");
    let on_disk = std::fs::File::create(disk.join("plain.dump")).unwrap();
    let mut cmd = app();
    cmd.args(["backup", "open"]).arg(&file).args(["-i", &key]);
    cmd.stdout(on_disk).stderr(Stdio::piped());
    let refused = cmd.output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert_eq!(std::fs::metadata(disk.join("plain.dump")).unwrap().len(), 0);
}

/// A synthetic complete backup at `time` (`YYYYMMDDTHHMMSSZ`) in `dir`: a file and its manifest.
fn synthetic(dir: &Path, time: &str) -> String {
    let name = format!("backup-{time}-v5.pgdump.age");
    std::fs::write(dir.join(&name), b"not really age").unwrap();
    let manifest = serde_json::json!({
        "format": 1, "file": name, "created_at": time, "database": "d",
        "schema_version": "5", "same_snapshot": true, "tables": {},
        "encrypted_sha256": "00", "encrypted_bytes": 14, "dump_bytes": 1,
        "recipients": [], "app_version": "test",
    });
    std::fs::write(dir.join(format!("{name}.json")), manifest.to_string()).unwrap();
    name
}

fn backups_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pgdump.age"))
        .collect();
    names.sort();
    names
}

#[test]
fn retention_keeps_exactly_the_policy_on_dated_files() {
    let lab = Lab::new();
    let dir = &lab.backups;
    // Two a day, 2026-10-01 to 2026-11-20 (51 days), plus a partial and an orphan manifest.
    let mut all = Vec::new();
    for (month, days) in [(10, 31), (11, 20)] {
        for day in 1..=days {
            for hour in ["03", "15"] {
                all.push(synthetic(
                    dir,
                    &format!("2026{month:02}{day:02}T{hour}0000Z"),
                ));
            }
        }
    }
    std::fs::write(
        dir.join("backup-20261121T030000Z-v5.pgdump.age.partial"),
        b"x",
    )
    .unwrap();
    let listed = lab.offline(&["list"]);
    let text = output_text(&listed);
    assert!(listed.status.success(), "{text}");
    assert!(text.contains("102 complete, 1 incomplete"), "{text}");
    assert!(text.contains("INCOMPLETE (partial)"), "{text}");

    let dry = lab.offline(&[
        "prune",
        "--keep-daily",
        "5",
        "--keep-weekly",
        "3",
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", output_text(&dry));
    assert_eq!(backups_in(dir).len(), 102, "--dry-run removes nothing");
    let out = lab.offline(&["prune", "--keep-daily", "5", "--keep-weekly", "3"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout).replace("would remove", "removed"),
        String::from_utf8_lossy(&out.stdout),
        "the dry run printed exactly what prune did"
    );
    // Daily: the newest of Nov 16..20. Weekly (ISO, Monday first): the newest of the weeks
    // of Nov 16 (the 20th), Nov 9 (the 15th) and Nov 2 (the 8th).
    let want: Vec<String> = [
        "20261108", "20261115", "20261116", "20261117", "20261118", "20261119", "20261120",
    ]
    .iter()
    .map(|d| format!("backup-{d}T150000Z-v5.pgdump.age"))
    .collect();
    assert_eq!(backups_in(dir), want);
    for name in &want {
        assert!(
            dir.join(format!("{name}.json")).exists(),
            "{name}'s manifest stays"
        );
    }
    // The partial is recent, so a backup may be writing it: it stays.
    assert!(
        dir.join("backup-20261121T030000Z-v5.pgdump.age.partial")
            .exists()
    );

    // The strictest policy still keeps the newest complete backup.
    let out = lab.offline(&["prune", "--keep-daily", "0", "--keep-weekly", "0"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(backups_in(dir), ["backup-20261120T150000Z-v5.pgdump.age"]);
}

#[test]
fn a_killed_or_failed_dump_leaves_nothing_that_looks_complete() {
    let lab = Lab::new();
    let db = seeded(Cluster::shared(), 10, 10);
    let status = lab.path("status");
    // A real dump, to feed half of it.
    let dump = pg_tool("pg_dump", &db)
        .arg("--format=custom")
        .output()
        .unwrap();
    assert!(dump.status.success());

    // SIGKILL half-way through the stream.
    let mut create = lab.backup(
        &db,
        &[
            "create",
            "--input",
            "-",
            "--status-file",
            status.to_str().unwrap(),
        ],
    );
    let mut child = create
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&dump.stdout[..dump.stdout.len() / 2])
        .unwrap();
    stdin.flush().unwrap();
    // Until the partial file exists, the snapshot and the encryption are still being set up.
    let deadline = Instant::now() + LIMIT;
    while std::fs::read_dir(&lab.backups).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let list = lab.offline(&["list"]);
    let text = output_text(&list);
    assert!(text.contains("0 complete, 1 incomplete"), "{text}");
    let verify = lab.offline(&["verify", "-i", lab.cluster_key.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(43), "{}", output_text(&verify));

    // The dumper failed: its status says so, and nothing is left at all.
    std::fs::remove_dir_all(&lab.backups).unwrap();
    std::fs::create_dir(&lab.backups).unwrap();
    std::fs::write(&status, "1\n").unwrap();
    // `create --input - --status-file STATUS`, fed `input`.
    let from_stdin = |input: &str| {
        let status = status.to_str().unwrap();
        let args = ["create", "--input", "-", "--status-file", status];
        run(&mut lab.backup(&db, &args), Some(input), LIMIT)
    };
    let head = String::from_utf8_lossy(&dump.stdout[..20]).into_owned();
    let out = from_stdin(&head);
    assert_eq!(out.status.code(), Some(41), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("status 1"),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_dir(&lab.backups).unwrap().count(), 0);

    // A stream that is not a custom-format dump is refused the same way.
    std::fs::write(&status, "0\n").unwrap();
    let out = from_stdin("create table t();\n");
    assert_eq!(out.status.code(), Some(41), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("--format=custom"),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_dir(&lab.backups).unwrap().count(), 0);

    // `--pg-dump` failing after a first chunk of output: its message is in the error.
    let wrapper = lab.path("failing-pg-dump");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nprintf PGDMP\necho 'pg_dump: error: boom' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run(
        &mut lab.backup(&db, &["create", "--pg-dump", wrapper.to_str().unwrap()]),
        None,
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(41), "{}", output_text(&out));
    assert!(output_text(&out).contains("boom"), "{}", output_text(&out));
    // The password pg_dump got in its environment is in no message.
    assert!(
        !output_text(&out).contains(crate::support::pg::SUPERUSER_PASSWORD),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_dir(&lab.backups).unwrap().count(), 0);
}

#[test]
fn a_full_volume_is_a_clear_error_and_leaves_no_partial() {
    let lab = Lab::new();
    let db = seeded(Cluster::shared(), 10, 20_000);
    let app_bin = env!("CARGO_BIN_EXE_app");
    let pg_dump = pg_bin().join("pg_dump");
    // A 64 KiB tmpfs in a mount namespace of its own (a user namespace too, unless root).
    let script = r#"
mount -t tmpfs -o size=64k tmpfs "$DIR" || exit 97
"$APP" backup create --dir "$DIR" --pg-dump "$PG_DUMP"
echo "exit=$?"
echo "left=$(ls -A "$DIR" | wc -l)"
"#;
    let unshare = if unsafe { libc::geteuid() } == 0 {
        "-m"
    } else {
        "-rm"
    };
    let settings = lab.backup(&db, &[]);
    let mut cmd = Command::new("unshare");
    cmd.args([unshare, "sh", "-c", script])
        .envs(settings.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("DIR", &lab.backups)
        .env("APP", app_bin)
        .env("PG_DUMP", &pg_dump);
    let out = run(&mut cmd, None, LIMIT);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("exit=40"), "{text}");
    assert!(
        text.contains("left=0"),
        "the partial file was removed: {text}"
    );
    assert!(
        text.contains("is full") && text.contains("app backup prune"),
        "{text}"
    );
}

/// Runs the drill against the newest backup in the lab, restoring into a new database with the
/// restore container's script: the drill's exit, the restorer's, and the new database. The
/// restorer must end by itself whatever happened: the drill always closes the FIFO.
fn drill<'c>(lab: &Lab, cluster: &'c Cluster, db: &TestDb<'_>) -> (Output, Output, TestDb<'c>) {
    let scratch = cluster.create_db();
    let run_dir = tempfile::tempdir_in(lab.dir.path()).unwrap();
    let (fifo, status) = (run_dir.path().join("dump"), run_dir.path().join("status"));
    mkfifo(&fifo);
    let restorer = shell(
        RESTORE_SCRIPT,
        &[
            ("FIFO", &fifo),
            ("STATUS", &status),
            ("PGDATABASE", Path::new(&scratch.name)),
        ],
        db,
    );
    let out = run(
        &mut lab.backup(
            db,
            &[
                "drill",
                "--fifo",
                fifo.to_str().unwrap(),
                "--restore-status",
                status.to_str().unwrap(),
                "--database",
                &scratch.name,
                "--timeout",
                "60s",
                "-i",
                lab.recovery_key.to_str().unwrap(),
            ],
        ),
        None,
        LIMIT,
    );
    let restored = crate::support::wait_bounded(restorer, Instant::now() + LIMIT, "pg_restore");
    (out, restored, scratch)
}

#[test]
fn the_restore_drill_passes_on_a_good_backup_and_fails_loudly_otherwise() {
    let lab = Lab::new();
    let cluster = Cluster::shared();
    let db = seeded(cluster, 100, 100);

    // No backup yet: exit 43, and pg_restore, waiting on the FIFO, is released.
    let (out, restored, _) = drill(&lab, cluster, &db);
    assert_eq!(out.status.code(), Some(43), "{}", output_text(&out));
    assert!(!restored.status.success(), "{}", output_text(&restored));
    assert!(
        output_text(&restored).contains("too short"),
        "{}",
        output_text(&restored)
    );

    let file = lab.create(&db);
    let (out, restored, scratch) = drill(&lab, cluster, &db);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(restored.status.success(), "{}", output_text(&restored));
    assert!(text.contains("restore drill passed"), "{text}");
    assert_eq!(scratch.psql("select count(*) from users"), "103");
    drop(scratch);

    // The manifest disagrees with what the dump restores: exit 44, naming the table.
    let manifest_path = format!("{}.json", file.display());
    let good = std::fs::read_to_string(&manifest_path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&good).unwrap();
    manifest["tables"]["public.users"] = serde_json::json!(104);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let (out, _, _) = drill(&lab, cluster, &db);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(44), "{text}");
    assert!(
        text.contains("public.users has 103 rows, the backup had 104"),
        "{text}"
    );
    std::fs::write(&manifest_path, good).unwrap();

    // A damaged file: refused before a byte reaches pg_restore, which fails on the empty stream.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x80;
    std::fs::write(&file, bytes).unwrap();
    let (out, restored, scratch) = drill(&lab, cluster, &db);
    assert_eq!(out.status.code(), Some(42), "{}", output_text(&out));
    assert!(!restored.status.success(), "{}", output_text(&restored));
    assert_eq!(
        scratch.psql("select count(*) from pg_tables where schemaname = 'public'"),
        "0"
    );
}
