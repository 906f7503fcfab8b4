//! `app seal` and the sealed layer of the settings, as a user sees them from the binary: the
//! round trip set -> verify -> the pod's commands load the values, the stock `age` CLI as the
//! break-glass path, every rejection with its own exit code, rotation with two identities, and
//! stable output. Every command runs with `LOG_LEVEL=trace`, and every test ends by checking
//! that no secret value appeared in anything the binary printed (except `get`'s stdout).

use std::cell::RefCell;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{ARMOR_END, Cluster, Served, app, free_port, output_text, run};

/// Longest any one command of these tests may take.
const LIMIT: Duration = Duration::from_secs(120);

/// A scratch directory and a record of everything the binary printed.
struct Lab {
    dir: tempfile::TempDir,
    printed: RefCell<Vec<String>>,
    secrets: RefCell<Vec<String>>,
}

impl Lab {
    fn new() -> Self {
        Lab {
            dir: tempfile::tempdir().unwrap(),
            printed: RefCell::new(Vec::new()),
            secrets: RefCell::new(Vec::new()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A secret value unique to this run, remembered for the leak check.
    fn secret(&self, prefix: &str) -> String {
        let value = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.secrets.borrow_mut().push(value.clone());
        value
    }

    /// Runs the binary with `LOG_LEVEL=trace`, feeding `stdin`, and records its output.
    fn run(&self, mut cmd: Command, stdin: Option<&str>) -> Output {
        cmd.env("LOG_LEVEL", "trace");
        let out = run(&mut cmd, stdin, LIMIT);
        self.printed.borrow_mut().push(output_text(&out));
        out
    }

    fn seal(&self, args: &[&str]) -> Output {
        self.seal_with_stdin(args, None)
    }

    fn seal_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = app();
        cmd.arg("seal").args(args);
        self.run(cmd, stdin)
    }

    /// `app seal keygen -o NAME`: the identity path and its recipient.
    fn keygen(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let out = self.seal(&["keygen", "-o", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", output_text(&out));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(recipient.starts_with("age1"), "{recipient}");
        // The private key must never be printed either.
        let private = text(&path)
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap()
            .to_owned();
        self.secrets.borrow_mut().push(private);
        (path, recipient)
    }

    /// A directory holding copies of the given identity files, as the pod mounts them.
    fn identity_dir(&self, name: &str, keys: &[&Path]) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir(&dir).unwrap();
        for key in keys {
            let target = dir.join(key.file_name().unwrap());
            std::fs::copy(key, &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        dir
    }

    /// `app config` with the sealed file and identity directory of a pod.
    fn config(&self, file: &Path, identity_dir: &Path, env: &str) -> Output {
        self.config_with(file, identity_dir, env, &[])
    }

    /// [`Lab::config`] with more settings in the environment.
    fn config_with(
        &self,
        file: &Path,
        identity_dir: &Path,
        env: &str,
        extra: &[(&str, &str)],
    ) -> Output {
        let mut cmd = app();
        cmd.arg("config")
            .env("APP_ENV", env)
            .env("APP_SEALED__FILE", file)
            .env("APP_SEALED__IDENTITY_DIR", identity_dir)
            .envs(extra.iter().copied());
        self.run(cmd, None)
    }

    /// A new sealed file of `context` for `recipients`, with `values` set from stdin.
    fn new_file(&self, name: &str, context: &str, recipients: &[&str], values: &[(&str, &str)]) {
        let file = self.path(name);
        for (i, (key, value)) in values.iter().enumerate() {
            let mut args = vec!["set", file.to_str().unwrap(), key];
            if i == 0 {
                args.extend(["--context", context]);
                for r in recipients {
                    args.extend(["-r", r]);
                }
            }
            let out = self.seal_with_stdin(&args, Some(&format!("{value}\n")));
            assert!(out.status.success(), "{}", output_text(&out));
        }
    }

    fn verify(&self, file: &Path, identity: &Path) -> Output {
        self.seal(&[
            "verify",
            file.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for printed in self.printed.borrow().iter() {
            for secret in self.secrets.borrow().iter() {
                assert!(
                    !printed.contains(secret.as_str()),
                    "a secret value was printed:\n{printed}"
                );
            }
        }
    }
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The armored block of `key` in a sealed file, as the YAML library reads it.
fn value_of(file: &Path, key: &str) -> String {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text(file)).unwrap();
    yaml["values"][key].as_str().unwrap().to_owned()
}

/// The lines of `key`'s block in the file's text.
fn block<'a>(file_text: &'a str, key: &str) -> &'a str {
    let header = format!("\n  {key}: |\n");
    let start = file_text.find(&header).unwrap() + 1;
    let mut end = start + header.len() - 1;
    while file_text[end..].starts_with("    ") {
        end += file_text[end..]
            .find('\n')
            .map_or(file_text.len() - end, |i| i + 1);
    }
    &file_text[start..end]
}

fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    let all = output_text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn round_trip_set_verify_and_the_pod_commands_load_the_values() {
    let lab = Lab::new();
    let (cluster_key, cluster) = lab.keygen("cluster.key");
    let (_, recovery) = lab.keygen("recovery.key");
    let jwt = lab.secret("jwt");
    let password = format!("p@ss:/+=?&%{}", lab.secret("pw"));
    let file = lab.path("secrets.yaml");
    lab.new_file(
        "secrets.yaml",
        "discbaboons/dev",
        &[&cluster, &recovery],
        &[("JWT_SECRET", &jwt)],
    );
    let pw_file = lab.path("pw.txt");
    std::fs::write(&pw_file, &password).unwrap();
    let spec = format!("DATABASE_PASSWORD={}", pw_file.display());
    let out = lab.seal(&["set", file.to_str().unwrap(), "--from-file", &spec]);
    assert!(out.status.success(), "{}", output_text(&out));

    let out = lab.verify(&file, &cluster_key);
    assert_exit(&out, 0, &["DATABASE_PASSWORD: ok", "JWT_SECRET: ok"]);
    let out = lab.seal(&[
        "get",
        file.to_str().unwrap(),
        "DATABASE_PASSWORD",
        "-i",
        cluster_key.to_str().unwrap(),
    ]);
    assert_eq!(out.stdout, password.as_bytes(), "{}", output_text(&out));
    // `get` prints the value by design: keep it out of the leak check.
    lab.printed.borrow_mut().pop();

    let list = lab.seal(&["list", file.to_str().unwrap()]);
    assert_exit(
        &list,
        0,
        &[
            "discbaboons/dev",
            &cluster,
            "DATABASE_PASSWORD: 2 recipients",
        ],
    );

    let identity = lab.identity_dir("identity", &[&cluster_key]);
    let out = lab.config(&file, &identity, "dev");
    assert_exit(&out, 0, &["sealed secrets loaded", "JWT_SECRET"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("secret = \"<redacted>\""), "{stdout}");

    // The pod's commands authenticate with the sealed password, which beats a wrong one in
    // the environment: wait-db, migrate, then serve, whose /api/info names what it loaded.
    let db = Cluster::shared().create_db();
    let role = format!("sealed_{}", db.name);
    let quoted = password.replace('\'', "''");
    db.psql(&format!("create role {role} login password '{quoted}'"));
    db.psql(&format!("alter database {} owner to {role}", db.name));
    let port = free_port();
    let pod = |args: &[&str]| {
        let mut cmd = app();
        cmd.args(args)
            .envs(db.app_env())
            .env("APP_DATABASE__USER", &role)
            .env("APP_DATABASE__PASSWORD", "not-the-password")
            .env("APP_SEALED__FILE", &file)
            .env("APP_SEALED__IDENTITY_DIR", &identity)
            .env("APP_HTTP__HOST", "127.0.0.1")
            .env("APP_HTTP__PORT", port.to_string())
            .env("APP_METRICS__ENABLED", "false");
        cmd
    };
    assert_exit(
        &lab.run(pod(&["wait-db", "--timeout", "20s"]), None),
        0,
        &[],
    );
    assert_exit(&lab.run(pod(&["migrate"]), None), 0, &[]);

    let mut serve = pod(&["serve"]);
    serve.env("LOG_LEVEL", "trace");
    serve.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = serve.spawn().unwrap();
    let info = get_when_up(port, "/api/info");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    lab.printed.borrow_mut().push(output_text(&out));
    lab.printed.borrow_mut().push(info.clone());
    for name in ["DATABASE_PASSWORD", "JWT_SECRET"] {
        assert!(info.contains(&format!("\"{name}\"")), "{info}");
    }
}

/// GET `path` from a server starting on `port`, retrying for up to 30 s.
fn get_when_up(port: u16, path: &str) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut response = String::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut response).is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                return response;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The docs' `app seal keygen -o ~/.config/discbaboons/recovery.key` on a laptop that has no
/// such directory yet: it is created, private to its user.
#[test]
fn keygen_creates_a_missing_key_directory_private() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let (key, _) = lab.keygen(".config/discbaboons/recovery.key");
    let dir = key.parent().unwrap();
    assert_eq!(dir.metadata().unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}

/// `set -r` on a file that lists recipients (the committed sample) says what to do: rekey a
/// file you can open, delete one nobody can.
#[test]
fn set_with_recipients_on_an_existing_file_names_both_ways_out() {
    let lab = Lab::new();
    let (_, recipient) = lab.keygen("key.txt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("JWT_SECRET", &lab.secret("jwt"))],
    );
    let out = lab.seal_with_stdin(
        &[
            "set",
            lab.path("s.yaml").to_str().unwrap(),
            "JWT_SECRET",
            "-r",
            &recipient,
        ],
        Some("x"),
    );
    assert_exit(
        &out,
        2,
        &[
            "already lists its recipients",
            "app seal rekey",
            "delete it",
        ],
    );
}

#[test]
fn stock_age_cli_decrypts_a_value() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("JWT_SECRET", &jwt)],
    );
    let armored = lab.path("jwt.age");
    std::fs::write(&armored, value_of(&lab.path("s.yaml"), "JWT_SECRET")).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&armored)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the stock `age` CLI is needed for this test ({e}): `apt-get install -y age` \
                 (scripts/setup.sh installs it)"
            )
        });
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), jwt);
}

