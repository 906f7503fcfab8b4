//! The API port's connection limits: header timeout (slowloris), the body read inside the
//! request timeout, the write timeout (slow readers), the connection cap, h2c off by default.
//! Every wait is bounded; the only timing claims are "closed before the client would have
//! finished", with seconds of slack.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, join_all, spawn_with};
use crate::support::metric;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or resets it), at most `within`; what it
/// sent, or `None` if it was still open then.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

/// One request on its own connection, `Connection: close`; the whole answer as text.
async fn raw(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server answers and closes within 10 s");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn partial_request_heads_are_closed_by_the_header_timeout_and_health_still_answers() {
    // Arrange: a 1 s header timeout.
    let app = spawn_with(|s| s.http.header_timeout = Duration::from_secs(1)).await;
    let addr = addr(&app);

    // Act: 200 connections that each send half a request head and stop, and one that keeps
    // sending a header byte every 100 ms (it would take 30 s to finish).
    let started = Instant::now();
    let mut partial = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /api/users HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        partial.push(stream);
    }
    let mut dripping = TcpStream::connect(&addr).await.unwrap();
    dripping
        .write_all(b"GET /api/users HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = async {
        for _ in 0..300 {
            if dripping.write_all(b"X").await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("a request head dripped for 30 s was never cut off");
    };
    let health = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let t = Instant::now();
            assert_eq!(app.health().await.status, 200);
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slowest
    };
    let closing = join_all(
        partial
            .iter_mut()
            .map(|s| read_until_closed(s, Duration::from_secs(15)))
            .collect(),
    );
    let (closed, drip_cut, slowest_health) = tokio::join!(closing, drip, health);

    // Assert: all closed by the server, long before their clients would have given up;
    // /health answered throughout; the metric counts them.
    assert!(
        closed.iter().all(Option::is_some),
        "{} of 200 partial connections still open after 15 s",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(drip_cut < Duration::from_secs(15), "cut after {drip_cut:?}");
    assert!(
        slowest_health < Duration::from_secs(5),
        "slowest /health {slowest_health:?}"
    );
    let metrics = app.metrics().await;
    assert!(metric(&metrics, "http_connections_header_timeouts_total") >= 201.0);
    assert_eq!(app.health().await.status, 200);
}

#[tokio::test]
async fn a_dripped_chunked_body_is_cut_off_by_the_request_timeout() {
    // Arrange: a 1 s request timeout.
    let app = spawn_with(|s| s.http.request_timeout = Duration::from_secs(1)).await;
    let addr = addr(&app);
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();

    // Act: one byte of body every 200 ms (a 100-byte body would take 20 s).
    let started = Instant::now();
    let drip = async move {
        for _ in 0..100 {
            if writer.write_all(b"1\r\n \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let answer = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&got).into_owned(),
        )
    };
    let answered = tokio::select! {
        answered = tokio::time::timeout(Duration::from_secs(15), answer) => answered,
        () = drip => panic!("the whole dripped body was read"),
    };

    // Assert: a 503 (or a closed connection) about when the request timeout expired, not
    // when the client finished.
    let (elapsed, head) = answered.expect("an answer within 15 s");
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 503") || head.starts_with("HTTP/1.1 408"),
        "{head}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_client_that_reads_nothing_of_a_large_response_loses_its_connection() {
    // Arrange: a 1 s write timeout; a client with a tiny receive window.
    let app = spawn_with(|s| s.http.write_timeout = Duration::from_secs(1)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr(&app).parse().unwrap()).await.unwrap();

    // Act: ask for Swagger UI (1.6 MB) 20 times, pipelined, more than the kernel's socket
    // buffers hold, and read none of it.
    stream
        .write_all(&b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20))
        .await
        .unwrap();

    // Assert: the server gives up on it, counts it, and serves others meanwhile.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = app.metrics().await;
        if metric(&metrics, "http_connections_write_timeouts_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no write timeout in 15 s");
        assert_eq!(app.health().await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(15))
            .await
            .is_some(),
        "the connection is closed"
    );
}

#[tokio::test]
async fn past_the_connection_cap_health_answers_the_rest_is_refused_and_it_recovers() {
    // Arrange: room for 4 connections, all taken by idle clients.
    let app = spawn_with(|s| s.http.max_connections = 4).await;
    let addr = addr(&app);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }

    // Act and assert: /health is still answered on a new connection, then it is closed; the
    // API is refused with the JSON 503 and Retry-After.
    let health = raw(&addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.to_ascii_lowercase().contains("connection: close"),
        "{health}"
    );
    let refused = raw(&addr, "GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "http_connections_open"), 4.0, "{metrics}");
    assert!(metric(&metrics, "http_connections_refused_total") >= 2.0);

    // The clients go: the server serves the API again by itself.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = raw(
            &addr,
            "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client preface of HTTP/2 with prior knowledge, and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// What the server answers an HTTP/2 prior-knowledge client, until it closes or 2 s pass.
async fn answer_to_h2(app: &TestApp) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    stream.write_all(H2_PREFACE).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    got
}

