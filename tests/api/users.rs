//! `/api/users` and `/api/users/{username}`.

use std::collections::HashSet;

use crate::helpers::spawn_app;
use crate::support;

#[tokio::test]
async fn lists_the_seed_users_with_their_profiles() {
    let app = spawn_app().await;
    let reply = app.list_users("").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["success"], true);
    assert!(body["next_cursor"].is_null());
    let users = body["data"].as_array().unwrap();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "alpha_baboon"]);
    let alice = &users[0];
    assert!(
        alice["user_profiles"].get("email").is_none(),
        "emails are private by default: {alice}"
    );
    assert_eq!(alice["user_profiles"]["personality_type"], "Analytical");
    assert!(alice.get("password_hash").is_none());
}

#[tokio::test]
async fn pages_follow_the_cursor_without_repeats_or_gaps() {
    let app = spawn_app().await;
    for i in 0..7 {
        let body = serde_json::json!({
            "username": format!("pager{i}"),
            "email": format!("pager{i}@example.com"),
            "password": "long-enough-pw",
        });
        assert_eq!(app.register(body).await.status, 201);
    }
    let mut seen = Vec::new();
    let mut query = "?limit=4".to_owned();
    let mut pages = 0;
    loop {
        let body = app.list_users(&query).await.json();
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= 4);
        seen.extend(data.iter().map(|u| u["id"].as_i64().unwrap()));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3, "10 users in pages of 4");
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ascending ids");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 10);
}

#[tokio::test]
async fn bad_paging_parameters_are_json_400s() {
    let app = spawn_app().await;
    app.list_users("?limit=0")
        .await
        .assert_error(400, "invalid_parameter");
    app.list_users("?limit=501")
        .await
        .assert_error(400, "invalid_parameter");
    app.list_users("?limit=ten")
        .await
        .assert_error(400, "invalid_parameter");
    app.list_users("?cursor=not-a-cursor")
        .await
        .assert_error(400, "invalid_parameter");
    let reply = app.list_users("?limit=500").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn one_user_by_name_and_a_json_404() {
    let app = spawn_app().await;
    let reply = app.get_user("bob").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["username"], "bob");
    assert_eq!(body["data"]["user_profiles"]["location"], "Austin, TX");

    let message = app.get_user("nobody").await.assert_error(404, "not_found");
    assert!(message.contains("nobody"), "{message}");
    app.get_user(&"x".repeat(60))
        .await
        .assert_error(404, "not_found");
}

#[test]
fn a_deep_page_reads_a_page_of_profiles_not_the_table() {
    // sqlx prepares the query, and PostgreSQL switches a prepared statement to a generic plan
    // after a few executions. That plan once merge-joined profiles from the start of their
    // index, so a deep page read every profile before it: what a page reads must not grow
    // with its depth.
    let db = support::Cluster::shared().create_db();
    support::apply_migrations(&db);
    db.psql(
        "insert into users (username, password_hash) \
           select 'deep' || g, '!locked' from generate_series(1, 20000) g; \
         insert into user_profiles (user_id, email) \
           select id, username || '@example.com' from users where username like 'deep%'; \
         analyze",
    );
    let deep_id = db.psql("select id from users where username = 'deep19000'");
    let out = db
        .psql_command()
        .args(["-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", "set plan_cache_mode = force_generic_plan"])
        .args([
            "-c",
            &format!("prepare page(int, bigint) as {}", app::api::users::LIST_SQL),
        ])
        .args([
            "-c",
            &format!("explain (analyze, format json) execute page({deep_id}, 51)"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    fn profile_rows(node: &serde_json::Value) -> f64 {
        let own = match node["Relation Name"].as_str() {
            Some("user_profiles") => {
                node["Actual Rows"].as_f64().unwrap() * node["Actual Loops"].as_f64().unwrap()
            }
            _ => 0.0,
        };
        own + node["Plans"]
            .as_array()
            .map_or(0.0, |plans| plans.iter().map(profile_rows).sum())
    }
    let read = profile_rows(&plan[0]["Plan"]);
    assert!(
        read <= 200.0,
        "a page 19 000 users deep read {read} profiles"
    );
}

#[tokio::test]
async fn the_directory_hides_emails_unless_public_emails_is_on() {
    // Arrange: a registered user, on a server with default settings and on one with
    // `api.public_emails`.
    let private = spawn_app().await;
    let (user, token) = private.signed_up("quiet").await;
    let public = crate::helpers::spawn_with(|s| s.api.public_emails = true).await;

    // Act and Assert: anonymous readers do not see the email, the owner does.
    let one = private.get_user(&user.username).await.json();
    assert!(one["data"]["user_profiles"].get("email").is_none(), "{one}");
    let page = private.list_users("?limit=500").await;
    assert!(
        !page.text.contains('@'),
        "no email in the directory: {}",
        page.text
    );
    let me = private.me(&token).await.json();
    assert_eq!(me["data"]["user_profiles"]["email"], user.email.as_str());

    // The seed's behaviour is one setting away.
    let page = public.list_users("").await.json();
    assert_eq!(
        page["data"][0]["user_profiles"]["email"],
        "alice@example.com"
    );
    let bob = public.get_user("bob").await.json();
    assert!(
        bob["data"]["user_profiles"]["email"]
            .as_str()
            .is_some_and(|e| e.contains('@')),
        "{bob}"
    );
}
