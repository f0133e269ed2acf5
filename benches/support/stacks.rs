//! Shared by the `load` and `per_request` benchmarks: the stacks they compare, by name, and
//! the `tracing` subscriber each one runs under. Every stack serves `GET /users/{id}`.

use axum::Router;

use super::app::base;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;

/// The subscriber a stack runs under; every one writes to a sink, at `INFO`.
#[derive(Clone)]
pub(crate) enum Subscriber {
    None,
    /// The crate's `EcsJsonLayer`.
    Ecs,
    /// `tracing_subscriber::fmt`.
    Fmt,
    /// `tracing-opentelemetry` over the SDK's batch processor and a discarding exporter.
    OpenTelemetry,
    /// The crate's `EcsJsonLayer` and the observer's log store capturing every event and
    /// span (feature `log-store`).
    #[cfg(feature = "log-store")]
    EcsStore(tower_observe::log_store::LogStoreLayer),
    /// The demo's subscriber: `EcsJsonLayer` and the log store, at `INFO` with the access log
    /// at `WARN` (failed requests only), as `examples/demo.rs` sets it up.
    #[cfg(feature = "log-store")]
    Demo(tower_observe::log_store::LogStoreLayer),
}

/// The stacks, in the order they are reported (the last two need features `log-store`, and
/// for the demo's configuration `history`, `alerts`, `process` and `dashboard` too).
pub(crate) const STACKS: &[&str] = &[
    "bare",
    "noop_layer",
    "ours_untraced",
    "ours_metrics",
    "ours_traced_no_subscriber",
    "ours_traced_ecs",
    "ours_traced_ecs_access_log",
    "ours_traced_fmt",
    "ours_traced_fmt_access_log",
    "ours_traced_otel",
    "ours_unsampled_ecs",
    "ours_unsampled_fmt",
    "tower_http_request_id",
    "tower_http_trace_ecs",
    "tower_http_trace_fmt",
    "tower_http_trace_otel",
    "axum_prometheus",
    "glue_ecs",
    "glue_fmt",
    "glue_otel",
    #[cfg(feature = "log-store")]
    "ours_traced_ecs_store",
    #[cfg(all(
        feature = "log-store",
        feature = "history",
        feature = "alerts",
        feature = "process",
        feature = "dashboard"
    ))]
    "ours_demo_config",
];

/// tower-http's `TraceLayer` with its span and its response event at `INFO`, so that it
/// writes what our traced stack with an access log writes (at its default `DEBUG` an `INFO`
/// subscriber would skip it entirely).
fn tower_http_trace() -> Router {
    base().layer(trace_layer())
}

fn trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
> {
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
}

/// What the crate replaces: request IDs and `TraceLayer` from tower-http, metrics from
/// axum-prometheus.
fn glue() -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    let header = http::HeaderName::from_static("x-request-id");
    let (metrics, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    base()
        .layer(metrics)
        .layer(trace_layer())
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, MakeRequestUuid))
}

