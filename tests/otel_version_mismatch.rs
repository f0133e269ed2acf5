//! A subscriber running another version of `tracing-opentelemetry` (0.32 here, against the
//! crate's 0.34) cannot be joined: the crate says so once, naming the versions and the fix,
//! instead of silently keeping its own IDs. Its own test binary, because it installs a global
//! subscriber.
#![cfg(all(feature = "opentelemetry", feature = "axum"))]

mod support;

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use opentelemetry_old::trace::TracerProvider as _;
use support::serve;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

/// Records the messages of the crate's own warnings.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target().starts_with("tower_observe")
            && *event.metadata().level() == tracing::Level::WARN
        {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

#[tokio::test]
async fn another_tracing_opentelemetry_version_is_reported_once() {
    let exporter = opentelemetry_sdk_old::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk_old::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let warnings = Warnings::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry_old::layer().with_tracer(provider.tracer("old")))
            .with(warnings.clone()),
    )
    .unwrap();

    let observer = Observer::new();
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(observer.layer().traces(TraceOptions::new()));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client
            .get(format!("http://{addr}/items/1"))
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    let warnings = warnings.0.lock().unwrap().clone();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, not one per request: {warnings:?}"
    );
    for needed in [
        "could not join",
        "tracing-opentelemetry 0.34",
        "opentelemetry 0.33",
        "tower_observe::tracing_opentelemetry",
    ] {
        assert!(
            warnings[0].contains(needed),
            "{needed:?} in {}",
            warnings[0]
        );
    }
    // What the warning is about: the old layer's span is not in the caller's trace.
    let spans = exporter.get_finished_spans().unwrap();
    assert!(!spans.is_empty());
    assert!(spans
        .iter()
        .all(|s| s.span_context.trace_id().to_string() != "4bf92f3577b34da6a3ce929d0e0e4736"));
}
