//! `app serve` as Kubernetes runs it: SIGTERM while a slow request is in flight, PostgreSQL
//! going away and coming back, the refusals at start-up, and `app healthcheck`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::helpers;
use crate::support::{Cluster, Served, app, apply_migrations, free_port, output_text};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_503_serves_the_grace_period_and_drains() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let mut served = Served::start(
        &db,
        &[
            ("APP_HTTP__SHUTDOWN_GRACE", "1500ms"),
            ("APP_HTTP__SHUTDOWN_TIMEOUT", "10s"),
        ],
    );
    let client = client();
    served.wait_ready(&client, Duration::from_secs(20)).await;

    // A slow request: the users table is locked for 3 s.
    let locker = helpers::lock_users_for(&db, 3);
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), served.url("/api/users"));
        async move {
            let resp = client
                .get(url)
                .send()
                .await
                .expect("the slow request is answered");
            (resp.status().as_u16(), Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slow.is_finished(),
        "the request should be waiting for the lock"
    );

    let sigterm_at = Instant::now();
    served.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        served.status(&client, "/ready").await,
        Some(503),
        "readiness drops at once"
    );
    let health = client.get(served.url("/health")).send().await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "still serving during the grace period"
    );
    assert_eq!(
        health.headers()["connection"],
        "close",
        "keep-alive clients are told to reconnect (elsewhere) before the listener closes"
    );

    let (status, answered_at) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request completes");
    assert!(answered_at > sigterm_at + Duration::from_secs(1));
    locker.finish();

    let (code, log) = served.finish(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("/ready now answers 503"), "{log}");
    assert!(log.contains("draining"), "{log}");
    assert!(
        log.contains("random secret"),
        "dev without a JWT secret warns: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_and_recovers_without_a_restart() {
    let cluster = Cluster::private();
    let db = cluster.create_db();
    apply_migrations(&db);
    let mut served = Served::start(
        &db,
        &[
            ("APP_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            ("APP_DATABASE__CONNECT_TIMEOUT", "1s"),
        ],
    );
    let client = client();
    served.wait_ready(&client, Duration::from_secs(20)).await;
    assert_eq!(served.status(&client, "/api/users").await, Some(200));

    cluster.stop();
    assert_eq!(
        served.status(&client, "/health").await,
        Some(200),
        "liveness is independent"
    );
    let started = Instant::now();
    assert_eq!(served.status(&client, "/ready").await, Some(503));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/ready took {:?}",
        started.elapsed()
    );
    for _ in 0..2 {
        let started = Instant::now();
        let resp = client
            .get(served.url("/api/users/bob"))
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(resp.status().as_u16(), 503);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "service_unavailable", "{body}");
        assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    }

    cluster.start();
    served.wait_ready(&client, Duration::from_secs(15)).await;
    assert_eq!(served.status(&client, "/api/users").await, Some(200));
    assert_eq!(served.status(&client, "/api/users/bob").await, Some(200));

    served.signal(libc::SIGINT);
    let (code, log) = served.finish(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "SIGINT stops it too: {log}");
}

#[test]
fn refuses_to_start_on_an_outdated_schema() {
    let db = Cluster::shared().create_db();
    let out = app()
        .arg("serve")
        .envs(db.app_env())
        .env("APP_HTTP__PORT", free_port().to_string())
        .env("APP_METRICS__ENABLED", "false")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(13), "{text}");
    assert!(text.contains("app migrate"), "{text}");
}

#[test]
fn a_port_in_use_is_a_startup_failure() {
    let db = Cluster::shared().create_db();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = app()
        .arg("serve")
        .envs(db.app_env())
        .env("APP_HTTP__HOST", "127.0.0.1")
        .env("APP_HTTP__PORT", port.to_string())
        .env("APP_METRICS__ENABLED", "false")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(30), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");
}

#[tokio::test]
async fn prod_refuses_a_missing_or_weak_jwt_secret() {
    let db = Cluster::shared().create_db();
    for secret in [None, Some("too-short-for-hs256")] {
        let mut settings = helpers::settings_for(&db);
        settings.env = app::config::Environment::Prod;
        settings.jwt.secret = secret.map(app::config::SecretString::from);
        let err = match app::server::Server::bind(&settings).await {
            Ok(_) => panic!("prod started with secret {secret:?}"),
            Err(err) => anyhow::Error::from(err),
        };
        assert_eq!(
            app::cli::exit::classify(&err),
            app::cli::exit::ExitCode::ServeStartup
        );
        let message = format!("{err:#}");
        assert!(message.contains("32 bytes"), "{message}");
        assert!(
            !message.contains("too-short"),
            "never echo the secret: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_asks_the_running_server() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let mut served = Served::start(&db, &[("APP_HTTP__SHUTDOWN_GRACE", "3s")]);
    let client = client();
    served.wait_ready(&client, Duration::from_secs(20)).await;

    let check = |port: u16| {
        app()
            .arg("healthcheck")
            .env("APP_HTTP__PORT", port.to_string())
            .output()
            .unwrap()
    };
    let out = check(served.port);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = app()
        .args(["healthcheck", "--url", &served.url("")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));

    let out = check(free_port());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));

    // Shutting down: the process still answers, but not ready is unhealthy.
    served.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = check(served.port);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("503"), "{}", output_text(&out));
    let (code, log) = served.finish(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{log}");
}

/// Successful probes are logged as requests only when `log.probes` is set; every other
/// request (a 404 too) always is.
mod successful_probes_stay_out_of_the_request_log_unless_asked {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_log_probes_false() {
        probes_in_the_request_log("false", false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_log_probes_true() {
        probes_in_the_request_log("true", true).await;
    }

    async fn probes_in_the_request_log(probes: &str, expect_probe_lines: bool) {
        let db = Cluster::shared().create_db();
        apply_migrations(&db);
        let client = client();
        let mut served = Served::start(&db, &[("APP_LOG__PROBES", probes)]);
        served.wait_ready(&client, Duration::from_secs(20)).await;
        for path in ["/health", "/ready", "/api/info", "/api/users/nobody"] {
            served.status(&client, path).await.unwrap();
        }
        served.signal(libc::SIGINT);
        let (code, text) = served.finish(Duration::from_secs(20)).await;
        assert_eq!(code, Some(0), "{text}");
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("app::http") && l.contains("request"))
            .collect();
        let logged = |route: &str| requests.iter().any(|l| l.contains(&format!("\"{route}\"")));
        assert!(logged("/api/info"), "{text}");
        assert!(logged("/api/users/{username}"), "a 404 is logged: {text}");
        assert_eq!(
            logged("/health"),
            expect_probe_lines,
            "probes={probes}: {text}"
        );
        assert_eq!(
            logged("/ready"),
            expect_probe_lines,
            "probes={probes}: {text}"
        );
    }
}
