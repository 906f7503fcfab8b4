//! One anonymous client cannot take a replica down: `app serve` as a process under slowloris,
//! slow readers of large pages, a burst of large pages and a file-descriptor limit below its
//! connection cap (abandoned logins and a login flood: `logins.rs`, with the same watch). Each scenario records the peak RSS (`VmHWM` of the served process) and the
//! slowest `/health`, and passes when memory stays under the base overlay's limit (128 MiB),
//! `/health` keeps answering and the server recovers by itself. The figures are printed
//! (`-- --nocapture`) and recorded in `docs/reliability.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Cluster, Served, apply_migrations, free_port, scratch};

/// The pod's memory limit in the base overlay.
const MEMORY_LIMIT_KIB: u64 = 128 * 1024;
/// Slowest `/health` allowed on these shared cores.
const HEALTH_BOUND: Duration = Duration::from_secs(1);

/// Polls `/health` on fresh connections every 100 ms until stopped; the slowest answer, and
/// how many failed (or took longer than 5 s). It runs on a thread and runtime of its own, so
/// that what it measures is the server, not the test's own clients crowding its runtime.
pub(crate) struct HealthWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, usize, usize)>,
}

impl HealthWatch {
    pub(crate) fn start(url: String) -> HealthWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let (mut slowest, mut failed, mut asked) = (Duration::ZERO, 0, 0);
                while !flag.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200);
                    slowest = slowest.max(t.elapsed());
                    asked += 1;
                    failed += usize::from(!ok);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (slowest, failed, asked)
            })
        });
        HealthWatch { stop, thread }
    }

    pub(crate) async fn finish(self) -> (Duration, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().expect("the health watch panicked"))
            .await
            .unwrap()
    }
}

/// One scenario's figures, printed as a row of the table in `docs/reliability.md`.
pub(crate) fn report(
    scenario: &str,
    clients: usize,
    took: Duration,
    served: &Served,
    health: Duration,
) {
    let peak = served.status_kib("VmHWM");
    println!(
        "| {scenario} | {clients} | {:.1} s | {:.1} MiB | {} ms |",
        took.as_secs_f64(),
        peak as f64 / 1024.0,
        health.as_millis()
    );
    println!(
        "{scenario}: RSS now {:.1} MiB",
        served.status_kib("VmRSS") as f64 / 1024.0
    );
    assert!(
        peak <= MEMORY_LIMIT_KIB,
        "{scenario}: peak RSS {peak} KiB over the 128 MiB limit"
    );
}

pub(crate) fn assert_health(scenario: &str, (slowest, failed, asked): (Duration, usize, usize)) {
    assert!(asked > 0);
    assert_eq!(failed, 0, "{scenario}: {failed} of {asked} /health failed");
    assert!(
        slowest <= HEALTH_BOUND,
        "{scenario}: slowest /health took {slowest:?}"
    );
}

/// Waits until `path` answers 200 on a fresh connection (the server recovered), within 10 s.
pub(crate) async fn recovers(served: &Served, path: &str) {
    recovers_within(served, path, Duration::from_secs(10)).await
}

