//! Secrets under pressure.
//!
//! - Hostile sealed files (binary garbage, YAML garbage, truncated armor, a flipped armor
//!   line, a huge value, a duplicate key, a YAML alias bomb, deep nesting) fed to the pod's
//!   own loading path (`app config`, which loads settings exactly as `serve` does): each gets
//!   a clear error naming the file and a sealed-file exit code, quickly, never a panic.
//! - A trace-level sweep: every subcommand and every API operation run at `LOG_LEVEL=trace`
//!   (pretty and JSON logs) with distinctive secrets (database password, JWT secret, user
//!   passwords, bearer tokens), including failures that print connection errors; no secret
//!   appears in anything the binary printed or answered.
//!
//! `tests/cli/seal.rs` covers tampering, swapped and copied values and the happy paths at trace
//! level; this file adds the malformed inputs and the API's traffic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Cluster, app, free_port, output_text};

/// Runs `cmd` at trace level, feeding `stdin`, within `limit`.
fn run(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Output {
    cmd.env("LOG_LEVEL", "trace");
    support::run(&mut cmd, stdin, limit)
}

/// A sealed file with one value, its identity directory, and the key's recipient.
struct Sealed {
    dir: tempfile::TempDir,
    identity_dir: PathBuf,
    file: PathBuf,
}

impl Sealed {
    /// A file of `context`: it must be the context of the environment that loads it.
    fn new(context: &str, values: &[(&str, &str)]) -> Sealed {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cluster.key");
        let out = run(
            {
                let mut c = app();
                c.args(["seal", "keygen", "-o", key.to_str().unwrap()]);
                c
            },
            None,
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let identity_dir = dir.path().join("identity");
        std::fs::create_dir(&identity_dir).unwrap();
        let mounted = identity_dir.join("key");
        std::fs::copy(&key, &mounted).unwrap();
        std::fs::set_permissions(&mounted, std::fs::Permissions::from_mode(0o400)).unwrap();
        let file = dir.path().join("secrets.yaml");
        for (i, (name, value)) in values.iter().enumerate() {
            let mut cmd = app();
            cmd.args(["seal", "set", file.to_str().unwrap(), name]);
            if i == 0 {
                cmd.args(["--context", context, "-r", &recipient]);
            }
            let out = run(cmd, Some(&format!("{value}\n")), Duration::from_secs(60));
            assert!(out.status.success(), "{}", output_text(&out));
        }
        Sealed {
            dir,
            identity_dir,
            file,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap()
    }

    /// `app config` on `bytes` as the mounted sealed file.
    fn load(&self, name: &str, bytes: &[u8]) -> Output {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        self.load_path(&path)
    }

    fn load_path(&self, path: &Path) -> Output {
        let mut cmd = app();
        cmd.arg("config")
            .env("APP_SEALED__FILE", path)
            .env("APP_SEALED__IDENTITY_DIR", &self.identity_dir);
        run(cmd, None, Duration::from_secs(30))
    }
}

/// The armored value of `key` in a sealed file's text, as its indented lines.
fn armor_lines<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(&format!("  {key}: |")))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect()
}

fn assert_clear_error(name: &str, out: &Output, codes: &[i32], needles: &[&str]) {
    let text = output_text(out);
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "{name}: panic:\n{text}"
    );
    let code = out.status.code();
    assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "{name}: exit {code:?}, expected one of {codes:?}:\n{text}"
    );
    for needle in needles {
        assert!(text.contains(needle), "{name}: no {needle:?} in:\n{text}");
    }
    assert!(
        text.len() < 20_000,
        "{name}: {} bytes of output",
        text.len()
    );
}

/// A hostile file: its name, its bytes, the acceptable exit codes, what the message must say.
type Case<'a> = (&'a str, Vec<u8>, Vec<i32>, Vec<&'a str>);

