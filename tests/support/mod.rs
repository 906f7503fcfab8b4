//! Shared helpers for the integration tests: throwaway PostgreSQL clusters and a clean way to
//! run the `app` binary. Each test binary includes this with `mod support;`.
#![allow(dead_code)]

pub mod pg;

use std::process::{Command, Output};

#[allow(unused_imports)]
pub use pg::{Cluster, TestDb, free_port};

/// The `app` binary under test, with an environment cleared of anything that could steer it
/// (`APP_*`, `DATABASE_URL`, `PORT`, `LOG_LEVEL`, `PG*`), logs in plain text.
pub fn app() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_app"));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("APP_")
            || key.starts_with("PG")
            || ["DATABASE_URL", "PORT", "LOG_LEVEL"].contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("APP_LOG__FORMAT", "pretty");
    if let Ok(level) = std::env::var("TEST_LOG") {
        cmd.env("LOG_LEVEL", level);
    }
    cmd
}

/// Stdout and stderr of a finished command, as one string for assertions and messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
