//! Operation timing and queues through a real server: the wrapper (ok, error, a future
//! dropped mid-way) with its span under the request's, the tower layer over a
//! `service_fn`, queue depth, wait and processing times and stuck workers under a manual
//! clock, cardinality bounded when operation names come from user input, the `/v1/stats`
//! sections and `/health`, and `promtool check metrics` on the exposition.
//!
//! Its own test binary: it installs a global subscriber to capture the operation spans.
#![cfg(all(feature = "axum", feature = "operations"))]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use support::{eventually, sample, serve};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_observe::clock::ManualClock;
use tower_observe::operations::{
    error_if, ObserveOperationLayer, Operation, OperationOutcome, Queue,
};
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The closed `operation` spans' fields, with the name of their parent span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "operation" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id).unwrap();
        if let Some(parent) = span.parent() {
            fields.insert("parent".into(), parent.name().into());
        }
        span.extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<HashMap<String, String>>() {
            values.record(&mut Fields(fields));
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let extensions = span.extensions();
        if let Some(fields) = extensions.get::<HashMap<String, String>>() {
            self.0.lock().unwrap().push(fields.clone());
        }
    }
}

fn spans() -> &'static Spans {
    static SPANS: OnceLock<Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
            .unwrap();
        spans
    })
}

async fn get_json(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[derive(Debug)]
struct NotFound;

#[tokio::test]
async fn the_wrapper_records_ok_error_and_cancelled_in_a_span_under_the_request() {
    let spans = spans();
    let observer = Observer::new();
    let select = observer.operation(Operation::db("postgresql", "select_user").collection("users"));
    let app = Router::new()
        .route(
            "/users/{id}",
            get(move |Path(id): Path<String>| {
                let select = select.clone();
                async move {
                    let found = select
                        .run(async {
                            match id.as_str() {
                                "slow" => {
                                    tokio::time::sleep(Duration::from_secs(30)).await;
                                    Ok("late")
                                }
                                "missing" => Err(NotFound),
                                _ => Ok("ada"),
                            }
                        })
                        .await;
                    found.unwrap_or("none")
                }
            }),
        )
        .merge(observer.router())
        .layer(observer.layer().traces(TraceOptions::new()));
    let base = format!("http://{}", serve(app).await);
    let client = reqwest::Client::new();
    client
        .get(format!("{base}/users/1"))
        .header("x-request-id", "req-7")
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/users/missing"))
        .send()
        .await
        .unwrap();
    // The client gives up: the connection closes and the handler's future is dropped.
    let gave_up = client
        .get(format!("{base}/users/slow"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err());
    eventually(|| {
        observer
            .stats()
            .operations
            .first()
            .is_some_and(|o| o.calls == 3)
    })
    .await;

    let stats = get_json(format!("{base}/v1/stats")).await;
    let op = &stats["operations"][0];
    assert_eq!(op["kind"], "db");
    assert_eq!(op["system"], "postgresql");
    assert_eq!(op["name"], "select_user");
    assert_eq!(op["target"], "users");
    assert_eq!(op["calls"], 3);
    assert_eq!(op["errors"], 1);
    assert_eq!(op["cancelled"], 1);
    assert_eq!(op["error_rate"], 0.5, "cancelled calls are not failures");
    assert!(op["latency_ms"]["p99"].as_f64().unwrap() < 1000.0, "{op}");

    let text = metrics_text(&base).await;
    let labels = [
        ("db_system_name", "postgresql"),
        ("db_operation_name", "select_user"),
        ("db_collection_name", "users"),
    ];
    let count = |extra: Option<(&str, &str)>| {
        let mut l = labels.to_vec();
        l.extend(extra);
        sample(&text, "db_client_operation_duration_seconds_count", &l)
    };
    assert_eq!(count(None), Some(3.0), "{text}");
    let error_type = std::any::type_name::<NotFound>().to_string();
    assert_eq!(
        count(Some(("error_type", &error_type))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(count(Some(("error_type", "cancelled"))), Some(1.0));
    // The OpenTelemetry advice for database operations, not the HTTP buckets.
    assert!(text.contains("db_client_operation_duration_seconds_bucket{db_system_name=\"postgresql\",db_operation_name=\"select_user\",db_collection_name=\"users\",le=\"0.001\"}"), "{text}");

    eventually(|| {
        spans
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.get("db.operation.name").is_some())
            .count()
            >= 3
    })
    .await;
    let closed = spans.0.lock().unwrap().clone();
    let first = closed
        .iter()
        .find(|s| s.get("request_id").map(String::as_str) == Some("req-7"))
        .expect("an operation span with the request ID");
    assert_eq!(first["parent"], "HTTP request");
    assert_eq!(first["db.system.name"], "postgresql");
    assert_eq!(first["db.collection.name"], "users");
    assert_eq!(first["otel.name"], "select_user users");
    assert_eq!(first["trace_id"].len(), 32);
    assert!(!first.contains_key("error.type"));
    assert!(closed
        .iter()
        .any(|s| s.get("error.type") == Some(&error_type)
            && s.get("otel.status_code").map(String::as_str) == Some("ERROR")));
    assert!(closed
        .iter()
        .any(|s| s.get("error.type").map(String::as_str) == Some("cancelled")));
}

#[tokio::test]
async fn the_tower_layer_times_a_service_fn_with_autometrics_names() {
    spans();
    let observer = Observer::new();
    let lookup = observer.operation(Operation::function("geo_api", "lookup"));
    let service = service_fn(|city: &'static str| async move {
        if city == "nowhere" {
            return Err(std::io::Error::other("unknown city"));
        }
        if city == "far" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok::<_, std::io::Error>(city.len())
    });
    let mut svc = ObserveOperationLayer::new(lookup.clone()).layer(service);
    svc.ready().await.unwrap().call("paris").await.unwrap();
    svc.ready()
        .await
        .unwrap()
        .call("nowhere")
        .await
        .unwrap_err();
    // Dropped before it ends: cancelled.
    let pending = svc.ready().await.unwrap().call("far");
    let _ = tokio::time::timeout(Duration::from_millis(20), pending).await;

    // A classifier: an empty answer is a failure.
    let empty_is_error = ObserveOperationLayer::new(lookup)
        .classify(error_if(|r: &Result<usize, std::io::Error>| {
            r.as_ref().map_or(true, |n| *n == 0)
        }))
        .layer(service_fn(
            |n: usize| async move { Ok::<_, std::io::Error>(n) },
        ));
    empty_is_error.oneshot(0).await.unwrap();

    let text = observer.render_metrics().unwrap();
    let calls = |result| {
        sample(
            &text,
            "function_calls_total",
            &[
                ("function", "lookup"),
                ("module", "geo_api"),
                ("result", result),
            ],
        )
    };
    assert_eq!(calls("ok"), Some(1.0), "{text}");
    assert_eq!(calls("error"), Some(2.0), "{text}");
    assert_eq!(calls("cancelled"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "function_calls_duration_seconds_count",
            &[("function", "lookup"), ("module", "geo_api")]
        ),
        Some(4.0)
    );
    let op = observer.stats().operations[0].clone();
    assert_eq!((op.calls, op.errors, op.cancelled), (4, 2, 1));
}

#[tokio::test]
async fn queue_depth_wait_and_processing_under_a_manual_clock() {
    spans();
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let jobs = observer.queue(Queue::new("emails"));
    let worker = jobs.worker("mailer-1");
    let tickets: Vec<_> = (0..3).map(|_| jobs.enqueued()).collect();
    clock.advance(Duration::from_secs(2));
    let job = worker.start(tickets[0]);
    clock.advance(Duration::from_millis(500));
    job.ok();
    let job = worker.start(tickets[1]);
    clock.advance(Duration::from_millis(100));
    job.error("smtp_refused");
    // A job whose future is dropped mid-way: cancelled, and the worker idle again.
    let fut = worker.process(tickets[2], async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, std::io::Error>(())
    });
    let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;

    let stats = observer.stats();
    let q = &stats.queues["emails"];
    assert_eq!(q.system, "in_process");
    assert_eq!((q.enqueued, q.started, q.finished), (3, 3, 2));
    assert_eq!((q.failed, q.cancelled), (1, 1));
    assert_eq!(q.depth, 0.0, "enqueued minus started");
    let wait = q.wait_ms.unwrap();
    assert!((wait.max - 2600.0).abs() < 1.0, "{wait:?}");
    assert!((wait.min - 2000.0).abs() < 1.0, "{wait:?}");
    let processing = q.processing_ms.unwrap();
    assert!((processing.max - 500.0).abs() < 1.0, "{processing:?}");
    assert!((processing.min - 100.0).abs() < 1.0, "{processing:?}");
    assert_eq!((q.workers.busy, q.workers.idle, q.workers.stuck), (0, 1, 0));

    let text = observer.render_metrics().unwrap();
    let queue = [
        ("messaging_system", "in_process"),
        ("messaging_destination_name", "emails"),
    ];
    assert_eq!(sample(&text, "queue_enqueued_total", &queue), Some(3.0));
    assert_eq!(
        sample(&text, "queue_wait_duration_seconds_count", &queue),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "queue_wait_duration_seconds_sum", &queue),
        Some(7.1)
    );
    assert_eq!(sample(&text, "queue_depth", &queue), Some(0.0));
    let mut process = queue.to_vec();
    process.push(("messaging_operation_name", "process"));
    assert_eq!(
        sample(&text, "messaging_process_duration_seconds_count", &process),
        Some(3.0)
    );

    // Depth set, then sampled from a closure at scrape time.
    jobs.set_depth(7);
    assert_eq!(observer.stats().queues["emails"].depth, 7.0);
    let backlog = Arc::new(std::sync::atomic::AtomicU64::new(42));
    let b = backlog.clone();
    jobs.depth_from(move || b.load(std::sync::atomic::Ordering::Relaxed));
    backlog.store(43, std::sync::atomic::Ordering::Relaxed);
    let text = observer.render_metrics().unwrap();
    assert_eq!(sample(&text, "queue_depth", &queue), Some(43.0));
    assert_eq!(observer.stats().queues["emails"].depth, 43.0);
}

