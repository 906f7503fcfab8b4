//! JWT key rotation without logouts: a token signed with key A keeps working on a server that
//! signs with B and still accepts A (`jwt.previous_secret`), until A is removed or its window
//! (`jwt.previous_until`) ends; then it gets 401. Tokens name their key in the `kid` header.

use std::time::Duration;

use app::config::SecretString;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::helpers::{JWT_SECRET, NewUser, spawn_app};

/// The key rotated in, as strong as prod requires.
const NEW_SECRET: &str = "rotated-jwt-secret-fedcba9876543210-fedcba98";

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"]
        .as_str()
        .expect("tokens carry a kid")
        .to_owned()
}

#[tokio::test]
async fn a_token_of_the_previous_key_works_until_the_key_is_removed_or_its_window_ends() {
    // Key A (the test servers' JWT_SECRET) signs a token.
    let app = spawn_app().await;
    let user = NewUser::unique("rotate");
    assert_eq!(app.register(user.body()).await.status, 201);
    let login = app.login(&user.username, &user.password).await.json();
    let token_a = login["token"].as_str().unwrap().to_owned();
    let kid_a = kid_of(&token_a);
    assert!(!JWT_SECRET.contains(&kid_a) && !kid_a.contains(&JWT_SECRET[..8]));
    assert_eq!(app.me(&token_a).await.status, 200);

    // Step 1 of the playbook: A still signs, B is accepted too.
    let app = app
        .restart_with(|s| s.jwt.previous_secret = Some(SecretString::from(NEW_SECRET)))
        .await;
    assert_eq!(app.me(&token_a).await.status, 200);
    let login = app.login(&user.username, &user.password).await.json();
    assert_eq!(kid_of(login["token"].as_str().unwrap()), kid_a);

    // Step 2: B signs, A is the previous key. A's token still works; B's names B.
    let until = chrono::Utc::now() + Duration::from_secs(3600);
    let app = app
        .restart_with(move |s| {
            s.jwt.secret = Some(SecretString::from(NEW_SECRET));
            s.jwt.previous_secret = Some(SecretString::from(JWT_SECRET));
            s.jwt.previous_until = Some(until);
        })
        .await;
    assert_eq!(app.me(&token_a).await.status, 200);
    let login = app.login(&user.username, &user.password).await.json();
    let token_b = login["token"].as_str().unwrap().to_owned();
    assert_ne!(kid_of(&token_b), kid_a);
    assert_eq!(app.me(&token_b).await.status, 200);

    // Rolling step 2 back (or a pod of step 1 still serving): A signs, B verifies, and
    // tokens of both keys work.
    let app = app
        .restart_with(|s| s.jwt.previous_secret = Some(SecretString::from(NEW_SECRET)))
        .await;
    assert_eq!(app.me(&token_a).await.status, 200);
    assert_eq!(app.me(&token_b).await.status, 200);

    // The window has ended: A's token is refused, B's is not.
    let app = app
        .restart_with(|s| {
            s.jwt.secret = Some(SecretString::from(NEW_SECRET));
            s.jwt.previous_secret = Some(SecretString::from(JWT_SECRET));
            s.jwt.previous_until = Some(chrono::Utc::now() - Duration::from_secs(1));
        })
        .await;
    app.me(&token_a).await.assert_error(401, "unauthorized");
    assert_eq!(app.me(&token_b).await.status, 200);

    // Step 3: the previous key removed: A's token is refused, B's is not.
    let app = app
        .restart_with(|s| s.jwt.secret = Some(SecretString::from(NEW_SECRET)))
        .await;
    app.me(&token_a).await.assert_error(401, "unauthorized");
    assert_eq!(app.me(&token_b).await.status, 200);
}