#[tokio::test]
async fn h2c_is_refused_by_default_and_limited_in_streams_when_enabled() {
    // Default: HTTP/1.1 only; the preface gets no HTTP/2 SETTINGS frame.
    let app = spawn_with(|_| {}).await;
    let got = answer_to_h2(&app).await;
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 "),
        "an HTTP/2 answer: {got:?}"
    );

    // Enabled: the server's SETTINGS frame announces the stream limit.
    let app = spawn_with(|s| {
        s.http.h2c = true;
        s.http.h2c_max_streams = 7;
    })
    .await;
    let got = answer_to_h2(&app).await;
    assert!(
        got.len() >= 9 && got[3] == 0x04,
        "not a SETTINGS frame: {got:?}"
    );
    let len = usize::from(got[0]) << 16 | usize::from(got[1]) << 8 | usize::from(got[2]);
    let settings = &got[9..9 + len];
    let max_streams = settings
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(max_streams, Some(7), "{settings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_stays_200_while_large_pages_keep_every_pooled_connection_busy() {
    // Arrange: a pool of 2, and 60 large pages allowed at once so that they hold it.
    let app = spawn_with(|s| {
        s.database.pool_max = 2;
        s.database.acquire_timeout = Duration::from_secs(1);
        s.api.large_page_concurrency = 60;
    })
    .await;
    app.db.seed_users(600);
    assert_eq!(app.list_users("?limit=500").await.status, 200);

    // Act: 60 clients fetch `limit=500` pages in a loop for 3 s while /ready is asked.
    let until = Instant::now() + Duration::from_secs(3);
    let pages = (0..60)
        .map(|_| async {
            let mut statuses = Vec::new();
            while Instant::now() < until {
                statuses.push(app.list_users("?limit=500").await.status.as_u16());
            }
            statuses
        })
        .collect();
    let ready = async {
        let mut statuses = Vec::new();
        while Instant::now() < until {
            let reply = app.ready().await;
            statuses.push((reply.status.as_u16(), reply.text));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    };
    let (pages, ready) = tokio::join!(join_all(pages), ready);

    // Assert: the database is up, so the replica stays ready however busy its pool is.
    let pages: Vec<u16> = pages.into_iter().flatten().collect();
    assert!(pages.contains(&200), "{pages:?}");
    assert!(!ready.is_empty());
    assert!(
        ready.iter().all(|(s, _)| *s == 200),
        "/ready during the burst: {ready:?}"
    );
}

#[tokio::test]
async fn large_pages_are_built_a_few_at_a_time_and_all_get_answered() {
    // Arrange: one large page at a time.
    let app = spawn_with(|s| s.api.large_page_concurrency = 1).await;
    app.db.seed_users(600);

    // Act: 20 at once.
    let replies = join_all((0..20).map(|_| app.list_users("?limit=500")).collect()).await;

    // Assert: each waited its turn, none was refused, each is a whole page.
    for reply in replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["data"].as_array().unwrap().len(), 500);
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_last_the_keep_alive_timeout_not_the_header_timeout() {
    // Arrange: heads must arrive within 1 s, idle connections last 3 s.
    let app = spawn_with(|s| {
        s.http.header_timeout = Duration::from_secs(1);
        s.http.keep_alive_timeout = Duration::from_secs(3);
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 1024];

    // Act and assert: a request, 1.5 s of idleness (past the header timeout), another
    // request on the same connection: answered.
    stream.write_all(request).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(request).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);

    // Then idle: the server closes it after the keep-alive timeout, well before 15 s.
    let idle = Instant::now();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(15))
            .await
            .is_some(),
        "an idle keep-alive connection still open after 15 s"
    );
    assert!(
        idle.elapsed() >= Duration::from_secs(2),
        "closed after {:?}",
        idle.elapsed()
    );
}

#[tokio::test]
async fn reaching_the_connection_cap_is_logged_once_and_leaving_it_too() {
    // Arrange: `app serve` as a process, room for 2 connections, both taken.
    let db = crate::support::Cluster::shared().create_db();
    crate::support::apply_migrations(&db);
    let mut served = crate::support::Served::start(&db, &[("APP_HTTP__MAX_CONNECTIONS", "2")]);
    // No keep-alive connection of the readiness check may linger and take a slot.
    let once = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    served.wait_ready(&once, Duration::from_secs(20)).await;
    drop(once);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = format!("127.0.0.1:{}", served.port);
    let held = vec![
        TcpStream::connect(&addr).await.unwrap(),
        TcpStream::connect(&addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act: three connections past the cap, then the held ones go and one more comes.
    for _ in 0..3 {
        let refused = raw(
            &addr,
            "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !raw(
        &addr,
        "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .starts_with("HTTP/1.1 200")
    {
        assert!(Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: one warning naming the setting for the three, one line when below again (the
    // log is written by a background thread: give it a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !served.log_text().contains("below the connection cap again") && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = served.log_text();
    assert_eq!(log.matches("connection cap reached").count(), 1, "{log}");
    assert!(log.contains("http.max_connections"), "{log}");
    assert!(log.contains("below the connection cap again"), "{log}");
}
