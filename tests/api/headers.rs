//! Security headers: no sniffing, no framing, a CSP Swagger UI works under, and no caching
//! of tokens or account data.

use reqwest::Method;

use crate::helpers::{Reply, spawn_app};

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on {} {}", reply.status, reply.text))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn every_response_forbids_sniffing_and_framing() {
    let app = spawn_app().await;
    let replies = [
        app.health().await,
        app.list_users("").await,
        app.get_user("nobody").await,
        app.send(Method::GET, "/no/such/route", None, None).await,
        app.login("nobody", "wrong-password").await,
    ];
    for reply in &replies {
        assert_eq!(header(reply, "x-content-type-options"), "nosniff");
        assert_eq!(header(reply, "x-frame-options"), "DENY");
        let csp = header(reply, "content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    // Public data may be cached; the directory is not private.
    assert!(replies[1].headers.get("cache-control").is_none());
}

#[tokio::test]
async fn swagger_ui_gets_a_policy_it_can_run_under() {
    let app = spawn_app().await;
    let docs = app.read(app.client.get(format!("{}/docs", app.base))).await;
    assert_eq!(docs.status, 200);
    let csp = header(&docs, "content-security-policy");
    // The page inlines its bundle, stylesheet and start-up script, and its icons are data:.
    for needed in [
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(needed), "{needed:?} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(header(&docs, "x-frame-options"), "DENY");
    assert!(
        docs.text.contains("<script"),
        "the page does inline its scripts"
    );
}

#[tokio::test]
async fn tokens_and_account_data_are_never_cached() {
    let app = spawn_app().await;
    let user = crate::helpers::NewUser::unique("cache");
    let registered = app.register(user.body()).await;
    let login = app.login(&user.username, &user.password).await;
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let me = app.me(&token).await;
    let patched = app
        .update_profile(&token, serde_json::json!({"name": "Cached"}))
        .await;
    let changed = app
        .change_password(&token, &user.password, "another-long-password")
        .await;
    let failed = app.login(&user.username, "wrong-password").await;
    for reply in [&registered, &login, &me, &patched, &changed, &failed] {
        assert!(reply.status.as_u16() < 500, "{}", reply.text);
        assert_eq!(header(reply, "cache-control"), "no-store", "{}", reply.text);
    }
}
