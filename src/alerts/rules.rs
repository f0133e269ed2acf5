//! Alert rules: what is measured, over which traffic, against which threshold, for how long.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::promql::{ms, Aggregation, Comparison, Expr, Matcher, Selector};
use super::template::Template;
use super::Severity;
use crate::names;

/// A figure a rule watches, computed over a window the way Prometheus computes it from the
/// exported metrics (each figure's PromQL is in `docs/alerts.md`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Figure {
    /// Failed requests / requests (0 to 1) over the window: `error_type` set (5xx, failures
    /// and aborts), from `http_server_request_duration_seconds_count`.
    ErrorRate {
        /// The window.
        window: Duration,
    },
    /// Requests per second over the window.
    RequestRate {
        /// The window.
        window: Duration,
    },
    /// A quantile (0 to 1) of the request duration over the window, in seconds, from the
    /// histogram's buckets (`histogram_quantile`).
    LatencyQuantile {
        /// 0.99 for p99.
        quantile: f64,
        /// The window.
        window: Duration,
    },
    /// Share of the CPUs available to the process in use (0 to 1) over the window: the rate
    /// of `process_cpu_seconds_total` / `process_cpu_available_cores` (needs the `process`
    /// feature's metrics).
    CpuUtilization {
        /// The window.
        window: Duration,
    },
    /// `process_resident_memory_bytes`.
    ResidentMemory,
    /// `backend_pool_health_ratio` (0 to 1): the lowest pool's, or each pool's with
    /// [`AlertRule::for_each`]`("pool")`.
    PoolHealth,
    /// Cache hits / lookups (0 to 1) over the window, from `cache_requests_total`.
    CacheHitRatio {
        /// The window.
        window: Duration,
    },
    /// Per-second rate of any counter of the registry over the window, summed.
    CounterRate {
        /// The counter's exported name (`…_total`).
        metric: String,
        /// The window.
        window: Duration,
    },
    /// Any gauge of the registry, aggregated over its series.
    Gauge {
        /// The gauge's exported name.
        metric: String,
        /// How its series combine.
        aggregation: GaugeAggregation,
    },
    /// How fast the error budget of an availability objective burns: the error rate over
    /// `long` divided by `1 - objective`, counted only while the rate over `short` burns as
    /// fast (the multi-window test of the Google SRE workbook).
    BurnRate {
        /// The availability objective, e.g. 0.999.
        objective: f64,
        /// The long window (e.g. 1 h).
        long: Duration,
        /// The short window (e.g. 5 min).
        short: Duration,
    },
    /// A quantile (0 to 1) of the time to the first content token of streamed GenAI
    /// responses served, over the window, in seconds, from the buckets of
    /// `gen_ai_server_time_to_first_token_seconds` (the `llm` feature's server layer).
    TimeToFirstTokenQuantile {
        /// 0.99 for p99.
        quantile: f64,
        /// The window.
        window: Duration,
    },
    /// GenAI tokens per second over the window, from `gen_ai_client_token_usage_sum` (input
    /// and output; scope it with `.matching("gen_ai_token_type", "output")`, or one alert per
    /// model with `.for_each("gen_ai_request_model")`).
    TokenRate {
        /// The window.
        window: Duration,
    },
    // --- operations (the `operations` feature's metrics) ---
    /// Failed calls / completed calls (0 to 1) of timed operations over the window; cancelled
    /// calls are neither. Scope it to one operation with [`AlertRule::matching`]
    /// (`db_operation_name`, `function`, …) or one alert per operation with
    /// [`AlertRule::for_each`].
    OperationErrorRate {
        /// Which operations' metric.
        metric: OperationMetric,
        /// The window.
        window: Duration,
    },
    /// A quantile (0 to 1) of the duration of timed operations over the window, in seconds,
    /// from the histogram's buckets (cancelled calls left out where the metric can tell).
    OperationLatencyQuantile {
        /// Which operations' metric.
        metric: OperationMetric,
        /// 0.99 for p99.
        quantile: f64,
        /// The window.
        window: Duration,
    },
    /// Jobs waiting in a queue (`queue_depth`): the deepest queue's, or each queue's with
    /// [`AlertRule::for_each`]`("messaging_destination_name")`.
    QueueDepth,
    /// Workers busy or silent longer than their queue's threshold
    /// (`queue_workers{state="stuck"}`), summed.
    StuckWorkers,
    // --- end operations ---
}

