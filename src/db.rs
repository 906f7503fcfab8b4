//! PostgreSQL: the pool the server uses, single connections for one-shot commands, and the
//! readiness probe behind `app wait-db`.
//!
//! The probe is stronger than `pg_isready`: it is ready only when an authenticated
//! connection runs `select 1` on the configured database, and every failed attempt is
//! classified (refused, DNS, timeout, authentication, missing database, starting up, ...).

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::config::DatabaseSettings;

/// A pooled connection idle for this long is pinged before it is handed out. PostgreSQL
/// restarting (a node drained, a failover) leaves every idle connection of the pool dead;
/// unchecked, each one fails the first request that gets it after PostgreSQL is back. Busy
/// connections, reused within milliseconds, are not pinged: the hot path keeps its one
/// round trip.
const PING_IF_IDLE_FOR: Duration = Duration::from_millis(100);

/// The pool options both pools share: lazy, bounded waits, idle connections checked.
fn pool_options(settings: &DatabaseSettings, max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The server's pool: connects lazily, so `serve` starts while PostgreSQL is down and
/// recovers by itself; a short acquire timeout makes requests fail fast instead of hanging.
pub(crate) fn pool(settings: &DatabaseSettings) -> Result<PgPool, crate::config::ConfigError> {
    let mut opts = settings.connect_options()?;
    if !settings.statement_timeout.is_zero() {
        let ms = settings.statement_timeout.as_millis().to_string();
        opts = opts.options([("statement_timeout", ms.as_str())]);
    }
    Ok(pool_options(settings, settings.pool_max).connect_lazy_with(opts))
}

/// The readiness probe's own pool of one connection, kept apart from the server's so that a
/// burst of API traffic holding every pooled connection is not mistaken for an outage. Each
/// replica thus opens at most `database.pool_max` + 1 connections.
pub(crate) fn probe_pool(
    settings: &DatabaseSettings,
) -> Result<PgPool, crate::config::ConfigError> {
    Ok(pool_options(settings, 1).connect_lazy_with(settings.connect_options()?))
}

/// One dedicated connection for one-shot work (`migrate`), failing with a classified reason.
pub(crate) async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgConnection> {
    let opts = settings.connect_options()?;
    let target = settings.target()?;
    match probe_connect(&opts, settings.connect_timeout).await {
        Ok(conn) => Ok(conn),
        Err(reason) => Err(WaitError::Unreachable {
            target: target.to_string(),
            reason,
        }
        .into()),
    }
}

/// Why one attempt to reach the database failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Nothing listens on the port (yet).
    ConnectionRefused,
    /// The host name does not resolve (yet: the Service may be new).
    Dns(String),
    /// The attempt took longer than its timeout.
    Timeout,
    /// The server refused the user or password.
    AuthFailed(String),
    /// pg_hba.conf has no entry for this connection (host, user, TLS).
    NotAllowed(String),
    /// The server runs but the database does not exist.
    DatabaseMissing(String),
    /// The server is starting up, shutting down or in recovery.
    StartingUp,
    /// The server has no free connection slots.
    TooManyConnections,
    /// TLS could not be negotiated.
    Tls(String),
    /// The connection settings cannot be used at all (the driver refused them before
    /// connecting, e.g. a password with a newline in it): retrying cannot help.
    Configuration(String),
    /// Anything else, with the driver's message.
    Other(String),
}

impl NotReady {
    /// A short machine-friendly name for logs.
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::ConnectionRefused => "connection_refused",
            NotReady::Dns(_) => "dns_failure",
            NotReady::Timeout => "timeout",
            NotReady::AuthFailed(_) => "authentication_failed",
            NotReady::NotAllowed(_) => "not_allowed",
            NotReady::DatabaseMissing(_) => "database_does_not_exist",
            NotReady::StartingUp => "server_starting_up",
            NotReady::TooManyConnections => "too_many_connections",
            NotReady::Tls(_) => "tls_failure",
            NotReady::Configuration(_) => "unusable_settings",
            NotReady::Other(_) => "other",
        }
    }

    /// Classifies a driver error.
    pub fn from_sqlx(err: &sqlx::Error) -> NotReady {
        match err {
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => NotReady::ConnectionRefused,
                std::io::ErrorKind::TimedOut => NotReady::Timeout,
                _ => {
                    let msg = io.to_string();
                    if msg.contains("lookup")
                        || msg.contains("Name or service not known")
                        || msg.contains("Temporary failure in name resolution")
                        || msg.contains("No address associated")
                        || msg.contains("nodename nor servname")
                    {
                        NotReady::Dns(msg)
                    } else {
                        NotReady::Other(msg)
                    }
                }
            },
            sqlx::Error::Tls(e) => NotReady::Tls(e.to_string()),
            sqlx::Error::Database(db) => {
                let msg = db.message().to_owned();
                match db.code().as_deref() {
                    Some("28P01") => NotReady::AuthFailed(msg),
                    Some("28000") if msg.contains("pg_hba.conf") => NotReady::NotAllowed(msg),
                    Some("28000") => NotReady::AuthFailed(msg),
                    Some("3D000") => NotReady::DatabaseMissing(msg),
                    Some("57P03") | Some("57P01") | Some("57P02") => NotReady::StartingUp,
                    Some("53300") => NotReady::TooManyConnections,
                    Some(code) => NotReady::Other(format!("{msg} (SQLSTATE {code})")),
                    None => NotReady::Other(msg),
                }
            }
            sqlx::Error::PoolTimedOut => NotReady::Timeout,
            sqlx::Error::Configuration(e) => NotReady::Configuration(e.to_string()),
            other => {
                let msg = other.to_string();
                if msg.contains("TLS") || msg.contains("SSL") {
                    NotReady::Tls(msg)
                } else {
                    NotReady::Other(msg)
                }
            }
        }
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::ConnectionRefused => {
                f.write_str("connection refused: nothing listens on that host and port yet")
            }
            NotReady::Dns(m) => write!(f, "DNS failure: the host name does not resolve ({m})"),
            NotReady::Timeout => f.write_str("timeout: the server did not answer in time"),
            NotReady::AuthFailed(m) => write!(
                f,
                "authentication failed ({m}): check database.user and the password \
                 (APP_DATABASE__PASSWORD or the sealed DATABASE_PASSWORD)"
            ),
            NotReady::NotAllowed(m) => write!(
                f,
                "connection not allowed by the server ({m}): check pg_hba.conf, or set \
                 database.sslmode=require if the server only accepts TLS"
            ),
            NotReady::DatabaseMissing(m) => write!(
                f,
                "database does not exist ({m}): check database.name or create it"
            ),
            NotReady::StartingUp => f.write_str("server starting up (or shutting down)"),
            NotReady::TooManyConnections => f.write_str("too many connections on the server"),
            NotReady::Tls(m) => write!(f, "TLS failure: {m}"),
            NotReady::Configuration(m) => write!(
                f,
                "the driver refused the settings ({m}); a password may not hold control \
                 characters such as a newline (often the end of the file it was sealed or set \
                 from): fix APP_DATABASE__PASSWORD or reseal DATABASE_PASSWORD without it"
            ),
            NotReady::Other(m) => f.write_str(m),
        }
    }
}

