//! `spawn_app()`: a migrated database and a server on a random port, and a `TestApp` with
//! one method per endpoint.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use app::config::{SecretString, Settings, SslMode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{self, Cluster, TestDb};

/// The JWT secret of every test server, so tests can forge tokens.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef-0123456789";
/// The issuer of every test server.
pub const ISSUER: &str = "discbaboons-test";

/// A running server and its database.
pub struct TestApp {
    pub base: String,
    pub metrics_base: String,
    pub client: reqwest::Client,
    pub db: TestDb<'static>,
    stop: Stop,
}

/// Stops the server when dropped.
struct Stop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// A response, already read, with its body checked for leaks.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts the status and the JSON error shape with this code; returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"], code, "{}", self.text);
        let message = body["message"].as_str().expect("message is a string");
        assert!(!message.is_empty());
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only error and message: {body}"
        );
        message.to_owned()
    }
}

/// Settings pointing at `db`, listening on random loopback ports.
pub fn settings_for(db: &TestDb<'_>) -> Settings {
    let mut s = Settings::default();
    s.http.host = [127, 0, 0, 1].into();
    s.http.port = 0;
    s.metrics.host = [127, 0, 0, 1].into();
    s.metrics.port = 0;
    s.log.requests = std::env::var_os("TEST_LOG").is_some();
    s.jwt.secret = Some(SecretString::from(JWT_SECRET));
    s.jwt.issuer = ISSUER.into();
    s.database.host = Some("127.0.0.1".into());
    s.database.port = Some(db.cluster.port);
    s.database.user = Some(support::pg::SUPERUSER.into());
    s.database.password = Some(SecretString::from(support::pg::SUPERUSER_PASSWORD));
    s.database.name = Some(db.name.clone());
    s.database.sslmode = Some(SslMode::Disable);
    s.loaded_secrets = vec!["JWT_SECRET".into()];
    s.http.shutdown_grace = Duration::ZERO;
    s.http.shutdown_timeout = Duration::from_secs(1);
    // Tests log in from one address far more often than a person; the rate-limit tests turn
    // the limits on.
    s.rate.per_client_per_minute = 0;
    s.rate.per_account_per_minute = 0;
    s
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(level) = std::env::var("TEST_LOG") {
            let guard = app::telemetry::init(&level, app::config::LogFormat::Pretty, None);
            std::mem::forget(guard);
        }
    });
}

/// A fresh migrated database and a server on it.
pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Like [`spawn_app`], with the settings adjusted first.
pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Cluster::shared().create_db();
    support::apply_migrations(&db);
    spawn_on(db, adjust).await
}

/// A server on an existing database (migrated or not).
pub async fn spawn_on(db: TestDb<'static>, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let mut settings = settings_for(&db);
    adjust(&mut settings);
    let server = app::server::Server::bind(&settings).await.expect("bind");
    let addr: SocketAddr = server.local_addr();
    let metrics = server.metrics_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        metrics_base: metrics.map(|m| format!("http://{m}")).unwrap_or_default(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db,

        stop: Stop(Some(tx)),
    }
}

impl TestApp {
    /// Stops this server and starts another on the same database with the settings
    /// adjusted, as a rollout replaces a pod with one of a new configuration.
    pub async fn restart_with(self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let TestApp { db, stop, .. } = self;
        drop(stop);
        spawn_on(db, adjust).await
    }
}

/// A user registered through the API.
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
}

impl NewUser {
    /// A unique user.
    pub fn unique(tag: &str) -> NewUser {
        let n: u32 = rand_u32();
        NewUser {
            username: format!("{tag}_{n:x}"),
            email: format!("{tag}.{n:x}@example.com"),
            password: format!("pw-{n:x}-long-enough"),
        }
    }

    /// The registration body.
    pub fn body(&self) -> Value {
        json!({"username": self.username, "email": self.email, "password": self.password})
    }
}

fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    t.wrapping_mul(2_654_435_761) ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503)
}

/// No response may carry a password hash, whatever the endpoint.
fn assert_no_secrets(text: &str) {
    for needle in ["password_hash", "$argon2", "!locked", JWT_SECRET] {
        assert!(!text.contains(needle), "response leaks {needle:?}: {text}");
    }
}

impl TestApp {
    /// Sends a request; `body` as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.read(req).await
    }

    /// Sends a prepared request and reads the reply.
    pub async fn read(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        assert_no_secrets(&text);
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn health(&self) -> Reply {
        self.send(Method::GET, "/health", None, None).await
    }

    pub async fn ready(&self) -> Reply {
        self.send(Method::GET, "/ready", None, None).await
    }

    pub async fn info(&self) -> Reply {
        self.send(Method::GET, "/api/info", None, None).await
    }

    pub async fn list_users(&self, query: &str) -> Reply {
        self.send(Method::GET, &format!("/api/users{query}"), None, None)
            .await
    }

    pub async fn get_user(&self, username: &str) -> Reply {
        self.send(Method::GET, &format!("/api/users/{username}"), None, None)
            .await
    }

    pub async fn register(&self, body: Value) -> Reply {
        self.send(Method::POST, "/api/auth/register", None, Some(body))
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let body = json!({"username": username, "password": password});
        self.send(Method::POST, "/api/auth/login", None, Some(body))
            .await
    }

    pub async fn me(&self, token: &str) -> Reply {
        self.send(Method::GET, "/api/users/me", Some(token), None)
            .await
    }

    pub async fn update_profile(&self, token: &str, body: Value) -> Reply {
        self.send(
            Method::PATCH,
            "/api/users/me/profile",
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> Reply {
        let body = json!({"current_password": current, "new_password": new});
        self.send(
            Method::POST,
            "/api/users/me/password",
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn delete_me(&self, token: &str) -> Reply {
        self.send(Method::DELETE, "/api/users/me", Some(token), None)
            .await
    }

    pub async fn metrics(&self) -> String {
        let text = self
            .client
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .unwrap();
        assert_no_secrets(&text);
        text
    }

    /// Registers a unique user and logs in; returns the user and a token.
    pub async fn signed_up(&self, tag: &str) -> (NewUser, String) {
        let user = NewUser::unique(tag);
        let reply = self.register(user.body()).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let token = self.token_for(&user.username, &user.password).await;
        (user, token)
    }

    /// Logs in and returns the token.
    pub async fn token_for(&self, username: &str, password: &str) -> String {
        let reply = self.login(username, password).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().unwrap().to_owned()
    }
}

/// A `psql` session holding `lock table users` until it ends.
pub struct Locker(std::process::Child);

impl Locker {
    /// Waits for the session to end (and release its lock).
    pub fn finish(mut self) {
        let _ = self.0.wait();
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Locks `users` in `db` for `seconds` from a separate session, returning once the lock is
/// held: every query on `users` waits until then.
pub fn lock_users_for(db: &TestDb<'_>, seconds: u32) -> Locker {
    let child = db
        .psql_command()
        .arg("-c")
        .arg(format!(
            "begin; lock table users in access exclusive mode; select pg_sleep({seconds}); commit;"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn psql");
    let locker = Locker(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = db.psql(
            "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
             where c.relname = 'users' and l.mode = 'AccessExclusiveLock' and l.granted",
        );
        if held == "1" {
            return locker;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no `Content-Length`) over a raw socket;
/// returns the status and the body.
pub async fn raw_chunked_post(app: &TestApp, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(512) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    assert_no_secrets(&body);
    (status, body)
}

/// Runs the futures concurrently on this task and returns their outputs in order.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
