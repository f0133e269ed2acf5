//! Allocations per request of each stack, counted exactly, and a loop to count instructions
//! per request with callgrind (repeatable on a noisy machine, unlike time).
//!
//! ```text
//! cargo bench --bench per_request --all-features                  # allocations, every stack
//! cargo bench --bench per_request --all-features -- ours_untraced 2000   # N requests of one
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/deps/per_request-* ours_untraced 2000   # instructions: run N and 2N, subtract
//! ```
//!
//! Each stack serves `GET /users/42` in process (the router called directly, its body read to
//! the end), the way the `layers` benchmark does; the subscribers write to a sink.

#![allow(missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;

/// Counts every allocation the process makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn base() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

fn request() -> Request<Body> {
    Request::get("/users/42")
        .header("host", "127.0.0.1:3000")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .body(Body::empty())
        .unwrap()
}

/// The subscriber a stack runs under.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Subscriber {
    None,
    Ecs,
    Fmt,
    OpenTelemetry,
}

/// The stacks, by name: the router, and the subscriber installed while it serves.
fn stack(name: &str) -> Option<(Router, Subscriber)> {
    use tower_http::trace::TraceLayer;
    let observer = Observer::new();
    let traced = || base().layer(observer.layer().traces(TraceOptions::new()));
    Some(match name {
        "bare" => (base(), Subscriber::None),
        "noop_layer" => (base().layer(tower::layer::layer_fn(|s| s)), Subscriber::None),
        "ours_untraced" => (base().layer(observer.layer()), Subscriber::None),
        "ours_metrics" => (base().layer(observer.http_metrics_layer()), Subscriber::None),
        "ours_traced_no_subscriber" => (traced(), Subscriber::None),
        "ours_traced_ecs" => (traced(), Subscriber::Ecs),
        "ours_traced_fmt" => (traced(), Subscriber::Fmt),
        "ours_traced_otel" => (traced(), Subscriber::OpenTelemetry),
        "tower_http_trace_fmt" => (base().layer(TraceLayer::new_for_http()), Subscriber::Fmt),
        "tower_http_trace_ecs" => (base().layer(TraceLayer::new_for_http()), Subscriber::Ecs),
        "tower_http_trace_otel" => (
            base().layer(TraceLayer::new_for_http()),
            Subscriber::OpenTelemetry,
        ),
        "axum_prometheus" => {
            let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
            (base().layer(layer), Subscriber::None)
        }
        _ => return None,
    })
}

const STACKS: [&str; 12] = [
    "bare",
    "noop_layer",
    "ours_untraced",
    "ours_metrics",
    "ours_traced_no_subscriber",
    "ours_traced_ecs",
    "ours_traced_fmt",
    "ours_traced_otel",
    "tower_http_trace_ecs",
    "tower_http_trace_fmt",
    "tower_http_trace_otel",
    "axum_prometheus",
];

/// A span exporter that drops what it is given, so the OpenTelemetry SDK does all its work
/// but nothing piles up.
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// Runs `f` under `subscriber`, on this thread.
fn with_subscriber<T>(subscriber: Subscriber, f: impl FnOnce() -> T) -> T {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    match subscriber {
        Subscriber::None => f(),
        Subscriber::Ecs => {
            let layer = tower_observe::logs::EcsJsonLayer::new("bench").with_writer(std::io::sink);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f)
        }
        Subscriber::Fmt => {
            let layer = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f)
        }
        Subscriber::OpenTelemetry => {
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(Discard)
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
            let out =
                tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
            let _ = provider.shutdown();
            out
        }
    }
}

/// Polls `future` to its end on this thread. Every stack here answers without waiting, so no
/// runtime is needed, and none adds its own (timing-dependent) work to the count.
fn finish<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Serves `n` requests; returns the allocations they made.
fn serve(router: &Router, n: u64) -> u64 {
    let router = router.clone().with_state::<()>(());
    let run = |count: u64| {
        for _ in 0..count {
            finish(async {
                let res = router.clone().oneshot(request()).await.unwrap();
                res.into_body().collect().await.unwrap();
            });
        }
    };
    // Warm up: first label sets, thread-locals, caches.
    run(50);
    let before = ALLOCATIONS.load(Relaxed);
    run(n);
    ALLOCATIONS.load(Relaxed) - before
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // axum-prometheus spawns its upkeep task when its layer is made.
    let _guard = rt.enter();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        // One stack, N requests: for callgrind.
        [name, n] => {
            let (router, subscriber) = stack(name).expect("a stack name");
            let n: u64 = n.parse().expect("a number of requests");
            let allocations = with_subscriber(subscriber, || serve(&router, n));
            println!("{name}: {n} requests, {allocations} allocations");
        }
        _ => {
            println!("{:<28} {:>12}", "stack", "allocs/req");
            for name in STACKS {
                let (router, subscriber) = stack(name).expect("known");
                let n = 2000;
                let allocations = with_subscriber(subscriber, || serve(&router, n));
                println!("{name:<28} {:>12.2}", allocations as f64 / n as f64);
            }
        }
    }
}