/// Why waiting for, or connecting to, the database failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The database was not ready before the deadline.
    #[error("database {target} not ready after {}s ({attempts} attempts); last reason: {last}", .after.as_secs_f32().round())]
    Timeout {
        /// `user@host:port/name`.
        target: String,
        /// How long we waited.
        after: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// Why the last attempt failed.
        last: NotReady,
    },
    /// The settings can never connect (the driver refused them): not retried.
    #[error("cannot use the settings for database {target}: {reason}")]
    Unusable {
        /// `user@host:port/name`.
        target: String,
        /// What the driver refused.
        reason: NotReady,
    },
    /// A one-shot connection failed.
    #[error("cannot connect to database {target}: {reason}")]
    Unreachable {
        /// `user@host:port/name`.
        target: String,
        reason: NotReady,
    },
}

/// How `wait_until_ready` paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitPolicy {
    /// Give up after this long.
    pub timeout: Duration,
    /// First pause between attempts; doubles each time.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Longest a single attempt may take.
    pub attempt_timeout: Duration,
}

/// Connects and runs `select 1`, within `timeout`.
async fn probe_connect(
    opts: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, NotReady> {
    let attempt = async {
        let mut conn = opts.connect().await.map_err(|e| NotReady::from_sqlx(&e))?;
        sqlx::query("select 1")
            .execute(&mut conn)
            .await
            .map_err(|e| NotReady::from_sqlx(&e))?;
        Ok(conn)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(NotReady::Timeout),
    }
}

/// Tries until an authenticated `select 1` succeeds or the policy's timeout passes, logging
/// one line per failed attempt. Returns the number of attempts it took.
pub(crate) async fn wait_until_ready(
    settings: &DatabaseSettings,
    policy: WaitPolicy,
) -> anyhow::Result<u32> {
    let opts = settings.connect_options()?;
    let target = settings.target()?.to_string();
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let mut backoff = policy.initial_backoff;
    let mut attempt = 0;
    let mut previous: Option<NotReady> = None;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cut_short = remaining < policy.attempt_timeout;
        let result = probe_connect(&opts, policy.attempt_timeout.min(remaining)).await;
        let reason = match result {
            Ok(conn) => {
                let _ = conn.close().await;
                tracing::info!(
                    database = %target,
                    attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "database ready"
                );
                return Ok(attempt);
            }
            // An attempt the deadline cut short says nothing new: keep the reason before it
            // (a wrong password must still be reported as such, not as a timeout).
            Err(NotReady::Timeout) if cut_short && previous.is_some() => {
                previous.take().expect("checked")
            }
            Err(reason @ NotReady::Configuration(_)) => {
                return Err(WaitError::Unusable { target, reason }.into());
            }
            Err(reason) => reason,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WaitError::Timeout {
                target,
                after: started.elapsed(),
                attempts: attempt,
                last: reason,
            }
            .into());
        }
        let pause = backoff.min(remaining);
        tracing::warn!(
            database = %target,
            attempt,
            reason = reason.code(),
            detail = %reason,
            retry_in_ms = pause.as_millis() as u64,
            "database not ready"
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(policy.max_backoff);
        previous = Some(reason);
    }
}

/// Whether the error is (or wraps) a connection-level failure rather than a query error:
/// the server maps those to 503.
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(_) => matches!(
            NotReady::from_sqlx(err),
            NotReady::StartingUp | NotReady::TooManyConnections | NotReady::AuthFailed(_)
        ),
        _ => false,
    }
}
