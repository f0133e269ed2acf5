//! What native histograms cost, against the classic histogram measured in the same run:
//!
//! - `record`: one observation into a histogram with classic buckets only, and into one that
//!   also keeps native buckets (a stream of request-like durations, 0.5 ms to 2 s), from one
//!   thread and from two threads at once on the same series;
//! - `per_request`: a request through `observer.layer()` (in process, no network) with the
//!   native histograms on and off;
//! - `scrape_10k`: rendering 10,000 series, classic only (text, protobuf) and with native
//!   buckets (protobuf; the text is the same as the classic one), one fresh sample per series
//!   before each render.
//!
//! ```text
//! cargo bench --bench native_histograms --features axum
//! ```

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use http_body_util::BodyExt;
use metrics::{Histogram, Key, Label, Recorder};
use tower::ServiceExt;
use tower_observe::registry::{Registry, OTEL_DURATION_BUCKETS};
use tower_observe::Observer;

const NAME: &str = "http_server_request_duration_seconds";
const SERIES: usize = 10_000;

fn registry(native: bool) -> Registry {
    let builder = Registry::builder()
        .buckets_for(NAME, &OTEL_DURATION_BUCKETS)
        .max_label_sets_per_metric(SERIES * 2);
    if native {
        builder.native_histogram(NAME).build()
    } else {
        builder.build()
    }
}

/// Durations from 0.5 ms to 2 s, log-uniform, as a request mix spreads.
fn durations() -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..4096)
        .map(|_| 0.0005 * (4000f64).powf(rng.f64()))
        .collect()
}

fn histogram(registry: &Registry, key: &Key) -> Histogram {
    let md = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    registry.register_histogram(key, &md)
}

fn bench_record(c: &mut Criterion) {
    let values = durations();
    let key = Key::from_parts(NAME, vec![Label::new("http_route", "/users/{id}")]);
    let mut group = c.benchmark_group("record");
    group.measurement_time(Duration::from_secs(4));
    for (name, native) in [("classic", false), ("native", true)] {
        let registry = registry(native);
        let h = histogram(&registry, &key);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                h.record(black_box(values[i]));
            })
        });
        // Two threads on one series: the contended case of a busy route on two cores.
        group.bench_function(format!("{name}_2_threads"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2 {
                        let (h, values) = (&h, &values);
                        s.spawn(move || {
                            for n in 0..iters as usize {
                                h.record(values[(n + t * 17) & 4095]);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        // A protobuf scrape now and then, as Prometheus does, keeps the halves folded.
        black_box(registry.render_protobuf());
    }
    group.finish();
}

fn bench_per_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("per_request");
    group.measurement_time(Duration::from_secs(4));
    for (name, native) in [("classic", false), ("native", true)] {
        let observer = Observer::builder()
            .native_histograms(native)
            .build()
            .unwrap();
        let router = Router::new()
            .route("/users/{id}", get(|| async { "user" }))
            .layer(observer.layer())
            .with_state(());
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = Request::get("/users/42")
                        .header("host", "127.0.0.1:3000")
                        .body(Body::empty())
                        .unwrap();
                    let res = router.clone().oneshot(req).await.unwrap();
                    res.into_body().collect().await.unwrap()
                })
            })
        });
    }
    group.finish();
}

fn keys() -> Vec<Key> {
    (0..SERIES)
        .map(|i| {
            Key::from_parts(
                NAME,
                vec![
                    Label::new(
                        "http_request_method",
                        ["GET", "POST", "PUT", "DELETE"][i % 4],
                    ),
                    Label::new("http_route", format!("/api/v1/resource_{}/{{id}}", i / 20)),
                    Label::new(
                        "http_response_status_code",
                        ["200", "201", "404", "500", "503"][i % 5],
                    ),
                    Label::new("url_scheme", "https"),
                ],
            )
        })
        .collect()
}

fn bench_scrape(c: &mut Criterion) {
    let keys = keys();
    let values = durations();
    let classic = registry(false);
    let native = registry(true);
    let classic_handles: Vec<Histogram> = keys.iter().map(|k| histogram(&classic, k)).collect();
    let native_handles: Vec<Histogram> = keys.iter().map(|k| histogram(&native, k)).collect();
    // Fill every series with a spread of durations, so the native ones have ~50 buckets.
    for handles in [&classic_handles, &native_handles] {
        for (i, h) in handles.iter().enumerate() {
            for n in 0..64 {
                h.record(values[(i * 64 + n) & 4095]);
            }
        }
    }
    println!(
        "10,000 series: text {:.1} MB; protobuf classic {:.1} MB, with native buckets {:.1} MB",
        classic.render().len() as f64 / 1e6,
        classic.render_protobuf().len() as f64 / 1e6,
        native.render_protobuf().len() as f64 / 1e6,
    );
    let record_all = |handles: &[Histogram], round: &mut usize| {
        *round += 1;
        for (i, h) in handles.iter().enumerate() {
            h.record(values[(i + *round) & 4095]);
        }
    };
    let mut group = c.benchmark_group("scrape_10k");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    let mut round = 0;
    group.bench_function("classic_text", |b| {
        let mut out = String::new();
        b.iter_batched(
            || record_all(&classic_handles, &mut round),
            |()| {
                out.clear();
                classic.render_into(&mut out);
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("classic_protobuf", |b| {
        let mut out = Vec::new();
        b.iter_batched(
            || record_all(&classic_handles, &mut round),
            |()| {
                out.clear();
                classic.render_protobuf_into(&mut out);
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("native_text", |b| {
        let mut out = String::new();
        b.iter_batched(
            || record_all(&native_handles, &mut round),
            |()| {
                out.clear();
                native.render_into(&mut out);
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("native_protobuf", |b| {
        let mut out = Vec::new();
        b.iter_batched(
            || record_all(&native_handles, &mut round),
            |()| {
                out.clear();
                native.render_protobuf_into(&mut out);
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_record, bench_per_request, bench_scrape);
criterion_main!(benches);
