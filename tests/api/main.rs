//! The API against real PostgreSQL: every endpoint's success and failure paths, the account
//! flow, tokens, the JSON error shape, Swagger UI, metrics and the committed spec; and
//! `app serve` as a process, as Kubernetes runs it (`serve_lifecycle`).
//!
//! Each in-process test gets a fresh, migrated database and a server on a random port
//! (`spawn_app`). Every response body passes through a check that no password hash leaks.

#[path = "../support/mod.rs"]
mod support;

mod account;
mod auth;
mod errors;
mod hashing;
mod headers;
mod health;
mod helpers;
mod http_limits;
mod info;
mod metrics;
mod ratelimit;
mod revocation;
mod rotation;
mod serve_lifecycle;
mod spec;
mod users;
