//! Per-request cost of each layer over the bare router, and of the peers a user would pick
//! instead, measured in one run (in process, no network: the router is called directly and
//! its response body read to the end).
//!
//! ```text
//! cargo bench --bench layers
//! cargo bench --bench layers --all-features -- history   # what the history adds
//! cargo bench --bench layers --all-features -- alerts    # what the alert engine adds
//! cargo bench --bench layers --all-features -- dashboard # what 200 open dashboards cost
//! ```
//!
//! Read the results as "added cost" = variant − `bare_router`, and compare the added costs:
//! ours_request_id vs tower_http_request_id, ours_metrics vs axum_prometheus, ours_full vs
//! axum_prometheus.

#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use http::Request;
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_observe::{AssignRequestIdLayer, Observer};

#[path = "support/passthrough.rs"]
mod passthrough;
use passthrough::BodyPassThroughLayer;

#[path = "support/app.rs"]
mod app;
use app::{base, request};

/// Finalises the router the way `axum::serve` does (`with_state` turns every handler into a
/// route once), so no variant pays per request for building its routes.
fn ready(router: Router) -> Router {
    router.with_state(())
}

fn bench_one<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    svc: S,
) where
    S: tower::Service<Request<Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = svc.clone().oneshot(request()).await.unwrap();
                res.into_body().collect().await.unwrap()
            })
        })
    });
}

fn bench_layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let observer = Observer::new();
    // axum-prometheus installs its global recorder and upkeep task, as its users get it.
    let (prometheus_layer, _prometheus_handle) = axum_prometheus::PrometheusMetricLayer::pair();

    let mut group = c.benchmark_group("per_request");
    group.measurement_time(Duration::from_secs(4));

    // Reference points: the router alone, and what axum charges for any `Router::layer`.
    bench_one(&mut group, &rt, "bare_router", ready(base()));
    bench_one(
        &mut group,
        &rt,
        "noop_layer",
        ready(base().layer(tower::layer::layer_fn(|s| s))),
    );
    bench_one(
        &mut group,
        &rt,
        "noop_body_wrapping_layer",
        ready(base().layer(BodyPassThroughLayer)),
    );

    // Request IDs need no route, so they usually wrap the whole router...
    bench_one(
        &mut group,
        &rt,
        "ours_request_id",
        ServiceBuilder::new()
            .layer(AssignRequestIdLayer::new())
            .service(ready(base())),
    );
    bench_one(
        &mut group,
        &rt,
        "tower_http_request_id",
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service(ready(base())),
    );
    // ...or go in with `Router::layer`.
    bench_one(
        &mut group,
        &rt,
        "ours_request_id_router_layer",
        ready(base().layer(AssignRequestIdLayer::new())),
    );
    bench_one(
        &mut group,
        &rt,
        "tower_http_request_id_router_layer",
        ready(
            base()
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)),
        ),
    );

    // Metrics need the matched route, so they go in with `Router::layer`.
    bench_one(
        &mut group,
        &rt,
        "ours_metrics",
        ready(base().layer(observer.http_metrics_layer())),
    );
    bench_one(
        &mut group,
        &rt,
        "axum_prometheus",
        ready(base().layer(prometheus_layer)),
    );
    bench_one(
        &mut group,
        &rt,
        "ours_full",
        ready(base().layer(observer.layer())),
    );
    group.finish();

    bench_spans(c, &rt, &observer);
    #[cfg(feature = "history")]
    bench_history(c, &rt);
    #[cfg(feature = "alerts")]
    bench_alerts(c, &rt);
    #[cfg(feature = "dashboard")]
    bench_dashboard(c, &rt);
}

/// What open dashboards cost a request (feature `dashboard`; run with `--all-features`): the
/// full stack of an observer serving the dashboard, first with no stream open, then with 200
/// `/v1/stats/stream` clients reading their events on the same runtime (their share of the
/// work lands in the measured requests; the snapshot itself is taken once a second on the
/// stream's own thread).
#[cfg(feature = "dashboard")]
fn bench_dashboard(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use tower_observe::dashboard::DashboardOptions;

    let observer = Observer::builder()
        .dashboard(DashboardOptions::new())
        .build()
        .unwrap();
    let app = || ready(base().merge(observer.router()).layer(observer.layer()));
    let mut group = c.benchmark_group("dashboard");
    group.measurement_time(Duration::from_secs(4));
    bench_one(&mut group, rt, "bare_router", ready(base()));
    bench_one(&mut group, rt, "ours_full_no_stream_open", app());
    let streams: Vec<_> = (0..200)
        .map(|_| {
            let res = rt
                .block_on(
                    app().oneshot(
                        Request::get("/v1/stats/stream")
                            .body(Body::empty())
                            .unwrap(),
                    ),
                )
                .unwrap();
            assert_eq!(res.status(), 200);
            let mut body = res.into_body();
            rt.spawn(async move { while let Some(Ok(_)) = body.frame().await {} })
        })
        .collect();
    bench_one(&mut group, rt, "ours_full_200_streams_open", app());
    for stream in streams {
        stream.abort();
    }
    // Once more without streams, to tell order effects from the streams' cost.
    bench_one(&mut group, rt, "ours_full_streams_closed", app());
    group.finish();
}

