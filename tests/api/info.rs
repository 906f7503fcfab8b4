//! `/api/info`.

use app::config::Environment;

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn info_describes_the_instance_without_secret_values() {
    let app = spawn_app().await;
    let reply = app.info().await;
    assert_eq!(reply.status, 200);
    let info = reply.json();
    assert_eq!(info["environment"], "dev");
    assert_eq!(info["log_level"], "info");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(info["database"]["host"], "127.0.0.1");
    assert_eq!(info["database"]["name"], app.db.name.as_str());
    assert_eq!(info["secrets_loaded"], serde_json::json!(["JWT_SECRET"]));
    assert_eq!(info["metrics_enabled"], true);
    assert!(!reply.text.contains(crate::support::pg::SUPERUSER_PASSWORD));
}

#[tokio::test]
async fn info_in_prod_shows_no_database_host_or_commit_unless_asked() {
    let prod = spawn_with(|s| s.env = Environment::Prod).await;
    let info = prod.info().await.json();
    assert_eq!(info["environment"], "prod");
    assert!(info.get("commit").is_none(), "{info}");
    assert!(info["database"].get("host").is_none(), "{info}");
    assert_eq!(info["database"]["name"], prod.db.name.as_str());

    let detailed = spawn_with(|s| {
        s.env = Environment::Prod;
        s.api.info_details = Some(true);
    })
    .await;
    let info = detailed.info().await.json();
    assert!(info["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(info["database"]["host"], "127.0.0.1");
}
