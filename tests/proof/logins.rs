//! One anonymous client against the password hasher, with the watch of `limits.rs`: 64 clients
//! that send a wrong-password login and reset the connection at once, for 10 s (each abandoned
//! login would keep a 19 MiB argon2 hash running if hashes were not bounded by their own
//! slots), and 64 clients flooding logins with the rate limits on. Peak RSS at most 128 MiB,
//! `/health` answering throughout, and a correct login working right after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::limits::{HealthWatch, assert_health, recovers, report};
use crate::support::{Cluster, Served, TestDb, apply_migrations, free_port, scratch};

const CLIENTS: usize = 64;
const FLOOD: Duration = Duration::from_secs(10);
const USERNAME: &str = "flood_target";
const PASSWORD: &str = "the-right-password-0123";

/// A login request for the target user with a wrong password, as raw HTTP/1.1.
fn wrong_login(addr: &str) -> Vec<u8> {
    let body = format!(r#"{{"username":"{USERNAME}","password":"a-wrong-guess"}}"#);
    format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A server with the target user registered, and a log to read afterwards.
async fn server(
    name: &str,
    extra: &[(&str, &str)],
) -> (TestDb<'static>, Served, std::path::PathBuf) {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch(name);
    let log = dir.join("serve.log");
    let mut served = Served::replica(&db, free_port(), &log, extra);
    let client = reqwest::Client::new();
    served.wait_ready(&client, Duration::from_secs(30)).await;
    let registered = client
        .post(served.url("/api/auth/register"))
        .json(&serde_json::json!({
            "username": USERNAME, "email": "flood@example.com", "password": PASSWORD
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    println!(
        "{name}: idle before the load: peak RSS {:.1} MiB",
        served.status_kib("VmHWM") as f64 / 1024.0
    );
    (db, served, log)
}

/// After the flood, the right password gets a token (hashing and limits recovered).
async fn correct_login_works(served: &Served) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    loop {
        let status = client
            .post(served.url("/api/auth/login"))
            .json(&serde_json::json!({"username": USERNAME, "password": PASSWORD}))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if let Ok(200) = status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a correct login never worked again (last: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_abandoning_logins_for_ten_seconds_stay_bounded() {
    // Rate limits off: every login reaches the hasher, which is what this proves bounded.
    let (_db, served, log) = server(
        "logins-abandoned",
        &[
            ("APP_RATE__PER_CLIENT_PER_MINUTE", "0"),
            ("APP_RATE__PER_ACCOUNT_PER_MINUTE", "0"),
        ],
    )
    .await;
    let addr = format!("127.0.0.1:{}", served.port);
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let health = HealthWatch::start(served.url("/health"));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, sent) = (addr.clone(), sent.clone());
            tokio::spawn(async move {
                let request = wrong_login(&addr);
                while started.elapsed() < FLOOD {
                    let Ok(mut stream) = TcpStream::connect(&addr).await else {
                        continue;
                    };
                    if stream.write_all(&request).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    // Long enough for the server to read the request and start its hash.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // A reset (RST), as an attacker's client would.
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    drop(stream);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let took = started.elapsed();
    let health = health.finish().await;

    let sent = sent.load(Ordering::Relaxed);
    report("abandoned logins", CLIENTS, took, &served, health.0);
    assert_health("abandoned logins", health);
    correct_login_works(&served).await;
    let text = served_log(&log);
    let abandoned = text.matches("abandoned").count();
    println!("abandoned logins: {sent} sent, {abandoned} logged as abandoned");
    assert!(sent > CLIENTS, "the clients sent {sent} logins");
    assert!(
        abandoned > 0,
        "no abandoned login was logged; the log:\n{}",
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    recovers(&served, "/api/users?limit=5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_with_rate_limits_on_is_refused_cheaply_and_stays_bounded() {
    // The default limits (60 a minute per client address, 10 per account).
    let (_db, served, log) = server("logins-flood", &[]).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let started = Instant::now();
    let health = HealthWatch::start(served.url("/health"));
    let url = served.url("/api/auth/login");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, counts) = (client.clone(), url.clone(), counts.clone());
            tokio::spawn(async move {
                let body = serde_json::json!({"username": USERNAME, "password": "a-wrong-guess"});
                while started.elapsed() < FLOOD {
                    let status = client.post(&url).json(&body).send().await;
                    let slot = match status.map(|r| r.status().as_u16()) {
                        Ok(401) => 0,
                        Ok(429) => 1,
                        Ok(503) => 2,
                        _ => 3,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let took = started.elapsed();
    let health = health.finish().await;

    let [unauthorized, limited, busy, other] =
        [0, 1, 2, 3].map(|i| counts[i].load(Ordering::Relaxed));
    println!(
        "login flood: {unauthorized} x 401, {limited} x 429, {busy} x 503, {other} other in {:.1} s",
        took.as_secs_f64()
    );
    report(
        "login flood, rate limits on",
        CLIENTS,
        took,
        &served,
        health.0,
    );
    assert_health("login flood", health);
    assert_eq!(other, 0, "every answer is 401, 429 or 503");
    // At most the per-account limit's worth of guesses reached the hasher: a burst of 10,
    // then one every 6 s.
    let allowed = 10 + took.as_secs() as usize / 6 + 1;
    assert!(
        unauthorized <= allowed,
        "{unauthorized} guesses were checked, more than {allowed}"
    );
    assert!(
        limited > 100,
        "only {limited} refused: the limit did not apply"
    );
    // The refusals are counted, not each logged: at most 10 lines a second about them.
    let lines = served_log(&log).matches("outcome=\"rate_limited\"").count();
    println!("login flood: {lines} log lines about {limited} refusals");
    assert!(lines > 0, "the refusals were not logged at all");
    assert!(
        lines <= 10 * (took.as_secs() as usize + 2),
        "{lines} log lines about refusals in {took:?}"
    );
    recovers(&served, "/api/users?limit=5").await;
}

fn served_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
