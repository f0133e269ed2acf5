//! Loopback load test: requests per second of the bare router, our full stack and
//! axum-prometheus (plus our layers alone and a do-nothing `Router::layer`, which shows what
//! axum charges any layer), served over real TCP on 127.0.0.1 and driven by a minimal
//! keep-alive HTTP/1.1 client, in the same run. Bounded: each variant runs a few seconds, twice,
//! interleaved, and the process exits by itself.
//!
//! ```text
//! cargo bench --bench load                # 3 s per variant and round
//! LOAD_SECS=10 cargo bench --bench load
//! ```

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_observe::Observer;

const CONNECTIONS: usize = 32;

#[path = "support/passthrough.rs"]
mod passthrough;

fn base() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

/// Serves `app` on its own single-worker runtime (the other core drives the load).
fn serve(app: Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// One keep-alive connection sending GETs back to back until `stop`.
async fn connection(addr: SocketAddr, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = b"GET /users/42 HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: load/1.0\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    while !stop.load(Relaxed) {
        stream.write_all(request).await.unwrap();
        // Read one response: headers, then content-length bytes of body.
        let mut filled = 0;
        loop {
            let n = stream.read(&mut buf[filled..]).await.unwrap();
            assert!(n > 0, "server closed the connection");
            filled += n;
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while filled < end + 4 + len {
                    filled += stream.read(&mut buf[filled..]).await.unwrap();
                }
                break;
            }
        }
        done.fetch_add(1, Relaxed);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn measure(client: &tokio::runtime::Runtime, addr: SocketAddr, secs: u64) -> f64 {
    client.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(connection(addr, stop.clone(), done.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await; // warm-up
        let (start, before) = (Instant::now(), done.load(Relaxed));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let rps = (done.load(Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        rps
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` support
    }
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let observer = Observer::new();
    let prometheus_layer = {
        let _guard = client.enter(); // axum-prometheus spawns its upkeep task
        axum_prometheus::PrometheusMetricLayer::pair().0
    };
    let variants = [
        ("bare_router", serve(base())),
        ("ours_full", serve(base().layer(observer.layer()))),
        ("axum_prometheus", serve(base().layer(prometheus_layer))),
        (
            "ours_metrics",
            serve(base().layer(observer.http_metrics_layer())),
        ),
        (
            "ours_request_id",
            serve(base().layer(tower_observe::AssignRequestIdLayer::new())),
        ),
        (
            "noop_layer",
            serve(base().layer(tower::layer::layer_fn(|s| s))),
        ),
        (
            "noop_body_wrapping_layer",
            serve(base().layer(passthrough::BodyPassThroughLayer)),
        ),
    ];

    // LOAD_SERVE_SECS=60 only serves the variants (for an external generator such as wrk).
    if let Some(secs) = std::env::var("LOAD_SERVE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        for (name, addr) in &variants {
            println!("{name} http://{addr}/users/42");
        }
        std::thread::sleep(Duration::from_secs(secs));
        return;
    }
    // LOAD_ONLY=ours_full runs one variant (for profiling).
    let only = std::env::var("LOAD_ONLY").ok();
    let mut totals = [0.0f64; 7];
    for round in 1..=2 {
        for (i, (name, addr)) in variants.iter().enumerate() {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let rps = measure(&client, *addr, secs);
            totals[i] += rps;
            println!("round {round}: {name:<16} {rps:>10.0} req/s");
        }
    }
    println!();
    if only.is_some() {
        return;
    }
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "{name:<16} {:>10.0} req/s  {:>5.1} % of bare",
            totals[i] / 2.0,
            100.0 * totals[i] / totals[0]
        );
    }
    assert_eq!(observer.stats().totals.errors, 0);
}
