//! `/api/auth/register` and `/api/auth/login`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{NewUser, spawn_app};

#[tokio::test]
async fn register_creates_the_user_and_profile_together() {
    let app = spawn_app().await;
    let user = NewUser::unique("reg");
    let mut body = user.body();
    body["name"] = json!("Regina");
    body["bio"] = json!("  throws forehand  ");
    body["email"] = json!(user.email.to_uppercase());
    let reply = app.register(body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let data = &reply.json()["data"];
    assert_eq!(data["username"], user.username.as_str());
    assert_eq!(
        data["user_profiles"]["email"],
        user.email.as_str(),
        "lower-cased"
    );
    assert_eq!(data["user_profiles"]["name"], "Regina");
    assert_eq!(data["user_profiles"]["bio"], "throws forehand", "trimmed");

    // The public directory shows the same, without the email (private by default).
    let fetched = app.get_user(&user.username).await.json();
    let mut public = data.clone();
    public["user_profiles"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    assert_eq!(fetched["data"], public);
    let stored = app.db.psql(&format!(
        "select password_hash from users where username = '{}'",
        user.username
    ));
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
}

#[tokio::test]
async fn duplicates_are_409_naming_the_field_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let user = NewUser::unique("dup");
    assert_eq!(app.register(user.body()).await.status, 201);

    let mut same_name = NewUser::unique("other").body();
    same_name["username"] = json!(user.username);
    let message = app
        .register(same_name)
        .await
        .assert_error(409, "username_taken");
    assert!(message.contains("username"), "{message}");

    let other = NewUser::unique("other");
    let mut same_email = other.body();
    same_email["email"] = json!(user.email.to_uppercase());
    let message = app
        .register(same_email)
        .await
        .assert_error(409, "email_taken");
    assert!(message.contains("email"), "{message}");
    // The transaction rolled back: the user row of the failed registration is gone too.
    app.get_user(&other.username)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn invalid_registrations_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("username", json!("ab")),
        ("username", json!("has space")),
        ("username", json!("me")),
        ("username", json!("x".repeat(51))),
        ("email", json!("not-an-email")),
        ("password", json!("short")),
        ("password", json!("x".repeat(129))),
        ("name", json!("x".repeat(101))),
    ];
    for (field, value) in cases {
        let mut body = NewUser::unique("bad").body();
        body[field] = value.clone();
        let message = app
            .register(body)
            .await
            .assert_error(422, "validation_failed");
        assert!(message.starts_with(field), "{field}={value}: {message}");
        assert!(
            !message.contains("short") || field != "password",
            "echoes the password"
        );
    }
}

#[tokio::test]
async fn login_returns_a_jwt_and_its_expiry() {
    let app = spawn_app().await;
    let user = NewUser::unique("login");
    app.register(user.body()).await;
    let reply = app.login(&user.username, &user.password).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["token"].as_str().unwrap().split('.').count(), 3);
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(ttl > chrono::TimeDelta::minutes(59) && ttl <= chrono::TimeDelta::hours(1));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    let user = NewUser::unique("same");
    app.register(user.body()).await;
    // Warm both paths once.
    app.login(&user.username, "wrong-password").await;
    app.login("nobody_at_all", "wrong-password").await;

    let timed = |username: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let reply = app.login(&username, "wrong-password").await;
            (reply, started.elapsed())
        }
    };
    // Minimums: the least disturbed sample of each, on a machine shared with other work.
    let mut wrong = Duration::MAX;
    let mut unknown = Duration::MAX;
    for _ in 0..4 {
        let (a, ta) = timed(user.username.clone()).await;
        let (b, tb) = timed("nobody_at_all".into()).await;
        a.assert_error(401, "invalid_credentials");
        b.assert_error(401, "invalid_credentials");
        assert_eq!(a.text, b.text, "same body");
        wrong = wrong.min(ta);
        unknown = unknown.min(tb);
    }
    // Both pay for one argon2 verification (tens of milliseconds); a lookup that skipped it
    // would answer an unknown user in about a millisecond.
    let (lo, hi) = if wrong < unknown {
        (wrong, unknown)
    } else {
        (unknown, wrong)
    };
    assert!(
        hi.as_secs_f64() < lo.as_secs_f64() * 2.5 + 0.02,
        "wrong password {wrong:?} vs unknown user {unknown:?}"
    );
    // The seed's sample users have no password at all.
    app.login("alice", "anything-at-all")
        .await
        .assert_error(401, "invalid_credentials");
}
