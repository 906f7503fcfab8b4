//! Prometheus metrics on their own port.

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let app = spawn_app().await;
    app.get_user("bob").await;
    app.get_user("nobody").await;
    app.health().await;
    let text = app.metrics().await;
    for needle in [
        r#"http_requests_total{method="GET",route="/api/users/{username}",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/api/users/{username}",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="/health",status="200"} 1"#,
        r#"http_request_duration_seconds_bucket{"#,
        "db_pool_connections ",
        "db_pool_idle_connections ",
        "app_build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains("bob") && !text.contains("nobody"),
        "paths never become labels"
    );
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_with(|s| s.metrics.enabled = false).await;
    assert!(app.metrics_base.is_empty());
    assert_eq!(app.info().await.json()["metrics_enabled"], false);
}
