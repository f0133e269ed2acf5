//! Cost per event of `otlp::OtlpLogLayer` (building the log record, redaction, the trace
//! context, handing it to the SDK's batch processor whose exporter discards), next to
//! `logs::EcsJsonLayer` writing to a sink and to both layers together, in the same run.
//!
//! ```text
//! cargo bench --bench otlp_logs
//! ```
//!
//! Each event has a message, three fields (one redacted) and runs inside a span, as an
//! application's event inside a request does.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, LogBatch, LogExporter, SdkLoggerProvider};
use tower_observe::logs::EcsJsonLayer;
use tower_observe::otlp::OtlpLogLayer;
use tracing_subscriber::layer::SubscriberExt;

/// Takes every batch and drops it.
#[derive(Debug)]
struct Discard;

impl LogExporter for Discard {
    async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
        Ok(())
    }
}

fn provider() -> SdkLoggerProvider {
    SdkLoggerProvider::builder()
        .with_log_processor(BatchLogProcessor::builder(Discard).build())
        .build()
}

fn event() {
    tracing::info!(
        order_id = 42_u64,
        password = "hunter2",
        url.query = "page=2&token=abc",
        "order placed"
    );
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_event");
    group.measurement_time(Duration::from_secs(5));
    let run =
        |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str, dispatch: tracing::Dispatch| {
            tracing::dispatcher::with_default(&dispatch, || {
                let span = tracing::info_span!("request", request_id = "r-1");
                let _entered = span.enter();
                group.bench_function(name, |b| b.iter(event));
            });
        };
    run(
        &mut group,
        "ecs_json_to_sink",
        tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(EcsJsonLayer::new("bench").with_writer(std::io::sink)),
        ),
    );
    let logs = provider();
    run(
        &mut group,
        "otlp_log_layer",
        tracing::Dispatch::new(tracing_subscriber::registry().with(OtlpLogLayer::new(&logs))),
    );
    run(
        &mut group,
        "ecs_json_and_otlp",
        tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(EcsJsonLayer::new("bench").with_writer(std::io::sink))
                .with(OtlpLogLayer::new(&logs)),
        ),
    );
    group.finish();
    let _ = logs.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
