//! The `app` binary's one-shot commands as a user and an init container run them: `config`
//! and `--version`, `wait-db`, `migrate` (Flyway-compatible), `seal`, `db roles` and `backup`; and the test
//! harness itself (`harness`: where the throwaway clusters keep their files) and the shape of
//! `src/` (`layout`: no import cycle, no library module using `cli`).

#[path = "../support/mod.rs"]
mod support;

mod backup;
mod config;
mod harness;
mod layout;
mod migrate;
mod roles;
mod seal;
mod wait_db;
