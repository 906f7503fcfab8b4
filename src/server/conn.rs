//! The API's connections, accepted and served here rather than by `poem::Server`, which has
//! no header read timeout, no write timeout, no cap on connections, always offers h2c and
//! retries a failing `accept` at once (at the file-descriptor limit it spins).
//!
//! Every connection is watched through one small state machine, fed by its socket and its
//! requests:
//!
//! - *head*: from the accept, or from the first byte after an idle pause, the client has
//!   `http.header_timeout` to send the whole request head, or the connection is closed
//!   (slowloris);
//! - *busy*: a request is being answered; its body is read inside `http.request_timeout`
//!   (the middleware's), so a dripped body cannot outlast it;
//! - *idle*: between requests; after `http.keep_alive_timeout` the connection is closed;
//! - and whenever a write makes no progress for `http.write_timeout` (a client that does not
//!   read its response), the connection is dropped with what it still had to send.
//!
//! At most `http.max_connections` are served. Past the cap a connection is still answered,
//! once, by a small fixed budget of [`OVERFLOW`] handlers: `GET /health` as usual (so that
//! the liveness probe does not restart a pod that is only busy), anything else a 503 with
//! `Retry-After`, then closed. Past those too, it is closed at once. Both are counted.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::endpoint::DynEndpoint;
use poem::http::uri::Scheme;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::api::ApiError;
use crate::config::HttpSettings;

/// Connections past the cap answered at once (with `/health` or a 503); past these, closed.
pub(crate) const OVERFLOW: usize = 32;
/// How long an overflow connection has to send its one request.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head, and the most hyper buffers per connection: bounds the memory a
/// client that sends huge headers slowly can pin (nginx allows 4 x 8 KiB).
const MAX_BUF: usize = 32 * 1024;
/// Pause after a failed `accept` that is not the client's doing (`EMFILE`, `ENFILE`,
/// `ENOMEM`): the queued connection waits in the kernel instead of the loop spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of the API's connections, from the `http` settings.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// `http.header_timeout`.
    pub header_timeout: Duration,
    /// `http.keep_alive_timeout`.
    pub keep_alive_timeout: Duration,
    /// `http.write_timeout`.
    pub write_timeout: Duration,
    /// `http.max_connections`.
    pub max_connections: usize,
    /// `http.h2c`, with `http.h2c_max_streams`.
    pub h2c: Option<u32>,
}

impl Limits {
    /// The limits `http` sets.
    pub(crate) fn from_settings(http: &HttpSettings) -> Limits {
        Limits {
            header_timeout: http.header_timeout,
            keep_alive_timeout: http.keep_alive_timeout,
            write_timeout: http.write_timeout,
            max_connections: http.max_connections,
            h2c: http.h2c.then_some(http.h2c_max_streams),
        }
    }
}

/// What the connections are doing, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnStats {
    /// Connections being served (not counting the overflow ones).
    pub open: Gauge,
    /// Connections past `http.max_connections`.
    pub refused: Counter,
    /// Connections closed because the request head did not arrive in time.
    pub header_timeouts: Counter,
    /// Connections dropped because their client did not read the response.
    pub write_timeouts: Counter,
}

/// The API's endpoint, shared by every connection.
pub(crate) type Api = Arc<dyn DynEndpoint<Output = Response>>;

/// `req`'s answer, errors included.
async fn answer(api: Api, req: poem::Request) -> Response {
    match DynEndpoint::call(&*api, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

/// Serves `listener` until `signal` resolves; then stops accepting, asks every connection to
/// finish its request and close, and waits up to `drain` before dropping the rest.
pub(crate) async fn serve(
    listener: TcpListener,
    api: Api,
    limits: Limits,
    stats: ConnStats,
    signal: impl Future<Output = ()>,
    drain: Duration,
) {
    let local = listener.local_addr().ok();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    let at_cap = AtomicBool::new(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(signal);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &mut last_accept_error).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ends = Ends {
            local: local.unwrap_or(peer),
            peer,
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                if at_cap.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        max_connections = limits.max_connections,
                        "below the connection cap again"
                    );
                }
                let conn = Conn {
                    api: api.clone(),
                    limits: limits.clone(),
                    stats: stats.clone(),
                    stop: stop_rx.clone(),
                };
                tasks.spawn(async move {
                    let _slot = slot;
                    conn.serve(stream, ends).await;
                });
            }
            Err(_) => {
                stats.refused.inc();
                if !at_cap.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached: new connections get 503 (GET /health still \
                         200) until some close; see http.max_connections"
                    );
                }
                if let Ok(permit) = overflow.clone().try_acquire_owned() {
                    let api = api.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        serve_overflow(stream, ends, api).await;
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let finished = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, finished).await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown timeout reached: closing the connections still open"
        );
        tasks.shutdown().await;
    }
}

