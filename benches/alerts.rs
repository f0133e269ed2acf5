//! The alert engine's cost per evaluation: 100 rules over a registry of 1,000 request series
//! (100 routes × 10 status/error combinations, 14-bucket histograms: 16,000 series as
//! Prometheus counts them), sampled and evaluated the way the engine's thread does every tick.
//!
//! ```text
//! cargo bench --bench alerts --all-features
//! ```

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_observe::alerts::{AlertRule, AlertRules, Alerts, Figure};
use tower_observe::{names, Observer};

/// 100 rules of every kind: error rate, latency quantile and request rate, per route or
/// scoped to one route, with minimum traffic.
fn rules() -> AlertRules {
    let five = Duration::from_secs(300);
    let mut rules = AlertRules::new();
    for i in 0..100 {
        let route = format!("/route/{}", i % 100);
        let rule = match i % 4 {
            0 => AlertRule::new(format!("Errors{i}"), Figure::error_rate(five))
                .above(0.1)
                .min_requests(20)
                .for_each_route(),
            1 => AlertRule::new(format!("Latency{i}"), Figure::latency_quantile(0.99, five))
                .above(1.0)
                .route(route),
            2 => AlertRule::new(format!("Rate{i}"), Figure::request_rate(five)).above(1000.0),
            _ => AlertRule::new(format!("RouteErrors{i}"), Figure::error_rate(five))
                .above(0.05)
                .route(route),
        };
        rules = rules.rule(rule.for_duration(Duration::from_secs(60)));
    }
    rules
}

fn bench_evaluation(c: &mut Criterion) {
    let observer = Observer::builder()
        // The engine's own thread ticks every 2 minutes here: the benchmark drives evaluations.
        .alerts(Alerts::new(rules()).evaluation_interval(Duration::from_secs(120)))
        .unwrap()
        .build()
        .unwrap();
    let registry = observer.registry().unwrap().clone();
    metrics::with_local_recorder(&registry, || {
        for route in 0..100 {
            for status in 0..10 {
                let code = [
                    "200", "201", "204", "301", "400", "404", "409", "500", "502", "503",
                ][status];
                let mut labels = vec![
                    ("http_route", format!("/route/{route}")),
                    ("http_request_method", "GET".to_owned()),
                    ("http_response_status_code", code.to_owned()),
                ];
                if code.starts_with('5') {
                    labels.push(("error_type", code.to_owned()));
                }
                let h = metrics::histogram!(names::HTTP_SERVER_REQUEST_DURATION, &labels);
                for i in 0..20 {
                    h.record(0.001 * f64::from(i * (status as u32 + 1)));
                }
            }
        }
    });
    assert_eq!(
        registry.label_sets(names::HTTP_SERVER_REQUEST_DURATION),
        1000
    );
    let mut group = c.benchmark_group("alert_engine");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("tick_100_rules_1000_series", |b| {
        b.iter(|| observer.evaluate_alerts());
    });
    group.finish();
}

criterion_group!(benches, bench_evaluation);
criterion_main!(benches);
