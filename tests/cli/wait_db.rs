//! `app wait-db` against real PostgreSQL clusters: ready, not yet ready, never ready, wrong
//! password, and a password full of URL metacharacters.

use std::time::{Duration, Instant};

use crate::support::{self, Cluster, app, free_port, output_text};

#[test]
fn ready_database_exits_zero_at_once() {
    let db = Cluster::shared().create_db();
    let out = app().arg("wait-db").envs(db.app_env()).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("database ready"));
}

#[test]
fn nothing_listening_times_out_with_its_code_and_reason() {
    let started = Instant::now();
    let out = app()
        .args(["wait-db", "--timeout", "2s"])
        .env("APP_DATABASE__HOST", "127.0.0.1")
        .env("APP_DATABASE__PORT", free_port().to_string())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("not ready after"), "{text}");
}

#[test]
fn unresolvable_host_is_a_dns_failure() {
    let out = app()
        .args(["wait-db", "--timeout", "1s"])
        .env("APP_DATABASE__HOST", "no-such-host.invalid")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("DNS failure"), "{text}");
}

#[test]
fn waits_for_a_server_that_starts_later() {
    let cluster = Cluster::private();
    cluster.stop();
    let mut child = app()
        .args(["wait-db", "--timeout", "30s", "--max-backoff", "500ms"])
        .env("APP_DATABASE__HOST", "127.0.0.1")
        .env("APP_DATABASE__PORT", cluster.port.to_string())
        .env("APP_DATABASE__USER", support::pg::SUPERUSER)
        .env("APP_DATABASE__PASSWORD", support::pg::SUPERUSER_PASSWORD)
        .env("APP_DATABASE__NAME", "postgres")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "wait-db gave up too early"
    );
    cluster.start();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connection_refused"), "{text}");
    assert!(text.contains("database ready"), "{text}");
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let db = Cluster::shared().create_db();
    let out = app()
        .args(["wait-db", "--timeout", "1s"])
        .envs(db.app_env())
        .env("APP_DATABASE__PASSWORD", "definitely-wrong-pw")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("definitely-wrong-pw"), "{text}");
}

/// A password the driver refuses before connecting (a newline from the end of the file it was
/// sealed from) never heals: exit 3 at the first attempt, not 4 after the whole timeout.
#[test]
fn a_password_with_a_newline_is_a_configuration_error_at_once() {
    let db = Cluster::shared().create_db();
    let started = std::time::Instant::now();
    let out = app()
        .args(["wait-db", "--timeout", "60s"])
        .envs(db.app_env())
        .env("APP_DATABASE__PASSWORD", "secret-with-newline\n")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("newline"), "{text}");
    assert!(text.contains("DATABASE_PASSWORD"), "names the fix: {text}");
    assert!(!text.contains("secret-with-newline"), "{text}");
    assert!(!text.contains("attempt=2"), "retried: {text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "waited out the timeout"
    );
}

#[test]
fn missing_database_is_named() {
    let db = Cluster::shared().create_db();
    let out = app()
        .args(["wait-db", "--timeout", "1s"])
        .envs(db.app_env())
        .env("APP_DATABASE__NAME", "no_such_db")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("database does not exist"), "{text}");
}

/// The seed's rotation broke on `+ / =` in a password pasted into DATABASE_URL.
const NASTY_PASSWORD: &str = "p@ss:w/rd+=?&%#!x";

/// A password full of URL metacharacters.
mod special_character_password_works_as_discrete_fields_and_is_explained_in_a_url {
    use super::*;

    /// A login role of `db` with [`NASTY_PASSWORD`]; its name.
    fn nasty_role(db: &support::TestDb<'_>) -> String {
        let role = format!("nasty_{}", db.name);
        db.psql(&format!(
            "create role {role} login password '{}'; grant all on database {} to {role}",
            NASTY_PASSWORD.replace('\'', "''"),
            db.name
        ));
        role
    }

    #[test]
    fn as_discrete_fields() {
        let db = Cluster::shared().create_db();
        let role = nasty_role(&db);

        let out = app()
            .args(["wait-db", "--timeout", "5s"])
            .envs(db.app_env())
            .env("APP_DATABASE__USER", &role)
            .env("APP_DATABASE__PASSWORD", NASTY_PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        db.psql(&format!("drop owned by {role}; drop role {role}"));
    }

    #[test]
    fn unencoded_in_a_url() {
        let db = Cluster::shared().create_db();
        let role = nasty_role(&db);

        let url = format!(
            "postgresql://{role}:{NASTY_PASSWORD}@127.0.0.1:{}/{}",
            db.cluster.port, db.name
        );
        let out = app()
            .args(["wait-db", "--timeout", "1s"])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains("percent-encode"), "{text}");
        assert!(text.contains(&format!("{role}:****@")), "{text}");
        assert!(!text.contains("w/rd"), "{text}");
        db.psql(&format!("drop owned by {role}; drop role {role}"));
    }
}

#[test]
fn requiring_tls_from_a_plaintext_server_is_a_tls_failure() {
    let db = Cluster::shared().create_db();
    let out = app()
        .args(["wait-db", "--timeout", "1s"])
        .envs(db.app_env())
        .env("APP_DATABASE__SSLMODE", "require")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("tls_failure"), "{text}");
}

#[test]
fn json_logs_are_one_object_per_line_and_also_go_to_the_log_dir() {
    // prod's default format is json (a unit test in src/config proves the default); prod
    // itself would also demand a sealed file, which is not what this test is about.
    let dir = tempfile::tempdir().unwrap();
    let out = app()
        .args(["wait-db", "--timeout", "1s"])
        .env("APP_LOG__FORMAT", "json")
        .env("APP_LOG__DIR", dir.path())
        .env("APP_DATABASE__HOST", "127.0.0.1")
        .env("APP_DATABASE__PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    let logged: String = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    // Every line reached the file before exit: the non-blocking writer was flushed.
    assert_eq!(logged.lines().count(), lines.len(), "{logged}");
    assert!(
        logged.contains("\"reason\":\"connection_refused\""),
        "{logged}"
    );
}