/// A failed `accept`: the client's own failures are skipped; anything else (out of file
/// descriptors, of memory) pauses the loop, logged at most once a second.
async fn accept_failed(err: &io::Error, last: &mut Option<Instant>) {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    ) {
        return;
    }
    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        tracing::warn!(
            "cannot accept a connection ({err}); retrying in {} ms (raise the file-descriptor \
             limit or lower http.max_connections)",
            ACCEPT_BACKOFF.as_millis()
        );
        *last = Some(Instant::now());
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// The two ends of a connection.
#[derive(Clone, Copy)]
struct Ends {
    local: SocketAddr,
    peer: SocketAddr,
}

impl Ends {
    /// `req` as the endpoint takes it.
    fn request(self, req: hyper::Request<Incoming>) -> poem::Request {
        poem::Request::from((
            req,
            LocalAddr(Addr::SocketAddr(self.local)),
            RemoteAddr(Addr::SocketAddr(self.peer)),
            Scheme::HTTP,
        ))
    }
}

/// One connection within the cap.
struct Conn {
    api: Api,
    limits: Limits,
    stats: ConnStats,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn serve(self, stream: TcpStream, ends: Ends) {
        self.stats.open.inc();
        let open = self.stats.open.clone();
        let _open = Defer(move || {
            open.dec();
        });
        let activity = Arc::new(Activity::default());
        let io = Guarded::new(
            stream,
            activity.clone(),
            self.limits.write_timeout,
            self.stats.write_timeouts.clone(),
        );
        let service = Service {
            api: self.api.clone(),
            activity: activity.clone(),
            ends,
        };
        let io = TokioIo::new(io);
        match self.limits.h2c {
            None => {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .header_read_timeout(None)
                    .keep_alive(true)
                    .max_buf_size(MAX_BUF);
                let conn = builder.serve_connection(io, service);
                tokio::pin!(conn);
                if self.watch(conn.as_mut(), &activity).await {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(self.finish_bound(), conn).await;
                }
            }
            Some(streams) => {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .header_read_timeout(None)
                    .keep_alive(true)
                    .max_buf_size(MAX_BUF);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(streams)
                    .max_header_list_size(MAX_BUF as u32);
                let conn = builder.serve_connection(io, service);
                tokio::pin!(conn);
                if self.watch(conn.as_mut(), &activity).await {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(self.finish_bound(), conn).await;
                }
            }
        }
    }

    /// Drives `conn` until it ends (`false`), its request head is late (`false`: drop it, it
    /// sent nothing worth finishing), or it idled too long or the server shuts down (`true`:
    /// shut it down gracefully, letting the request in progress finish).
    async fn watch<C: Future>(&self, mut conn: Pin<&mut C>, activity: &Activity) -> bool {
        let mut stop = self.stop.clone();
        let mut phase = Phase::Head(Instant::now(), 0);
        // One timer for the connection's life, moved when the phase changes (a new timer per
        // change costs a timer-wheel insert and remove, three times a request).
        let timer = tokio::time::sleep_until(Instant::now() + self.limits.header_timeout);
        tokio::pin!(timer);
        loop {
            // A request's own time is bounded by the request and write timeouts.
            let deadline = match phase {
                Phase::Head(since, _) => Some(since + self.limits.header_timeout),
                Phase::Idle(since, _) => Some(since + self.limits.keep_alive_timeout),
                Phase::Busy => None,
            };
            if let Some(deadline) = deadline.filter(|d| *d != timer.deadline()) {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                _ = conn.as_mut() => return false,
                _ = activity.changed.notified() => phase = phase.next(activity),
                _ = timer.as_mut(), if deadline.is_some() => {
                    if matches!(phase, Phase::Head(..)) {
                        self.stats.header_timeouts.inc();
                        tracing::debug!("closing a connection whose request head did not arrive in time");
                        return false;
                    }
                    return true;
                }
                _ = stop.changed() => return true,
            }
        }
    }

    /// How long a connection asked to shut down gets to finish its request.
    fn finish_bound(&self) -> Duration {
        self.limits.header_timeout + self.limits.write_timeout
    }
}

/// Where a connection is, for its timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since then, after that many requests.
    Head(Instant, usize),
    /// At least one request is being answered.
    Busy,
    /// Between requests since then, after that many requests.
    Idle(Instant, usize),
}

impl Phase {
    /// The phase after `activity` changed. Notifications coalesce: a whole request may have
    /// come and gone since the last look, which the count of requests tells.
    fn next(self, activity: &Activity) -> Phase {
        if activity.active.load(Ordering::Acquire) > 0 {
            return Phase::Busy;
        }
        let requests = activity.requests.load(Ordering::Acquire);
        let reading = activity.reading.load(Ordering::Acquire);
        match self {
            Phase::Head(_, seen) if reading && seen == requests => self,
            Phase::Idle(_, seen) if !reading && seen == requests => self,
            _ if reading => Phase::Head(Instant::now(), requests),
            _ => Phase::Idle(Instant::now(), requests),
        }
    }
}