#[test]
fn tampered_byte_is_rejected_with_code_23() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("JWT_SECRET", &jwt)],
    );
    let file = lab.path("s.yaml");
    // Change one base64 character of the last armor line: payload bytes, after the header.
    let original = text(&file);
    let end = original.find(&format!("    {ARMOR_END}")).unwrap();
    let line_start = original[..end - 1].rfind('\n').unwrap() + 5;
    let mut bytes = original.into_bytes();
    bytes[line_start] = if bytes[line_start] == b'A' {
        b'B'
    } else {
        b'A'
    };
    std::fs::write(&file, bytes).unwrap();

    let out = lab.verify(&file, &key);
    assert_exit(
        &out,
        23,
        &["JWT_SECRET", "integrity", file.to_str().unwrap()],
    );
    let identity = lab.identity_dir("identity", &[&key]);
    let out = lab.config(&file, &identity, "prod");
    assert_exit(&out, 23, &["JWT_SECRET", "altered"]);
}

#[test]
fn swapped_values_are_rejected_with_code_24() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let (a, b) = (lab.secret("a"), lab.secret("b"));
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("DATABASE_PASSWORD", &a), ("JWT_SECRET", &b)],
    );
    let file = lab.path("s.yaml");
    let original = text(&file);
    let (pw, jwt) = (
        block(&original, "DATABASE_PASSWORD"),
        block(&original, "JWT_SECRET"),
    );
    let swapped = original
        .replace(pw, "@@PW@@")
        .replace(jwt, &pw.replace("DATABASE_PASSWORD", "JWT_SECRET"))
        .replace("@@PW@@", &jwt.replace("JWT_SECRET", "DATABASE_PASSWORD"));
    std::fs::write(&file, swapped).unwrap();

    let out = lab.verify(&file, &key);
    assert_exit(
        &out,
        24,
        &[
            "key DATABASE_PASSWORD",
            "sealed for key JWT_SECRET",
            "swapped",
        ],
    );
    let identity = lab.identity_dir("identity", &[&key]);
    assert_exit(&lab.config(&file, &identity, "prod"), 24, &["swapped"]);
}