#[test]
fn hostile_sealed_files_get_a_clear_error_and_never_a_panic() {
    let secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    // Loaded by `app config` in dev.
    let sealed = Sealed::new(
        "discbaboons/dev",
        &[("JWT_SECRET", &secret), ("OTHER", "other-value-1")],
    );
    let good = sealed.text();
    let out = sealed.load_path(&sealed.file);
    assert_clear_error("the valid file", &out, &[0], &["JWT_SECRET"]);

    let lines = armor_lines(&good, "JWT_SECRET");
    let armor_start = good.find(lines[0]).unwrap();
    let armor_end = good.find(lines[lines.len() - 1]).unwrap() + lines[lines.len() - 1].len();
    let with_armor =
        |armor: &str| format!("{}{}{}", &good[..armor_start], armor, &good[armor_end..]);
    let body: Vec<&str> = lines[1..lines.len() - 1].to_vec();

    // (name, content, acceptable exit codes, what the message must say)
    let mut cases: Vec<Case> = vec![
        ("empty", Vec::new(), vec![20], vec!["malformed"]),
        (
            "binary garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            vec![20],
            vec!["malformed"],
        ),
        (
            "YAML garbage",
            b"version: 1\ncontext: [unclosed\nvalues: {{{\n".to_vec(),
            vec![20],
            vec!["malformed"],
        ),
        (
            "NUL bytes",
            good.replacen("context:", "context:\0", 1).into_bytes(),
            vec![20],
            vec!["malformed"],
        ),
        (
            "armor cut after its first line",
            with_armor(lines[0]).into_bytes(),
            vec![20, 23],
            vec!["JWT_SECRET"],
        ),
        (
            "armor without its END line",
            with_armor(&lines[..lines.len() - 1].join("\n")).into_bytes(),
            vec![20, 23],
            vec!["JWT_SECRET"],
        ),
        (
            "armor body cut in half",
            with_armor(
                &[
                    &[lines[0]][..],
                    &body[..body.len() / 2],
                    &[lines[lines.len() - 1]][..],
                ]
                .concat()
                .join("\n"),
            )
            .into_bytes(),
            vec![20, 23],
            vec!["JWT_SECRET"],
        ),
        (
            "armor line not base64",
            with_armor(
                &[
                    &[lines[0]][..],
                    &["    !!!! not base64 !!!!"][..],
                    &body[1..],
                    &[lines[lines.len() - 1]][..],
                ]
                .concat()
                .join("\n"),
            )
            .into_bytes(),
            vec![20, 23],
            vec!["JWT_SECRET"],
        ),
        (
            "duplicate key",
            format!("{good}  JWT_SECRET: |\n{}\n", lines.join("\n")).into_bytes(),
            vec![20],
            vec!["JWT_SECRET", "twice"],
        ),
        (
            "duplicate top-level key",
            format!("{good}context: \"discbaboons/prod\"\n").into_bytes(),
            vec![20],
            vec!["malformed"],
        ),
        (
            "deep nesting",
            format!("version: 1\ncontext: {}\n", "[".repeat(100_000)).into_bytes(),
            vec![20],
            vec!["malformed"],
        ),
        (
            "alias bomb",
            {
                let mut bomb = String::from(
                    "version: 1\ncontext: x\nbomb:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
                );
                let names: Vec<char> = ('b'..='j').collect();
                let mut prev = 'a';
                for n in names {
                    bomb.push_str(&format!(
                        "  {n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
                    ));
                    prev = n;
                }
                bomb.into_bytes()
            },
            vec![20],
            vec!["malformed"],
        ),
    ];
    // A huge value: 64 MiB of well-formed armor lines. A Kubernetes Secret or ConfigMap
    // holds at most 1 MiB, so no real sealed file is anywhere near this.
    let huge_line = format!("    {}\n", "A".repeat(64));
    let huge = format!(
        "{}\n{}{}",
        lines[0],
        huge_line.repeat(64 * 1024 * 1024 / huge_line.len()),
        lines[lines.len() - 1]
    );
    cases.push((
        "huge value",
        with_armor(&huge).into_bytes(),
        vec![20, 23],
        vec![],
    ));

    // A large real value: up to what a ConfigMap holds it seals and loads; beyond that,
    // `app seal set` refuses to write a file no pod could mount.
    let large = "x".repeat(600 * 1024);
    let mut cmd = app();
    cmd.args(["seal", "set", sealed.file.to_str().unwrap(), "LARGE"]);
    let out = run(cmd, Some(&large), Duration::from_secs(60));
    assert_clear_error("a 600 KiB value", &out, &[0], &[]);
    let out = sealed.load_path(&sealed.file);
    assert_clear_error("loading a 600 KiB value", &out, &[0], &["LARGE"]);
    let mut cmd = app();
    cmd.args(["seal", "set", sealed.file.to_str().unwrap(), "LARGER"]);
    let out = run(cmd, Some(&"y".repeat(1024 * 1024)), Duration::from_secs(60));
    assert_clear_error("a 1 MiB value", &out, &[26], &["ConfigMap"]);
    assert!(!sealed.text().contains("LARGER"), "the file was written");

    for (name, content, codes, needles) in &cases {
        let file_name = format!("secrets-{name}.yaml");
        let started = Instant::now();
        let out = sealed.load(&file_name, content);
        let elapsed = started.elapsed();
        let mut needles = needles.clone();
        needles.push(&file_name);
        assert_clear_error(name, &out, codes, &needles);
        assert!(
            elapsed < Duration::from_secs(10),
            "{name}: took {elapsed:?}"
        );
        let text = output_text(&out);
        assert!(
            !text.contains(&secret),
            "{name}: the secret leaked:\n{text}"
        );
        println!(
            "sealed file {name:?}: exit {:?} in {elapsed:.1?}: {}",
            out.status.code(),
            text.lines()
                .find(|l| l.contains("malformed") || l.contains("error"))
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
}

/// Everything the binary printed and answered in the sweep, and the secrets to look for.
#[derive(Default)]
struct Sweep {
    printed: Vec<(String, String)>,
    answered: Vec<(String, String)>,
    /// Never in any output nor any response.
    secrets: Vec<String>,
    /// Bearer tokens: returned by login by design, never in the logs.
    tokens: Vec<String>,
}

impl Sweep {
    fn secret(&mut self, prefix: &str) -> String {
        let value = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.secrets.push(value.clone());
        value
    }

    fn record(&mut self, what: &str, out: &Output) {
        self.printed.push((what.to_owned(), output_text(out)));
    }

    /// Sends a request, records the answer, returns (status, body).
    async fn call(
        &mut self,
        client: &reqwest::Client,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> (u16, serde_json::Value) {
        let resp = client
            .execute(req.build().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        self.answered.push((what.to_owned(), text.clone()));
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    fn check(&self) -> usize {
        let mut bytes = 0;
        for (what, text) in &self.printed {
            bytes += text.len();
            for needle in self.secrets.iter().chain(&self.tokens) {
                assert!(
                    !text.contains(needle.as_str()),
                    "{what} printed a secret ({}...):\n{text}",
                    &needle[..8]
                );
            }
        }
        for (what, text) in &self.answered {
            for needle in &self.secrets {
                assert!(
                    !text.contains(needle.as_str()),
                    "{what} answered a secret:\n{text}"
                );
            }
        }
        bytes
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_at_trace_level_ever_prints_a_secret() {
    let mut sweep = Sweep::default();
    let db_password = format!("p@ss:/+=?&%{}", sweep.secret("dbpw"));
    let jwt_secret = sweep.secret("jwt-secret-at-least-32-bytes-long");
    // Loaded by the pod's commands in prod.
    let sealed = Sealed::new(
        "discbaboons/prod",
        &[
            ("DATABASE_PASSWORD", &db_password),
            ("JWT_SECRET", &jwt_secret),
        ],
    );
    let private_key = std::fs::read_to_string(sealed.dir.path().join("cluster.key"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_owned();
    sweep.secrets.push(private_key);

    let cluster = Cluster::private();
    let db = cluster.create_db();
    let role = format!("sweep_{}", db.name);
    db.psql(&format!(
        "create role {role} login password '{}'",
        db_password.replace('\'', "''")
    ));
    db.psql(&format!("alter database {} owner to {role}", db.name));
    let port = free_port();
    let limit = Duration::from_secs(60);
    // The pod's environment: database fields, sealed file and identity; prod, JSON logs.
    let pod = |args: &[&str], format: &str| {
        let mut cmd = app();
        cmd.args(args)
            .env("APP_ENV", "prod")
            .env("APP_LOG__FORMAT", format)
            .env("APP_DATABASE__HOST", "127.0.0.1")
            .env("APP_DATABASE__PORT", cluster.port.to_string())
            .env("APP_DATABASE__NAME", &db.name)
            .env("APP_DATABASE__USER", &role)
            .env("APP_SEALED__FILE", &sealed.file)
            .env("APP_SEALED__IDENTITY_DIR", &sealed.identity_dir)
            .env("APP_HTTP__HOST", "127.0.0.1")
            .env("APP_HTTP__PORT", port.to_string())
            .env("APP_HTTP__SHUTDOWN_GRACE", "0s")
            .env("APP_METRICS__ENABLED", "false");
        cmd
    };

    for format in ["json", "pretty"] {
        for args in [
            &["wait-db", "--timeout", "20s"][..],
            &["migrate"],
            &["migrate", "info"],
            &["migrate", "validate"],
            &["config"],
        ] {
            let out = run(pod(args, format), None, limit);
            assert!(out.status.success(), "{args:?}: {}", output_text(&out));
            sweep.record(&format!("{args:?} ({format})"), &out);
        }
    }

    // Failures print connection details: a wrong password, an unparsable URL holding one,
    // nothing listening.
    let wrong = sweep.secret("wrong-pw");
    let mut cmd = pod(&["wait-db", "--timeout", "2s"], "pretty");
    cmd.env("APP_ENV", "dev")
        .env_remove("APP_SEALED__FILE")
        .env("APP_SEALED__FILE", "/nonexistent")
        .env("APP_DATABASE__PASSWORD", &wrong);
    let out = run(cmd, None, limit);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    // The final error names the real reason, even when the deadline cut the last attempt.
    let last = text
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(last.contains("authentication failed"), "{text}");
    sweep.record("wait-db with a wrong password", &out);
    let url_password = sweep.secret("url-p@ss/w?rd");
    let mut cmd = pod(&["migrate"], "pretty");
    cmd.env("APP_ENV", "dev")
        .env("APP_SEALED__FILE", "/nonexistent")
        .env(
            "DATABASE_URL",
            format!("postgresql://{role}:{url_password}@127.0.0.1:1/x"),
        );
    let out = run(cmd, None, limit);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    sweep.record("migrate with an unparsable DATABASE_URL", &out);
    let mut cmd = pod(&["wait-db", "--timeout", "1s"], "json");
    cmd.env("APP_DATABASE__PORT", free_port().to_string());
    let out = run(cmd, None, limit);
    assert_eq!(out.status.code(), Some(4), "{}", output_text(&out));
    sweep.record("wait-db with nothing listening", &out);

    // serve at trace level, then every operation of the API, good and bad.
    let log = std::env::temp_dir().join(format!("proof-sweep-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut serve = pod(&["serve"], "json");
    serve
        .env("LOG_LEVEL", "trace")
        .env("APP_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut child = serve.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/ready"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "serve not ready: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_, info) = sweep
        .call(&client, client.get(format!("{base}/api/info")), "info")
        .await;
    assert_eq!(info["log_level"], "trace", "{info}");

    let password = sweep.secret("user-pw");
    let username = format!("sweep{}", std::process::id());
    let (status, _) = sweep
        .call(
            &client,
            client
                .post(format!("{base}/api/auth/register"))
                .json(&serde_json::json!({
                    "username": username, "email": format!("{username}@example.com"),
                    "password": password,
                })),
            "register",
        )
        .await;
    assert_eq!(status, 201);
    let bad_password = sweep.secret("bad-pw");
    let (status, _) = sweep
        .call(
            &client,
            client
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"username": username, "password": bad_password})),
            "login with a wrong password",
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = sweep
        .call(
            &client,
            client
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"username": username, "password": password})),
            "login",
        )
        .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap().to_owned();
    sweep.tokens.push(token.clone());
    let bearer = |req: reqwest::RequestBuilder, t: &str| req.bearer_auth(t);
    for (what, req) in [
        (
            "me",
            bearer(client.get(format!("{base}/api/users/me")), &token),
        ),
        (
            "profile",
            bearer(client.patch(format!("{base}/api/users/me/profile")), &token).json(
                &serde_json::json!({"email": format!("{username}@example.org"), "bio": "hi"}),
            ),
        ),
        (
            "users",
            bearer(client.get(format!("{base}/api/users")), &token),
        ),
        ("user", client.get(format!("{base}/api/users/{username}"))),
        ("info", client.get(format!("{base}/api/info"))),
        ("docs", client.get(format!("{base}/openapi.json"))),
        (
            "a forged token",
            bearer(
                client.get(format!("{base}/api/users/me")),
                &format!("{}x", &token[..token.len() - 1]),
            ),
        ),
    ] {
        let _ = sweep.call(&client, req, what).await;
    }
    let new_password = sweep.secret("new-pw");
    let (status, body) = sweep
        .call(
            &client,
            bearer(client.post(format!("{base}/api/users/me/password")), &token).json(
                &serde_json::json!({"current_password": password, "new_password": new_password}),
            ),
            "change password",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["token"].as_str().unwrap().to_owned();
    sweep.tokens.push(fresh.clone());
    let (status, _) = sweep
        .call(
            &client,
            bearer(client.get(format!("{base}/api/users/me")), &token),
            "a revoked token",
        )
        .await;
    assert_eq!(status, 401);

    // The database goes away: connection errors at trace level, then it comes back.
    cluster.stop();
    for what in ["me during the outage", "login during the outage"] {
        let req = if what.starts_with("me") {
            bearer(client.get(format!("{base}/api/users/me")), &fresh)
        } else {
            client
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"username": username, "password": new_password}))
        };
        let (status, _) = sweep.call(&client, req, what).await;
        assert_eq!(status, 503, "{what}");
    }
    let _ = sweep
        .call(
            &client,
            client.get(format!("{base}/ready")),
            "ready during the outage",
        )
        .await;
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = sweep
            .call(
                &client,
                client.get(format!("{base}/ready")),
                "ready after the outage",
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = sweep
        .call(
            &client,
            bearer(client.delete(format!("{base}/api/users/me")), &fresh),
            "delete me",
        )
        .await;
    assert_eq!(status, 204);

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    let serve_log = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // Debug lines prove the filter let everything through (few crates log at trace).
    assert!(serve_log.contains("\"level\":\"DEBUG\""), "{serve_log}");
    sweep.printed.push(("serve".into(), serve_log));

    let bytes = sweep.check();
    println!(
        "trace sweep: {} command outputs ({bytes} bytes) and {} responses checked for {} secrets \
         and {} tokens: none found",
        sweep.printed.len(),
        sweep.answered.len(),
        sweep.secrets.len(),
        sweep.tokens.len()
    );
}
