//! One JSON error shape for everything poem would otherwise answer in plain text, the body
//! limit, the request timeout and request ids.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn malformed_json_and_wrong_types_get_the_json_shape() {
    let app = spawn_app().await;
    let url = format!("{}/api/auth/register", app.base);
    let post = |body: &'static str| {
        app.client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };
    app.read(post("{\"username\": "))
        .await
        .assert_error(400, "invalid_json");
    app.read(post("not json at all"))
        .await
        .assert_error(400, "invalid_json");
    let message = app
        .read(post(
            r#"{"username": ["x"], "email": "a@b.co", "password": "long-enough"}"#,
        ))
        .await
        .assert_error(400, "invalid_json");
    assert!(message.contains("string"), "{message}");
    app.read(post(r#"{"username": "abc"}"#))
        .await
        .assert_error(400, "invalid_json");
    app.read(app.client.post(&url).body("{}"))
        .await
        .assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_json_shape() {
    let app = spawn_app().await;
    app.read(app.client.get(format!("{}/nope", app.base)))
        .await
        .assert_error(404, "not_found");
    app.read(app.client.put(format!("{}/health", app.base)))
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_or_without_a_length() {
    let app = spawn_with(|s| s.http.body_limit = 1024).await;
    let url = format!("{}/api/auth/register", app.base);
    let big = format!(r#"{{"username": "{}"}}"#, "x".repeat(4096));
    app.read(
        app.client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(big.clone()),
    )
    .await
    .assert_error(413, "payload_too_large");

    let (status, body) = crate::helpers::raw_chunked_post(&app, "/api/auth/register", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"payload_too_large\""), "{body}");

    // A small chunked body still works.
    let small = crate::helpers::NewUser::unique("chunk").body().to_string();
    let (status, body) = crate::helpers::raw_chunked_post(&app, "/api/auth/register", &small).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let app = spawn_with(|s| s.http.request_timeout = Duration::from_millis(500)).await;
    // Hold a lock that the list query must wait for.
    let locker = crate::helpers::lock_users_for(&app.db, 3);
    let started = Instant::now();
    app.list_users("").await.assert_error(503, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    locker.finish();
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let reply = app
        .read(
            app.client
                .get(format!("{}/health", app.base))
                .header("x-request-id", "trace-me-123"),
        )
        .await;
    assert_eq!(
        reply.headers["x-request-id"],
        HeaderValue::from_static("trace-me-123")
    );
    let a = app.health().await.headers["x-request-id"].clone();
    let b = app.health().await.headers["x-request-id"].clone();
    assert!(!a.is_empty() && a != b, "{a:?} {b:?}");
    let error = app.get_user("nobody").await;
    assert!(
        error.headers.contains_key("x-request-id"),
        "errors carry it too"
    );
}

/// Found by schemathesis (scripts/proof.sh): these were a 500 (PostgreSQL refuses a NUL in a
/// text parameter) and a `false` stored as the text `"false"`; 405 lacked `Allow`.
#[tokio::test]
async fn hostile_values_get_4xx_not_500_nor_coercion() {
    let app = spawn_app().await;
    app.login("al\u{0}ice", "whatever-password")
        .await
        .assert_error(401, "invalid_credentials");
    app.get_user("al%00ice")
        .await
        .assert_error(404, "not_found");
    let mut body = crate::helpers::NewUser::unique("strict").body();
    body["personality_type"] = serde_json::json!(false);
    app.register(body).await.assert_error(400, "invalid_json");
    let reply = app
        .read(
            app.client
                .request(reqwest::Method::PUT, format!("{}/api/users/me", app.base)),
        )
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET, DELETE");
}

/// The spec's `limit` is an integer from 1 to 500: an empty value, a word or 0 is refused as
/// the spec says (400 `invalid_parameter` naming it), never read as "no limit".
#[tokio::test]
async fn an_empty_or_malformed_query_parameter_is_refused_naming_it() {
    let app = spawn_app().await;
    for query in ["limit=", "limit=abc", "limit=-1"] {
        let message = app
            .read(app.client.get(format!("{}/api/users?{query}", app.base)))
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.contains("limit"), "{query}: {message}");
    }
    let message = app
        .read(app.client.get(format!("{}/api/users?limit=0", app.base)))
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.contains("limit"), "limit=0: {message}");
}