#[test]
fn dev_value_in_the_prod_file_is_rejected_with_code_25() {
    let lab = Lab::new();
    let (recovery_key, recovery) = lab.keygen("recovery.key");
    let (dev_jwt, prod_jwt) = (lab.secret("dev"), lab.secret("prod"));
    lab.new_file(
        "dev.yaml",
        "discbaboons/dev",
        &[&recovery],
        &[("JWT_SECRET", &dev_jwt)],
    );
    lab.new_file(
        "prod.yaml",
        "discbaboons/prod",
        &[&recovery],
        &[("JWT_SECRET", &prod_jwt)],
    );
    let (dev, prod) = (lab.path("dev.yaml"), lab.path("prod.yaml"));
    let prod_text = text(&prod);
    let copied = prod_text.replace(
        block(&prod_text, "JWT_SECRET"),
        block(&text(&dev), "JWT_SECRET"),
    );
    std::fs::write(&prod, copied).unwrap();

    let out = lab.verify(&prod, &recovery_key);
    assert_exit(
        &out,
        25,
        &[
            "sealed for context discbaboons/dev",
            "not discbaboons/prod",
            "JWT_SECRET",
        ],
    );
}

/// Two files of two environments sealed to one key (a recovery key opens both, as in
/// practice), each with its own JWT secret: `(key, identity dir, dev file, prod file)`.
fn dev_and_prod_files(lab: &Lab) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (key, recipient) = lab.keygen("cluster.key");
    let (dev_jwt, prod_jwt) = (
        lab.secret("dev-jwt-0123456789abcdef"),
        lab.secret("prod-jwt"),
    );
    lab.new_file(
        "dev.yaml",
        "discbaboons/dev",
        &[&recipient],
        &[("JWT_SECRET", &dev_jwt)],
    );
    lab.new_file(
        "prod.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("JWT_SECRET", &prod_jwt)],
    );
    let identity = lab.identity_dir("identity", &[&key]);
    (key, identity, lab.path("dev.yaml"), lab.path("prod.yaml"))
}

