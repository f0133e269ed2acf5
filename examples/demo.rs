//! An instrumented axum service with every tower-observe layer and endpoint.
//!
//! ```text
//! cargo run --example demo                      # serve on 127.0.0.1:3000
//! cargo run --example demo -- --traffic         # …and drive it with a steady local load
//! cargo run --example demo -- --addr 127.0.0.1:8080 --traffic --exit-after 30
//! ```
//!
//! Then open `/metrics` and `/v1/stats`. The routes have different latencies and error
//! rates; `/api/chat/{model}` reports `backend` and `model` dimensions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_observe::trace::TraceOptions;
use tower_observe::{Dimensions, HttpServerRecord, Observer, RecordSink, RequestId};

mod common;

const SPEC: common::Spec = common::Spec {
    name: "demo",
    default_addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3000),
    default_rps: 40,
    max_rps: 2000,
    extra: &[],
};

/// Counts slow requests per route: a `RecordSink` sees every request the metrics see.
struct SlowRequests;

impl RecordSink for SlowRequests {
    fn record_http_server(&self, r: &HttpServerRecord<'_>) {
        if r.duration > Duration::from_millis(350) {
            metrics::counter!("demo_slow_requests_total", "http_route" => r.route.to_owned())
                .increment(1);
        }
    }
}

async fn sleep_ms(range: std::ops::Range<u64>) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(range))).await;
}

async fn user(Path(id): Path<u32>, request_id: RequestId) -> String {
    sleep_ms(1..5).await;
    format!("{{\"id\":{id},\"request_id\":\"{request_id}\"}}")
}

async fn search() -> &'static str {
    sleep_ms(20..80).await;
    "[]"
}

async fn checkout(body: Bytes) -> Response {
    sleep_ms(100..400).await;
    if fastrand::u8(0..100) < 5 {
        tracing::error!(payment.provider = "acme-pay", "payment provider timed out");
        metrics::counter!("demo_checkouts_total", "result" => "failed").increment(1);
        return (StatusCode::INTERNAL_SERVER_ERROR, "payment provider failed").into_response();
    }
    // The application's own metrics go through the same registry and show up on /metrics.
    metrics::counter!("demo_checkouts_total", "result" => "accepted").increment(1);
    format!("{{\"accepted_bytes\":{}}}", body.len()).into_response()
}

async fn chat(Path(model): Path<String>) -> Response {
    let (base, spread) = match model.as_str() {
        "small" => (30, 40),
        "large" => (150, 250),
        _ => return (StatusCode::NOT_FOUND, "unknown model").into_response(),
    };
    let backend = if fastrand::bool() { "eu-1" } else { "us-1" };
    sleep_ms(base..base + spread).await;
    let dims = Extension(
        Dimensions::new()
            .with("backend", backend)
            .with("model", model),
    );
    if backend == "us-1" && fastrand::u8(0..100) < 4 {
        return (StatusCode::SERVICE_UNAVAILABLE, dims, "backend overloaded").into_response();
    }
    (dims, "{\"reply\":\"hello\"}").into_response()
}

/// Ten chunks, 50 ms apart: its latency is measured to the last chunk, not the headers.
async fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks)
}

fn app(observer: &Observer) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/users/{id}", get(user))
        .route("/api/search", get(search))
        .route("/api/checkout", post(checkout))
        .route("/api/chat/{model}", get(chat))
        .route("/api/stream", get(stream))
        .merge(observer.router())
        .layer(
            observer
                .layer()
                .traces(TraceOptions::new().access_log(true)),
        )
}

async fn index() -> &'static str {
    "tower-observe demo\n\n/metrics     Prometheus text\n/v1/stats    JSON statistics\n\
     /api/users/{id}  /api/search  POST /api/checkout  /api/chat/{small|large}  /api/stream\n"
}

