//! Storage budget of the history: 10 million requests through 100 series over one simulated
//! day, then what memory and disk hold. Not a timing benchmark: it prints sizes.
//!
//! ```text
//! cargo bench --bench history --all-features
//! HISTORY_REQUESTS=1000000 cargo bench --bench history --all-features   # quicker
//! ```
//!
//! Requests are served in process by an axum router (no network) under a manual clock that
//! advances so the 10 M requests spread over 24 h; every request goes through the observer's
//! one recording path into the history, like in production.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_observe::clock::ManualClock;
use tower_observe::history::HistoryOptions;
use tower_observe::Observer;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let requests: u64 = std::env::var("HISTORY_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!(
        "tower-observe-history-bench-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.redb");
    let clock = ManualClock::new();
    // 25 routes × 2 methods × 2 status classes = 100 series.
    let observer = Observer::builder()
        .clock(clock.clone())
        .history(HistoryOptions::file(&path).flush_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let app = {
        let mut router = Router::new();
        for r in 0..25 {
            let status = move |Path(n): Path<u64>| async move {
                if n % 10 == 0 {
                    http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    http::StatusCode::OK
                }
            };
            router = router.route(&format!("/api/r{r}/{{n}}"), get(status).post(status));
        }
        router.layer(observer.layer()).with_state(())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rss_before = rss_bytes();
    let day = Duration::from_secs(86_400);
    let tick = day / requests as u32;
    let history = observer.history().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..requests {
            let method = if i % 2 == 0 { "GET" } else { "POST" };
            let uri = format!("/api/r{}/{}", i % 25, i / 25 % 10);
            let req = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            let _ = res.into_body().collect().await;
            clock.advance(tick);
            if i % 1_000_000 == 999_999 {
                history.flush(); // as the background thread would, every few seconds
            }
        }
    });
    history.flush();
    let elapsed = started.elapsed();
    let rss_after = rss_bytes();
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let stats = history.storage_stats().unwrap();
    println!("history storage budget: {requests} requests, 100 series, 24 h simulated");
    println!(
        "  served and recorded in {elapsed:.1?} ({:.0} requests/s)",
        requests as f64 / elapsed.as_secs_f64()
    );
    println!("  file: {file} bytes ({:.1} MiB)", file as f64 / 1048576.0);
    println!(
        "  RSS growth: {} bytes ({:.1} MiB)",
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0
    );
    println!(
        "  {:>4} {:>9} {:>12} {:>22}",
        "res", "buckets", "bytes", "bytes/series/day"
    );
    // One simulated day (it straddles two UTC days, so the 1d buckets are split in two).
    for s in &stats {
        println!(
            "  {:>4} {:>9} {:>12} {:>22.0}",
            s.resolution.as_str(),
            s.buckets,
            s.bytes,
            s.bytes as f64 / 100.0
        );
    }
    let per_million = file as f64 / (requests as f64 / 1e6);
    println!("  file bytes per million requests: {per_million:.0} (budget: < 1 GB)");
    let _ = std::fs::remove_dir_all(dir);
}
