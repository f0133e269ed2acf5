//! The in-process engine and Prometheus agree: one fixture of series goes through the engine
//! here and through `promtool test rules` with the rendered rules; the test file asserts, at
//! every evaluation, exactly the alerts (state, labels, annotations) the engine produced.
//!
//! The rendered rules and the test file are shipped in `deploy/prometheus/`; this test fails
//! when they drift (`TOWER_OBSERVE_UPDATE_DEPLOY=1` rewrites them), and runs promtool on them
//! when it is installed (CI installs it and sets `TOWER_OBSERVE_E2E=1`, which makes its
//! absence a failure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::promql::{ms, Labels, SampleStore};
use super::state::{AlertState, RuleAlerts};
use super::template::Template;
use super::AlertRules;

const MINUTES: i64 = 45;
const MIN: i64 = 60_000;

/// One fixture series: name, labels, a value per minute.
type Series = (&'static str, Vec<(&'static str, &'static str)>, Vec<f64>);

/// A cumulative counter from per-minute increments.
fn counter(per_minute: impl Fn(i64) -> f64) -> Vec<f64> {
    let mut total = 0.0;
    (0..=MINUTES)
        .map(|m| {
            if m > 0 {
                total += per_minute(m);
            }
            total
        })
        .collect()
}

fn fixture() -> Vec<Series> {
    let ok = vec![
        ("http_route", "/api"),
        ("http_request_method", "GET"),
        ("http_response_status_code", "200"),
    ];
    let failed = vec![
        ("http_route", "/api"),
        ("http_request_method", "GET"),
        ("http_response_status_code", "500"),
        ("error_type", "500"),
    ];
    // 100 requests a minute; 15 of them fail from minute 3 to 20.
    let failing = |m: i64| (3..=20).contains(&m);
    let ok_per_minute = move |m: i64| if failing(m) { 85.0 } else { 100.0 };
    let failed_per_minute = move |m: i64| if failing(m) { 15.0 } else { 0.0 };
    // Successful requests take 50 ms, except from minute 8 to 25, when 5 in 100 take 2 s.
    let slow = |m: i64| (8..=25).contains(&m);
    let fast_share = move |m: i64| if slow(m) { 0.95 } else { 1.0 };
    let mut series: Vec<Series> = vec![
        (
            "http_server_request_duration_seconds_count",
            ok.clone(),
            counter(ok_per_minute),
        ),
        (
            "http_server_request_duration_seconds_count",
            failed.clone(),
            counter(failed_per_minute),
        ),
    ];
    for (le, share) in [
        (
            "0.1",
            &(move |m| ok_per_minute(m) * fast_share(m)) as &dyn Fn(i64) -> f64,
        ),
        ("1", &(move |m| ok_per_minute(m) * fast_share(m))),
        ("2.5", &ok_per_minute),
        ("+Inf", &ok_per_minute),
    ] {
        let mut labels = ok.clone();
        labels.push(("le", le));
        series.push((
            "http_server_request_duration_seconds_bucket",
            labels,
            counter(share),
        ));
    }
    // The process burns 0.9 of its 1 core from minute 2 to 16, else 0.1.
    series.push((
        "process_cpu_seconds_total",
        vec![],
        counter(|m| if (2..=16).contains(&m) { 54.0 } else { 6.0 }),
    ));
    series.push((
        "process_cpu_available_cores",
        vec![],
        vec![1.0; MINUTES as usize + 1],
    ));
    // Pool `db` loses three of its four backends from minute 4 to 7, pool `cache` never.
    series.push((
        "backend_pool_health_ratio",
        vec![("pool", "db")],
        (0..=MINUTES)
            .map(|m| if (4..=7).contains(&m) { 0.25 } else { 1.0 })
            .collect(),
    ));
    series.push((
        "backend_pool_health_ratio",
        vec![("pool", "cache")],
        vec![1.0; MINUTES as usize + 1],
    ));
    series
}

/// An alert at one evaluation: its full labels (with alertname and severity), state and
/// annotations.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    labels: Labels,
    state: AlertState,
    annotations: BTreeMap<String, String>,
}

