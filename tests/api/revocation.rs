//! A password change revokes every token obtained with the old password, however logins with
//! it interleave with the change.

use std::time::Duration;

use crate::helpers::{join_all, spawn_with};

#[tokio::test]
async fn no_token_from_the_old_password_works_after_a_change_however_logins_interleave() {
    // Arrange: a user, and room in the hash queue for every login; the change's hashes wait
    // behind up to a hundred others on shared cores, longer than the default request timeout.
    let app = spawn_with(|s| {
        s.auth.hash_queue = 1000;
        s.http.request_timeout = std::time::Duration::from_secs(120);
    })
    .await;
    let (user, token) = app.signed_up("racer").await;

    // Act: 100 logins with the old password, one every 10 ms, and a password change that
    // starts among the first of them. The change's second hash queues behind the logins
    // before it, so the logins arriving meanwhile read the old hash before the change
    // commits and finish their own hash after it: they are the race (with tokens compared
    // by time of issue, as before, some of theirs survived the change).
    let logins: Vec<_> = (0..100u64)
        .map(|i| {
            let (app, user) = (&app, &user);
            async move {
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                app.login(&user.username, &user.password).await
            }
        })
        .collect();
    let change = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.change_password(&token, &user.password, "a-new-password-long-enough")
            .await
    };
    let (replies, changed) = tokio::join!(join_all(logins), change);
    assert_eq!(changed.status, 200, "{}", changed.text);

    // Assert: after the change returned, none of the tokens the old password got works.
    let tokens: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["token"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        replies
            .iter()
            .all(|r| matches!(r.status.as_u16(), 200 | 401)),
        "only successes and refusals"
    );
    assert!(!tokens.is_empty(), "some logins won the race to a token");
    let mut surviving = 0;
    for token in &tokens {
        if app.me(token).await.status != 401 {
            surviving += 1;
        }
    }
    println!(
        "revocation race: {} of 100 logins with the old password got a token, {surviving} \
         still work after the change",
        tokens.len()
    );
    assert_eq!(
        surviving,
        0,
        "{surviving} of {} old tokens still work",
        tokens.len()
    );
    // The token the change answered with works, and so does the new password.
    let fresh = changed.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&fresh).await.status, 200);
    let again = app
        .token_for(&user.username, "a-new-password-long-enough")
        .await;
    assert_eq!(app.me(&again).await.status, 200);
}
