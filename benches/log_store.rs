//! The log store's costs, in one run:
//!
//! - **capture per event**: `tracing::info!` inside a request-like span through the store's
//!   layer, next to the same event through `EcsJsonLayer` writing to `io::sink()` (the
//!   baseline), with the background flusher draining the buffer as in production;
//! - **lookup by request ID** in a file store of 1,000,000 events (100,000 requests of ten
//!   events each; built once, in a temporary file);
//! - **bytes per stored event**, printed: the store's own count (keys, encoded records, index
//!   entries) and the file's size.
//!
//! ```text
//! cargo bench --bench log_store --features log-store
//! LOG_STORE_EVENTS=100000 cargo bench --bench log_store --features log-store   # quicker
//! ```

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_observe::log_store::LogStoreOptions;
use tower_observe::logs::EcsJsonLayer;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

fn request_span() -> tracing::Span {
    tracing::info_span!(
        "HTTP request",
        otel.kind = "server",
        http.request.method = "GET",
        http.route = "/orders/{id}",
        request_id = "req-1",
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id = "00f067aa0ba902b7",
    )
}

fn capture(c: &mut Criterion) {
    let mut group = c.benchmark_group("capture_per_event");
    group.bench_function("ecs_json_layer_to_sink", |b| {
        let subscriber = tracing_subscriber::registry()
            .with(EcsJsonLayer::new("bench").with_writer(std::io::sink));
        tracing::subscriber::with_default(subscriber, || {
            let span = request_span();
            let _e = span.enter();
            b.iter(|| tracing::info!(rows = 3u64, db.system = "postgresql", "slow query"));
        });
    });
    // Every captured event is stored: the buffer is flushed (untimed) before it fills, so
    // the figure is the cost of capturing, not of dropping.
    const CHUNK: u64 = 8192;
    let observer = Observer::builder()
        .log_store(
            LogStoreOptions::in_memory()
                .buffer(CHUNK as usize)
                .max_bytes(64 << 20)
                .flush_interval(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    group.bench_function("log_store_layer", |b| {
        let subscriber = tracing_subscriber::registry().with(store.layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = request_span();
            let _e = span.enter();
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let start = Instant::now();
                    for _ in 0..n {
                        tracing::info!(rows = 3u64, db.system = "postgresql", "slow query");
                    }
                    timed += start.elapsed();
                    left -= n;
                    store.flush();
                }
                timed
            });
        });
    });
    group.finish();
    store.flush();
    println!(
        "capture: {} events stored (the rest aged out by max_bytes), {} dropped",
        store.storage().unwrap().records,
        store.dropped()
    );
}

fn lookup(c: &mut Criterion) {
    let events: u64 = std::env::var("LOG_STORE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let requests = events / 10;
    let dir = std::env::temp_dir().join(format!(
        "tower-observe-log-store-bench-{}",
        std::process::id()
    ));
    let path = dir.join("logs.redb");
    let observer = Observer::builder()
        .log_store(
            LogStoreOptions::file(&path)
                .buffer(1 << 17)
                .max_bytes(u64::MAX)
                .flush_interval(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    let built = Instant::now();
    let subscriber = tracing_subscriber::registry().with(store.layer());
    tracing::subscriber::with_default(subscriber, || {
        for r in 0..requests {
            let span = tracing::info_span!(
                "HTTP request",
                http.route = "/orders/{id}",
                request_id = format!("req-{r}").as_str(),
                trace_id = format!("{:032x}", r + 1).as_str(),
            );
            let _e = span.enter();
            for n in 0..9u64 {
                tracing::info!(n, order.id = r, "step done");
            }
            drop(_e);
            drop(span);
            if r % 5000 == 4999 {
                store.flush();
            }
        }
    });
    store.flush();
    let size = store.storage().unwrap();
    let file = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "store: {} records ({} events + {} spans) built in {:.1} s, {} dropped",
        size.records,
        requests * 9,
        requests,
        built.elapsed().as_secs_f64(),
        store.dropped()
    );
    println!(
        "bytes per stored record: {:.1} (keys, record, index entries); file: {:.1} per record ({} bytes)",
        size.bytes as f64 / size.records.max(1) as f64,
        file as f64 / size.records.max(1) as f64,
        file
    );
    let mut group = c.benchmark_group("lookup");
    group.bench_function("by_request_id_1m", |b| {
        let mut r = 0u64;
        b.iter(|| {
            r = (r + 7919) % requests;
            let view = store.request(&format!("req-{r}")).unwrap().unwrap();
            assert_eq!(view.logs.len(), 9);
            view
        });
    });
    group.bench_function("by_trace_id_1m", |b| {
        let mut r = 0u64;
        b.iter(|| {
            r = (r + 7919) % requests;
            let view = store.request(&format!("{:032x}", r + 1)).unwrap().unwrap();
            assert_eq!(view.logs.len(), 9);
            view
        });
    });
    group.finish();
    drop(store);
    drop(observer);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, capture, lookup);
criterion_main!(benches);