/// Runs the engine over the fixture, one evaluation a minute; the alerts after each.
fn engine_timeline(rules: &AlertRules, fixture: &[Series]) -> Vec<Vec<Seen>> {
    let conditions: Vec<_> = rules.rules.iter().map(|r| r.condition()).collect();
    let mut store = SampleStore::for_exprs(conditions.iter());
    let mut alerts: Vec<RuleAlerts> = rules.rules.iter().map(|_| RuleAlerts::default()).collect();
    let mut timeline = Vec::new();
    for minute in 0..=MINUTES {
        let t = minute * MIN;
        for (name, labels, values) in fixture {
            let labels: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            store.push(name, &labels, t, values[minute as usize]);
        }
        let mut seen = Vec::new();
        for ((rule, condition), state) in rules.rules.iter().zip(&conditions).zip(&mut alerts) {
            state.evaluate(
                condition.eval(&store, t),
                t,
                ms(rule.hold),
                ms(rule.keep_firing_for),
            );
            for (group, alert) in &state.instances {
                let mut labels = group.clone();
                labels.extend(rule.labels.clone());
                labels.insert("alertname".into(), rule.name.clone());
                labels.insert("severity".into(), rule.severity.as_str().into());
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| {
                        let template = Template::parse(v).expect("valid template");
                        (k.clone(), template.render(alert.value, &labels))
                    })
                    .collect();
                seen.push(Seen {
                    labels,
                    state: alert.state,
                    annotations,
                });
            }
        }
        timeline.push(seen);
    }
    timeline
}

/// The `promtool test rules` file asserting `timeline` over `fixture`.
fn promtool_test(fixture: &[Series], timeline: &[Vec<Seen>], rule_file: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated by the test `alerts::equivalence`: the alerts the in-process engine\n",
    );
    out.push_str(
        "# produced over this fixture, minute by minute. `promtool test rules` checks that\n",
    );
    out.push_str("# Prometheus, running the rendered rules, produces exactly the same.\n");
    let _ = writeln!(out, "rule_files:\n  - {rule_file}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:");
    for (name, labels, values) in fixture {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
        let _ = writeln!(
            out,
            "      - series: '{name}{{{}}}'\n        values: '{}'",
            labels.join(","),
            values.join(" ")
        );
    }
    out.push_str("    promql_exp_test:\n");
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    for (minute, seen) in timeline.iter().enumerate() {
        let _ = writeln!(out, "      - expr: ALERTS\n        eval_time: {minute}m");
        if seen.is_empty() {
            out.push_str("        exp_samples: []\n");
            continue;
        }
        out.push_str("        exp_samples:\n");
        for alert in seen {
            let mut labels: Vec<String> = alert
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", quote(v)))
                .collect();
            labels.push(format!("alertstate=\"{}\"", alert.state.as_str()));
            labels.sort();
            let _ = writeln!(
                out,
                "          - labels: 'ALERTS{{{}}}'\n            value: 1",
                labels.join(",")
            );
        }
    }
    out.push_str("    alert_rule_test:\n");
    let names: Vec<String> = {
        let mut n: Vec<String> = timeline
            .iter()
            .flatten()
            .map(|s| s.labels["alertname"].clone())
            .collect();
        n.sort();
        n.dedup();
        n
    };
    for (minute, seen) in timeline.iter().enumerate() {
        for name in &names {
            let firing: Vec<&Seen> = seen
                .iter()
                .filter(|s| s.state == AlertState::Firing && s.labels["alertname"] == *name)
                .collect();
            let _ = writeln!(
                out,
                "      - eval_time: {minute}m\n        alertname: {name}"
            );
            if firing.is_empty() {
                out.push_str("        exp_alerts: []\n");
                continue;
            }
            out.push_str("        exp_alerts:\n");
            for alert in firing {
                out.push_str("          - exp_labels:\n");
                for (k, v) in &alert.labels {
                    if k != "alertname" {
                        let _ = writeln!(out, "              {k}: \"{}\"", quote(v));
                    }
                }
                out.push_str("            exp_annotations:\n");
                for (k, v) in &alert.annotations {
                    let _ = writeln!(out, "              {k}: \"{}\"", quote(v));
                }
            }
        }
    }
    out.replace("promql_exp_test", "promql_expr_test")
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

/// When a state first appears for `alertname`, by minute.
fn first(timeline: &[Vec<Seen>], alertname: &str, state: AlertState) -> Option<usize> {
    timeline.iter().position(|seen| {
        seen.iter()
            .any(|s| s.labels["alertname"] == alertname && s.state == state)
    })
}

