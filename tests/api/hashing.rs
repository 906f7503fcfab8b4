//! Password hashing stays bounded whatever clients do: hang up mid-hash, or flood logins.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, join_all, spawn_with};
use crate::support::metric;

/// After `delay`, sends a whole wrong-password login and resets the connection 100 ms later,
/// without reading the answer: mid-hash, on these cores.
async fn login_and_hang_up(app: &TestApp, delay: Duration) {
    tokio::time::sleep(delay).await;
    let addr = app.base.trim_start_matches("http://");
    let body = r#"{"username":"nobody","password":"wrong-password"}"#;
    let request = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A reset (RST), as an attacker's client would.
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

#[tokio::test]
async fn logins_whose_clients_hang_up_never_run_more_hashes_than_the_slots() {
    // Arrange: one slot, a long queue.
    let app = spawn_with(|s| {
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue = 1000;
    })
    .await;
    // One whole login first, so that the pool is connected and the others reach their hash.
    assert_eq!(app.login("nobody", "wrong-password").await.status, 401);

    // Act: 32 clients, one every 20 ms, each hanging up while the one before it still
    // hashes (each would take the slot of the one before when it hangs up, if slots were
    // freed then), while the metric is watched.
    let clients: Vec<_> = (0..32)
        .map(|i| login_and_hang_up(&app, Duration::from_millis(20 * i)))
        .collect();
    let watch = async {
        const ALL_SENT: Duration = Duration::from_millis(20 * 32 + 100);
        let started = Instant::now();
        let (mut most, mut seen) = (0.0f64, false);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = app.metrics().await;
            let running = metric(&text, "argon2_hashes_in_flight");
            let queued = metric(&text, "argon2_hashes_queued");
            most = most.max(running);
            seen |= running > 0.0;
            if seen && running == 0.0 && queued == 0.0 && started.elapsed() > ALL_SENT {
                return most;
            }
            assert!(Instant::now() < deadline, "hashing never settled:\n{text}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (_, most) = tokio::join!(join_all(clients), watch);

    // Assert: never more than the one slot, and the server still answers.
    assert_eq!(most, 1.0, "hashes in flight beyond the limit");
    assert_eq!(app.health().await.status, 200);
    assert_eq!(app.login("nobody", "wrong-password").await.status, 401);
}

#[tokio::test]
async fn a_full_hash_queue_answers_503_with_retry_after_at_once() {
    // Arrange: one slot and room for one more.
    let app = spawn_with(|s| {
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue = 1;
    })
    .await;

    // Act: a burst of logins.
    let logins: Vec<_> = (0..16)
        .map(|_| async {
            let started = Instant::now();
            let reply = app.login("nobody", "wrong-password").await;
            (reply, started.elapsed())
        })
        .collect();
    let replies = join_all(logins).await;

    // Assert: each is a 401 after its hash or an immediate 503 with Retry-After.
    let mut refused = 0;
    for (reply, took) in &replies {
        match reply.status.as_u16() {
            401 => {}
            503 => {
                refused += 1;
                reply.assert_error(503, "overloaded");
                assert_eq!(reply.headers["retry-after"], "1");
                assert!(took < &Duration::from_secs(5), "refused at once: {took:?}");
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert!(refused > 0, "16 logins at once never filled a queue of 1");
    assert!(refused < 16, "some logins were served");
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "argon2_hashes_rejected_total"),
        f64::from(refused)
    );
}
