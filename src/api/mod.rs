//! The HTTP API, described by poem-openapi: one module per resource, one error type.
//!
//! The route modules (`health`, `info`, `users`, `account`, `auth`) never import each other:
//! what several of them need is in a module of its own ([`bodies`] for the bodies they
//! answer with, `queries` for the SQL they share, `input` and `strict` for reading request
//! fields, [`security`] for the bearer token, [`error`] for the one error type).
//! [`spec`] assembles the APIs into the spec and adds what the derive cannot know.
//!
//! The API types are unit structs so that the spec can be produced without a database
//! ([`service`], `app openapi`); handlers get the shared [`AppState`] as request data.

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod bodies;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod info;
mod input;
mod limits;
mod queries;
pub(crate) mod security;
pub(crate) mod spec;
mod strict;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use poem_openapi::Tags;
use sqlx::PgPool;

use crate::auth::{JwtKeys, PasswordHasher};

pub(crate) use error::{ApiError, ErrorBody, RETRY_AFTER_SECS};
pub(crate) use spec::{Apis, service};
pub use spec::{spec_json, spec_yaml};

/// Swagger UI's groups.
#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Liveness and readiness probes for Kubernetes and Docker.
    Health,
    /// What this instance is and how it is configured (never secret values).
    Info,
    /// Public user directory: users with their profiles.
    Users,
    /// Registration and login.
    Auth,
    /// The signed-in user's own account; needs a bearer token from `/api/auth/login`.
    Account,
}

/// Everything the handlers share, built once by the server.
pub(crate) struct AppState {
    /// The lazy pool: requests fail fast with 503 while PostgreSQL is down.
    pub pool: PgPool,
    /// Token signing and verification.
    pub jwt: JwtKeys,
    /// Password hashing, bounded in concurrency.
    pub hasher: PasswordHasher,
    /// What `/ready` reports.
    pub readiness: Readiness,
    /// The body of `/api/info`, computed once from the settings.
    pub info: info::InfoBody,
    /// Whether the public directory shows emails (`api.public_emails`).
    pub(crate) public_emails: bool,
    /// Rate limits on the operations that check a password.
    pub(crate) limits: limits::Limits,
    /// A pool of one connection for `/ready` alone, so that API traffic holding every
    /// connection of `pool` never reads as "the database is down".
    pub(crate) probe: PgPool,
    /// The turns of large `/api/users` pages (`api.large_page_concurrency`).
    pub(crate) large_pages: users::LargePages,
}

/// The rate limits `rate` describes, for the server to put in the state.
pub(crate) fn limits_from(rate: &crate::config::RateSettings) -> limits::Limits {
    limits::Limits::from_settings(rate)
}

/// Shared handle to the state, as request data.
pub(crate) type State = Arc<AppState>;

/// The readiness flags behind `/ready`.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    shutting_down: AtomicBool,
    schema_current: AtomicBool,
}

impl Readiness {
    /// Marks the start of shutdown: `/ready` answers 503 from now on.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Records that the schema was found current (it stays so: migrations only move forward).
    pub(crate) fn set_schema_current(&self) {
        self.schema_current.store(true, Ordering::Relaxed);
    }

    /// Whether the schema has been found current.
    pub(crate) fn schema_known_current(&self) -> bool {
        self.schema_current.load(Ordering::Relaxed)
    }
}
