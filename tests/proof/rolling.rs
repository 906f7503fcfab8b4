//! A rolling restart behind nginx loses no request.
//!
//! Three `app serve` replicas sit behind nginx configured as ingress-nginx configures an
//! upstream (round robin, passive health checks, retry on connection errors, keep-alive to
//! the replicas). A load generator runs the whole time while each replica in turn gets
//! SIGTERM, drains, exits and is started again on its port, the way a Deployment rollout
//! replaces pods: not one request may fail (connection error or 5xx).

use std::time::{Duration, Instant};

use crate::support::load::{Bounds, Call, Load, api_mix, assert_none_failed, sign_up};
use crate::support::nginx::Nginx;
use crate::support::{Cluster, Served, apply_migrations, free_port, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_three_replicas_behind_nginx_fails_no_request() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch("rolling");
    // The grace period covers the time the endpoint update takes to reach nginx (a reload
    // here, well under a second); Kubernetes' default here is 5 s.
    // The database stays up throughout: a request that waits for a pooled connection is
    // waiting for CPU on these two shared cores, not for an outage, so the acquire timeout is
    // generous (a 2 s one once turned a starved PATCH into a 503 under a parallel build).
    let settings = [
        ("APP_HTTP__SHUTDOWN_GRACE", "1s"),
        ("APP_HTTP__SHUTDOWN_TIMEOUT", "10s"),
        ("APP_DATABASE__ACQUIRE_TIMEOUT", "8s"),
    ];
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client = reqwest::Client::new();
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let log = dir.join(format!("replica-{i}.log"));
        let mut replica = Served::replica(&db, *port, &log, &settings);
        replica.wait_ready(&client, Duration::from_secs(30)).await;
        replicas.push(replica);
    }
    let mut nginx = Nginx::start(&dir, &ports);
    let (username, token) = sign_up(&nginx.base(), "rolling").await;

    // The proofs' mix, and `/api/info` and a failing lookup besides.
    let mut calls = api_mix(&username, &token, "rolling along");
    calls.extend([Call::get("/api/info"), Call::get("/api/users/nobody_here")]);
    let started = Instant::now();
    let load = Load::start(
        &nginx.base(),
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

    let mut back_at = Vec::new();
    for (i, replica) in replicas.iter_mut().enumerate() {
        let before = load.sent();
        // What a rollout does to one pod: SIGTERM, and the endpoints controller takes the
        // terminating pod out of the Service at once, which ingress-nginx applies, while the
        // pod keeps serving for its grace period; the new pod joins once ready.
        let log = dir.join(format!("replica-{i}.log"));
        nginx
            .replace(replica, &ports, i, || {
                Served::replica(&db, ports[i], &log, &settings)
            })
            .await;
        back_at.push(Instant::now());
        // Let the new replica take traffic (and any passive-check penalty expire) before the
        // next one goes.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        eprintln!(
            "replica {i} restarted; {} requests during its restart",
            load.sent() - before
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = load.finish().await;
    assert_none_failed(
        &samples,
        started,
        1000,
        "rolling restart through nginx (3 replicas restarted one by one)",
        &nginx.error_log(),
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
    for (i, replica) in replicas.iter_mut().enumerate() {
        assert!(
            replica.is_running(),
            "replica {i} died: {}",
            replica.log_text()
        );
        let addr = format!("127.0.0.1:{}", ports[i]);
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
