//! The engine: each tick samples the registry, evaluates every rule and hands the changes of
//! state to the channels; it is the observer part that serves `GET /v1/alerts`.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::event::fingerprint;
use super::notify::Notifier;
use super::promql::{ms, Expr, Labels, SampleStore};
use super::rules::{AlertRule, Figure};
use super::sample::sample;
use super::state::{AlertState, Change, RuleAlerts};
use super::template::Template;
use super::{AlertEvent, Alerts, EventStatus, FailedRequest, Severity, ALERTS_PATH};
use crate::clock::Clock;
use crate::health::Status;
use crate::observer::background::{self, Background};
use crate::observer::{HealthInput, Part, Pending, RecordSink, Route, RouteMethod};
use crate::registry::Registry;
use crate::response::json;
use crate::sync::lock;
use crate::time_fmt::rfc3339;
use crate::{names, Observer};

/// Transitions kept for `/v1/alerts`.
const MAX_TRANSITIONS: usize = 200;
/// Failing requests attached to a notification.
const MAX_FAILED_REQUESTS: usize = 5;

/// The alert settings on the builder, attached when the observer is built.
#[derive(Default)]
pub(crate) struct AlertsPending(pub(crate) Option<Alerts>);

impl Pending for AlertsPending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        let alerts = self.0?;
        let part = observer.part(|| AlertsPart::new(alerts, observer));
        let ticker = background::spawn(
            background::task!(
                "alerts",
                "cannot start the alert engine; rules are not evaluated"
            ),
            observer,
            &part,
            part.interval,
            |observer, part| {
                part.dashboard.store(
                    dashboard_served(observer),
                    std::sync::atomic::Ordering::Relaxed,
                );
                part.tick()
            },
        );
        let _ = part.ticker.set(ticker);
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

pub(super) struct CompiledRule {
    pub(super) rule: AlertRule,
    pub(super) condition: Expr,
    value: Expr,
    pub(super) annotations: Vec<(String, Template)>,
    /// The crate's process metrics (`process_*`, `tokio_*`) the rule reads: recorded only
    /// with `ObserverBuilder::process_metrics`.
    process_metrics: Vec<String>,
}