/// What a connection's socket and requests tell its watcher.
#[derive(Default)]
struct Activity {
    /// Requests being answered (HTTP/2 may have several).
    active: AtomicUsize,
    /// Requests received so far.
    requests: AtomicUsize,
    /// Bytes have arrived since the connection was last idle: a request head is coming.
    reading: AtomicBool,
    /// Wakes the watcher when either changes.
    changed: Notify,
}

impl Activity {
    /// Marks a request as being answered until the guard is dropped.
    fn busy(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.reading.store(false, Ordering::Release);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.active.load(Ordering::Acquire) == 0 && !self.reading.swap(true, Ordering::AcqRel) {
            self.changed.notify_one();
        }
    }
}

/// A request being answered, from [`Activity::busy`].
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Runs a closure when dropped.
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// The socket, reporting reads to [`Activity`] and failing a write that makes no progress
/// for the write timeout.
struct Guarded {
    io: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    write_timeouts: Counter,
}

impl Guarded {
    fn new(
        io: TcpStream,
        activity: Arc<Activity>,
        write_timeout: Duration,
        write_timeouts: Counter,
    ) -> Guarded {
        Guarded {
            io,
            activity,
            write_timeout,
            stalled: None,
            write_timeouts,
        }
    }

    /// After a write returned `Pending`: an error once it has been pending too long.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                self.write_timeouts.inc();
                tracing::debug!("dropping a connection whose client does not read its response");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for http.write_timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}

/// A response body as hyper takes it from poem.
type HyperBody = http_body_util::combinators::BoxBody<bytes::Bytes, io::Error>;

/// The answer to one request, boxed: a named `Send` type, where an `async` block's would
/// leave the compiler unable to prove that an HTTP/2 connection task is `Send`.
type Answer = Pin<Box<dyn Future<Output = Result<hyper::Response<HyperBody>, Infallible>> + Send>>;

/// The hyper service of one connection within the cap.
#[derive(Clone)]
struct Service {
    api: Api,
    activity: Arc<Activity>,
    ends: Ends,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = hyper::Response<HyperBody>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        // Counted as soon as hyper has the head, before the endpoint's first poll.
        let busy = self.activity.busy();
        let answering = answer(self.api.clone(), self.ends.request(req));
        Box::pin(async move {
            let resp = answering.await;
            drop(busy);
            Ok(resp.into())
        })
    }
}

/// A connection past the cap: one request, HTTP/1.1, within [`OVERFLOW_TIMEOUT`]. `GET
/// /health` reaches the API as usual; anything else is a 503 with `Retry-After`.
async fn serve_overflow(stream: TcpStream, ends: Ends, api: Api) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let api = api.clone();
        async move {
            let mut resp = if req.method() == Method::GET && req.uri().path() == "/health" {
                answer(api, ends.request(req)).await
            } else {
                too_many_connections()
            };
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok::<_, Infallible>(hyper::Response::from(resp))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .header_read_timeout(None)
        .keep_alive(false)
        .max_buf_size(8192);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(OVERFLOW_TIMEOUT, conn).await;
}

/// The answer past the cap.
fn too_many_connections() -> Response {
    let mut resp = ApiError::Http {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "too_many_connections",
        message: "the server has too many open connections; retry in a moment".into(),
    }
    .response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::api::RETRY_AFTER_SECS),
    );
    super::headers::secure(&mut resp, "unmatched");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_activity() {
        let activity = Arc::new(Activity::default());
        let start = Phase::Head(Instant::now(), 0);
        // Bytes of the first head: still the same head deadline.
        activity.read();
        let phase = start.next(&activity);
        assert!(matches!((phase, start), (Phase::Head(a, _), Phase::Head(b, _)) if a == b));
        // The head is complete: busy, and bytes of its body change nothing.
        let busy = activity.busy();
        assert!(matches!(phase.next(&activity), Phase::Busy));
        activity.read();
        assert!(matches!(phase.next(&activity), Phase::Busy));
        // Answered: idle, until the next head starts.
        drop(busy);
        let idle = Phase::Busy.next(&activity);
        assert!(matches!(idle, Phase::Idle(..)), "{idle:?}");
        activity.read();
        assert!(matches!(idle.next(&activity), Phase::Head(..)));
    }

    #[test]
    fn a_whole_request_between_two_looks_restarts_the_idle_time() {
        let activity = Arc::new(Activity::default());
        drop(activity.busy());
        let idle = Phase::Busy.next(&activity);
        let Phase::Idle(first, _) = idle else {
            panic!("{idle:?}")
        };
        // A request comes and goes before the watcher looks again.
        std::thread::sleep(Duration::from_millis(5));
        activity.read();
        drop(activity.busy());
        match idle.next(&activity) {
            Phase::Idle(again, _) => assert!(again > first, "the idle time restarted"),
            other => panic!("{other:?}"),
        }
    }
}
