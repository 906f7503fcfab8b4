//! Records the git commit this binary was built from, for `app --version` and `/api/info`.
//!
//! A Docker build has no `.git`; it passes the commit in `APP_GIT_COMMIT` instead.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=APP_GIT_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("APP_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=APP_GIT_COMMIT={commit}");
}
