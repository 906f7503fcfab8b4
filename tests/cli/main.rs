//! The `app` binary's one-shot commands as a user and an init container run them: `config`
//! and `--version`, `wait-db`, `migrate` (Flyway-compatible) and `seal`.

#[path = "../support/mod.rs"]
mod support;

mod config;
mod migrate;
mod seal;
mod wait_db;
