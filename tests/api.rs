//! The API against real PostgreSQL: every endpoint's success and failure paths, the account
//! flow, tokens, the JSON error shape, Swagger UI, metrics and the committed spec.
//!
//! Each test gets a fresh, migrated database and an in-process server on a random port
//! (`spawn_app`). Every response body passes through a check that no password hash leaks.

#[path = "support/mod.rs"]
mod support;

#[path = "api/account.rs"]
mod account;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/hashing.rs"]
mod hashing;
#[path = "api/headers.rs"]
mod headers;
#[path = "api/health.rs"]
mod health;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/info.rs"]
mod info;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/ratelimit.rs"]
mod ratelimit;
#[path = "api/revocation.rs"]
mod revocation;
#[path = "api/spec.rs"]
mod spec;
#[path = "api/users.rs"]
mod users;