#[tokio::test]
async fn stuck_workers_are_detected_and_turn_health_yellow() {
    spans();
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let jobs = observer.queue(Queue::new("reports").stuck_after(Duration::from_secs(10)));
    let busy = jobs.worker("render-1");
    let beating = jobs.worker("render-2");
    let quiet = jobs.worker("render-3");
    beating.heartbeat();
    let base = format!("http://{}", serve(observer.router()).await);

    let job = busy.start(jobs.enqueued());
    clock.advance(Duration::from_secs(5));
    let health = get_json(format!("{base}/health")).await;
    assert_eq!(health["status"], "green", "{health}");
    let q = &observer.stats().queues["reports"];
    assert_eq!((q.workers.busy, q.workers.idle, q.workers.stuck), (1, 2, 0));

    // 11 s without a sign of life: the busy worker and the one that promised heartbeats are
    // stuck; the idle one that never sent any is only idle.
    clock.advance(Duration::from_secs(6));
    let q = observer.stats().queues["reports"].clone();
    assert_eq!((q.workers.busy, q.workers.idle, q.workers.stuck), (0, 1, 2));
    assert_eq!(q.stuck_workers, ["render-1", "render-2"]);
    let health = get_json(format!("{base}/health")).await;
    assert_eq!(health["status"], "yellow", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("reports") && reasons.contains("render-1"),
        "{health}"
    );
    let text = observer.render_metrics().unwrap();
    assert_eq!(
        sample(
            &text,
            "queue_workers",
            &[
                ("messaging_destination_name", "reports"),
                ("state", "stuck")
            ]
        ),
        Some(2.0)
    );

    // A heartbeat from a long job, a heartbeat from the idle one: green again.
    busy.heartbeat();
    beating.heartbeat();
    let health = get_json(format!("{base}/health")).await;
    assert_eq!(health["status"], "green", "{health}");
    job.ok();
    drop(quiet);
    let q = &observer.stats().queues["reports"];
    assert_eq!((q.workers.busy, q.workers.idle, q.workers.stuck), (0, 2, 0));
}

