//! A bounded load generator for the proofs that records every request, and the sign-up
//! they start with. Every loop here is bounded in count and in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the load generator sent.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent.
    pub sent: Instant,
    /// How long until the whole body was read (or the error).
    pub latency: Duration,
    /// `METHOD path`.
    pub what: String,
    /// The status, or `None` for a connection-level failure.
    pub status: Option<u16>,
    /// The body (or the error).
    pub body: String,
    /// nginx's `X-Upstream` header: which replica answered.
    pub upstream: Option<String>,
}

impl Sample {
    /// A connection error or a 5xx.
    pub fn failed(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

/// A request the load generator can make.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: reqwest::Method,
    /// Path and query.
    pub path: String,
    /// A bearer token.
    pub token: Option<String>,
    /// A JSON body.
    pub body: Option<serde_json::Value>,
}

impl Call {
    /// `GET path`.
    pub fn get(path: &str) -> Call {
        Call {
            method: reqwest::Method::GET,
            path: path.to_owned(),
            token: None,
            body: None,
        }
    }
}

/// Limits of a load run: whichever comes first ends it.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Concurrent workers.
    pub workers: usize,
    /// Most requests in total.
    pub max_requests: usize,
    /// Longest run.
    pub max_time: Duration,
    /// Pause between two requests of one worker.
    pub pause: Duration,
    /// Reuse connections (HTTP keep-alive), or open one per request.
    pub keep_alive: bool,
}

/// A running load generator.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `bounds.workers` workers cycling through `calls` against `base`.
    pub fn start(base: &str, calls: Vec<Call>, bounds: Bounds) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(if bounds.keep_alive { bounds.workers } else { 0 })
            .build()
            .unwrap();
        let calls = Arc::new(calls);
        let started = Instant::now();
        let tasks = (0..bounds.workers)
            .map(|w| {
                let (stop, samples, client, calls) =
                    (stop.clone(), samples.clone(), client.clone(), calls.clone());
                let base = base.to_owned();
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < bounds.max_time
                        && samples.lock().unwrap().len() < bounds.max_requests
                    {
                        let call = &calls[i % calls.len()];
                        i += 1;
                        let sample = send(&client, &base, call).await;
                        samples.lock().unwrap().push(sample);
                        tokio::time::sleep(bounds.pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Stops the workers and returns every sample, in the order they finished.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load worker panicked");
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Sample {
    let sent = Instant::now();
    let mut req = client.request(call.method.clone(), format!("{base}{}", call.path));
    if let Some(token) = &call.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = &call.body {
        req = req.json(body);
    }
    let what = format!("{} {}", call.method, call.path);
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let upstream = resp
                .headers()
                .get("x-upstream")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = match resp.text().await {
                Ok(body) => body,
                Err(e) => {
                    return Sample {
                        sent,
                        latency: sent.elapsed(),
                        what,
                        status: None,
                        body: format!("body not read after {status}: {e}"),
                        upstream,
                    };
                }
            };
            Sample {
                sent,
                latency: sent.elapsed(),
                what,
                status: Some(status),
                body,
                upstream,
            }
        }
        Err(e) => Sample {
            sent,
            latency: sent.elapsed(),
            what,
            status: None,
            body: format!("{e:?}"),
            upstream: None,
        },
    }
}

/// The first few failures, for an assertion message.
pub fn describe_failures(samples: &[Sample], start: Instant) -> String {
    samples
        .iter()
        .filter(|s| s.failed())
        .take(10)
        .map(|s| {
            format!(
                "  t={:?} {} -> {:?} after {:?}: {}",
                s.sent.duration_since(start),
                s.what,
                s.status,
                s.latency,
                s.body.chars().take(300).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Registers a user through `base` and logs in; returns (username, token).
pub async fn sign_up(base: &str, tag: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let username = format!("{tag}_{}", std::process::id());
    let password = "proof-password-long-enough";
    let resp = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": password,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = client
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    (username, body["token"].as_str().unwrap().to_owned())
}

/// The proofs' mix through a proxy: reads of every kind, an authenticated one, and a write
/// (PATCH is not idempotent: nginx never retries it once sent); no argon2 work, which would
/// only measure the two cores.
pub fn api_mix(username: &str, token: &str, bio: &str) -> Vec<Call> {
    vec![
        Call::get(&format!("/api/users/{username}")),
        Call::get("/api/users?limit=5"),
        Call::get("/health"),
        Call {
            token: Some(token.to_owned()),
            ..Call::get("/api/users/me")
        },
        Call {
            method: reqwest::Method::PATCH,
            path: "/api/users/me/profile".into(),
            token: Some(token.to_owned()),
            body: Some(serde_json::json!({ "bio": bio })),
        },
    ]
}

/// Fails the test unless the run sent enough requests (`at_least`) and none of them failed;
/// returns how many were sent and prints `what` with the numbers.
pub fn assert_none_failed(
    samples: &[Sample],
    started: Instant,
    at_least: usize,
    what: &str,
    proxy_log: &str,
) -> usize {
    let failed = samples.iter().filter(|s| s.failed()).count();
    let sent = samples.len();
    println!(
        "{what}: {sent} requests sent in {:.1?}, {failed} failed",
        started.elapsed()
    );
    assert!(sent > at_least, "too little load to prove anything: {sent}");
    assert_eq!(
        failed,
        0,
        "{failed} of {sent} requests failed:\n{}\nproxy error log:\n{proxy_log}",
        describe_failures(samples, started),
    );
    sent
}