/// A steady, bounded load against our own address: `rps` requests per second, each with a
/// 5 s timeout, at most 64 in flight.
async fn drive_traffic(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let base = format!("http://{addr}");
    common::drive(rps, 64, move || {
        let request = match fastrand::u8(0..100) {
            0..=39 => client.get(format!("{base}/api/users/{}", fastrand::u32(1..500))),
            40..=59 => client.get(format!("{base}/api/search")),
            60..=69 => {
                client
                    .post(format!("{base}/api/checkout"))
                    .body(vec![b'x'; fastrand::usize(100..4000)])
            }
            70..=87 => client.get(format!(
                "{base}/api/chat/{}",
                if fastrand::bool() { "small" } else { "large" }
            )),
            88..=91 => client.get(format!("{base}/api/stream")),
            92..=95 => client.get(format!("{base}/wp-admin/{}", fastrand::u32(..))), // scanners
            _ => client
                .get(format!("{base}/api/users/7"))
                .header("x-request-id", "bad id\twith tab"),
        };
        async move {
            if let Ok(res) = request.send().await {
                let _ = res.bytes().await;
            }
        }
    })
    .await;
}

/// JSON logs (ECS) on stdout — the application's lines and failed requests' access-log lines,
/// each carrying its request ID and trace ID — and, with the `otlp` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans to that collector.
fn init_telemetry() -> Option<Box<dyn FnOnce()>> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("tower_observe::access", LevelFilter::WARN);
    let registry = tracing_subscriber::registry()
        .with(tower_observe::logs::EcsJsonLayer::new("demo"))
        .with(filter);

    #[cfg(feature = "otlp")]
    if let Some(otlp) = tower_observe::otlp::OtlpTraces::from_env("demo") {
        use opentelemetry::trace::TracerProvider as _;
        match otlp.build() {
            Ok((provider, _stats)) => {
                let tracer = provider.tracer("demo");
                let subscriber = registry.with(tracing_opentelemetry::layer().with_tracer(tracer));
                let _ = tracing::subscriber::set_global_default(subscriber);
                println!(
                    "  traces:   OTLP to {}",
                    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default()
                );
                return Some(Box::new(move || {
                    let _ = provider.shutdown();
                }));
            }
            Err(e) => eprintln!("OTLP export disabled: {e}"),
        }
    }
    #[cfg(not(feature = "otlp"))]
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        eprintln!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the demo was built without the `otlp` feature"
        );
    }
    let _ = tracing::subscriber::set_global_default(registry);
    None
}

fn main() {
    let args = SPEC.parse();
    // Before the async runtime: the OTLP exporter's HTTP client blocks.
    let shutdown_telemetry = init_telemetry();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args));
    drop(runtime);
    if let Some(shutdown) = shutdown_telemetry {
        shutdown();
    }
}

async fn run(args: common::Args) {
    let builder = Observer::builder()
        .dimension("backend")
        .dimension("model")
        .service_version(env!("CARGO_PKG_VERSION"))
        .sink(Arc::new(SlowRequests));
    // With `--features history` (or `--all-features`): history kept in memory for the demo.
    #[cfg(feature = "history")]
    let builder = builder.history(tower_observe::history::HistoryOptions::in_memory());
    let observer = builder.build().expect("valid observer configuration");
    // The application's own `metrics::counter!` calls land on /metrics too.
    if let Some(registry) = observer.registry() {
        let _ = metrics::set_global_recorder(registry.clone());
        metrics::describe_counter!("demo_checkouts_total", "Checkouts, by result.");
        metrics::describe_counter!(
            "demo_slow_requests_total",
            "Requests slower than 350 ms, by route."
        );
    }

    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound address");
    println!("tower-observe demo listening on http://{addr}");
    println!("  metrics:  http://{addr}/metrics");
    println!("  stats:    http://{addr}/v1/stats");
    println!("  health:   http://{addr}/health");
    if cfg!(feature = "history") {
        println!("  history:  http://{addr}/v1/stats/history?step=1m (add &format=csv)");
    }
    println!("  routes:   http://{addr}/");
    if args.traffic {
        println!("  traffic:  {} requests/s to http://{addr}", args.rps);
        tokio::spawn(drive_traffic(addr, args.rps));
    }

    common::serve(listener, app(&observer), args.exit_after).await;
}
