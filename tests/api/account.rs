//! The bearer-protected account operations and the tokens that open them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{ISSUER, JWT_SECRET, TestApp, spawn_app};

#[tokio::test]
async fn register_login_me_change_password_revoke_delete() {
    let app = spawn_app().await;
    let (user, token) = app.signed_up("flow").await;

    let me = app.me(&token).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["data"]["username"], user.username.as_str());

    let new_password = "a-brand-new-password";
    let reply = app
        .change_password(&token, &user.password, new_password)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let fresh = reply.json()["token"].as_str().unwrap().to_owned();

    let message = app.me(&token).await.assert_error(401, "unauthorized");
    assert!(message.contains("password change"), "{message}");
    assert_eq!(
        app.me(&fresh).await.status,
        200,
        "the token from the change works"
    );
    app.login(&user.username, &user.password)
        .await
        .assert_error(401, "invalid_credentials");
    let relogin = app.token_for(&user.username, new_password).await;
    assert_eq!(
        app.me(&relogin).await.status,
        200,
        "a token issued right after the change works"
    );

    let deleted = app.delete_me(&relogin).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.me(&relogin).await.assert_error(401, "unauthorized");
    app.get_user(&user.username)
        .await
        .assert_error(404, "not_found");
    let profiles = app.db.psql(&format!(
        "select count(*) from user_profiles where email = '{}'",
        user.email
    ));
    assert_eq!(profiles, "0", "the profile went with the user");
}

#[tokio::test]
async fn wrong_current_password_is_403_and_weak_new_one_422() {
    let app = spawn_app().await;
    let (user, token) = app.signed_up("pw").await;
    app.change_password(&token, "not-my-password", "another-long-one")
        .await
        .assert_error(403, "wrong_password");
    let message = app
        .change_password(&token, &user.password, "short")
        .await
        .assert_error(422, "validation_failed");
    assert!(message.starts_with("new_password"), "{message}");
    assert_eq!(app.me(&token).await.status, 200, "nothing changed");
}

#[tokio::test]
async fn profile_patch_sets_clears_and_keeps_fields() {
    let app = spawn_app().await;
    let (user, token) = app.signed_up("prof").await;
    let reply = app
        .update_profile(
            &token,
            json!({"name": "Pat", "location": "Helsinki", "bio": "hi"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let profile = &reply.json()["data"]["user_profiles"];
    assert_eq!(profile["name"], "Pat");
    assert_eq!(profile["location"], "Helsinki");

    let reply = app.update_profile(&token, json!({"location": null})).await;
    let profile = reply.json()["data"]["user_profiles"].clone();
    assert!(profile["location"].is_null(), "null clears");
    assert_eq!(profile["name"], "Pat", "absent keeps");
    assert_eq!(profile["email"], user.email.as_str());
    let public = app.get_user(&user.username).await.json();
    let mut without_email = profile.clone();
    without_email.as_object_mut().unwrap().remove("email");
    assert_eq!(
        public["data"]["user_profiles"], without_email,
        "the email is private"
    );

    let reply = app
        .update_profile(&token, json!({"email": "New.Address@Example.com"}))
        .await;
    assert_eq!(
        reply.json()["data"]["user_profiles"]["email"],
        "new.address@example.com"
    );

    app.update_profile(&token, json!({"email": "alice@example.com"}))
        .await
        .assert_error(409, "email_taken");
    app.update_profile(&token, json!({"email": "nope"}))
        .await
        .assert_error(422, "validation_failed");
    app.update_profile(&token, json!({"bio": "x".repeat(2001)}))
        .await
        .assert_error(422, "validation_failed");
}

fn forge(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    app.me(token).await.json()["data"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn expired_tampered_foreign_and_unsigned_tokens_are_rejected() {
    let app = spawn_app().await;
    let (_, token) = app.signed_up("tok").await;
    let id = user_id(&app, &token).await;
    // `iat` with milliseconds, as the server writes it: a whole second could predate the
    // registration (`last_password_change`) and be rejected as revoked.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = now_ms / 1000 + 1;
    let claims = |iat: i64, exp: i64| {
        let iat = if iat == now {
            now_ms as f64 / 1000.0
        } else {
            iat as f64
        };
        json!({"sub": id.to_string(), "iss": ISSUER, "iat": iat, "exp": exp})
    };

    // A token we forge the way the server does works: the forgeries below fail for their flaw.
    assert_eq!(
        app.me(&forge(&claims(now, now + 60), JWT_SECRET))
            .await
            .status,
        200
    );

    let expired = forge(&claims(now - 7200, now - 3600), JWT_SECRET);
    let message = app.me(&expired).await.assert_error(401, "unauthorized");
    assert!(message.contains("expired"), "{message}");

    let foreign = forge(&claims(now, now + 60), "some-other-secret-0123456789abcdef");
    app.me(&foreign).await.assert_error(401, "unauthorized");

    let mut wrong_iss = claims(now, now + 60);
    wrong_iss["iss"] = json!("someone-else");
    app.me(&forge(&wrong_iss, JWT_SECRET))
        .await
        .assert_error(401, "unauthorized");

    let from_future = forge(&claims(now + 3600, now + 7200), JWT_SECRET);
    app.me(&from_future).await.assert_error(401, "unauthorized");

    // Tampered: the payload says another user, the signature is the original's.
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("1");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    app.me(&tampered).await.assert_error(401, "unauthorized");

    // `alg: none`, unsigned, with valid claims.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(now, now + 60).to_string());
    for unsigned in [
        format!("{none_header}.{body}."),
        format!("{none_header}.{body}"),
    ] {
        app.me(&unsigned).await.assert_error(401, "unauthorized");
    }
    app.me("not-a-jwt").await.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn protected_operations_need_a_bearer_token() {
    let app = spawn_app().await;
    let url = format!("{}/api/users/me", app.base);
    app.read(app.client.get(&url))
        .await
        .assert_error(401, "unauthorized");
    app.read(app.client.get(&url).basic_auth("alice", Some("pw")))
        .await
        .assert_error(401, "unauthorized");
    app.read(app.client.delete(&url))
        .await
        .assert_error(401, "unauthorized");
    app.read(app.client.patch(format!("{url}/profile")).json(&json!({})))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_user_without_a_profile_gets_one_from_a_patch_with_an_email() {
    let app = spawn_app().await;
    let (user, token) = app.signed_up("noprof").await;
    app.db.psql(&format!(
        "delete from user_profiles where user_id = (select id from users where username = '{}')",
        user.username
    ));
    assert!(app.me(&token).await.json()["data"]["user_profiles"].is_null());

    let message = app
        .update_profile(&token, json!({"name": "Nope"}))
        .await
        .assert_error(422, "validation_failed");
    assert!(message.starts_with("email"), "{message}");

    let reply = app
        .update_profile(
            &token,
            json!({"email": "fresh@example.com", "name": "Fresh"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let profile = &reply.json()["data"]["user_profiles"];
    assert_eq!(profile["email"], "fresh@example.com");
    assert_eq!(profile["name"], "Fresh");
    assert!(profile["location"].is_null());
}