#[test]
fn the_deployment_not_the_file_decides_the_context_and_others_get_25() {
    let lab = Lab::new();
    let (key, identity, dev, prod) = dev_and_prod_files(&lab);
    assert_exit(&lab.config(&dev, &identity, "dev"), 0, &[]);
    assert_exit(&lab.config(&prod, &identity, "prod"), 0, &[]);

    // The whole dev file mounted into a prod pod, and the prod file into a dev pod.
    let fix = "APP_SEALED__CONTEXT";
    assert_exit(
        &lab.config(&dev, &identity, "prod"),
        25,
        &[
            "dev.yaml",
            "sealed for context discbaboons/dev",
            "expects discbaboons/prod",
            fix,
        ],
    );
    assert_exit(
        &lab.config(&prod, &identity, "dev"),
        25,
        &[
            "prod.yaml",
            "sealed for context discbaboons/prod",
            "expects discbaboons/dev",
            fix,
        ],
    );

    // One value's ciphertext pasted from the other file, both ways: the binding inside the
    // age header still names the file it came from.
    let (dev_text, prod_text) = (text(&dev), text(&prod));
    for (env, host, guest, found) in [
        ("prod", &prod_text, &dev_text, "dev"),
        ("dev", &dev_text, &prod_text, "prod"),
    ] {
        let mixed = lab.path(&format!("{env}-with-{found}-value.yaml"));
        let pasted = host.replace(block(host, "JWT_SECRET"), block(guest, "JWT_SECRET"));
        std::fs::write(&mixed, pasted).unwrap();
        let message = format!("sealed for context discbaboons/{found}, not discbaboons/{env}");
        assert_exit(
            &lab.config(&mixed, &identity, env),
            25,
            &["key JWT_SECRET", &message],
        );
    }

    // The dev file with its `context:` line edited to claim prod: the values say otherwise.
    let relabelled = lab.path("relabelled.yaml");
    std::fs::write(
        &relabelled,
        dev_text.replace(
            "context: \"discbaboons/dev\"",
            "context: \"discbaboons/prod\"",
        ),
    )
    .unwrap();
    assert_exit(
        &lab.config(&relabelled, &identity, "prod"),
        25,
        &["sealed for context discbaboons/dev, not discbaboons/prod"],
    );

    // The setting, as the overlays' ConfigMaps set it, is what counts, not APP_ENV's default.
    let expect_prod = [(fix, "discbaboons/prod")];
    assert_exit(
        &lab.config_with(&prod, &identity, "dev", &expect_prod),
        0,
        &["context = \"discbaboons/prod\""],
    );
    assert_exit(
        &lab.config_with(&dev, &identity, "dev", &expect_prod),
        25,
        &["expects discbaboons/prod"],
    );

    // `app seal` loads no settings; `verify` and `open` (the postgres pod's init container)
    // check the same when told what to expect.
    let (dev_s, prod_s, key_s) = (
        dev.to_str().unwrap(),
        prod.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let expect = ["--expect-context", "discbaboons/prod"];
    let verify = |file: &str| {
        let mut args = vec!["verify", file, "-i", key_s];
        args.extend(expect);
        lab.seal(&args)
    };
    assert_exit(&verify(prod_s), 0, &["JWT_SECRET: ok"]);
    assert_exit(
        &verify(dev_s),
        25,
        &["sealed for context discbaboons/dev", "--expect-context"],
    );
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let into = shm.path().to_str().unwrap();
    let mut open = vec!["open", dev_s, "--into", into, "-i", key_s];
    open.extend(expect);
    assert_exit(&lab.seal(&open), 25, &["expects discbaboons/prod"]);
    assert!(std::fs::read_dir(shm.path()).unwrap().next().is_none());
}

/// The issue's own case: a token signed with the dev JWT secret once got a 200 from a prod
/// server that had been handed the dev file. Now that server refuses to start (exit 25),
/// and a prod server with its own file answers the dev token 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prod_server_refuses_the_dev_file_so_a_dev_token_never_gets_in() {
    let lab = Lab::new();
    let (_, identity, dev, prod) = dev_and_prod_files(&lab);
    let db = Cluster::shared().create_db();
    crate::support::apply_migrations(&db);
    let pod = |env: &'static str, file: &Path| -> Vec<(String, String)> {
        vec![
            ("APP_ENV".into(), env.into()),
            ("APP_SEALED__FILE".into(), file.display().to_string()),
            (
                "APP_SEALED__IDENTITY_DIR".into(),
                identity.display().to_string(),
            ),
        ]
    };
    let start = |env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        Served::start(&db, &env)
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // A dev server issues a token with the dev secret.
    let mut dev_server = start(pod("dev", &dev));
    dev_server.wait_ready(&client, LIMIT).await;
    let user = serde_json::json!({
        "username": "ctx_user",
        "email": "ctx_user@example.com",
        "password": "a-long-enough-password",
    });
    let registered = client
        .post(dev_server.url("/api/auth/register"))
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let login: serde_json::Value = client
        .post(dev_server.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "ctx_user", "password": "a-long-enough-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a token").to_owned();
    let me = |server: &Served| {
        client
            .get(server.url("/api/users/me"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(me(&dev_server).await.unwrap().status(), 200);
    lab.printed.borrow_mut().push(dev_server.log_text());
    drop(dev_server);

    // The dev file in a prod pod: serve stops before it listens.
    let port = free_port();
    let mut cmd = app();
    cmd.arg("serve")
        .envs(db.app_env())
        .envs(pod("prod", &dev))
        .env("APP_HTTP__HOST", "127.0.0.1")
        .env("APP_HTTP__PORT", port.to_string())
        .env("APP_METRICS__ENABLED", "false");
    let out = lab.run(cmd, None);
    assert_exit(
        &out,
        25,
        &[
            "sealed for context discbaboons/dev",
            "expects discbaboons/prod",
        ],
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // A prod server with the prod file: the dev token is not its key's.
    let mut prod_server = start(pod("prod", &prod));
    prod_server.wait_ready(&client, LIMIT).await;
    assert_eq!(me(&prod_server).await.unwrap().status(), 401);
    lab.printed.borrow_mut().push(prod_server.log_text());
}

/// Each refusal of a sealed file has its own exit code.
mod wrong_identity_missing_identity_and_malformed_file_each_have_their_code {
    use super::*;

    /// A prod file sealed to `key.txt` holding a JWT secret; its path.
    fn sealed_to_key(lab: &Lab) -> PathBuf {
        let (_, recipient) = lab.keygen("key.txt");
        let jwt = lab.secret("jwt");
        lab.new_file(
            "s.yaml",
            "discbaboons/prod",
            &[&recipient],
            &[("JWT_SECRET", &jwt)],
        );
        lab.path("s.yaml")
    }

    #[test]
    fn wrong_identity_is_22() {
        let lab = Lab::new();
        let file = sealed_to_key(&lab);
        let (stranger, _) = lab.keygen("stranger.txt");

        let out = lab.verify(&file, &stranger);
        assert_exit(
            &out,
            22,
            &["JWT_SECRET", "none of the 1 identities", "stranger.txt"],
        );
    }

    #[test]
    fn missing_identity_is_21() {
        let lab = Lab::new();
        let file = sealed_to_key(&lab);

        let empty = lab.identity_dir("empty", &[]);
        assert_exit(
            &lab.config(&file, &empty, "prod"),
            21,
            &["no identity file in"],
        );
    }

    #[test]
    fn malformed_file_is_20() {
        let lab = Lab::new();
        let (stranger, _) = lab.keygen("stranger.txt");

        let broken = lab.path("broken.yaml");
        std::fs::write(&broken, "version: 1\ncontext: [unclosed\n").unwrap();
        let out = lab.verify(&broken, &stranger);
        assert_exit(&out, 20, &["broken.yaml", "malformed"]);
    }

    #[test]
    fn absent_file_is_26_in_prod_and_nothing_in_dev() {
        let lab = Lab::new();
        let empty = lab.identity_dir("empty", &[]);

        let absent = lab.path("absent.yaml");
        assert_exit(
            &lab.config(&absent, &empty, "prod"),
            26,
            &["absent.yaml", "prod"],
        );
        let out = lab.config(&absent, &empty, "dev");
        assert_exit(&out, 0, &[]);
    }
}

#[test]
fn two_identities_then_rekey_to_the_new_one_only() {
    let lab = Lab::new();
    let (old_key, old) = lab.keygen("old.key");
    let (new_key, new) = lab.keygen("new.key");
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&old],
        &[("JWT_SECRET", &jwt)],
    );
    let file = lab.path("s.yaml");
    let both = lab.identity_dir("both", &[&old_key, &new_key]);
    let only_old = lab.identity_dir("only-old", &[&old_key]);
    let only_new = lab.identity_dir("only-new", &[&new_key]);

    assert_exit(&lab.config(&file, &both, "prod"), 0, &[]);
    let out = lab.seal(&[
        "rekey",
        file.to_str().unwrap(),
        "-i",
        both.to_str().unwrap(),
        "-r",
        &new,
    ]);
    assert_exit(&out, 0, &["re-encrypted 1 values"]);

    assert_exit(&lab.config(&file, &both, "prod"), 0, &[]);
    assert_exit(&lab.config(&file, &only_new, "prod"), 0, &[]);
    assert_exit(
        &lab.config(&file, &only_old, "prod"),
        22,
        &["JWT_SECRET", "rekey"],
    );
    let listed = lab.seal(&["list", file.to_str().unwrap()]);
    assert_exit(&listed, 0, &[&new]);
    assert!(
        !output_text(&listed).contains(&old),
        "old recipient still listed"
    );
}

#[test]
fn set_on_one_key_leaves_every_other_block_byte_identical() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let values = [lab.secret("a"), lab.secret("b"), lab.secret("c")];
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[
            ("A_KEY", &values[0]),
            ("B_KEY", &values[1]),
            ("C_KEY", &values[2]),
        ],
    );
    let file = lab.path("s.yaml");
    let before = text(&file);
    let new_b = lab.secret("b2");
    let out = lab.seal_with_stdin(&["set", file.to_str().unwrap(), "B_KEY"], Some(&new_b));
    assert!(out.status.success(), "{}", output_text(&out));
    let after = text(&file);

    assert_ne!(block(&before, "B_KEY"), block(&after, "B_KEY"));
    let strip = |t: &str| t.replace(block(t, "B_KEY"), "");
    assert_eq!(
        strip(&before),
        strip(&after),
        "only B_KEY's block may change"
    );
    assert!(!after.contains('\r'));
    assert_exit(&lab.verify(&file, &key), 0, &["B_KEY: ok"]);

    let out = lab.seal(&["rm", file.to_str().unwrap(), "A_KEY"]);
    assert_exit(&out, 0, &[]);
    assert_eq!(block(&text(&file), "C_KEY"), block(&before, "C_KEY"));
    let out = lab.seal(&["rm", file.to_str().unwrap(), "A_KEY"]);
    assert_exit(&out, 26, &["no key A_KEY"]);
}

