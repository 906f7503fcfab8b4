//! A rolling restart behind nginx loses no request.
//!
//! Three `app serve` replicas sit behind nginx configured as ingress-nginx configures an
//! upstream (round robin, passive health checks, retry on connection errors, keep-alive to
//! the replicas). A load generator runs the whole time while each replica in turn gets
//! SIGTERM, drains, exits and is started again on its port, the way a Deployment rollout
//! replaces pods: not one request may fail (connection error or 5xx).

use std::time::{Duration, Instant};

use crate::support::fleet::{Fleet, rollout_settings};
use crate::support::load::{Bounds, Call, Load, describe_failures, sign_up};
use crate::support::{Cluster, apply_migrations, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_three_replicas_behind_nginx_fails_no_request() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch("rolling");
    let settings = rollout_settings();
    let mut fleet = Fleet::start(&db, &dir, 3, &settings).await;
    let (username, token) = sign_up(&fleet.base(), "rolling").await;

    // Reads of every kind, an authenticated one (the replicas share the JWT secret), a
    // failing lookup and a write (PATCH is not idempotent: nginx never retries it once sent);
    // no argon2 work, which would only measure the two cores.
    let calls = vec![
        Call::get(&format!("/api/users/{username}")),
        Call::get("/api/users?limit=5"),
        Call::get("/health"),
        Call {
            token: Some(token.clone()),
            ..Call::get("/api/users/me")
        },
        Call::get("/api/info"),
        Call::get("/api/users/nobody_here"),
        Call {
            method: reqwest::Method::PATCH,
            path: "/api/users/me/profile".into(),
            token: Some(token),
            body: Some(serde_json::json!({"bio": "rolling along"})),
        },
    ];
    let started = Instant::now();
    let load = Load::start(
        &fleet.base(),
        calls,
        Bounds {
            workers: 6,
            max_requests: 200_000,
            max_time: Duration::from_secs(90),
            pause: Duration::from_millis(4),
            // A connection per request to nginx: our stand-in for ingress-nginx's endpoint
            // update is a reload, whose old workers drop idle client connections (a race of
            // the stand-in; ingress-nginx updates endpoints without reloading). nginx keeps
            // its connections to the replicas alive, as ingress-nginx does.
            keep_alive: false,
        },
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = load.sent();
    let back_at = fleet.roll(&db, &settings).await;
    eprintln!(
        "3 replicas restarted; {} requests during the rollout",
        load.sent() - before
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    let samples = load.finish().await;

    let failed = samples.iter().filter(|s| s.failed()).count();
    let sent = samples.len();
    println!(
        "rolling restart: {sent} requests sent through nginx in {elapsed:.1?}, {failed} failed \
         (3 replicas restarted one by one)"
    );
    assert!(sent > 1000, "too little load to prove anything: {sent}");
    assert_eq!(
        failed,
        0,
        "{failed} of {sent} requests failed:\n{}\nnginx error log:\n{}",
        describe_failures(&samples, started),
        fleet.nginx.error_log()
    );
    // Every request got the answer it should have had (nothing half-served).
    for s in &samples {
        let expected = if s.what.ends_with("nobody_here") {
            404
        } else {
            200
        };
        assert_eq!(s.status, Some(expected), "{s:?}");
    }
    // Each replica answered after its restart: nginx put it back in rotation.
    for (i, replica) in fleet.replicas.iter_mut().enumerate() {
        assert!(
            replica.is_running(),
            "replica {i} died: {}",
            replica.log_text()
        );
        let addr = format!("127.0.0.1:{}", fleet.ports[i]);
        let served = samples
            .iter()
            .filter(|s| s.sent > back_at[i] && s.upstream.as_deref() == Some(addr.as_str()))
            .count();
        assert!(served > 0, "replica {i} got no traffic after its restart");
    }
    let retried = samples
        .iter()
        .filter(|s| s.upstream.as_deref().is_some_and(|u| u.contains(',')))
        .count();
    println!("rolling restart: nginx retried {retried} requests on another replica");
}
