//! discbaboons `app`: one static binary that replaces pg_isready, Flyway, Express and Sealed
//! Secrets. See the README for the commands and `../shared/DESIGN.md` for the why.

/// Version and git commit of this build.
pub mod build_info;
/// The command line: one module per subcommand, dispatched from `main`.
pub mod cli;
/// Typed settings, loaded once from defaults, a file, the environment and sealed secrets.
pub mod config;
/// PostgreSQL connections: the pool, one-shot connections, and the wait-db probe.
pub mod db;
/// Exit codes: one enum, one table in the README.
pub mod exit;
/// Embedded, Flyway-compatible schema migrations that many replicas can run at once.
pub mod migrate;
/// Sealed secrets: age-encrypted values in git, decrypted in memory in the pod.
pub mod secrets;
/// The tracing subscriber: pretty in dev, JSON lines in prod, non-blocking.
pub mod telemetry;