#[test]
fn open_writes_to_tmpfs_only() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let pw = lab.secret("pg");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("POSTGRES_PASSWORD", &pw)],
    );
    let file = lab.path("s.yaml");
    let on_disk = lab.path("out");
    std::fs::create_dir(&on_disk).unwrap();
    let args = |into: &Path| {
        vec![
            "open".to_string(),
            file.display().to_string(),
            "--into".into(),
            into.display().to_string(),
            "-i".into(),
            key.display().to_string(),
        ]
    };
    let refused = lab.seal(
        &args(&on_disk)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_exit(&refused, 26, &["not on tmpfs"]);
    assert!(std::fs::read_dir(&on_disk).unwrap().next().is_none());

    assert!(
        ::app::secrets::tmpfs::is_memory_backed(Path::new("/dev/shm")).unwrap_or(false),
        "this test needs /dev/shm on tmpfs"
    );
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let out = lab.seal(
        &args(shm.path())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_exit(&out, 0, &["wrote 1 values"]);
    let written = shm.path().join("POSTGRES_PASSWORD");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), pw);
    let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
}

#[test]
fn keygen_for_kubernetes_prints_a_working_secret_and_seal_needs_no_settings() {
    let lab = Lab::new();
    let mut cmd = app();
    cmd.args([
        "seal",
        "keygen",
        "--k8s-secret",
        "app-identity",
        "--namespace",
        "discbaboons",
    ]);
    let out = lab.run(cmd, None);
    // The manifest holds a private key by design: keep it out of the leak check's record.
    lab.printed.borrow_mut().pop();
    let manifest = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{manifest}");
    for needle in [
        "kind: Secret",
        "name: app-identity",
        "namespace: discbaboons",
        "AGE-SECRET-KEY-1",
    ] {
        assert!(manifest.contains(needle), "{manifest}");
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    let recipient = stderr
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap();

    // The key in the manifest opens what is sealed to the printed recipient.
    let key = lab.path("from-manifest.key");
    let body: String = manifest
        .lines()
        .skip_while(|l| !l.ends_with(": |"))
        .skip(1)
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    std::fs::write(&key, body).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[recipient],
        &[("JWT_SECRET", &jwt)],
    );

    // A broken configuration does not matter to `app seal`, which never loads it.
    let mut cmd = app();
    cmd.args(["seal", "verify"])
        .arg(lab.path("s.yaml"))
        .arg("-i")
        .arg(&key)
        .env("APP_HTTP__PORT", "not-a-port");
    assert_exit(&lab.run(cmd, None), 0, &["JWT_SECRET: ok"]);

    let (plain, _) = lab.keygen("plain.key");
    let mode = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = lab.seal(&["keygen", "-o", plain.to_str().unwrap()]);
    assert_ne!(
        again.status.code(),
        Some(0),
        "keygen must not overwrite a key"
    );
}