/// What one rule looked like at its last evaluation.
#[derive(Debug, Default, Clone)]
pub(super) struct RuleStatus {
    /// The figure by label set (a few), whether or not it breached.
    pub(super) values: Vec<(Labels, f64)>,
    pub(super) last_evaluation: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Transition {
    at: String,
    rule: String,
    labels: BTreeMap<String, String>,
    from: AlertState,
    to: AlertState,
    value: f64,
}

pub(super) struct EngineState {
    pub(super) store: SampleStore,
    pub(super) alerts: Vec<RuleAlerts>,
    pub(super) status: Vec<RuleStatus>,
    pub(super) transitions: VecDeque<Transition>,
    pub(super) evaluations: u64,
    pub(super) last_evaluation: Option<SystemTime>,
    pub(super) last_duration: Duration,
    /// When the registry was last sampled (ms).
    last_sampled: Option<i64>,
}

/// The alerting capability of an observer.
pub(crate) struct AlertsPart {
    pub(super) rules: Vec<CompiledRule>,
    pub(super) interval: Duration,
    pub(super) clock: Clock,
    pub(super) start: u64,
    /// The wall-clock time of `start`.
    started_wall: SystemTime,
    pub(super) registry: Option<Registry>,
    pub(super) notifier: Arc<Notifier>,
    external_url: Option<String>,
    yellow_from: Option<Severity>,
    red_from: Option<Severity>,
    pub(super) state: Mutex<EngineState>,
    /// Per rule: why it cannot fire (it reads a metric nothing records), as found by the
    /// last wiring check; shown on the rule in `/v1/alerts`.
    pub(super) notes: Mutex<Vec<Option<String>>>,
    /// The engine's thread (see [`background`]), evaluating every `interval`.
    ticker: OnceLock<Background>,
    /// The observer serves the dashboard: failed requests link to their view there (read at
    /// each tick, as the dashboard may be attached after the alerts).
    pub(super) dashboard: std::sync::atomic::AtomicBool,
}

/// Whether `observer` serves the dashboard.
fn dashboard_served(observer: &Observer) -> bool {
    #[cfg(feature = "dashboard")]
    return crate::dashboard::is_served(observer);
    #[cfg(not(feature = "dashboard"))]
    {
        let _ = observer;
        false
    }
}

impl AlertsPart {
    fn new(alerts: Alerts, observer: &Observer) -> Self {
        let rules: Vec<CompiledRule> = alerts
            .rules
            .rules
            .into_iter()
            .map(|rule| {
                let (condition, value) = (rule.condition(), rule.value_expr());
                let process_metrics = SampleStore::for_exprs([&condition, &value])
                    .metrics()
                    .filter(|m| is_process_metric(m))
                    .map(str::to_owned)
                    .collect();
                CompiledRule {
                    condition,
                    value,
                    annotations: rule
                        .annotations
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), Template::parse(v).ok()?)))
                        .collect(),
                    process_metrics,
                    rule,
                }
            })
            .collect();
        let store = SampleStore::for_exprs(rules.iter().flat_map(|r| [&r.condition, &r.value]));
        let start = observer.now_nanos();
        let registry = observer.registry().cloned();
        if registry.is_none() {
            tracing::warn!(target: "tower_observe::alerts", "alert rules read the built-in registry, and this observer records into another recorder: rules will never fire");
        }
        Self {
            state: Mutex::new(EngineState {
                store,
                alerts: rules.iter().map(|_| RuleAlerts::default()).collect(),
                status: vec![RuleStatus::default(); rules.len()],
                transitions: VecDeque::new(),
                evaluations: 0,
                last_evaluation: None,
                last_duration: Duration::ZERO,
                last_sampled: None,
            }),
            notes: Mutex::new(vec![None; rules.len()]),
            rules,
            interval: alerts.interval,
            clock: observer.clock().clone(),
            start,
            started_wall: observer.wall_at(start),
            registry,
            notifier: Notifier::new(alerts.channels, observer, alerts.external_url.clone()),
            external_url: alerts.external_url,
            yellow_from: alerts.yellow_from,
            red_from: alerts.red_from,
            ticker: OnceLock::new(),
            dashboard: Default::default(),
        }
    }

    /// Samples the registry and evaluates every rule, as of now.
    pub(crate) fn tick(&self) {
        let now = self.clock.now_nanos();
        let t = (now.saturating_sub(self.start) / 1_000_000) as i64;
        let wall = self.clock.wall_at(now);
        let started = Instant::now();
        let mut events = Vec::new();
        {
            let mut state = lock(&self.state);
            if let Some(registry) = &self.registry {
                let previous = state.last_sampled;
                sample(registry, &mut state.store, t, previous);
                state.last_sampled = Some(t);
            }
            let state = &mut *state;
            for (i, compiled) in self.rules.iter().enumerate() {
                let result = compiled.condition.eval(&state.store, t);
                let mut values = compiled.value.eval(&state.store, t);
                let rule = &compiled.rule;
                let changes =
                    state.alerts[i].evaluate(result, t, ms(rule.hold), ms(rule.keep_firing_for));
                for change in changes {
                    // The figure now, for a resolved notification: the value that resolved it.
                    let now = values
                        .iter()
                        .find(|(labels, _)| *labels == change.labels)
                        .map_or(f64::NAN, |(_, v)| *v);
                    if let Some(event) = self.event(compiled, &change, wall, now) {
                        events.push(event);
                    }
                    if state.transitions.len() == MAX_TRANSITIONS {
                        state.transitions.pop_front();
                    }
                    state.transitions.push_back(Transition {
                        at: rfc3339(wall),
                        rule: rule.name.clone(),
                        labels: change.labels.clone(),
                        from: change.from,
                        to: change.to,
                        value: change.value,
                    });
                }
                values.truncate(20);
                state.status[i] = RuleStatus {
                    values,
                    last_evaluation: Some(wall),
                };
            }
            state.evaluations += 1;
            state.last_evaluation = Some(wall);
            state.last_duration = started.elapsed();
        }
        // Outside the lock: the channels' queues never wait on the engine, nor it on them.
        for event in &events {
            self.notifier.dispatch(event);
        }
    }

    /// The notification of a change, when it is one: to firing, or from firing.
    fn event(
        &self,
        compiled: &CompiledRule,
        change: &Change,
        wall: SystemTime,
        now: f64,
    ) -> Option<AlertEvent> {
        let status = match (change.from, change.to) {
            (_, AlertState::Firing) => EventStatus::Firing,
            (AlertState::Firing, AlertState::Inactive) => EventStatus::Resolved,
            _ => return None,
        };
        let rule = &compiled.rule;
        let mut labels = change.labels.clone();
        labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("alertname".to_owned(), rule.name.clone());
        labels.insert("severity".to_owned(), rule.severity.as_str().to_owned());
        // A resolved notification reads the value that resolved it ("Error rate is 3.1 %"),
        // not the last firing one, which would read as if the problem were still there; it
        // keeps the firing value apart, labelled as such. With no value now (no traffic), the
        // annotations keep the firing value.
        let (value, firing_value) = match status {
            EventStatus::Firing => (change.value, None),
            EventStatus::Resolved => (now, Some(change.value)),
        };
        let shown = if value.is_nan() { change.value } else { value };
        let annotations = compiled
            .annotations
            .iter()
            .map(|(name, template)| (name.clone(), template.render(shown, &labels)))
            .collect();
        // From the engine's start, so the firing and the resolved notification carry the very
        // same `startsAt`.
        let starts_at = self.started_wall + Duration::from_millis(change.active_at.max(0) as u64);
        let base = self.external_url.as_deref().unwrap_or("");
        let history = history_link(base, rule, &labels, starts_at, wall);
        Some(AlertEvent {
            rule: rule.name.clone(),
            status,
            severity: rule.severity,
            fingerprint: fingerprint(&labels),
            annotations,
            starts_at,
            ends_at: (status == EventStatus::Resolved).then_some(wall),
            value,
            firing_value,
            links: vec![
                ("Alerts".to_owned(), format!("{base}{ALERTS_PATH}")),
                ("History of the breach".to_owned(), history.clone()),
            ],
            generator_url: history,
            failed_requests: self.failed_requests(rule, &change.labels),
            labels,
        })
    }

    /// A few recent requests of the kind the rule watches (failed ones for an error rule),
    /// from the duration histogram's exemplars (traced requests only).
    fn failed_requests(&self, rule: &AlertRule, group: &Labels) -> Vec<FailedRequest> {
        let Some(registry) = &self.registry else {
            return Vec::new();
        };
        let errors_only = match rule.figure {
            Figure::ErrorRate { .. } | Figure::BurnRate { .. } => true,
            Figure::LatencyQuantile { .. } => false,
            _ => return Vec::new(),
        };
        let keep = |labels: &[(String, String)]| {
            let get = |name: &str| {
                labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            (!errors_only || get(names::ERROR_TYPE).is_some_and(|v| !v.is_empty()))
                && rule
                    .matchers
                    .iter()
                    .all(|(k, v)| get(k) == Some(v.as_str()))
                && group.iter().all(|(k, v)| get(k) == Some(v.as_str()))
        };
        registry
            .recent_exemplars(
                names::HTTP_SERVER_REQUEST_DURATION,
                &keep,
                MAX_FAILED_REQUESTS,
            )
            .into_iter()
            .map(|e| {
                let trace_id = crate::hex::to_string(&e.trace_id);
                FailedRequest {
                    view_url: self.view_url(&trace_id),
                    span_id: crate::hex::to_string(&e.span_id),
                    trace_id,
                }
            })
            .collect()
    }

    /// The dashboard's view of a request, with an external URL and the dashboard.
    fn view_url(&self, id: &str) -> Option<String> {
        let base = self.external_url.as_deref().filter(|u| !u.is_empty())?;
        #[cfg(feature = "dashboard")]
        let path = crate::dashboard::DASHBOARD_PATH;
        #[cfg(not(feature = "dashboard"))]
        let path = "/dashboard";
        self.dashboard
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| format!("{base}{path}#request={id}"))
    }
}

