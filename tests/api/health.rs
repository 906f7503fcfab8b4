//! `/health` and `/ready`.

use crate::helpers::{spawn_app, spawn_on};
use crate::support::Cluster;

#[tokio::test]
async fn health_is_healthy_and_touches_nothing() {
    let app = spawn_app().await;
    let reply = app.health().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), serde_json::json!({"status": "healthy"}));
}

#[tokio::test]
async fn ready_when_the_database_answers_and_the_schema_is_current() {
    let app = spawn_app().await;
    let reply = app.ready().await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "ready");
}

#[tokio::test]
async fn not_ready_on_an_unmigrated_database_then_ready_after_migrate() {
    let db = Cluster::shared().create_db();
    let app = spawn_on(db, |_| {}).await;
    let message = app.ready().await.assert_error(503, "schema_outdated");
    assert!(message.contains("app migrate"), "{message}");
    assert_eq!(app.health().await.status, 200);

    crate::support::apply_migrations(&app.db);
    let reply = app.ready().await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