/// The metric of timed operations a figure reads (module `operations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationMetric {
    /// `db_client_operation_duration_seconds`.
    Db,
    /// `messaging_process_duration_seconds` (jobs and messages processed).
    MessagingProcess,
    /// `messaging_client_operation_duration_seconds`.
    MessagingClient,
    /// `function_calls_total` and `function_calls_duration_seconds` (autometrics').
    Function,
}

impl OperationMetric {
    /// The duration histogram's exported name.
    fn histogram(self) -> &'static str {
        match self {
            OperationMetric::Db => names::DB_CLIENT_OPERATION_DURATION,
            OperationMetric::MessagingProcess => names::MESSAGING_PROCESS_DURATION,
            OperationMetric::MessagingClient => names::MESSAGING_CLIENT_OPERATION_DURATION,
            OperationMetric::Function => names::FUNCTION_CALLS_DURATION,
        }
    }

    /// The counter of calls and the matchers of completed and of failed calls.
    fn calls(self) -> (String, Matcher, Vec<Matcher>) {
        match self {
            OperationMetric::Function => (
                names::FUNCTION_CALLS.to_owned(),
                Matcher::Ne(names::RESULT.to_owned(), "cancelled".to_owned()),
                vec![Matcher::Eq(names::RESULT.to_owned(), "error".to_owned())],
            ),
            _ => (
                format!("{}_count", self.histogram()),
                Matcher::Ne(
                    names::ERROR_TYPE.to_owned(),
                    names::ERROR_CANCELLED.to_owned(),
                ),
                vec![
                    Matcher::Ne(names::ERROR_TYPE.to_owned(), String::new()),
                    Matcher::Ne(
                        names::ERROR_TYPE.to_owned(),
                        names::ERROR_CANCELLED.to_owned(),
                    ),
                ],
            ),
        }
    }
}

/// How the series of a gauge combine into one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GaugeAggregation {
    /// The sum.
    Sum,
    /// The smallest.
    Min,
    /// The largest.
    Max,
    /// The mean.
    Avg,
}

impl Figure {
    /// [`Figure::ErrorRate`] over `window`.
    pub fn error_rate(window: Duration) -> Self {
        Figure::ErrorRate { window }
    }

    /// [`Figure::RequestRate`] over `window`.
    pub fn request_rate(window: Duration) -> Self {
        Figure::RequestRate { window }
    }

    /// [`Figure::LatencyQuantile`]: `quantile` (0.99 for p99) over `window`.
    pub fn latency_quantile(quantile: f64, window: Duration) -> Self {
        Figure::LatencyQuantile { quantile, window }
    }

    /// [`Figure::CpuUtilization`] over `window`.
    pub fn cpu_utilization(window: Duration) -> Self {
        Figure::CpuUtilization { window }
    }

    /// [`Figure::CacheHitRatio`] over `window`.
    pub fn cache_hit_ratio(window: Duration) -> Self {
        Figure::CacheHitRatio { window }
    }

    /// [`Figure::CounterRate`] of `metric` over `window`.
    pub fn counter_rate(metric: impl Into<String>, window: Duration) -> Self {
        Figure::CounterRate {
            metric: metric.into(),
            window,
        }
    }

    /// [`Figure::Gauge`]: `metric`'s series combined by `aggregation`.
    pub fn gauge(metric: impl Into<String>, aggregation: GaugeAggregation) -> Self {
        Figure::Gauge {
            metric: metric.into(),
            aggregation,
        }
    }

    /// [`Figure::TimeToFirstTokenQuantile`]: `quantile` (0.99 for p99) over `window`.
    pub fn time_to_first_token_quantile(quantile: f64, window: Duration) -> Self {
        Figure::TimeToFirstTokenQuantile { quantile, window }
    }

    /// [`Figure::TokenRate`] over `window`.
    pub fn token_rate(window: Duration) -> Self {
        Figure::TokenRate { window }
    }

