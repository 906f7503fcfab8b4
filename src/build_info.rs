//! What this binary is: its version and the commit it was built from.

/// The crate version, from `Cargo.toml`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit the binary was built from (`unknown` outside a checkout).
pub(crate) const COMMIT: &str = env!("APP_GIT_COMMIT");

/// `0.1.0 (commit 1234abcd5678)`: what `app --version` prints after the name.
pub(crate) const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("APP_GIT_COMMIT"),
    ")"
);