#[tokio::test]
async fn cardinality_is_bounded_when_operation_names_come_from_user_input() {
    spans();
    let observer = Observer::builder()
        .max_label_sets_per_metric(3)
        .build()
        .unwrap();
    for i in 0..20 {
        // e.g. a table name taken from a request
        let op =
            observer.operation(Operation::db("postgresql", "select").collection(format!("t{i}")));
        op.start().ok();
        let q = observer.queue(Queue::new(format!("q{i}")));
        q.enqueued();
    }
    let text = observer.render_metrics().unwrap();
    let series = text
        .lines()
        .filter(|l| l.starts_with("db_client_operation_duration_seconds_count{"))
        .count();
    assert_eq!(series, 4, "3 label sets and the overflow: {text}");
    assert_eq!(
        sample(
            &text,
            "db_client_operation_duration_seconds_count",
            &[
                ("db_collection_name", "_OTHER"),
                ("db_system_name", "postgresql"),
                ("otel_metric_overflow", "true")
            ]
        ),
        Some(17.0)
    );
    assert_eq!(
        sample(
            &text,
            "tower_observe_cardinality_overflow_total",
            &[("metric", "db_client_operation_duration_seconds")]
        ),
        Some(17.0)
    );
    assert_eq!(
        sample(
            &text,
            "queue_enqueued_total",
            &[("messaging_destination_name", "_OTHER")]
        ),
        Some(17.0)
    );
    let stats = observer.stats();
    let db: Vec<_> = stats.operations.iter().filter(|o| o.kind == "db").collect();
    assert_eq!(db.len(), 4);
    assert_eq!(stats.queues.len(), 4);
}

