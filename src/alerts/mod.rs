//! Alerting: rules evaluated in process, with firing and resolved notifications.
//!
#![doc = include_str!("../../docs/alerts.md")]

mod engine;
#[cfg(test)]
mod equivalence;
mod event;
pub mod notify;
mod prometheus_rules;
mod promql;
mod report;
mod rules;
mod rules_file;
mod sample;
mod state;
mod template;

use std::time::Duration;

pub use event::{AlertEvent, EventStatus, FailedRequest, Severity};
pub use notify::Channel;
pub use prometheus_rules::SERVICE_LABELS;
pub use promql::Comparison;
pub use rules::OperationMetric;
pub use rules::{AlertRule, Figure, GaugeAggregation, RuleError};
pub use state::AlertState;

pub use crate::stats::{ActiveAlert, ActiveAlerts};
pub(crate) use engine::AlertsPending;

/// Path of the alerts endpoint.
pub const ALERTS_PATH: &str = "/v1/alerts";

/// Default time between two evaluations of the rules.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(5);

const MINUTE: Duration = Duration::from_secs(60);

/// A set of alert rules.
///
/// ```
/// use std::time::Duration;
/// use tower_observe::alerts::{AlertRule, AlertRules, Figure, Severity};
///
/// let rules = AlertRules::recommended().rule(
///     AlertRule::new("QueueBacklog", Figure::counter_rate("jobs_failed_total", Duration::from_secs(300)))
///         .above(1.0)
///         .severity(Severity::Warning),
/// );
/// assert_eq!(rules.len(), 5);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AlertRules {
    pub(crate) rules: Vec<AlertRule>,
}

impl AlertRules {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// The four rules most services want, with thresholds from the requirements this crate was
    /// built for:
    ///
    /// | Rule | Condition | `for` | Severity |
    /// |---|---|---|---|
    /// | `HighErrorRate` | error rate over 5 min above 10 %, at least 20 requests | 5 min | critical |
    /// | `HighLatencyP99` | p99 latency over 5 min above 1 s, at least 20 requests | 5 min | warning |
    /// | `HighCpuUtilization` | CPU over 2 min above 60 % of the available CPUs | 10 min | warning |
    /// | `BackendPoolDegraded` | a pool's healthy share below 50 % (per pool) | 1 min | critical |
    ///
    /// The error and latency rules keep firing 2 minutes after the breach ends, so one good
    /// evaluation inside a bad spell does not resolve them.
    pub fn recommended() -> Self {
        let five = 5 * MINUTE;
        Self::new()
            .rule(
                AlertRule::new("HighErrorRate", Figure::error_rate(five))
                    .above(0.10)
                    .for_duration(five)
                    .keep_firing_for(2 * MINUTE)
                    .min_requests(20)
                    .severity(Severity::Critical)
                    .summary("Error rate is {{ $value | humanizePercentage }}")
                    .description("More than 10% of requests failed over the last 5 minutes, for 5 minutes."),
            )
            .rule(
                AlertRule::new("HighLatencyP99", Figure::latency_quantile(0.99, five))
                    .above(1.0)
                    .for_duration(five)
                    .keep_firing_for(2 * MINUTE)
                    .min_requests(20)
                    .severity(Severity::Warning)
                    .summary("p99 latency is {{ $value | humanizeDuration }}")
                    .description("The 99th percentile of request durations over the last 5 minutes has been above 1s for 5 minutes."),
            )
            .rule(
                AlertRule::new("HighCpuUtilization", Figure::cpu_utilization(2 * MINUTE))
                    .above(0.60)
                    .for_duration(10 * MINUTE)
                    .severity(Severity::Warning)
                    .summary("CPU utilization is {{ $value | humanizePercentage }} of the available CPUs")
                    .description("The process has used more than 60% of the CPUs available to it for 10 minutes."),
            )
            .rule(
                AlertRule::new("BackendPoolDegraded", Figure::PoolHealth)
                    .for_each("pool")
                    .below(0.5)
                    .for_duration(MINUTE)
                    .severity(Severity::Critical)
                    .summary("Pool {{ $labels.pool }}: {{ $value | humanizePercentage }} of backends healthy")
                    .description("Fewer than half of the pool's backends pass their health checks."),
            )
    }