    /// [`Figure::OperationErrorRate`] of `metric` over `window`.
    pub fn operation_error_rate(metric: OperationMetric, window: Duration) -> Self {
        Figure::OperationErrorRate { metric, window }
    }

    /// [`Figure::OperationLatencyQuantile`]: `quantile` of `metric` over `window`.
    pub fn operation_latency_quantile(
        metric: OperationMetric,
        quantile: f64,
        window: Duration,
    ) -> Self {
        Figure::OperationLatencyQuantile {
            metric,
            quantile,
            window,
        }
    }

    /// Whether the figure is measured over traffic (so a minimum request count applies).
    fn counts_traffic(&self) -> bool {
        matches!(
            self,
            Figure::ErrorRate { .. }
                | Figure::RequestRate { .. }
                | Figure::LatencyQuantile { .. }
                | Figure::CacheHitRatio { .. }
                | Figure::BurnRate { .. }
                | Figure::TimeToFirstTokenQuantile { .. }
                | Figure::OperationErrorRate { .. }
                | Figure::OperationLatencyQuantile { .. }
        )
    }

    /// The windows of the figure.
    fn windows(&self) -> Vec<Duration> {
        match self {
            Figure::ErrorRate { window }
            | Figure::RequestRate { window }
            | Figure::LatencyQuantile { window, .. }
            | Figure::CpuUtilization { window }
            | Figure::CacheHitRatio { window }
            | Figure::CounterRate { window, .. }
            | Figure::TimeToFirstTokenQuantile { window, .. }
            | Figure::TokenRate { window }
            | Figure::OperationErrorRate { window, .. }
            | Figure::OperationLatencyQuantile { window, .. } => vec![*window],
            Figure::BurnRate { long, short, .. } => vec![*long, *short],
            Figure::ResidentMemory
            | Figure::PoolHealth
            | Figure::Gauge { .. }
            | Figure::QueueDepth
            | Figure::StuckWorkers => Vec::new(),
        }
    }
}