#[tokio::test]
async fn a_guard_records_once_and_classifiers_decide() {
    spans();
    let observer = Observer::new();
    let send = observer.operation(Operation::messaging("kafka", "send").destination("orders"));
    send.start().finish(OperationOutcome::Ok);
    send.start().error("timeout");
    drop(send.start());
    let out = send
        .run_with(async { 5 }, |n: &i32| {
            if *n > 3 {
                OperationOutcome::Error("too_big")
            } else {
                OperationOutcome::Ok
            }
        })
        .await;
    assert_eq!(out, 5);
    assert_eq!(send.time(async { "any output" }).await, "any output");
    let op = observer.stats().operations[0].clone();
    assert_eq!((op.calls, op.errors, op.cancelled), (5, 2, 1));
    let text = observer.render_metrics().unwrap();
    let labels = |e| {
        vec![
            ("messaging_system", "kafka"),
            ("messaging_operation_name", "send"),
            ("messaging_destination_name", "orders"),
            ("error_type", e),
        ]
    };
    let name = "messaging_client_operation_duration_seconds_count";
    assert_eq!(sample(&text, name, &labels("timeout")), Some(1.0));
    assert_eq!(sample(&text, name, &labels("too_big")), Some(1.0));
    assert_eq!(sample(&text, name, &labels("cancelled")), Some(1.0));
}

/// `promtool check metrics` accepts the exposition with every operations metric in it.
#[tokio::test]
async fn promtool_accepts_the_operations_metrics() {
    spans();
    let Some(promtool) = support::promtool() else {
        return;
    };
    let observer = Observer::new();
    observer
        .operation(Operation::db("postgresql", "select_user"))
        .start()
        .ok();
    observer
        .operation(Operation::db("postgresql", "select_user"))
        .start()
        .error("timeout");
    observer
        .operation(Operation::function("geo", "lookup"))
        .start()
        .ok();
    observer
        .operation(Operation::process("kafka", "orders"))
        .start()
        .ok();
    observer
        .operation(Operation::messaging("kafka", "send"))
        .start()
        .ok();
    let q = observer.queue(Queue::new("emails"));
    let w = q.worker("w1");
    w.start(q.enqueued()).ok();
    let text = observer.render_metrics().unwrap();
    support::promtool_check_metrics(&promtool, &text);
}

/// History keeps a minute series per operation: `/v1/stats/history?operation=…` answers
/// with the operation's calls, failures and cancellations; the requests' history leaves
/// them out.
#[cfg(feature = "history")]
#[tokio::test]
async fn history_keeps_per_operation_minutes_apart_from_requests() {
    use tower_observe::history::HistoryOptions;
    spans();
    let observer = Observer::builder()
        .history(HistoryOptions::in_memory())
        .build()
        .unwrap();
    let select = observer.operation(Operation::db("postgresql", "select_user").collection("users"));
    let insert = observer.operation(Operation::db("postgresql", "insert_user"));
    for _ in 0..4 {
        select.start().ok();
    }
    select.start().error("timeout");
    drop(select.start());
    insert.start().ok();
    let app = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    reqwest::get(format!("{base}/ping")).await.unwrap();
    eventually(|| observer.stats().totals.requests >= 1).await;

    let points = |query: &str| {
        let url = format!("{base}/v1/stats/history?{query}");
        async move {
            let body = get_json(url).await;
            let points = body["points"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("{body}"));
            let sum = |field: &str| {
                points
                    .iter()
                    .map(|p| p[field].as_u64().unwrap())
                    .sum::<u64>()
            };
            (sum("requests"), sum("errors"), sum("aborted"))
        }
    };
    assert_eq!(points("operation=select_user").await, (6, 1, 1));
    assert_eq!(points("operation_kind=db").await, (7, 1, 1));
    assert_eq!(
        points("operation_system=postgresql&operation_target=users").await,
        (6, 1, 1)
    );
    assert_eq!(points("operation=nope").await, (0, 0, 0));
    // The requests' history holds the application's requests only: /ping (the history
    // queries are the observer's own requests, kept apart).
    let (requests, errors, _) = points("route=/ping").await;
    assert_eq!((requests, errors), (1, 0));
    eventually(|| observer.stats().totals.requests == 1).await;
    let (all, _, _) = points("").await;
    assert_eq!(all, 1, "operations are not requests");
    let refused = reqwest::get(format!("{base}/v1/stats/history?operation=x&route=/ping"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
