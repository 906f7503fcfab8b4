//! Proofs: the claims of the README tested under pressure, each bounded in count and time.
//! Migrations under races and crashes (`migrate`), a database outage under load (`outage`),
//! one anonymous client against the server's limits (`limits`, `logins`), property tests of the
//! parsers (`parsers`), a rolling restart behind nginx (`rolling`), three database password
//! rotations under load behind nginx (`db_rotation`), a JWT key rotation through two
//! rollouts under load (`jwt_rotation`), and secrets against hostile files and trace-level
//! logs (`secrets`).
//!
//! They need nginx (`scripts/setup.sh` installs it) besides PostgreSQL.

#[path = "../support/mod.rs"]
mod support;

mod db_rotation;
mod jwt_rotation;
mod limits;
mod logins;
mod migrate;
mod outage;
mod parsers;
mod rolling;
mod secrets;
