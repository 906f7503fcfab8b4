//! The JWT key rotates under load and logs nobody out: three replicas behind nginx go through
//! docs/secrets.md's playbook as two rollouts (1: the new key accepted but not signing; 2: the
//! new key signs, the old one verifies until `jwt.previous_until`). A token issued before the
//! rotation, and tokens issued by either generation while both serve, work on every replica
//! until the window ends; after it, the old key's tokens get 401 and the new key's keep
//! working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::support::fleet::{Fleet, Settings, rollout_settings, settings as settings_of};
use crate::support::load::{Bounds, Call, Load, describe_failures, sign_up};
use crate::support::serve::REPLICA_JWT_SECRET;
use crate::support::{Cluster, apply_migrations, scratch};

/// The key rotated in, as strong as prod requires.
const NEW_KEY: &str = "proof-rotated-jwt-secret-fedcba9876543210-fedcba";
/// How long the old key keeps verifying after step 2 starts: more than a rollout of three
/// replicas takes on these cores (about 15 s), so the window ends after the rollout.
const WINDOW: Duration = Duration::from_secs(45);

/// The rollout settings, the rate limits off (this proof logs in every 300 ms from one
/// address, through nginx), and `extra`.
fn with(extra: &[(&str, String)]) -> Settings {
    let mut settings = rollout_settings();
    settings.extend(settings_of(&[
        ("APP_RATE__PER_CLIENT_PER_MINUTE", "0"),
        ("APP_RATE__PER_ACCOUNT_PER_MINUTE", "0"),
    ]));
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    settings
}

/// Logs in through nginx every 300 ms and uses each new token at once, three times (round
/// robin: on other replicas than the one that signed it), at least once and until `stop`.
/// The failures.
async fn login_and_use(base: String, username: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    loop {
        let login = client
            .post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"username": username, "password": "proof-password-long-enough"}))
            .send()
            .await;
        let token = match login {
            Ok(r) if r.status() == 200 => {
                let body: serde_json::Value = r.json().await.unwrap();
                body["token"].as_str().unwrap().to_owned()
            }
            other => {
                failures.push(format!("login: {other:?}"));
                continue;
            }
        };
        for _ in 0..3 {
            let me = client
                .get(format!("{base}/api/users/me"))
                .bearer_auth(&token)
                .send()
                .await;
            match me {
                Ok(r) if r.status() == 200 => {}
                other => failures.push(format!("a fresh token on /api/users/me: {other:?}")),
            }
        }
        if stop.load(Ordering::Relaxed) {
            return failures;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `GET /api/users/me` with `token` on every replica directly: their statuses.
async fn me_on_each(fleet: &Fleet, token: &str) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for port in &fleet.ports {
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_rotation_under_load_logs_nobody_out_until_the_window_ends() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch("jwt-rotation");
    // Before: key A (the replicas' shared secret) signs and verifies.
    let mut fleet = Fleet::start(&db, &dir, 3, &with(&[])).await;
    let (username, old_token) = sign_up(&fleet.base(), "jwtrot").await;
    let calls = vec![
        Call {
            token: Some(old_token.clone()),
            ..Call::get("/api/users/me")
        },
        Call::get("/health"),
        Call {
            method: reqwest::Method::PATCH,
            path: "/api/users/me/profile".into(),
            token: Some(old_token.clone()),
            body: Some(serde_json::json!({"bio": "rotating"})),
        },
    ];
    let started = Instant::now();
    let load = Load::start(
        &fleet.base(),
        calls,
        Bounds {
            workers: 4,
            max_requests: 100_000,
            max_time: Duration::from_secs(150),
            pause: Duration::from_millis(5),
            keep_alive: false,
        },
    );
    let stop_logins = Arc::new(AtomicBool::new(false));
    let logins = tokio::spawn(login_and_use(
        fleet.base(),
        username.clone(),
        stop_logins.clone(),
    ));

    // Step 1: B is accepted, A still signs.
    let step1 = with(&[
        ("APP_JWT__SECRET", REPLICA_JWT_SECRET.to_owned()),
        ("APP_JWT__PREVIOUS_SECRET", NEW_KEY.to_owned()),
    ]);
    fleet.roll(&db, &step1).await;
    // Step 2: B signs, A verifies until the window ends.
    let window_ends = SystemTime::now() + WINDOW;
    let ends_at = Instant::now() + WINDOW;
    let step2 = with(&[
        ("APP_JWT__SECRET", NEW_KEY.to_owned()),
        ("APP_JWT__PREVIOUS_SECRET", REPLICA_JWT_SECRET.to_owned()),
        (
            "APP_JWT__PREVIOUS_UNTIL",
            humantime::format_rfc3339_seconds(window_ends).to_string(),
        ),
    ]);
    fleet.roll(&db, &step2).await;
    let rolled = Instant::now();
    assert!(
        rolled + Duration::from_secs(2) < ends_at,
        "the rollout outlasted the window ({WINDOW:?}); this proof cannot tell the two apart"
    );
    // Load until just before the window ends (a request in flight across the end may rightly
    // get 401).
    tokio::time::sleep(ends_at.saturating_duration_since(Instant::now()) - Duration::from_secs(1))
        .await;
    let samples = load.finish().await;
    stop_logins.store(true, Ordering::Relaxed);
    let login_failures = logins.await.unwrap();

    let failed: Vec<_> = samples.iter().filter(|s| s.status != Some(200)).collect();
    println!(
        "jwt rotation: {} requests with the pre-rotation token through two rollouts in {:.1?}, \
         {} not 200",
        samples.len(),
        started.elapsed(),
        failed.len()
    );
    assert!(samples.len() > 500, "too little load: {}", samples.len());
    assert!(
        login_failures.is_empty(),
        "fresh tokens failed: {login_failures:?}"
    );
    assert!(
        failed.is_empty(),
        "{} requests failed:\n{}",
        failed.len(),
        describe_failures(&samples, started)
    );

    // The window has ended: A's tokens get 401 on every replica, B's work.
    tokio::time::sleep(ends_at.saturating_duration_since(Instant::now()) + Duration::from_secs(1))
        .await;
    assert_eq!(me_on_each(&fleet, &old_token).await, vec![401; 3]);
    let once = Arc::new(AtomicBool::new(true));
    let fresh = login_and_use(fleet.base(), username, once).await;
    assert!(fresh.is_empty(), "after the window: {fresh:?}");
    let (_, new_token) = sign_up(&fleet.base(), "jwtrot_after").await;
    assert_eq!(me_on_each(&fleet, &new_token).await, vec![200; 3]);
}
