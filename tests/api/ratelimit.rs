//! Rate limits on login, register and password change: per client address and per account,
//! 429 with `Retry-After`, `X-Forwarded-For` believed only from a trusted proxy.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Reply, TestApp, spawn_with};

async fn login_from(app: &TestApp, forwarded_for: &str, username: &str) -> Reply {
    let req = app
        .client
        .post(format!("{}/api/auth/login", app.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": username, "password": "wrong-password"}));
    app.read(req).await
}

fn assert_limited(reply: &Reply) {
    reply.assert_error(429, "rate_limited");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
}

#[tokio::test]
async fn one_account_gets_a_few_guesses_a_minute_from_anywhere() {
    let app = spawn_with(|s| s.rate.per_account_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(app.login("alice", "wrong-password").await.status, 401);
    }
    assert_limited(&app.login("alice", "wrong-password").await);
    // Another account is not affected.
    assert_eq!(app.login("bob", "wrong-password").await.status, 401);
}

#[tokio::test]
async fn one_client_gets_a_few_attempts_a_minute_whatever_it_forwards() {
    // Without trusted proxies, X-Forwarded-For is the client's own claim and ignored.
    let app = spawn_with(|s| s.rate.per_client_per_minute = 2).await;
    assert_eq!(login_from(&app, "10.0.0.1", "a1").await.status, 401);
    assert_eq!(login_from(&app, "10.0.0.2", "a2").await.status, 401);
    assert_limited(&login_from(&app, "10.0.0.3", "a3").await);
    // Registration counts against the same address.
    let reply = app
        .send(
            Method::POST,
            "/api/auth/register",
            None,
            Some(crate::helpers::NewUser::unique("lim").body()),
        )
        .await;
    assert_limited(&reply);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let app = spawn_with(|s| {
        s.rate.per_client_per_minute = 2;
        s.rate.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    // The rightmost entry the proxy appended is the client; what the client wrote is not.
    for spoof in ["1.1.1.1, 10.0.0.1", "not-an-address, 10.0.0.1"] {
        assert_eq!(login_from(&app, spoof, "b").await.status, 401);
    }
    assert_limited(&login_from(&app, "3.3.3.3, 10.0.0.1", "b").await);
    assert_eq!(login_from(&app, "10.0.0.2", "b").await.status, 401);
}

#[tokio::test]
async fn trusted_proxies_may_be_ranges_and_every_hop_in_them_is_skipped() {
    // The deployed setting: the cluster's private ranges, the ingress controller among them.
    let app = spawn_with(|s| {
        s.rate.per_client_per_minute = 1;
        s.rate.trusted_proxies = ["127.0.0.0/8", "10.0.0.0/8"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
    })
    .await;
    // Behind a second proxy in a trusted range, the client is the first hop outside them.
    assert_eq!(
        login_from(&app, "203.0.113.9, 10.244.1.5", "c1")
            .await
            .status,
        401
    );
    assert_limited(&login_from(&app, "203.0.113.9, 10.244.7.7", "c2").await);
    // Every entry trusted: the farthest one counts, not the ingress (the socket's peer), so
    // that one client behind it cannot use up everybody's attempts.
    assert_eq!(login_from(&app, "10.244.1.5", "c3").await.status, 401);
    assert_limited(&login_from(&app, "10.244.1.5", "c4").await);
    assert_eq!(login_from(&app, "10.244.1.6", "c5").await.status, 401);
}

#[tokio::test]
async fn password_guesses_on_the_change_are_limited_per_account() {
    let app = spawn_with(|s| s.rate.per_account_per_minute = 4).await;
    // Registering and logging in are two attempts on the account.
    let (user, token) = app.signed_up("guess").await;
    for _ in 0..2 {
        app.change_password(&token, "not-the-password", "another-long-password")
            .await
            .assert_error(403, "wrong_password");
    }
    assert_limited(
        &app.change_password(&token, &user.password, "another-long-password")
            .await,
    );
}
