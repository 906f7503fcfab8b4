//! Prometheus metrics, served as text on their own port so that the API port never exposes
//! them: request count and latency by method, route template and status; the pool's size
//! and idle connections; the password hashes queued, running and refused; the API's
//! connections open, refused and timed out; the build.

use std::sync::Arc;

use poem::http::Method;
use poem::web::Data;
use poem::{EndpointExt, IntoEndpoint, Response, Route, handler};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::auth::HashStats;
use crate::build_info;

/// The labels of the request metrics. The route is the template (`/api/users/:username`),
/// never the path, so that the number of series stays bounded.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: Arc<str>,
    /// The response status.
    pub status: u16,
}

fn histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Every metric, and the registry that renders them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool: PgPool,
}

impl Metrics {
    /// Registers every metric; the pool is read at each scrape.
    pub(crate) fn new(pool: PgPool) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let latency = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        let pool_size = Gauge::default();
        let pool_idle = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            latency.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Connections the database pool holds (busy and idle)",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle connections in the database pool",
            pool_idle.clone(),
        );
        registry.register(
            "app_build",
            "The version and commit of the running binary",
            Info::new(vec![
                ("version", build_info::VERSION),
                ("commit", build_info::COMMIT),
            ]),
        );
        Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_idle,
            pool,
        }
    }

    /// Also renders what the password hasher is doing: hashes waiting, running and refused.
    pub(crate) fn with_hashing(mut self, stats: &HashStats) -> Metrics {
        self.registry.register(
            "argon2_hashes_queued",
            "Password hashes waiting for a slot",
            stats.queued.clone(),
        );
        self.registry.register(
            "argon2_hashes_in_flight",
            "Password hashes running, whether or not their client still waits",
            stats.in_flight.clone(),
        );
        self.registry.register(
            "argon2_hashes_rejected",
            "Password hashes refused with 503 because the queue was full",
            stats.rejected.clone(),
        );
        self
    }

    /// Also renders the API's connections: open, refused past the cap, closed by a timeout.
    pub(crate) fn with_connections(mut self, stats: &super::conn::ConnStats) -> Metrics {
        self.registry.register(
            "http_connections_open",
            "API connections being served (at most http.max_connections)",
            stats.open.clone(),
        );
        self.registry.register(
            "http_connections_refused",
            "API connections past http.max_connections (answered 503, or closed at once)",
            stats.refused.clone(),
        );
        self.registry.register(
            "http_connections_header_timeouts",
            "API connections closed because a request head took longer than http.header_timeout",
            stats.header_timeouts.clone(),
        );
        self.registry.register(
            "http_connections_write_timeouts",
            "API connections dropped because the client read nothing for http.write_timeout",
            stats.write_timeouts.clone(),
        );
        self
    }

    /// Records one answered request.
    pub(crate) fn observe(&self, method: &Method, route: Arc<str>, status: u16, seconds: f64) {
        let labels = HttpLabels {
            method: method_label(method),
            route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition, with the pool gauges read now.
    pub(crate) fn render(&self) -> String {
        self.pool_size.set(i64::from(self.pool.size()));
        self.pool_idle.set(self.pool.num_idle() as i64);
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[handler]
fn scrape(metrics: Data<&Arc<Metrics>>) -> Response {
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render())
}

/// The metrics listener's routes: `/metrics` only.
pub(crate) fn routes(metrics: Arc<Metrics>) -> impl IntoEndpoint {
    Route::new().at("/metrics", scrape).data(metrics)
}