fn last_active(timeline: &[Vec<Seen>], alertname: &str) -> Option<usize> {
    timeline
        .iter()
        .rposition(|seen| seen.iter().any(|s| s.labels["alertname"] == alertname))
}

#[test]
fn the_engine_and_promtool_agree_on_the_recommended_rules() {
    let rules = AlertRules::recommended();
    let fixture = fixture();
    let timeline = engine_timeline(&rules, &fixture);

    // The engine's own timeline, read against the fixture (minute by minute, samples at
    // whole minutes, 5m windows extrapolated as Prometheus does):
    // 15 % errors from minute 3. At minute 5 the window holds 45 errors of 500 (9 %); at
    // minute 6, 60 of 500 (12 %): pending, firing 5 minutes later. Errors stop after minute
    // 20; at minute 22 the window holds 45 of 500 again: kept firing 2 minutes, resolved at 24.
    assert_eq!(
        first(&timeline, "HighErrorRate", AlertState::Pending),
        Some(6)
    );
    assert_eq!(
        first(&timeline, "HighErrorRate", AlertState::Firing),
        Some(11)
    );
    assert_eq!(last_active(&timeline, "HighErrorRate"), Some(23));
    // 5 % slow (2 s) requests from minute 8: at minute 8 they are exactly 1 % of the window,
    // so p99 is 1 s, not above; at 9, 2 %: pending, firing at 14. Slow requests stop after
    // minute 25; at 29 the window holds 1 % again (p99 0.1 s): kept 2 minutes, resolved at 31.
    assert_eq!(
        first(&timeline, "HighLatencyP99", AlertState::Pending),
        Some(9)
    );
    assert_eq!(
        first(&timeline, "HighLatencyP99", AlertState::Firing),
        Some(14)
    );
    assert_eq!(last_active(&timeline, "HighLatencyP99"), Some(30));
    // CPU 0.9 of 1 core from minute 2 to 16, over a 2m window: at minute 2, (6 + 54) / 120 s
    // = 50 %; at 3, 90 %: pending, firing 10 minutes later; at 17, 50 % again: resolved.
    assert_eq!(
        first(&timeline, "HighCpuUtilization", AlertState::Pending),
        Some(3)
    );
    assert_eq!(
        first(&timeline, "HighCpuUtilization", AlertState::Firing),
        Some(13)
    );
    assert_eq!(last_active(&timeline, "HighCpuUtilization"), Some(16));
    // Pool db at 25 % from minute 4 to 7: pending at 4, firing at 5, resolved at 8; the cache
    // pool never alerts.
    assert_eq!(
        first(&timeline, "BackendPoolDegraded", AlertState::Pending),
        Some(4)
    );
    assert_eq!(
        first(&timeline, "BackendPoolDegraded", AlertState::Firing),
        Some(5)
    );
    assert_eq!(last_active(&timeline, "BackendPoolDegraded"), Some(7));
    assert!(timeline
        .iter()
        .flatten()
        .all(|s| s.labels.get("pool").is_none_or(|p| p == "db")));
    let summary = &timeline[12]
        .iter()
        .find(|s| s.labels["alertname"] == "HighErrorRate")
        .expect("firing at 12")
        .annotations["summary"];
    assert_eq!(summary, "Error rate is 15%");

    let rules_yaml = rules.to_prometheus_rules("tower-observe");
    let test_yaml = promtool_test(&fixture, &timeline, "alerts.rules.yml");
    let dir = deploy_dir();
    if std::env::var_os("TOWER_OBSERVE_UPDATE_DEPLOY").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("alerts.rules.yml"), &rules_yaml).unwrap();
        std::fs::write(dir.join("alerts.rules.test.yml"), &test_yaml).unwrap();
    }
    let shipped = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(
        shipped("alerts.rules.yml") == rules_yaml && shipped("alerts.rules.test.yml") == test_yaml,
        "deploy/prometheus/ is out of date: run with TOWER_OBSERVE_UPDATE_DEPLOY=1"
    );

    promtool_agrees(&dir.join("alerts.rules.test.yml"));
}

/// Runs `promtool test rules` on `test_file`: a failure is Prometheus and the engine
/// disagreeing. Without promtool this half is skipped, unless `TOWER_OBSERVE_E2E` is set.
fn promtool_agrees(test_file: &std::path::Path) {
    let promtool = std::process::Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(test_file)
        .output();
    match promtool {
        Ok(out) => assert!(
            out.status.success(),
            "promtool disagrees with the engine:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if std::env::var_os("TOWER_OBSERVE_E2E").is_some() => {
            panic!("promtool is required (TOWER_OBSERVE_E2E is set): {e}")
        }
        Err(e) => eprintln!("skipping the promtool half: {e} (install Debian's `prometheus`)"),
    }
}