#[test]
fn identity_readable_by_others_is_refused_in_prod_and_a_warning_in_dev() {
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("JWT_SECRET", &jwt)],
    );
    let dir = lab.identity_dir("identity", &[&key]);
    let mounted = dir.join("key.txt");
    std::fs::set_permissions(&mounted, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lab.config(&lab.path("s.yaml"), &dir, "prod");
    assert_exit(
        &out,
        21,
        &[
            mounted.to_str().unwrap(),
            "readable by other users",
            "0644",
            "prod refuses",
            "chmod 600",
            "defaultMode: 0400",
        ],
    );
    let expect_prod = [("APP_SEALED__CONTEXT", "discbaboons/prod")];
    let out = lab.config_with(&lab.path("s.yaml"), &dir, "dev", &expect_prod);
    assert_exit(
        &out,
        0,
        &["WARN", "key.txt", "readable by other users", "0644"],
    );
    std::fs::set_permissions(&mounted, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_exit(&lab.config(&lab.path("s.yaml"), &dir, "prod"), 0, &[]);
}

#[test]
fn open_never_writes_plaintext_others_can_read() {
    use std::os::unix::process::CommandExt;
    let lab = Lab::new();
    let (key, recipient) = lab.keygen("key.txt");
    let pw = lab.secret("pg");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&recipient],
        &[("POSTGRES_PASSWORD", &pw)],
    );
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let open = |mode: &str, identity: &Path| {
        let mut cmd = app();
        cmd.args(["seal", "open"])
            .arg(lab.path("s.yaml"))
            .arg("--into")
            .arg(shm.path())
            .arg("-i")
            .arg(identity)
            .args(["--mode", mode]);
        // A permissive umask must not widen the mode, a strict one must not narrow it.
        // SAFETY: umask is async-signal-safe and touches only the child's process state.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        lab.run(cmd, None)
    };
    let written = shm.path().join("POSTGRES_PASSWORD");
    for mode in ["0444", "0644", "0404", "0460"] {
        assert_exit(
            &open(mode, &key),
            26,
            &[mode, "other users", "0400", "0440"],
        );
        assert!(!written.exists(), "--mode {mode} wrote a file");
    }
    assert_exit(&open("0440", &key), 0, &["wrote 1 values"]);
    let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o440,
        "exactly the mode asked for, whatever the umask"
    );
    assert_eq!(std::fs::read_to_string(&written).unwrap(), pw);

    // `open` runs in the pods: an identity others can read is refused there, as in prod.
    std::fs::remove_file(&written).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_exit(
        &open("0400", &key),
        21,
        &["key.txt", "readable by other users", "chmod 600"],
    );
    assert!(!written.exists());
}

