//! The one middleware every request passes: request id, body limit, timeout, JSON errors,
//! metrics and the request log line. One layer instead of six keeps the per-request cost to
//! a clock read, a header or two and one log line.
//!
//! It decides when a request has failed, not what the client reads then: every failure
//! becomes an [`ApiError`], which makes the JSON error response; the route template and the
//! `Allow` header come from `routes`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};

use super::metrics::Metrics;
use super::routes::{allowed_methods, route_of, unmatched};
use crate::api::ApiError;

/// The header carrying the request id, read from the client and echoed back.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Settings of [`Observe`].
#[derive(Clone)]
pub(super) struct Observe {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest a request may take.
    pub timeout: Duration,
    /// Write one log line per request.
    pub log_requests: bool,
    /// Also for successful probes (`/health`, `/ready`); failed ones are always logged.
    pub log_probes: bool,
    /// Where request metrics go, when enabled.
    pub metrics: Option<Arc<Metrics>>,
    /// Whose readiness tells when shutdown has begun: from then on every response carries
    /// `Connection: close`, so that a keep-alive client (a proxy such as nginx) stops reusing
    /// its connection after this answer. Otherwise the connection sits idle until the listener
    /// closes it, and a request the proxy sends on it at that moment is lost: a proxy never
    /// retries a POST or PATCH it has sent.
    pub shutdown: Option<crate::api::State>,
}

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ObserveEndpoint {
            inner,
            config: self.clone(),
            ids: RequestIds::new(),
        }
    }
}

/// Request ids: a random per-process prefix and a counter. Unique enough to find a request in
/// the logs of many replicas, and costs an atomic increment.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:08x}-{n:x}", self.prefix))
            .expect("hex digits are a valid header value")
    }
}

/// A client's request id is used when it is short and printable; otherwise a new one is made.
fn client_id(req: &Request) -> Option<HeaderValue> {
    let value = req.headers().get(REQUEST_ID)?;
    let ok =
        (1..=128).contains(&value.len()) && value.as_bytes().iter().all(|b| b.is_ascii_graphic());
    ok.then(|| value.clone())
}

/// The endpoint [`Observe`] wraps around the routes.
pub(super) struct ObserveEndpoint<E> {
    inner: E,
    config: Observe,
    ids: RequestIds,
}

impl<E: Endpoint> ObserveEndpoint<E> {
    /// Reads a body sent without `Content-Length` (chunked), up to the limit.
    async fn limit_body(&self, req: &mut Request) -> Result<(), ApiError> {
        let limit = self.config.body_limit;
        if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or(u64::MAX);
            return if len > limit as u64 {
                Err(ApiError::body_too_large(limit))
            } else {
                Ok(())
            };
        }
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let bytes = req
            .take_body()
            .into_bytes_limit(limit)
            .await
            .map_err(|e| ApiError::unreadable_body(e, limit))?;
        req.set_body(Body::from_bytes(bytes));
        Ok(())
    }
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let request_id = client_id(&req).unwrap_or_else(|| self.ids.next());
        let method = req.method().clone();
        let uri = req.uri().clone();

        // The body is read inside the timeout: a client dripping a chunked body must not
        // hold the request longer than one that sends it at once.
        let answer = async {
            self.limit_body(&mut req).await.map_err(|err| (err, None))?;
            match self.inner.call(req).await {
                Ok(resp) => Ok(resp.into_response()),
                Err(err) => {
                    let route = route_of(err.data(), err.data());
                    Err((ApiError::from_poem(err), route))
                }
            }
        };
        let outcome = match tokio::time::timeout(self.config.timeout, answer).await {
            Ok(outcome) => outcome,
            Err(_) => Err((ApiError::Timeout, None)),
        };

        let (mut resp, route) = match outcome {
            Ok(resp) => {
                let route = route_of(resp.data(), resp.data());
                (ApiError::normalize(resp), route)
            }
            Err((err, route)) => {
                let id = request_id.to_str().unwrap_or_default();
                err.log(id, route.as_deref().unwrap_or("unmatched"));
                (err.response(), route)
            }
        };
        let route = route.unwrap_or_else(unmatched);
        super::headers::secure(&mut resp, &route);
        resp.headers_mut().insert(REQUEST_ID, request_id.clone());
        if self
            .config
            .shutdown
            .as_ref()
            .is_some_and(|state| state.readiness.is_shutting_down())
        {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = allowed_methods(uri.path())
        {
            // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
            resp.headers_mut().insert(header::ALLOW, allow);
        }

        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        if let Some(metrics) = &self.config.metrics {
            metrics.observe(&method, route.clone(), status, elapsed.as_secs_f64());
        }
        let quiet_probe =
            !self.config.log_probes && status < 400 && matches!(&*route, "/health" | "/ready");
        if self.config.log_requests && !quiet_probe {
            tracing::info!(
                target: "app::http",
                method = %method,
                route = &*route,
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = request_id.to_str().unwrap_or_default(),
                "request"
            );
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use poem::{EndpointExt, Route, get, handler};

    use super::*;

    #[handler]
    fn boom() -> &'static str {
        panic!("the handler fell over")
    }

    #[handler]
    fn failing() -> poem::Result<&'static str> {
        Err(ApiError::Internal(anyhow::anyhow!("connection string postgres://u:hunter2@db")).into())
    }

    #[handler]
    fn plain_teapot() -> Response {
        Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body("short and stout")
    }

    async fn call(path: &str) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let app = Route::new()
            .at("/boom", get(boom))
            .at("/failing", get(failing))
            .at("/teapot", get(plain_teapot))
            .with(poem::middleware::CatchPanic::new().with_handler(super::super::panic_response))
            .with(Observe {
                body_limit: 16,
                timeout: Duration::from_secs(5),
                log_requests: false,
                log_probes: false,
                metrics: None,
                shutdown: None,
            });
        let resp = app
            .get_response(Request::builder().uri(path.parse().unwrap()).finish())
            .await;
        let status = resp.status();
        let id = resp.headers().get(REQUEST_ID).cloned();
        let body = resp.into_body().into_string().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        (status, json, id)
    }

    #[tokio::test]
    async fn panics_and_internal_errors_are_generic_json_500s() {
        for path in ["/boom", "/failing"] {
            let (status, body, id) = call(path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body["error"], "internal_error");
            assert_eq!(body["message"], "internal error", "no details leak");
            assert!(id.is_some());
        }
    }

    #[tokio::test]
    async fn plain_text_errors_are_rewritten_to_the_json_shape() {
        let (status, body, _) = call("/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body["error"], "error");
        let (status, body, _) = call("/missing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
    }

    #[test]
    fn client_request_ids_must_be_short_and_printable() {
        let with = |v: &str| {
            let req = Request::builder().header(REQUEST_ID, v).finish();
            client_id(&req)
        };
        assert!(with("abc-123").is_some());
        assert!(with(&"x".repeat(129)).is_none());
        assert!(with("has space").is_none());
    }
}