/// What the alert engine adds to a request (feature `alerts`; run with `--all-features`): the
/// full stack without and with the recommended rules evaluated every 100 ms on the engine's
/// thread (50 times the default rate), in the same run. The engine works off the request
/// path, so the two should not differ beyond noise.
#[cfg(feature = "alerts")]
fn bench_alerts(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use tower_observe::alerts::{AlertRules, Alerts};

    let plain = Observer::new();
    let with_alerts = Observer::builder()
        .alerts(
            Alerts::new(AlertRules::recommended()).evaluation_interval(Duration::from_millis(100)),
        )
        .unwrap()
        .build()
        .unwrap();
    with_and_without(c, rt, "alerts", &plain, &with_alerts);
}

/// The full stack from `plain` and from `with` (an observer with one capability more), beside
/// the bare router, in one group: what that capability adds to a request.
#[cfg(any(feature = "history", feature = "alerts"))]
fn with_and_without(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    capability: &str,
    plain: &Observer,
    with: &Observer,
) {
    let mut group = c.benchmark_group(capability);
    group.measurement_time(Duration::from_secs(4));
    bench_one(&mut group, rt, "bare_router", ready(base()));
    bench_one(
        &mut group,
        rt,
        "ours_full",
        ready(base().layer(plain.layer())),
    );
    bench_one(
        &mut group,
        rt,
        &format!("ours_full_with_{capability}"),
        ready(base().layer(with.layer())),
    );
    group.finish();
}

/// What the history adds to a request (feature `history`; run with `--all-features`): the
/// full stack without and with an in-memory history (the flush thread runs as in production).
#[cfg(feature = "history")]
fn bench_history(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use tower_observe::history::HistoryOptions;

    let plain = Observer::new();
    let with_history = Observer::builder()
        .history(HistoryOptions::in_memory())
        .build()
        .unwrap();
    with_and_without(c, rt, "history", &plain, &with_history);
}

/// The span part: our full stack with traces against tower-http's `TraceLayer`, first with no
/// subscriber (tracing disabled), then with one installed (spans created and closed).
fn bench_spans(c: &mut Criterion, rt: &tokio::runtime::Runtime, observer: &Observer) {
    use tower_http::trace::TraceLayer;
    use tower_observe::trace::TraceOptions;

    let traced = || ready(base().layer(observer.layer().traces(TraceOptions::new())));
    let unsampled = || {
        ready(
            base().layer(
                observer
                    .layer()
                    .traces(TraceOptions::new().root_sample_ratio(0.0)),
            ),
        )
    };
    for with_subscriber in [false, true] {
        if with_subscriber {
            // A subscriber that keeps span data, as any real one does, and writes nothing.
            use tracing_subscriber::layer::SubscriberExt;
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
        let name = if with_subscriber {
            "spans_with_subscriber"
        } else {
            "spans_no_subscriber"
        };
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(4));
        bench_one(&mut group, rt, "bare_router", ready(base()));
        bench_one(
            &mut group,
            rt,
            "ours_full",
            ready(base().layer(observer.layer())),
        );
        bench_one(&mut group, rt, "ours_full_traces_sampled", traced());
        bench_one(&mut group, rt, "ours_full_traces_unsampled", unsampled());
        bench_one(
            &mut group,
            rt,
            "tower_http_trace_layer",
            ready(base().layer(TraceLayer::new_for_http())),
        );
        if !with_subscriber {
            // The OpenTelemetry tower crate records through the OpenTelemetry API directly
            // (global no-op providers here), not through `tracing`.
            bench_one(
                &mut group,
                rt,
                "opentelemetry_instrumentation_tower",
                ready(
                    base().layer(opentelemetry_instrumentation_tower::http::server::Layer::new()),
                ),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_layers);
criterion_main!(benches);