/// One alert rule: a [`Figure`], compared with a threshold, that must hold `for` a while
/// before the alert fires.
///
/// ```
/// use std::time::Duration;
/// use tower_observe::alerts::{AlertRule, Figure, Severity};
///
/// let rule = AlertRule::new("SlowCheckout", Figure::latency_quantile(0.95, Duration::from_secs(300)))
///     .route("/checkout")
///     .above(0.5)
///     .for_duration(Duration::from_secs(120))
///     .min_requests(50)
///     .severity(Severity::Warning)
///     .summary("p95 of {{ $labels.http_route }} is {{ $value | humanizeDuration }}");
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertRule {
    pub(crate) name: String,
    pub(crate) figure: Figure,
    pub(crate) matchers: Vec<(String, String)>,
    pub(crate) for_each: Option<String>,
    pub(crate) comparison: Comparison,
    pub(crate) threshold: f64,
    pub(crate) hold: Duration,
    pub(crate) keep_firing_for: Duration,
    pub(crate) min_requests: u64,
    pub(crate) severity: Severity,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl AlertRule {
    /// A rule called `name` (the `alertname` label) on `figure`: above 0 until a threshold is
    /// set, firing at once, severity `warning`.
    pub fn new(name: impl Into<String>, figure: Figure) -> Self {
        Self {
            name: name.into(),
            figure,
            matchers: Vec::new(),
            for_each: None,
            comparison: Comparison::Above,
            threshold: 0.0,
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            min_requests: 0,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Breached when the figure is above `threshold`.
    pub fn above(self, threshold: f64) -> Self {
        self.compare(Comparison::Above, threshold)
    }

    /// Breached when the figure is below `threshold`.
    pub fn below(self, threshold: f64) -> Self {
        self.compare(Comparison::Below, threshold)
    }

    /// Breached when `figure comparison threshold` holds.
    pub fn compare(mut self, comparison: Comparison, threshold: f64) -> Self {
        self.comparison = comparison;
        self.threshold = threshold;
        self
    }

    /// How long the breach must last before the alert fires (Prometheus' `for`); pending
    /// until then.
    pub fn for_duration(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// How long a firing alert keeps firing after the breach ends (Prometheus'
    /// `keep_firing_for`): one good evaluation inside a bad spell does not resolve it.
    pub fn keep_firing_for(mut self, keep: Duration) -> Self {
        self.keep_firing_for = keep;
        self
    }

    /// Fewer requests than this in the window: not judged (an idle service does not alert).
    /// For traffic figures only.
    pub fn min_requests(mut self, n: u64) -> Self {
        self.min_requests = n;
        self
    }

    /// The severity (`severity` label); decides the PagerDuty severity and `/health`.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Adds a label to the alert.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Adds an annotation: a template where `{{ $value }}` is the figure and
    /// `{{ $labels.name }}` a label, with the pipes `humanize`, `humanizePercentage` and
    /// `humanizeDuration`, as in Prometheus.
    pub fn annotation(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.annotations.insert(name.into(), template.into());
        self
    }

    /// The `summary` annotation.
    pub fn summary(self, template: impl Into<String>) -> Self {
        self.annotation("summary", template)
    }

    /// The `description` annotation.
    pub fn description(self, template: impl Into<String>) -> Self {
        self.annotation("description", template)
    }

    /// Only the traffic where the label `name` is `value` (a dimension, `cache`, `pool`, …).
    pub fn matching(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.matchers.push((name.into(), value.into()));
        self
    }

    /// Only requests to this route template (`http_route`).
    pub fn route(self, route: impl Into<String>) -> Self {
        self.matching(names::HTTP_ROUTE, route)
    }

    /// Only requests with this method (`http_request_method`).
    pub fn method(self, method: impl Into<String>) -> Self {
        self.matching(names::HTTP_REQUEST_METHOD, method)
    }

    /// One alert per value of the label `name` (`http_route`, a dimension such as `backend`,
    /// `pool`, `cache`), rather than one for everything. `"route"` and `"method"` stand for
    /// `http_route` and `http_request_method`.
    pub fn for_each(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.for_each = Some(match name.as_str() {
            "route" => names::HTTP_ROUTE.to_owned(),
            "method" => names::HTTP_REQUEST_METHOD.to_owned(),
            _ => name,
        });
        self
    }

    /// One alert per route.
    pub fn for_each_route(self) -> Self {
        self.for_each(names::HTTP_ROUTE)
    }

    /// The label sets a figure is grouped by.
    fn group(&self) -> Vec<String> {
        self.for_each.iter().cloned().collect()
    }

    fn selector(&self, metric: &str, extra: Vec<Matcher>) -> Selector {
        let mut matchers: Vec<Matcher> = self
            .matchers
            .iter()
            .map(|(k, v)| Matcher::Eq(k.clone(), v.clone()))
            .collect();
        matchers.extend(extra);
        Selector {
            metric: metric.to_owned(),
            matchers,
        }
    }

    fn sum_increase(&self, metric: &str, extra: Vec<Matcher>, window: Duration) -> Expr {
        Expr::Aggregate(
            Aggregation::Sum,
            self.group(),
            Box::new(Expr::Increase(self.selector(metric, extra), ms(window))),
        )
    }

    fn ratio(&self, metric: &str, part: Matcher, window: Duration) -> Expr {
        Expr::Div(
            Box::new(self.sum_increase(metric, vec![part], window)),
            Box::new(self.sum_increase(metric, Vec::new(), window)),
        )
    }

    /// `histogram_quantile(q, sum by (…, le) (rate(<histogram>_bucket[w])))`.
    fn quantile_of(&self, histogram: &str, quantile: f64, window: Duration) -> Expr {
        let mut by = self.group();
        by.push("le".to_owned());
        let bucket = format!("{histogram}_bucket");
        Expr::Quantile(
            quantile,
            Box::new(Expr::Aggregate(
                Aggregation::Sum,
                by,
                Box::new(Expr::Rate(self.selector(&bucket, Vec::new()), ms(window))),
            )),
        )
    }

    /// The figure's expression.
    pub(crate) fn value_expr(&self) -> Expr {
        let count = format!("{}_count", names::HTTP_SERVER_REQUEST_DURATION);
        let failed = || Matcher::Ne(names::ERROR_TYPE.to_owned(), String::new());
        match &self.figure {
            Figure::ErrorRate { window } => self.ratio(&count, failed(), *window),
            Figure::RequestRate { window } => Expr::Aggregate(
                Aggregation::Sum,
                self.group(),
                Box::new(Expr::Rate(self.selector(&count, Vec::new()), ms(*window))),
            ),
            Figure::LatencyQuantile { quantile, window } => {
                self.quantile_of(names::HTTP_SERVER_REQUEST_DURATION, *quantile, *window)
            }
            Figure::TimeToFirstTokenQuantile { quantile, window } => {
                self.quantile_of(names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, *quantile, *window)
            }
            Figure::TokenRate { window } => Expr::Aggregate(
                Aggregation::Sum,
                self.group(),
                Box::new(Expr::Rate(
                    self.selector(
                        &format!("{}_sum", names::GEN_AI_CLIENT_TOKEN_USAGE),
                        Vec::new(),
                    ),
                    ms(*window),
                )),
            ),
            Figure::CpuUtilization { window } => Expr::Div(
                Box::new(Expr::Rate(
                    self.selector(names::PROCESS_CPU_SECONDS, Vec::new()),
                    ms(*window),
                )),
                Box::new(Expr::Instant(
                    self.selector(names::PROCESS_CPU_AVAILABLE_CORES, Vec::new()),
                )),
            ),
            Figure::ResidentMemory => Expr::Aggregate(
                Aggregation::Max,
                self.group(),
                Box::new(Expr::Instant(
                    self.selector(names::PROCESS_RESIDENT_MEMORY, Vec::new()),
                )),
            ),
            Figure::PoolHealth => Expr::Aggregate(
                Aggregation::Min,
                self.group(),
                Box::new(Expr::Instant(
                    self.selector(names::BACKEND_POOL_HEALTH_RATIO, Vec::new()),
                )),
            ),
            Figure::CacheHitRatio { window } => self.ratio(
                names::CACHE_REQUESTS,
                Matcher::Eq("result".to_owned(), "hit".to_owned()),
                *window,
            ),
            Figure::CounterRate { metric, window } => Expr::Aggregate(
                Aggregation::Sum,
                self.group(),
                Box::new(Expr::Rate(self.selector(metric, Vec::new()), ms(*window))),
            ),
            Figure::Gauge {
                metric,
                aggregation,
            } => Expr::Aggregate(
                match aggregation {
                    GaugeAggregation::Sum => Aggregation::Sum,
                    GaugeAggregation::Min => Aggregation::Min,
                    GaugeAggregation::Max => Aggregation::Max,
                    GaugeAggregation::Avg => Aggregation::Avg,
                },
                self.group(),
                Box::new(Expr::Instant(self.selector(metric, Vec::new()))),
            ),
            Figure::BurnRate {
                objective,
                long,
                short,
            } => {
                let per_budget = 1.0 / (1.0 - objective);
                let burn = |w: Duration| {
                    Expr::Scale(Box::new(self.ratio(&count, failed(), w)), per_budget)
                };
                // The short window must burn as fast: the value is the long window's.
                Expr::And(
                    Box::new(burn(*long)),
                    Box::new(Expr::Compare(
                        Box::new(burn(*short)),
                        self.comparison,
                        self.threshold,
                    )),
                )
            }
            Figure::OperationErrorRate { metric, window } => {
                let (calls, completed, failed) = metric.calls();
                Expr::Div(
                    Box::new(self.sum_increase(&calls, failed, *window)),
                    Box::new(self.sum_increase(&calls, vec![completed], *window)),
                )
            }
            Figure::OperationLatencyQuantile {
                metric,
                quantile,
                window,
            } => {
                let mut by = self.group();
                by.push("le".to_owned());
                let bucket = format!("{}_bucket", metric.histogram());
                let completed = match metric {
                    OperationMetric::Function => Vec::new(),
                    _ => vec![metric.calls().1],
                };
                Expr::Quantile(
                    *quantile,
                    Box::new(Expr::Aggregate(
                        Aggregation::Sum,
                        by,
                        Box::new(Expr::Rate(self.selector(&bucket, completed), ms(*window))),
                    )),
                )
            }
            Figure::QueueDepth => Expr::Aggregate(
                Aggregation::Max,
                self.group(),
                Box::new(Expr::Instant(self.selector(names::QUEUE_DEPTH, Vec::new()))),
            ),
            Figure::StuckWorkers => Expr::Aggregate(
                Aggregation::Sum,
                self.group(),
                Box::new(Expr::Instant(self.selector(
                    names::QUEUE_WORKERS,
                    vec![Matcher::Eq("state".to_owned(), "stuck".to_owned())],
                ))),
            ),
        }
    }

    /// The traffic the figure was measured over (for the minimum request count).
    fn traffic_expr(&self) -> Option<Expr> {
        let window = *self.figure.windows().iter().max()?;
        let (metric, extra) = match self.figure {
            Figure::CacheHitRatio { .. } => (names::CACHE_REQUESTS.to_owned(), Vec::new()),
            Figure::TimeToFirstTokenQuantile { .. } => (
                format!("{}_count", names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN),
                Vec::new(),
            ),
            Figure::OperationErrorRate { metric, .. }
            | Figure::OperationLatencyQuantile { metric, .. } => {
                let (calls, completed, _) = metric.calls();
                (calls, vec![completed])
            }
            _ => (
                format!("{}_count", names::HTTP_SERVER_REQUEST_DURATION),
                Vec::new(),
            ),
        };
        Some(self.sum_increase(&metric, extra, window))
    }

    /// The whole condition: the figure compared with the threshold, and enough traffic.
    pub(crate) fn condition(&self) -> Expr {
        let breach = Expr::Compare(Box::new(self.value_expr()), self.comparison, self.threshold);
        match self.traffic_expr() {
            Some(traffic) if self.min_requests > 0 => Expr::And(
                Box::new(breach),
                Box::new(Expr::Compare(
                    Box::new(traffic),
                    Comparison::AtLeast,
                    self.min_requests as f64,
                )),
            ),
            _ => breach,
        }
    }

    /// Checks the rule: every problem is reported now, with the rule and field it is in.
    pub(crate) fn validate(&self, interval: Duration) -> Result<(), RuleError> {
        let fail = |field: &'static str, reason: String| RuleError::Invalid {
            rule: self.name.clone(),
            field,
            reason,
        };
        if !is_identifier(&self.name) {
            return Err(fail(
                "name",
                "must be letters, digits and _, not starting with a digit".into(),
            ));
        }
        if !self.threshold.is_finite() {
            return Err(fail("threshold", "must be a finite number".into()));
        }
        for window in self.figure.windows() {
            if window < interval * 2 {
                return Err(fail(
                    "window",
                    format!(
                        "{} is shorter than two evaluation intervals ({}): a rate needs two samples",
                        super::promql::duration(ms(window)),
                        super::promql::duration(ms(interval * 2))
                    ),
                ));
            }
        }
        match &self.figure {
            Figure::LatencyQuantile { quantile, .. }
            | Figure::TimeToFirstTokenQuantile { quantile, .. }
            | Figure::OperationLatencyQuantile { quantile, .. }
                if !(*quantile > 0.0 && *quantile <= 1.0) =>
            {
                return Err(fail("quantile", "must be above 0 and at most 1".into()));
            }
            Figure::BurnRate {
                objective,
                long,
                short,
            } => {
                if !(*objective > 0.0 && *objective < 1.0) {
                    return Err(fail("objective", "must be between 0 and 1".into()));
                }
                if short >= long {
                    return Err(fail("short", "must be shorter than the long window".into()));
                }
            }
            Figure::CounterRate { metric, .. } | Figure::Gauge { metric, .. } => {
                if !is_metric_name(metric) {
                    return Err(fail("metric", format!("{metric:?} is not a metric name")));
                }
                if matches!(self.figure, Figure::CounterRate { .. }) && !metric.ends_with("_total")
                {
                    return Err(fail(
                        "metric",
                        format!("{metric:?} is not a counter (counters end in _total)"),
                    ));
                }
            }
            _ => {}
        }
        if self.min_requests > 0 && !self.figure.counts_traffic() {
            return Err(fail(
                "min_requests",
                "applies to traffic figures only (error rate, request rate, latency, cache hit ratio, burn rate)".into(),
            ));
        }
        for (name, _) in &self.matchers {
            if !is_identifier(name) {
                return Err(fail("scope", format!("{name:?} is not a label name")));
            }
        }
        if let Some(label) = &self.for_each {
            if !is_identifier(label) || label == "le" {
                return Err(fail("for_each", format!("{label:?} is not a label name")));
            }
        }
        for name in self.labels.keys() {
            if !is_identifier(name) || name == "alertname" || name == "severity" {
                return Err(fail(
                    "labels",
                    format!("{name:?} is not a label name, or is set by the rule itself"),
                ));
            }
        }
        for (name, text) in &self.annotations {
            if !is_identifier(name) {
                return Err(fail("annotations", format!("{name:?} is not a name")));
            }
            Template::parse(text)
                .map_err(|reason| fail("annotations", format!("{name}: {reason}")))?;
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A rule, a rules file or a notification channel that cannot be used.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// A field of a rule is invalid.
    Invalid {
        /// The rule's name.
        rule: String,
        /// The field (`threshold`, `window`, `annotations`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two rules have the same name.
    Duplicate(String),
    /// A rules file could not be read or parsed.
    File {
        /// The file's path (`<string>` for rules parsed from text).
        path: String,
        /// What went wrong, with the line where the parser knows it.
        reason: String,
    },
    /// A notification channel's setting cannot be used (a URL without an http or https
    /// scheme or a host, an empty token, an SMTP address that does not parse, …).
    Channel {
        /// The channel's name (its kind unless named).
        channel: String,
        /// The setting (`url`, `webhook_url`, `routing_key`, `smtp_host`, `from`, `to`, …).
        field: &'static str,
        /// What is wrong with it (never quoting a secret).
        reason: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Invalid {
                rule,
                field,
                reason,
            } => write!(f, "alert rule {rule:?}, field `{field}`: {reason}"),
            RuleError::Duplicate(rule) => write!(f, "alert rule {rule:?} is defined twice"),
            RuleError::File { path, reason } => write!(f, "alert rules in {path}: {reason}"),
            RuleError::Channel {
                channel,
                field,
                reason,
            } => write!(f, "alert channel {channel:?}, field `{field}`: {reason}"),
        }
    }
}

impl std::error::Error for RuleError {}

debug_as_display!(RuleError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_name_the_rule_and_field() {
        let interval = Duration::from_secs(5);
        let check = |rule: AlertRule| match rule.validate(interval) {
            Err(RuleError::Invalid { rule, field, .. }) => (rule, field),
            other => panic!("{other:?}"),
        };
        let five = Duration::from_secs(300);
        assert_eq!(
            check(AlertRule::new("A", Figure::error_rate(five)).above(f64::NAN)),
            ("A".into(), "threshold")
        );
        assert_eq!(
            check(AlertRule::new(
                "B",
                Figure::error_rate(Duration::from_secs(5))
            )),
            ("B".into(), "window")
        );
        assert_eq!(
            check(AlertRule::new("C", Figure::latency_quantile(1.5, five))),
            ("C".into(), "quantile")
        );
        assert_eq!(
            check(AlertRule::new("D", Figure::ResidentMemory).min_requests(5)),
            ("D".into(), "min_requests")
        );
        assert_eq!(
            check(AlertRule::new("E", Figure::PoolHealth).summary("{{ $value")),
            ("E".into(), "annotations")
        );
        assert_eq!(
            check(AlertRule::new("F", Figure::counter_rate("jobs", five))),
            ("F".into(), "metric")
        );
        assert_eq!(
            check(AlertRule::new("1x", Figure::PoolHealth)),
            ("1x".into(), "name")
        );
        assert_eq!(
            check(AlertRule::new("G", Figure::PoolHealth).label("alertname", "x")),
            ("G".into(), "labels")
        );
        let e = AlertRule::new("H", Figure::error_rate(five))
            .for_each("le")
            .validate(interval)
            .unwrap_err();
        assert!(e.to_string().contains("`for_each`"), "{e}");
    }

    #[test]
    fn operation_figures_read_like_promql() {
        let five = Duration::from_secs(300);
        let rule = AlertRule::new(
            "DbErrors",
            Figure::operation_error_rate(OperationMetric::Db, five),
        )
        .for_each("db_operation_name")
        .above(0.05)
        .min_requests(10);
        assert_eq!(
            rule.condition().to_string(),
            "((sum by (db_operation_name) (increase(db_client_operation_duration_seconds_count{error_type!=\"\",error_type!=\"cancelled\"}[5m]))) \
/ (sum by (db_operation_name) (increase(db_client_operation_duration_seconds_count{error_type!=\"cancelled\"}[5m]))) > 0.05) \
and (sum by (db_operation_name) (increase(db_client_operation_duration_seconds_count{error_type!=\"cancelled\"}[5m])) >= 10)"
        );
        let rule = AlertRule::new(
            "SlowLookups",
            Figure::operation_latency_quantile(OperationMetric::Function, 0.99, five),
        )
        .matching("function", "lookup")
        .above(1.0);
        assert_eq!(
            rule.condition().to_string(),
            "histogram_quantile(0.99, sum by (le) (rate(function_calls_duration_seconds_bucket{function=\"lookup\"}[5m]))) > 1"
        );
        let rule = AlertRule::new(
            "FunctionErrors",
            Figure::operation_error_rate(OperationMetric::Function, five),
        )
        .above(0.1);
        assert_eq!(
            rule.condition().to_string(),
            "(sum(increase(function_calls_total{result=\"error\"}[5m]))) \
/ (sum(increase(function_calls_total{result!=\"cancelled\"}[5m]))) > 0.1"
        );
        let rule = AlertRule::new("Backlog", Figure::QueueDepth)
            .for_each("messaging_destination_name")
            .above(1000.0);
        assert_eq!(
            rule.condition().to_string(),
            "max by (messaging_destination_name) (queue_depth) > 1000"
        );
        let rule = AlertRule::new("StuckWorkers", Figure::StuckWorkers).above(0.0);
        assert_eq!(
            rule.condition().to_string(),
            "sum(queue_workers{state=\"stuck\"}) > 0"
        );
    }

    #[test]
    fn the_error_rate_condition_reads_like_promql() {
        let rule = AlertRule::new(
            "HighErrorRate",
            Figure::error_rate(Duration::from_secs(300)),
        )
        .above(0.1)
        .min_requests(20)
        .for_each_route();
        assert_eq!(
            rule.condition().to_string(),
            "((sum by (http_route) (increase(http_server_request_duration_seconds_count{error_type!=\"\"}[5m]))) \
/ (sum by (http_route) (increase(http_server_request_duration_seconds_count[5m]))) > 0.1) \
and (sum by (http_route) (increase(http_server_request_duration_seconds_count[5m])) >= 20)"
        );
    }

    #[test]
    fn the_llm_figures_read_like_promql() {
        let five = Duration::from_secs(300);
        let ttft = AlertRule::new(
            "SlowFirstToken",
            Figure::time_to_first_token_quantile(0.99, five),
        )
        .for_each("gen_ai_request_model")
        .above(2.0)
        .min_requests(10);
        assert_eq!(
            ttft.condition().to_string(),
            "(histogram_quantile(0.99, sum by (gen_ai_request_model, le) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m]))) > 2) \
and (sum by (gen_ai_request_model) (increase(gen_ai_server_time_to_first_token_seconds_count[5m])) >= 10)"
        );
        let tokens = AlertRule::new("TokenBurn", Figure::token_rate(five))
            .matching("gen_ai_token_type", "output")
            .above(5000.0);
        assert_eq!(
            tokens.condition().to_string(),
            "sum(rate(gen_ai_client_token_usage_sum{gen_ai_token_type=\"output\"}[5m])) > 5000"
        );
        let bad = AlertRule::new("Q", Figure::time_to_first_token_quantile(0.0, five));
        assert!(bad.validate(Duration::from_secs(5)).is_err());
    }
}
