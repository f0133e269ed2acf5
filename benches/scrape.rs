//! Scrape cost: rendering 10,000 duration-histogram series (14 buckets each) with our
//! registry and with `metrics-exporter-prometheus`, in the same run, plus the bytes each
//! allocates per scrape (counted by a wrapping global allocator).
//!
//! ```text
//! cargo bench --bench scrape
//! ```
//!
//! Before every render one value is recorded into every series, so both renderers format
//! fresh data (the exporter also has to fold its buffered samples into buckets).

#![allow(missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use metrics::{Histogram, Key, Label, Recorder};
use tower_observe::registry::{Registry, OTEL_DURATION_BUCKETS};

struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SERIES: usize = 10_000;
const NAME: &str = "http_server_request_duration_seconds";

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

fn register(recorder: &dyn Recorder, keys: &[Key]) -> Vec<Histogram> {
    let md = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    keys.iter()
        .map(|k| recorder.register_histogram(k, &md))
        .collect()
}

fn record_all(handles: &[Histogram], round: &mut u64) {
    *round += 1;
    for (i, h) in handles.iter().enumerate() {
        h.record(((i as u64 + *round) % 1000) as f64 / 100.0);
    }
}

fn bench_scrape(c: &mut Criterion) {
    let keys = keys();

    let ours = Registry::builder()
        .buckets_for(NAME, &OTEL_DURATION_BUCKETS)
        .max_label_sets_per_metric(SERIES * 2)
        .build();
    let our_handles = register(&ours, &keys);

    let theirs = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&OTEL_DURATION_BUCKETS)
        .unwrap()
        .build_recorder();
    let their_handle = theirs.handle();
    let their_handles = register(&theirs, &keys);

    // One measured scrape each, for the byte counts and output sizes.
    let mut round = 0;
    for (name, handles, render) in [
        (
            "tower_observe",
            &our_handles,
            Box::new(|| ours.render()) as Box<dyn Fn() -> String>,
        ),
        (
            "metrics_exporter_prometheus",
            &their_handles,
            Box::new(|| their_handle.render()),
        ),
    ] {
        record_all(handles, &mut round);
        let before = ALLOCATED.load(Relaxed);
        let text = render();
        let allocated = ALLOCATED.load(Relaxed) - before;
        println!(
            "{name}: {} lines, {:.1} MB of text, {:.1} MB allocated during the render",
            text.lines().count(),
            text.len() as f64 / 1e6,
            allocated as f64 / 1e6
        );
    }

    let mut group = c.benchmark_group("render_10k_histograms");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    let mut round = 0;
    group.bench_function("tower_observe", |b| {
        let mut out = String::new();
        b.iter_batched(
            || record_all(&our_handles, &mut round),
            |()| {
                out.clear();
                ours.render_into(&mut out);
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("metrics_exporter_prometheus", |b| {
        b.iter_batched(
            || record_all(&their_handles, &mut round),
            |()| their_handle.render().len(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_scrape);
criterion_main!(benches);
