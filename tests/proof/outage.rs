//! PostgreSQL goes away under load and comes back: `app serve` never crashes, `/ready` says
//! 503 while it is gone, API calls fail fast with the JSON 503 (none waits longer than the
//! pool's acquire timeout), and within 5 s of its return everything answers 200 again,
//! without a restart.
//!
//! `tests/api/serve_lifecycle.rs` proves the same story with single requests; this one runs it under
//! constant concurrent load and checks every request that was sent.

use std::time::{Duration, Instant};

use crate::support::load::{Bounds, Call, Load, describe_failures, sign_up};
use crate::support::{Cluster, Served, apply_migrations, free_port, metric, scratch};

/// `database.acquire_timeout` of the server under test.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// The readiness check's own bound.
const READY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The promise: everything answers 200 this soon after the database is back.
const RECOVERY: Duration = Duration::from_secs(5);
/// Scheduling slack on two shared cores, on top of the acquire timeout.
const SLACK: Duration = Duration::from_millis(750);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load_fails_fast_with_json_503_and_recovers() {
    let cluster = Cluster::private();
    let db = cluster.create_db();
    apply_migrations(&db);
    let dir = scratch("outage");
    let mut replica = Served::replica(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[
            ("APP_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            ("APP_DATABASE__CONNECT_TIMEOUT", "1s"),
            ("APP_HTTP__SHUTDOWN_GRACE", "0s"),
        ],
    );
    let client = reqwest::Client::new();
    replica.wait_ready(&client, Duration::from_secs(30)).await;
    let (username, token) = sign_up(&replica.url(""), "outage").await;

    let calls = vec![
        Call::get(&format!("/api/users/{username}")),
        Call::get("/api/users?limit=3"),
        Call::get("/ready"),
        Call {
            token: Some(token),
            ..Call::get("/api/users/me")
        },
        Call::get("/health"),
    ];
    let t0 = Instant::now();
    let load = Load::start(
        &replica.url(""),
        calls,
        Bounds {
            workers: 8,
            max_requests: 100_000,
            max_time: Duration::from_secs(60),
            pause: Duration::from_millis(5),
            keep_alive: true,
        },
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stopping = Instant::now();
    cluster.stop();
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let restarting = Instant::now();
    cluster.start();
    let up = Instant::now();
    tokio::time::sleep(RECOVERY + Duration::from_secs(2)).await;
    let samples = load.finish().await;

    assert!(
        replica.is_running(),
        "serve died during the outage: {}",
        replica.log_text()
    );
    let at = |i: Instant| i.duration_since(t0);
    let sent = samples.len();
    let failed_5xx = samples.iter().filter(|s| s.failed()).count();
    println!(
        "database outage: {sent} requests sent; database stopped at {:?}, down {:?}..{:?}, \
         back at {:?}; {failed_5xx} answered 503 during the outage",
        at(stopping),
        at(down),
        at(restarting),
        at(up),
    );

    // No connection errors, no 500s: every failure is the JSON 503.
    for s in samples.iter().filter(|s| s.failed()) {
        assert_eq!(
            s.status,
            Some(503),
            "{}",
            describe_failures(std::slice::from_ref(s), t0)
        );
        let body: serde_json::Value = serde_json::from_str(&s.body)
            .unwrap_or_else(|e| panic!("503 without a JSON body ({e}): {s:?}"));
        let code = body["error"].as_str().unwrap_or_default();
        let expected = if s.what.contains("/ready") {
            "database_unavailable"
        } else {
            "service_unavailable"
        };
        assert_eq!(code, expected, "{s:?}");
        assert!(body["message"].is_string(), "{s:?}");
    }

    // Fail fast: nothing waits longer than the acquire timeout.
    let mut by_latency: Vec<_> = samples.iter().collect();
    by_latency.sort_by_key(|s| std::cmp::Reverse(s.latency));
    let slowest = by_latency[0].latency;
    println!("database outage: slowest answer {slowest:?} (acquire timeout {ACQUIRE_TIMEOUT:?})");
    for s in &by_latency[..3] {
        println!(
            "  {} -> {:?} in {:?} at t={:?}",
            s.what,
            s.status,
            s.latency,
            at(s.sent)
        );
    }
    for s in &samples {
        // `/ready` has its own bound (1.5 s, src/api/health.rs) around the whole check.
        let limit = if s.what.ends_with("/ready") {
            READY_TIMEOUT
        } else {
            ACQUIRE_TIMEOUT
        };
        assert!(
            s.latency <= limit + SLACK,
            "waited {:?} at t={:?}: {s:?}",
            s.latency,
            at(s.sent)
        );
    }

    // Liveness never depends on the database.
    for s in samples.iter().filter(|s| s.what.ends_with("/health")) {
        assert_eq!(s.status, Some(200), "{s:?}");
    }

    // While the database is down, readiness says so and the API is 503.
    let during: Vec<_> = samples
        .iter()
        .filter(|s| s.sent > down && s.sent + s.latency < restarting)
        .collect();
    assert!(
        during.iter().any(|s| s.what.ends_with("/ready")),
        "no /ready during the outage"
    );
    for s in &during {
        if !s.what.ends_with("/health") {
            assert_eq!(s.status, Some(503), "during the outage: {s:?}");
        }
    }

    // Within RECOVERY of its return, everything answers 200 again.
    let last_failure = samples
        .iter()
        .filter(|s| s.status != Some(200))
        .map(|s| s.sent + s.latency)
        .max()
        .unwrap();
    let recovered_after = last_failure.saturating_duration_since(up);
    println!(
        "database outage: last non-200 answer {recovered_after:?} after the database was back"
    );
    assert!(
        recovered_after < RECOVERY,
        "still failing {recovered_after:?} after the database came back"
    );
    let after: Vec<_> = samples.iter().filter(|s| s.sent > up + RECOVERY).collect();
    assert!(after.len() > 50, "too little load after recovery");
    assert!(after.iter().all(|s| s.status == Some(200)));

    replica.signal(libc::SIGTERM);
    assert_eq!(replica.wait_exit(Duration::from_secs(20)).await, Some(0));
}

/// `db_pool_idle_connections` from the replica's `/metrics`.
async fn idle_connections(client: &reqwest::Client, metrics_port: u16) -> u64 {
    let text = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, "db_pool_idle_connections") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_restart_no_request_gets_a_dead_pooled_connection() {
    // A node drain or failover restarts PostgreSQL while the API is quiet: every idle
    // connection of the pool is dead, and none of them may fail a request once it is back.
    let cluster = Cluster::private();
    let db = cluster.create_db();
    apply_migrations(&db);
    let dir = scratch("restart");
    let metrics_port = free_port();
    let metrics_port_text = metrics_port.to_string();
    let mut replica = Served::replica(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[
            ("APP_DATABASE__ACQUIRE_TIMEOUT", "2s"),
            ("APP_METRICS__ENABLED", "true"),
            ("APP_METRICS__PORT", &metrics_port_text),
        ],
    );
    let client = reqwest::Client::new();
    replica.wait_ready(&client, Duration::from_secs(30)).await;
    let (username, _) = sign_up(&replica.url(""), "restart").await;
    let lookup = replica.url(&format!("/api/users/{username}"));

    // Fill the pool: concurrent pages hold several connections at once.
    let mut idle = 0;
    for _ in 0..20 {
        let pages: Vec<_> = (0..8)
            .map(|_| tokio::spawn(client.get(replica.url("/api/users?limit=100")).send()))
            .collect();
        for page in pages {
            assert_eq!(page.await.unwrap().unwrap().status(), 200);
        }
        idle = idle_connections(&client, metrics_port).await;
        if idle >= 3 {
            break;
        }
    }
    assert!(
        idle >= 3,
        "the pool kept only {idle} idle connections: nothing to prove"
    );

    cluster.stop();
    cluster.start();
    replica.wait_ready(&client, Duration::from_secs(15)).await;
    let mut statuses = Vec::new();
    for _ in 0..idle + 5 {
        statuses.push(client.get(&lookup).send().await.unwrap().status().as_u16());
    }
    println!("after the restart, with {idle} idle connections before it: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{statuses:?}\n{}",
        replica.log_text()
    );

    replica.signal(libc::SIGTERM);
    assert_eq!(replica.wait_exit(Duration::from_secs(20)).await, Some(0));
}