/// `/v1/stats/history` over the breach (from a window before it started), for the rule's
/// route when it has one.
fn history_link(
    base: &str,
    rule: &AlertRule,
    labels: &Labels,
    from: SystemTime,
    to: SystemTime,
) -> String {
    let lead = Duration::from_secs(15 * 60);
    let from = from.checked_sub(lead).unwrap_or(from);
    let mut url = format!(
        "{base}/v1/stats/history?from={}&to={}&step=1m",
        unix(from),
        unix(to) + 60
    );
    let route = labels.get(names::HTTP_ROUTE).or_else(|| {
        rule.matchers
            .iter()
            .find(|(k, _)| k == names::HTTP_ROUTE)
            .map(|(_, v)| v)
    });
    if let Some(route) = route {
        url.push_str("&route=");
        for byte in route.bytes() {
            if byte.is_ascii_alphanumeric() || b"/-_.~{}".contains(&byte) {
                url.push(byte as char);
            } else {
                url.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    url
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A metric of the crate's process family, recorded only with `ObserverBuilder::process_metrics`.
fn is_process_metric(name: &str) -> bool {
    let base = name
        .strip_suffix("_bucket")
        .or_else(|| name.strip_suffix("_sum"))
        .or_else(|| name.strip_suffix("_count"))
        .unwrap_or(name);
    (base.starts_with("process_") || base.starts_with("tokio_"))
        && names::METRICS.iter().any(|spec| spec.name == base)
}

impl AlertsPart {
    /// Whether the observer records the process metrics (`ObserverBuilder::process_metrics`).
    fn records_process_metrics(observer: &Observer) -> bool {
        #[cfg(feature = "process")]
        {
            observer.process_metrics().is_some()
        }
        #[cfg(not(feature = "process"))]
        {
            let _ = observer;
            false
        }
    }

    /// Whether the registry holds a series of `metric` (recorded some other way).
    fn has_series(&self, metric: &str) -> bool {
        let mut found = false;
        if let Some(registry) = &self.registry {
            registry.read_family(metric, &mut |_, _| found = true);
        }
        found
    }
}

impl Part for AlertsPart {
    /// A rule that reads a metric no configured capability records is a warning, not a build
    /// error (see docs/alerts.md, "Rules with nothing to read"): it can never fire as things
    /// are, and says so in the log, `/v1/stats`, `/health` and on the rule in `/v1/alerts`.
    fn warnings(&self, observer: &Observer, out: &mut Vec<crate::stats::Warning>) {
        let process = Self::records_process_metrics(observer);
        let mut notes = lock(&self.notes);
        for (compiled, note) in self.rules.iter().zip(notes.iter_mut()) {
            *note = None;
            if process {
                continue;
            }
            let Some(metric) = compiled
                .process_metrics
                .iter()
                .find(|m| !self.has_series(m))
            else {
                continue;
            };
            let reason = format!(
                "reads {metric}, which only ObserverBuilder::process_metrics() records (feature `process`), and the observer has no process metrics: the rule can never fire"
            );
            out.push(crate::stats::Warning::new(
                "rule_reads_unrecorded_metric",
                format!(
                    "alert rule {:?} {reason}; add .process_metrics() to the builder, or leave the rule out",
                    compiled.rule.name
                ),
            ));
            *note = Some(reason);
        }
    }

    fn stats(&self, snapshot: &mut crate::stats::StatsSnapshot, _elapsed: f64) {
        snapshot.alerts = Some(self.active());
    }

    fn health(&self, _elapsed: f64, input: &mut HealthInput) {
        let state = lock(&self.state);
        let mut firing = Vec::new();
        for (compiled, alerts) in self.rules.iter().zip(&state.alerts) {
            let severity = compiled.rule.severity;
            for (labels, alert) in &alerts.instances {
                if alert.state != AlertState::Firing {
                    continue;
                }
                firing.push(compiled.rule.name.clone());
                let status = if self.red_from.is_some_and(|s| severity >= s) {
                    Status::Red
                } else if self.yellow_from.is_some_and(|s| severity >= s) {
                    Status::Yellow
                } else {
                    continue;
                };
                let scope: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let scope = if scope.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", scope.join(", "))
                };
                input.degraded.push((
                    status,
                    format!(
                        "alert {} is firing{scope} ({})",
                        compiled.rule.name,
                        severity.as_str()
                    ),
                ));
            }
        }
        input
            .sections
            .insert("alerts", serde_json::json!({ "firing": firing }));
    }

    fn routes(&self, observer: &Observer) -> Vec<Route> {
        let observer = observer.clone();
        vec![Route::new(ALERTS_PATH, RouteMethod::Get, move |_| {
            let report = observer.attached::<AlertsPart>().map(|part| part.report());
            async move {
                match report {
                    Some(report) => json(&report),
                    None => crate::response::not_found(),
                }
            }
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertRules;
    use crate::observer::background::{panics_on_metrics, wait_for};

    #[test]
    fn the_engine_survives_a_panicking_evaluation() {
        let observer = Observer::builder()
            .alerts(
                Alerts::new(AlertRules::recommended())
                    .evaluation_interval(Duration::from_millis(100)),
            )
            .unwrap()
            .build()
            .unwrap();
        let part = observer.attached::<AlertsPart>().unwrap();
        let ticker = part.ticker.get().unwrap();
        let evaluations = || lock(&part.state).evaluations;
        wait_for("the first evaluation", || evaluations() >= 1);
        ticker.panic_next_tick();
        wait_for("the panic", || ticker.panics() == 1);
        // Still evaluating, on its own schedule.
        let before = evaluations();
        wait_for("evaluations after the panic", || {
            evaluations() >= before + 2
        });
        assert!(ticker.is_running());
        assert_eq!(panics_on_metrics(&observer, "alerts"), Some(1.0));
    }

    #[test]
    fn failed_requests_link_to_the_dashboard_with_an_external_url_and_the_dashboard() {
        let build = |external_url: Option<&str>, dashboard: bool| {
            let mut alerts = Alerts::new(AlertRules::recommended())
                .evaluation_interval(Duration::from_millis(100));
            if let Some(url) = external_url {
                alerts = alerts.external_url(url);
            }
            let builder = Observer::builder().alerts(alerts).unwrap();
            let _ = dashboard; // without the feature, there is no dashboard to add
            #[cfg(feature = "dashboard")]
            let builder = if dashboard {
                builder.dashboard(crate::dashboard::DashboardOptions::new())
            } else {
                builder
            };
            let observer = builder.build().unwrap();
            let part = observer.attached::<AlertsPart>().unwrap();
            // The first tick ran as the alerts were attached, maybe before the dashboard.
            wait_for("two evaluations", || lock(&part.state).evaluations >= 2);
            let url = part.view_url("4bf92f3577b34da6a3ce929d0e0e4736");
            (observer, url)
        };
        let (_o, url) = build(Some("https://api.example.com/ops/"), true);
        if cfg!(feature = "dashboard") {
            assert_eq!(
                url.as_deref(),
                Some("https://api.example.com/ops/dashboard#request=4bf92f3577b34da6a3ce929d0e0e4736")
            );
        } else {
            assert_eq!(url, None);
        }
        assert_eq!(build(None, true).1, None);
        assert_eq!(build(Some("https://api.example.com"), false).1, None);
    }
}