/// [`promtool_agrees`] on `rules_yaml` and the test of `timeline` over `fixture`, written to a
/// temporary directory.
fn promtool_agrees_on(name: &str, rules_yaml: &str, fixture: &[Series], timeline: &[Vec<Seen>]) {
    let dir = std::env::temp_dir().join(format!("tower-observe-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_file = format!("{name}.rules.yml");
    std::fs::write(dir.join(&rules_file), rules_yaml).unwrap();
    let test_file = dir.join(format!("{name}.rules.test.yml"));
    std::fs::write(&test_file, promtool_test(fixture, timeline, &rules_file)).unwrap();
    promtool_agrees(&test_file);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two services behind one Prometheus: `shop` (the fixture) and `search` (the same traffic
/// without its failures), told apart by `job`. The rendered rules alert on each service's
/// own figures — what the engine in each process sees — with its `job` among the labels;
/// `sum(…)` over both would have diluted shop's error rate below the threshold.
#[test]
fn the_rendered_rules_keep_the_services_of_one_prometheus_apart() {
    let rules = AlertRules::recommended();
    let shop = fixture();
    let search: Vec<Series> = fixture()
        .into_iter()
        .filter(|(_, labels, _)| labels.iter().all(|(k, _)| *k != "error_type"))
        .collect();
    let with_job = |series: &[Series], job: &'static str| -> Vec<Series> {
        series
            .iter()
            .map(|(name, labels, values)| {
                let mut labels = labels.clone();
                labels.push(("job", job));
                (*name, labels, values.clone())
            })
            .collect()
    };
    let mut expected: Vec<Vec<Seen>> = vec![Vec::new(); MINUTES as usize + 1];
    for (series, job) in [(&shop, "shop"), (&search, "search")] {
        for (minute, seen) in engine_timeline(&rules, series).into_iter().enumerate() {
            expected[minute].extend(seen.into_iter().map(|mut s| {
                s.labels.insert("job".into(), job.into());
                s
            }));
        }
    }
    let fires = |job: &str| {
        expected.iter().flatten().any(|s| {
            s.labels["alertname"] == "HighErrorRate"
                && s.labels["job"] == job
                && s.state == AlertState::Firing
        })
    };
    assert!(fires("shop") && !fires("search"));
    let both = [with_job(&shop, "shop"), with_job(&search, "search")].concat();
    promtool_agrees_on(
        "services",
        &rules.to_prometheus_rules("services"),
        &both,
        &expected,
    );
}

// --- operations: the operation and queue figures, engine against promtool ---

/// A database operation failing 20 % of its completed calls from minute 3 to 12 (cancelled
/// calls, many of them, never count), its p95 slow from minute 5 to 14, a queue backing up
/// from minute 4 to 9, and a stuck worker from minute 6 to 8.
fn operations_fixture() -> Vec<Series> {
    let db = |extra: Option<(&'static str, &'static str)>| {
        let mut labels = vec![
            ("db_system_name", "postgresql"),
            ("db_operation_name", "select_user"),
        ];
        labels.extend(extra);
        labels
    };
    let failing = |m: i64| (3..=12).contains(&m);
    let slow = |m: i64| (5..=14).contains(&m);
    let ok_per_minute = move |m: i64| if failing(m) { 80.0 } else { 100.0 };
    let mut series: Vec<Series> = vec![
        (
            "db_client_operation_duration_seconds_count",
            db(None),
            counter(ok_per_minute),
        ),
        (
            "db_client_operation_duration_seconds_count",
            db(Some(("error_type", "timeout"))),
            counter(move |m| if failing(m) { 20.0 } else { 0.0 }),
        ),
        (
            "db_client_operation_duration_seconds_count",
            db(Some(("error_type", "cancelled"))),
            counter(|_| 300.0),
        ),
    ];
    let fast_share = move |m: i64| if slow(m) { 0.9 } else { 1.0 };
    for (le, per_minute) in [
        (
            "0.1",
            &(move |m| ok_per_minute(m) * fast_share(m)) as &dyn Fn(i64) -> f64,
        ),
        ("1", &ok_per_minute),
        ("+Inf", &ok_per_minute),
    ] {
        series.push((
            "db_client_operation_duration_seconds_bucket",
            db(Some(("le", le))),
            counter(per_minute),
        ));
    }
    // Cancelled calls all took long: left out of the quantile.
    series.push((
        "db_client_operation_duration_seconds_bucket",
        {
            let mut l = db(Some(("error_type", "cancelled")));
            l.push(("le", "+Inf"));
            l
        },
        counter(|_| 300.0),
    ));
    let queue = |name| {
        vec![
            ("messaging_system", "in_process"),
            ("messaging_destination_name", name),
        ]
    };
    series.push((
        "queue_depth",
        queue("emails"),
        (0..=MINUTES)
            .map(|m| if (4..=9).contains(&m) { 5000.0 } else { 10.0 })
            .collect(),
    ));
    series.push((
        "queue_depth",
        queue("reports"),
        vec![3.0; MINUTES as usize + 1],
    ));
    let mut stuck = queue("emails");
    stuck.push(("state", "stuck"));
    series.push((
        "queue_workers",
        stuck,
        (0..=MINUTES)
            .map(|m| if (6..=8).contains(&m) { 1.0 } else { 0.0 })
            .collect(),
    ));
    series
}

#[test]
fn the_engine_and_promtool_agree_on_the_operation_figures() {
    use super::rules::{AlertRule, Figure, OperationMetric};
    use super::Severity;
    let five = std::time::Duration::from_secs(300);
    let minute = std::time::Duration::from_secs(60);
    let rules = AlertRules::new()
        .rule(
            AlertRule::new(
                "DbErrorRate",
                Figure::operation_error_rate(OperationMetric::Db, five),
            )
            .for_each("db_operation_name")
            .above(0.1)
            .min_requests(20)
            .for_duration(2 * minute)
            .summary("{{ $labels.db_operation_name }} fails {{ $value | humanizePercentage }}"),
        )
        .rule(
            AlertRule::new(
                "DbSlowP95",
                Figure::operation_latency_quantile(OperationMetric::Db, 0.95, five),
            )
            .above(0.5)
            .min_requests(20),
        )
        .rule(
            AlertRule::new("QueueBacklog", Figure::QueueDepth)
                .for_each("messaging_destination_name")
                .above(1000.0)
                .for_duration(minute),
        )
        .rule(
            AlertRule::new("StuckWorkers", Figure::StuckWorkers)
                .above(0.0)
                .severity(Severity::Critical),
        );
    let fixture = operations_fixture();
    let timeline = engine_timeline(&rules, &fixture);
    // 20 % failures from minute 3: at minute 5 the 5m window holds 60 of 500 completed
    // (12 %, the 1500 cancelled calls left out): pending, firing 2 minutes later. At minute
    // 14 the window still holds 60 of 500; at 15, 40 of 500 (8 %): resolved.
    assert_eq!(
        first(&timeline, "DbErrorRate", AlertState::Pending),
        Some(5)
    );
    assert_eq!(first(&timeline, "DbErrorRate", AlertState::Firing), Some(7));
    assert_eq!(last_active(&timeline, "DbErrorRate"), Some(14));
    // 10 % of calls slow (0.1 to 1 s) from minute 5: at minute 8 the window holds 8 % slow
    // calls (p95 interpolated at 0.44 s); at 9, 10 % (0.55 s): above 0.5 s. The cancelled
    // calls, all slow, stay out.
    assert_eq!(first(&timeline, "DbSlowP95", AlertState::Firing), Some(9));
    assert_eq!(
        first(&timeline, "QueueBacklog", AlertState::Pending),
        Some(4)
    );
    assert_eq!(
        first(&timeline, "QueueBacklog", AlertState::Firing),
        Some(5)
    );
    assert_eq!(last_active(&timeline, "QueueBacklog"), Some(9));
    assert!(timeline.iter().flatten().all(|s| s
        .labels
        .get("messaging_destination_name")
        .is_none_or(|q| q == "emails")));
    assert_eq!(
        first(&timeline, "StuckWorkers", AlertState::Firing),
        Some(6)
    );
    assert_eq!(last_active(&timeline, "StuckWorkers"), Some(8));

    promtool_agrees_on(
        "operations",
        &rules.to_prometheus_rules("tower-observe-operations"),
        &fixture,
        &timeline,
    );
}

// --- end operations ---
