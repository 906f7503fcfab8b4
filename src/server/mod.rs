//! The HTTP server behind `app serve`: routes, middleware, the metrics listener and the
//! graceful shutdown Kubernetes needs.
//!
//! The API's connections are accepted and served by `conn` (header, keep-alive and write
//! timeouts, a cap on connections, h2c only when enabled), not by `poem::Server`, which has
//! none of these; the metrics listener, internal, still uses poem's.
//!
//! The API's routes come from [`crate::api::service`], the docs routes from `docs`; what the
//! spec tells about paths (the route template a metric or log line names, the `Allow` of a
//! 405) is read in `routes`; the one middleware (`middleware`) hands every failure to
//! [`ApiError`], which alone writes the JSON error shape.
//!
//! Shutdown, on SIGTERM or SIGINT: `/ready` turns 503 at once; the listener keeps serving for
//! `http.shutdown_grace` so that Kubernetes has time to take the pod out of its endpoints
//! (until then, new connections still arrive); then it stops accepting and in-flight
//! requests get up to `http.shutdown_timeout` to finish.

mod conn;
mod docs;
mod headers;
pub(crate) mod metrics;
mod middleware;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::CatchPanic;
use poem::{EndpointExt, Route};

use crate::api::{self, ApiError, AppState, Readiness, State};
use crate::auth::{JwtKeys, PasswordHasher, WeakSecret};
use crate::config::{AuthSettings, Settings};
use crate::migrate::MigrateError;

pub(crate) use metrics::Metrics;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind (port in use, no permission, bad address).
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `the API` or `metrics`.
        what: &'static str,
        /// The address asked for (`http.host`/`http.port` or `metrics.host`/`metrics.port`).
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The JWT secret is unusable in this environment.
    #[error(transparent)]
    Jwt(#[from] WeakSecret),
    /// The database settings are invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The schema is older than this binary's migrations.
    #[error(transparent)]
    Schema(#[from] MigrateError),
}

/// A server with its listeners bound, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    limits: conn::Limits,
    conn_stats: conn::ConnStats,
    metrics_acceptor: Option<TcpAcceptor>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: State,
    metrics: Option<Arc<Metrics>>,
    observe: middleware::Observe,
    grace: Duration,
    drain: Duration,
}

/// Connections the kernel may queue before they are accepted. tokio's default, 1024, is
/// overrun by one client opening and resetting connections in a loop: past it, new
/// connections' SYNs are dropped and a liveness probe waits a whole second for its
/// retransmission. Linux caps it at `net.core.somaxconn` (4096 on current kernels).
const LISTEN_BACKLOG: u32 = 4096;

/// The API's listening socket, with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's own bind do on Unix: a restarted server can bind at once while
    // the old one's connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpAcceptor, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let acceptor = TcpListener::bind(addr).into_acceptor().await.map_err(err)?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((acceptor, local))
}

impl Server {
    /// Builds the state (pool, keys) and binds the listeners. Nothing is served yet.
    pub async fn bind(settings: &Settings) -> Result<Server, StartError> {
        let jwt = JwtKeys::from_settings(&settings.jwt, settings.env)?;
        if jwt.is_short() {
            tracing::warn!(
                "jwt.secret is shorter than {} bytes: fine for dev, refused in prod",
                crate::auth::MIN_SECRET_BYTES
            );
        }
        if jwt.is_ephemeral() {
            tracing::warn!(
                "jwt.secret is not set: using a random secret for this process; tokens will not \
                 survive a restart or work on another replica (set APP_JWT__SECRET or seal \
                 JWT_SECRET)"
            );
        }
        let pool = crate::db::pool(&settings.database)?;
        let hasher = hasher_for(&settings.auth);
        let info = api::info::InfoBody::from_settings(settings)?;
        let state = Arc::new(AppState {
            pool: pool.clone(),
            jwt,
            hasher,
            readiness: Readiness::default(),
            info,
            public_emails: settings.api.public_emails,
            limits: api::limits_from(&settings.rate),
            probe: crate::db::probe_pool(&settings.database)?,
            large_pages: api::users::LargePages::new(&settings.api),
        });

        let http = &settings.http;
        let api_addr = SocketAddr::new(http.host, http.port);
        let listener = listen(api_addr).map_err(|source| StartError::Bind {
            what: "the API",
            addr: api_addr,
            source,
        })?;
        let addr = listener.local_addr().unwrap_or(api_addr);
        let conn_stats = conn::ConnStats::default();
        let (metrics, metrics_acceptor, metrics_addr) = if settings.metrics.enabled {
            let m = &settings.metrics;
            let (acceptor, addr) = bind("metrics", SocketAddr::new(m.host, m.port)).await?;
            (
                Some(Arc::new(
                    Metrics::new(pool)
                        .with_hashing(state.hasher.stats())
                        .with_connections(&conn_stats),
                )),
                Some(acceptor),
                Some(addr),
            )
        } else {
            (None, None, None)
        };
        Ok(Server {
            listener,
            limits: conn::Limits::from_settings(http),
            conn_stats,
            metrics_acceptor,
            addr,
            metrics_addr,
            observe: middleware::Observe {
                body_limit: http.body_limit,
                timeout: http.request_timeout,
                log_requests: settings.log.requests,
                log_probes: settings.log.probes,
                metrics: metrics.clone(),
                shutdown: Some(state.clone()),
            },
            state,
            metrics,
            grace: http.shutdown_grace,
            drain: http.shutdown_timeout,
        })
    }