/// `ssh-keygen -t ed25519` into `path`, with `passphrase` (empty for none).
fn ssh_keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "recovery@laptop",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("ssh-keygen is needed for this test ({e}): scripts/setup.sh installs it")
        });
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn ssh_keys_work_as_recipients_and_locked_ones_are_refused_in_the_pod() {
    let lab = Lab::new();
    let (_, cluster) = lab.keygen("cluster.key");
    let ssh = lab.path("id_ed25519");
    ssh_keygen(&ssh, "");
    let ssh_pub = text(&lab.path("id_ed25519.pub"));
    let jwt = lab.secret("jwt");
    lab.new_file(
        "s.yaml",
        "discbaboons/prod",
        &[&cluster, ssh_pub.trim()],
        &[("JWT_SECRET", &jwt)],
    );
    let file = lab.path("s.yaml");
    let listed = lab.seal(&["list", file.to_str().unwrap()]);
    assert_exit(
        &listed,
        0,
        &[
            "ssh-ed25519 AAAA",
            "# recovery@laptop",
            "(X25519, ssh-ed25519)",
        ],
    );
    assert_exit(&lab.verify(&file, &ssh), 0, &["JWT_SECRET: ok"]);

    let locked = lab.path("locked");
    std::fs::create_dir(&locked).unwrap();
    ssh_keygen(
        &locked.join("id_ed25519"),
        "a passphrase nobody types in a pod",
    );
    std::fs::remove_file(locked.join("id_ed25519.pub")).unwrap();
    let out = lab.config(&file, &locked, "prod");
    assert_exit(&out, 21, &["id_ed25519", "passphrase-protected"]);
}