    /// Multi-window, multi-burn-rate rules for an availability objective (e.g. `0.999`), as in
    /// the Google SRE workbook: `ErrorBudgetBurnFast` (critical: 14.4× over 1 h and 5 min, or
    /// 6× over 6 h and 30 min) and `ErrorBudgetBurnSlow` (warning: 3× over 1 d and 2 h, or
    /// 1× over 3 d and 6 h). Each window needs at least 10 requests.
    pub fn burn_rate(objective: f64) -> Self {
        let hour = 60 * MINUTE;
        let pct = objective * 100.0;
        let burn = |name: &str, long: Duration, short: Duration, factor: f64, severity| {
            AlertRule::new(
                name,
                Figure::BurnRate {
                    objective,
                    long,
                    short,
                },
            )
            .above(factor)
            .min_requests(10)
            .severity(severity)
            .label("window", promql::duration(promql::ms(long)))
            .summary(format!(
                "Error budget of the {pct}% objective burning {{{{ $value | humanize }}}}x as fast as it may"
            ))
        };
        Self::new()
            .rule(burn(
                "ErrorBudgetBurnFast",
                hour,
                5 * MINUTE,
                14.4,
                Severity::Critical,
            ))
            .rule(burn(
                "ErrorBudgetBurnFast6h",
                6 * hour,
                30 * MINUTE,
                6.0,
                Severity::Critical,
            ))
            .rule(burn(
                "ErrorBudgetBurnSlow",
                24 * hour,
                2 * hour,
                3.0,
                Severity::Warning,
            ))
            .rule(burn(
                "ErrorBudgetBurnSlow3d",
                72 * hour,
                6 * hour,
                1.0,
                Severity::Warning,
            ))
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: AlertRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds every rule of `other`.
    pub fn extend(mut self, other: AlertRules) -> Self {
        self.rules.extend(other.rules);
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks every rule for an evaluation every `interval`: the first problem found, naming
    /// the rule and the field.
    pub fn validate(&self, interval: Duration) -> Result<(), RuleError> {
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(interval)?;
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(RuleError::Duplicate(rule.name.clone()));
            }
        }
        Ok(())
    }
}

/// Alerting settings: the rules, where notifications go, how often rules are evaluated.
/// Given to [`ObserverBuilder::alerts`](crate::ObserverBuilder::alerts).
///
/// ```
/// use tower_observe::alerts::{notify, AlertRules, Alerts};
/// use tower_observe::Observer;
///
/// let observer = Observer::builder()
///     .alerts(
///         Alerts::new(AlertRules::recommended())
///             .channel(notify::Webhook::new("http://127.0.0.1:9/alerts"))
///             .external_url("https://api.example.com"),
///     )
///     .unwrap()
///     .build()
///     .unwrap();
/// # let _ = observer;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Alerts {
    pub(crate) rules: AlertRules,
    pub(crate) channels: Vec<Channel>,
    pub(crate) interval: Duration,
    pub(crate) external_url: Option<String>,
    pub(crate) yellow_from: Option<Severity>,
    pub(crate) red_from: Option<Severity>,
}

impl Alerts {
    /// Evaluates `rules` every 5 seconds; no channel yet (alerts are still shown at
    /// `/v1/alerts`); firing alerts of severity warning or above turn `/health` yellow.
    pub fn new(rules: AlertRules) -> Self {
        Self {
            rules,
            channels: Vec::new(),
            interval: DEFAULT_EVALUATION_INTERVAL,
            external_url: None,
            yellow_from: Some(Severity::Warning),
            red_from: None,
        }
    }

    /// Sends notifications to `channel` too.
    pub fn channel(mut self, channel: impl Into<Channel>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Time between two evaluations (at least 100 ms; default 5 s).
    pub fn evaluation_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(100));
        self
    }

    /// The service's external URL (`https://api.example.com`), for the links in notifications.
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Which firing alerts turn `/health` yellow and red (`None`: never). Default: warning and
    /// above yellow, never red — a red readiness probe takes the instance out of rotation, so
    /// make that a deliberate choice (`Some(Severity::Critical)`).
    pub fn health(mut self, yellow_from: Option<Severity>, red_from: Option<Severity>) -> Self {
        self.yellow_from = yellow_from;
        self.red_from = red_from;
        self
    }
}

impl crate::ObserverBuilder {
    /// Evaluates alert rules in the process and sends notifications on every change; serves
    /// `GET /v1/alerts`. Fails with the first invalid rule or channel setting, naming the
    /// rule or channel and the field: a channel URL without an `http`/`https` scheme or a
    /// host, an empty or multi-word token, an SMTP host, port or address that cannot be used
    /// is rejected here, not when the first alert fires.
    pub fn alerts(mut self, alerts: Alerts) -> Result<Self, RuleError> {
        alerts.rules.validate(alerts.interval)?;
        for channel in &alerts.channels {
            channel
                .validate()
                .map_err(|(field, reason)| RuleError::Channel {
                    channel: channel.name().to_owned(),
                    field,
                    reason,
                })?;
        }
        if let Some(url) = &alerts.external_url {
            notify::check_external_url(url).map_err(|reason| RuleError::Channel {
                channel: "all channels".to_owned(),
                field: "external_url",
                reason,
            })?;
        }
        self.pending::<AlertsPending>().0 = Some(alerts);
        Ok(self)
    }
}

impl crate::Observer {
    /// Samples the registry and evaluates the alert rules now, besides the engine's own
    /// schedule (for tests with a [`ManualClock`](crate::clock::ManualClock), or a check on
    /// demand). Does nothing without [`ObserverBuilder::alerts`](crate::ObserverBuilder::alerts).
    ///
    /// ```
    /// use tower_observe::alerts::{AlertRules, Alerts};
    ///
    /// let observer = tower_observe::Observer::builder()
    ///     .alerts(Alerts::new(AlertRules::recommended()))
    ///     .unwrap()
    ///     .build()
    ///     .unwrap();
    /// observer.evaluate_alerts();
    /// ```
    pub fn evaluate_alerts(&self) {
        if let Some(part) = self.attached::<engine::AlertsPart>() {
            part.tick();
        }
    }
}