    /// The API's bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's bound address, when metrics are enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Refuses to go on when the schema is behind this binary. When the database cannot be
    /// reached the check is left to `/ready` (the pool recovers by itself), with a warning.
    pub(crate) async fn check_schema(&self, within: Duration) -> Result<(), StartError> {
        let check = async {
            let mut conn = self.state.pool.acquire().await?;
            crate::migrate::schema_status(&mut conn).await
        };
        match tokio::time::timeout(within, check).await {
            Ok(Ok(status)) => {
                status.ensure_current()?;
                self.state.readiness.set_schema_current();
                Ok(())
            }
            Ok(Err(MigrateError::Database(e))) if crate::db::is_unavailable(&e) => {
                tracing::warn!(
                    "database unavailable at start ({e}); /ready reports 503 until it answers"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                tracing::warn!(
                    "database did not answer at start; /ready reports 503 until it does"
                );
                Ok(())
            }
        }
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Server {
            listener,
            limits,
            conn_stats,
            metrics_acceptor,
            addr,
            metrics_addr,
            state,
            metrics,
            observe,
            grace,
            drain,
        } = self;
        let app = docs::routes(Route::new())
            .nest("/", api::service())
            .data(state.clone())
            .with(CatchPanic::new().with_handler(panic_response))
            .with(observe);

        let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
        let metrics_task = match (metrics, metrics_acceptor) {
            (Some(metrics), Some(acceptor)) => {
                let mut stopped = stopped_rx.clone();
                Some(tokio::spawn(
                    poem::Server::new_with_acceptor(acceptor)
                        .name("metrics")
                        .run_with_graceful_shutdown(
                            metrics::routes(metrics),
                            async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            },
                            Some(Duration::from_secs(1)),
                        ),
                ))
            }
            _ => None,
        };
        tracing::info!(
            %addr,
            metrics = %metrics_addr.map_or("disabled".to_owned(), |a| a.to_string()),
            "serving; Swagger UI at /docs"
        );

        let readiness_state = state.clone();
        let signal = async move {
            shutdown.await;
            readiness_state.readiness.begin_shutdown();
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutdown requested: /ready now answers 503; still serving during the grace period"
            );
            tokio::time::sleep(grace).await;
            tracing::info!(
                drain_timeout_ms = drain.as_millis() as u64,
                "grace period over: no longer accepting connections, draining in-flight requests"
            );
        };
        conn::serve(
            listener,
            Arc::new(poem::endpoint::ToDynEndpoint(app)),
            limits,
            conn_stats,
            signal,
            drain,
        )
        .await;

        let _ = stopped_tx.send(true);
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        let closing = async { tokio::join!(state.pool.close(), state.probe.close()) };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
        tracing::info!("server stopped");
        Ok(())
    }
}

/// The hasher `auth` describes: `hash_concurrency` 0 is one slot per CPU.
fn hasher_for(auth: &AuthSettings) -> PasswordHasher {
    let slots = match auth.hash_concurrency {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    PasswordHasher::bounded(slots, auth.hash_queue)
}

fn panic_response(panic: Box<dyn std::any::Any + Send>) -> poem::Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let err = ApiError::Internal(anyhow::anyhow!("handler panicked: {message}"));
    err.log("-", "panic");
    err.response()
}

/// Resolves on the first SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM ({e}); only SIGINT will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown signal received");
}