/// The stack `name`: its router and the subscriber it runs under. axum-prometheus spawns a
/// task when its layer is made, so call this inside a Tokio runtime.
pub(crate) fn stack(name: &str) -> Option<(Router, Subscriber)> {
    let observer = Observer::new();
    let traced = |options: TraceOptions| {
        base()
            .merge(observer.router())
            .layer(observer.layer().traces(options))
    };
    Some(match name {
        "bare" => (base(), Subscriber::None),
        "noop_layer" => (
            base().layer(tower::layer::layer_fn(|s| s)),
            Subscriber::None,
        ),
        // The README's quick start.
        "ours_untraced" => (
            base().merge(observer.router()).layer(observer.layer()),
            Subscriber::None,
        ),
        "ours_metrics" => (
            base().layer(observer.http_metrics_layer()),
            Subscriber::None,
        ),
        "ours_traced_no_subscriber" => (traced(TraceOptions::new()), Subscriber::None),
        "ours_traced_ecs" => (traced(TraceOptions::new()), Subscriber::Ecs),
        // The demo's setup.
        "ours_traced_ecs_access_log" => (
            traced(TraceOptions::new().access_log(true)),
            Subscriber::Ecs,
        ),
        "ours_traced_fmt" => (traced(TraceOptions::new()), Subscriber::Fmt),
        "ours_traced_fmt_access_log" => (
            traced(TraceOptions::new().access_log(true)),
            Subscriber::Fmt,
        ),
        "ours_traced_otel" => (traced(TraceOptions::new()), Subscriber::OpenTelemetry),
        // Traces on, but this service samples none of the traces it starts.
        "ours_unsampled_ecs" => (
            traced(TraceOptions::new().root_sample_ratio(0.0)),
            Subscriber::Ecs,
        ),
        "ours_unsampled_fmt" => (
            traced(TraceOptions::new().root_sample_ratio(0.0)),
            Subscriber::Fmt,
        ),
        "tower_http_request_id" => {
            use tower_http::request_id::SetRequestIdLayer;
            use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer};
            let header = http::HeaderName::from_static("x-request-id");
            (
                base()
                    .layer(PropagateRequestIdLayer::new(header.clone()))
                    .layer(SetRequestIdLayer::new(header, MakeRequestUuid)),
                Subscriber::None,
            )
        }
        "tower_http_trace_ecs" => (tower_http_trace(), Subscriber::Ecs),
        "tower_http_trace_fmt" => (tower_http_trace(), Subscriber::Fmt),
        "tower_http_trace_otel" => (tower_http_trace(), Subscriber::OpenTelemetry),
        "axum_prometheus" => {
            let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
            (base().layer(layer), Subscriber::None)
        }
        "glue_ecs" => (glue(), Subscriber::Ecs),
        "glue_fmt" => (glue(), Subscriber::Fmt),
        "glue_otel" => (glue(), Subscriber::OpenTelemetry),
        // `ours_traced_ecs` with the log store capturing every event and span, in memory.
        #[cfg(feature = "log-store")]
        "ours_traced_ecs_store" => {
            use tower_observe::log_store::LogStoreOptions;
            let observer = Observer::builder()
                .log_store(LogStoreOptions::in_memory())
                .build()
                .expect("a valid observer");
            let store = observer.log_store().expect("the log store").layer();
            let app = base()
                .merge(observer.router())
                .layer(observer.layer().traces(TraceOptions::new()));
            (app, Subscriber::EcsStore(store))
        }
        // The demo's whole configuration (`examples/demo.rs`): traces with the access log, ECS
        // logs, history in memory, alerts with the recommended rules, process metrics, the
        // dashboard and the log store in memory; its background threads run as they would.
        #[cfg(all(
            feature = "log-store",
            feature = "history",
            feature = "alerts",
            feature = "process",
            feature = "dashboard"
        ))]
        "ours_demo_config" => {
            use tower_observe::alerts::{notify, AlertRules, Alerts};
            let alerts = Alerts::new(AlertRules::recommended()).channel(notify::Log::new());
            let observer = Observer::builder()
                .service_version("bench")
                .process_metrics()
                .alerts(alerts)
                .expect("valid alert rules")
                .history(tower_observe::history::HistoryOptions::in_memory())
                .dashboard(tower_observe::dashboard::DashboardOptions::new())
                .log_store(
                    tower_observe::log_store::LogStoreOptions::in_memory()
                        .token("bench-logs-token")
                        .service_name("bench"),
                )
                .build()
                .expect("a valid observer");
            let store = observer.log_store().expect("the log store").layer();
            let app = base().merge(observer.router()).layer(
                observer
                    .layer()
                    .traces(TraceOptions::new().access_log(true)),
            );
            (app, Subscriber::Demo(store))
        }
        _ => return None,
    })
}

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

/// The dispatcher for `subscriber` (`None` for no subscriber), and the tracer provider to
/// shut down when done, if any.
pub(crate) fn dispatch(
    subscriber: Subscriber,
) -> (
    Option<tracing::Dispatch>,
    Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    let registry = tracing_subscriber::registry().with(LevelFilter::INFO);
    match subscriber {
        Subscriber::None => (None, None),
        Subscriber::Ecs => {
            let layer = tower_observe::logs::EcsJsonLayer::new("bench").with_writer(std::io::sink);
            (Some(registry.with(layer).into()), None)
        }
        Subscriber::Fmt => {
            let layer = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
            (Some(registry.with(layer).into()), None)
        }
        Subscriber::OpenTelemetry => {
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(Discard)
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
            (Some(registry.with(layer).into()), Some(provider))
        }
        #[cfg(feature = "log-store")]
        Subscriber::EcsStore(store) => {
            let layer = tower_observe::logs::EcsJsonLayer::new("bench").with_writer(std::io::sink);
            (Some(registry.with(layer).with(store).into()), None)
        }
        #[cfg(feature = "log-store")]
        Subscriber::Demo(store) => {
            use tracing_subscriber::filter::Targets;
            let filter = Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("tower_observe::access", LevelFilter::WARN);
            let layer = tower_observe::logs::EcsJsonLayer::new("bench").with_writer(std::io::sink);
            let subscriber = tracing_subscriber::registry()
                .with(layer)
                .with(store)
                .with(filter);
            (Some(subscriber.into()), None)
        }
    }
}