async fn recovers_within(served: &Served, path: &str, within: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    while served.status(&client, path).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "{path} not 200 again within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until the server closes the connection, at most `within`; whether it did.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_1000_partial_connections_are_closed_and_health_answers_throughout() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch("limits-slowloris");
    let mut served = Served::replica(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[("APP_HTTP__HEADER_TIMEOUT", "3s")],
    );
    served
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(30))
        .await;
    let addr = format!("127.0.0.1:{}", served.port);

    println!(
        "idle before the load: peak RSS {:.1} MiB",
        served.status_kib("VmHWM") as f64 / 1024.0
    );
    let started = Instant::now();
    let health = HealthWatch::start(served.url("/health"));
    let mut partial = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /api/users HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
            .await
            .unwrap();
        partial.push(stream);
    }
    let closing = partial
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(20)));
    let mut closed = 0;
    for done in closing {
        closed += usize::from(done.await);
    }
    let took = started.elapsed();
    let health = health.finish().await;

    assert_eq!(closed, 1000, "partial connections closed by the server");
    report("slowloris", 1000, took, &served, health.0);
    assert_health("slowloris", health);
    recovers(&served, "/api/users?limit=5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_large_pages_stay_bounded_and_ready_stays_200_until_the_database_stops() {
    let cluster = Cluster::private();
    let db = cluster.create_db();
    apply_migrations(&db);
    db.seed_users(1000);
    let dir = scratch("limits-pages");
    let mut served = Served::replica(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[
            ("APP_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            ("APP_DATABASE__CONNECT_TIMEOUT", "1s"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    served.wait_ready(&client, Duration::from_secs(30)).await;

    // 60 clients fetch `limit=500` pages for 10 s, while /health and /ready are asked.
    println!(
        "idle before the load: peak RSS {:.1} MiB",
        served.status_kib("VmHWM") as f64 / 1024.0
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(10);
    let health = HealthWatch::start(served.url("/health"));
    let pages: Vec<_> = (0..60)
        .map(|_| {
            let (client, url) = (client.clone(), served.url("/api/users?limit=500"));
            tokio::spawn(async move {
                let (mut ok, mut other) = (0usize, Vec::new());
                while Instant::now() < until {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let body = r.bytes().await.unwrap();
                            assert!(body.len() > 100_000, "a whole page");
                            ok += 1;
                        }
                        Ok(r) => other.push(r.status().as_u16()),
                        Err(e) => panic!("a large page failed: {e}"),
                    }
                }
                (ok, other)
            })
        })
        .collect();
    let mut ready = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let status = served.status(&client, "/ready").await;
        ready.push((status, t.elapsed()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (mut ok, mut other) = (0, Vec::new());
    for page in pages {
        let (o, rest) = page.await.unwrap();
        ok += o;
        other.extend(rest);
    }
    let took = started.elapsed();
    let health = health.finish().await;
    let slowest_ready = ready.iter().map(|(_, t)| *t).max().unwrap();
    println!(
        "60 large pages: {ok} pages of 500 in {:.1} s, {} others ({other:?}); /ready {} times, \
         slowest {} ms",
        took.as_secs_f64(),
        other.len(),
        ready.len(),
        slowest_ready.as_millis()
    );
    report(
        "60 concurrent `limit=500` pages",
        60,
        took,
        &served,
        health.0,
    );
    assert_health("large pages", health);
    assert!(ok >= 60, "only {ok} pages");
    // On these shared cores a page can wait out the pool's acquire timeout while other test
    // binaries run: that is a 503 with Retry-After, load shed as designed, never another
    // status, and never more than a sliver of the pages.
    assert!(
        other.iter().all(|s| *s == 503) && other.len() * 20 <= ok,
        "pages refused beyond shedding: {other:?} against {ok} served"
    );
    assert!(
        ready.iter().all(|(s, _)| *s == Some(200)),
        "/ready during the burst: {ready:?}"
    );

    // The database stops: now, and only now, the replica is unready; it recovers by itself.
    cluster.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while served.status(&client, "/ready").await != Some(503) {
        assert!(
            Instant::now() < deadline,
            "/ready still not 503 with the database down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.status(&client, "/health").await, Some(200));
    cluster.start();
    served.wait_ready(&client, Duration::from_secs(15)).await;
    recovers(&served, "/api/users?limit=500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_large_pages_are_dropped_by_the_write_timeout() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    db.seed_users(1000);
    let dir = scratch("limits-slow-readers");
    let mut served = Served::replica(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[("APP_HTTP__WRITE_TIMEOUT", "2s")],
    );
    served
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(30))
        .await;
    let addr = format!("127.0.0.1:{}", served.port).parse().unwrap();

    // 200 clients with a tiny receive window each ask for a large page, then Swagger UI 4
    // times (1.6 MB each: more than the kernel's socket buffers hold, which would otherwise
    // take a page or two whole), pipelined, and read none of it.
    println!(
        "idle before the load: peak RSS {:.1} MiB",
        served.status_kib("VmHWM") as f64 / 1024.0
    );
    let started = Instant::now();
    let health = HealthWatch::start(served.url("/health"));
    let mut request = b"GET /api/users?limit=500 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    request.extend_from_slice(&b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4));
    let mut readers = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        readers.push(stream);
    }
    // Hold them past the page builds (in turns) and the write timeout, then see that the
    // server has let them go.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let closing: Vec<_> = readers
        .into_iter()
        .map(|mut stream| {
            // What the server had sent before giving up is read first, then the close.
            tokio::spawn(async move { closed_within(&mut stream, Duration::from_secs(20)).await })
        })
        .collect();
    let mut closed = 0;
    for done in closing {
        closed += usize::from(done.await.unwrap());
    }
    let took = started.elapsed();
    let health = health.finish().await;
    println!("slow readers: {closed} of 200 connections closed by the server");
    report(
        "slow readers of `limit=500` pages",
        200,
        took,
        &served,
        health.0,
    );
    assert_eq!(closed, 200, "slow readers let go");
    assert_health("slow readers", health);
    recovers(&served, "/api/users?limit=500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_file_descriptor_limit_the_server_does_not_spin_and_recovers() {
    let db = Cluster::shared().create_db();
    apply_migrations(&db);
    let dir = scratch("limits-emfile");
    // A connection cap above the process's file limit: a misconfiguration the server must
    // survive.
    let mut served = Served::start_nofile(
        &db,
        free_port(),
        &dir.join("serve.log"),
        &[
            ("APP_LOG__REQUESTS", "false"),
            ("APP_HTTP__HEADER_TIMEOUT", "3s"),
            ("APP_HTTP__MAX_CONNECTIONS", "10000"),
        ],
        128,
    );
    let client = reqwest::Client::new();
    served.wait_ready(&client, Duration::from_secs(30)).await;
    let addr = format!("127.0.0.1:{}", served.port);

    // 200 idle connections: the kernel completes them all, the server runs out of files.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = served.cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = served.cpu_time() - cpu_before;
    println!("at EMFILE: {} ms of CPU in 2 s", cpu.as_millis());
    assert!(
        cpu < Duration::from_millis(500),
        "the accept loop spins: {cpu:?} of CPU in 2 s"
    );

    // The header timeout frees the files; the queued connections are then served or closed,
    // and new ones are answered again, without a restart.
    recovers_within(&served, "/health", Duration::from_secs(30)).await;
    recovers_within(&served, "/api/info", Duration::from_secs(30)).await;
    drop(idle);
    assert!(served.is_running());
    let log = served.log_text();
    assert!(log.contains("cannot accept a connection"), "{log}");
}
