//! `app config` and `app --version`: precedence, redaction and error messages as a user sees
//! them from the binary.

use crate::support::{app, output_text};

/// `app --config FILE config`.
fn app_config(file: &std::path::Path) -> std::process::Command {
    let mut cmd = app();
    cmd.arg("--config").arg(file).arg("config");
    cmd
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("app.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn version_names_the_commit() {
    let out = app().arg("--version").output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("app {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

/// A `FROM scratch` image has no `id`: `app config` names the process's uid and groups, as
/// `kubectl exec deploy/app -- /app config` shows them (docs/runbook.md).
#[test]
fn config_names_the_process_uid_and_gid() {
    let id = |flag: &str| {
        let out = std::process::Command::new("id").arg(flag).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let out = app().arg("config").output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    let want = format!("# process: uid={} gid={} groups=", id("-u"), id("-g"));
    assert!(
        first.starts_with(&want),
        "{first:?} should start with {want:?}"
    );
    for group in id("-G").split_whitespace() {
        assert!(
            first
                .split('=')
                .nth(3)
                .unwrap_or_default()
                .split(',')
                .any(|g| g == group),
            "{first} lacks group {group}"
        );
    }
}

/// The seed's ConfigMap names, copied over, are each a warning naming ours, never silence;
/// their values are neither used nor printed.
#[test]
fn the_seeds_variable_names_are_warnings_naming_ours() {
    let out = app()
        .arg("config")
        .env("NODE_ENV", "production")
        .env("ENABLE_METRICS", "false")
        .env("METRICS_PORT", "9191")
        .env("REQUEST_TIMEOUT", "31337")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (seed, ours) in [
        ("NODE_ENV", "APP_ENV"),
        ("ENABLE_METRICS", "APP_METRICS__ENABLED"),
        ("METRICS_PORT", "APP_METRICS__PORT"),
        ("REQUEST_TIMEOUT", "APP_HTTP__REQUEST_TIMEOUT"),
    ] {
        assert!(
            stderr.lines().any(
                |l| l.contains(&format!("ignoring environment variable {seed}:"))
                    && l.contains(ours)
            ),
            "no warning naming {ours} for {seed}:\n{stderr}"
        );
    }
    let text = output_text(&out);
    assert!(!text.contains("9191") && !text.contains("31337"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("port = 9090"),
        "{text}"
    );
}

/// Settings come from the defaults, then a file, then the environment.
mod precedence_is_defaults_then_file_then_env {
    use super::*;

    fn file_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
        write_config(
            dir,
            "[http]\nport = 4000\n[database]\nhost = \"db.file\"\nname = \"from_file\"\n",
        )
    }

    #[test]
    fn defaults_without_a_file() {
        let out = app().arg("config").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port = 3000"), "{text}");
    }

    #[test]
    fn a_file_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let out = app_config(&file).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port = 4000"), "{text}");
        assert!(text.contains("host = \"db.file\""), "{text}");
    }

    #[test]
    fn the_environment_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let out = app()
            .arg("config")
            .env("APP_CONFIG", &file)
            .env("APP_DATABASE__HOST", "db.env")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(text.contains("port = 4000"), "{text}");
        assert!(text.contains("host = \"db.env\""), "{text}");
        assert!(text.contains("name = \"from_file\""), "{text}");
    }
}

#[test]
fn config_redacts_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(&dir, "[jwt]\nsecret = \"file-jwt-s3cret\"\n");
    let out = app_config(&file)
        .env("APP_DATABASE__PASSWORD", "env-db-s3cret")
        .env("DATABASE_URL", "postgresql://u:url-s3cret@db/x")
        .env("LOG_LEVEL", "trace")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(text.matches("<redacted>").count(), 3, "{text}");
}

#[test]
fn unknown_key_in_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(&dir, "[database]\nhostname = \"x\"\n");
    let out = app_config(&file).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("hostname"), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
}

/// A value of the wrong type is named by its key, and never echoed.
mod bad_type_in_file_names_key_and_hides_value {
    use super::*;

    #[test]
    fn a_number_for_the_password() {
        bad_type("[database]\npassword = 12345678\n", "database.password");
    }

    #[test]
    fn a_string_for_the_port() {
        bad_type("[database]\nport = \"s3cret-port\"\n", "database.port");
    }

    fn bad_type(body: &str, key: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = write_config(&dir, body);
        let out = app_config(&file).output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains(key), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("12345678"),
            "{text}"
        );
    }
}

#[test]
fn missing_config_file_is_a_config_error() {
    let out = app()
        .args(["--config", "/nonexistent/app.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
}

#[test]
fn bad_log_level_is_a_config_error() {
    let out = app()
        .arg("config")
        .env("LOG_LEVEL", "app=loud")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("log.level"), "{text}");
}
