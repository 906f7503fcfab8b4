//! discbaboons `app`: one static binary that replaces pg_isready, Flyway, Express and Sealed
//! Secrets. See the README for the commands and their exit codes.
#![warn(unreachable_pub, missing_docs)]

/// The HTTP API: one module per resource, one error type, described by poem-openapi.
pub mod api;
/// Accounts' cryptography: argon2id password hashes and HS256 JSON Web Tokens.
pub(crate) mod auth;
/// Encrypted `pg_dump` backups: create, list, prune, verify, open, and the restore drill.
pub mod backup;
/// Version and git commit of this build.
pub(crate) mod build_info;
/// The command line: one module per subcommand, dispatched from `main`, and the exit codes.
pub mod cli;
/// Typed settings, loaded once from defaults, a file, the environment and sealed secrets.
pub mod config;
/// PostgreSQL connections: the pool, one-shot connections, and the wait-db probe.
pub(crate) mod db;
/// Domain values that validate on construction: usernames, emails, passwords, profiles.
pub(crate) mod domain;
/// Embedded, Flyway-compatible schema migrations that many replicas can run at once.
pub mod migrate;
/// Database roles: the NOLOGIN owner and runtime roles, login pairs that rotate, grants.
pub(crate) mod roles;
/// Sealed secrets: age-encrypted values in git, decrypted in memory in the pod.
pub mod secrets;
/// The HTTP server: routes, middleware, metrics listener, graceful shutdown.
pub mod server;
/// The tracing subscriber: pretty in dev, JSON lines in prod, non-blocking.
pub mod telemetry;
