//! Rules from a TOML file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::rules::{AlertRule, Figure, GaugeAggregation, OperationMetric, RuleError};
use super::{AlertRules, Comparison, Severity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Start from [`AlertRules::recommended`].
    #[serde(default)]
    recommended: bool,
    /// Add [`AlertRules::burn_rate`] for this objective.
    burn_rate_objective: Option<f64>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    figure: String,
    window: Option<String>,
    quantile: Option<f64>,
    metric: Option<String>,
    aggregation: Option<GaugeAggregation>,
    /// For the operation figures: `db`, `messaging_process`, `messaging_client`, `function`.
    operations: Option<OperationMetric>,
    objective: Option<f64>,
    long: Option<String>,
    short: Option<String>,
    above: Option<f64>,
    below: Option<f64>,
    at_least: Option<f64>,
    at_most: Option<f64>,
    #[serde(rename = "for")]
    hold: Option<String>,
    keep_firing_for: Option<String>,
    min_requests: Option<u64>,
    severity: Option<Severity>,
    route: Option<String>,
    method: Option<String>,
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, String>,
    for_each: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl AlertRules {
    /// Rules from TOML text (see `docs/alerts.md` for the format):
    ///
    /// ```
    /// use tower_observe::alerts::AlertRules;
    ///
    /// let rules = AlertRules::from_toml(r#"
    ///     recommended = true
    ///
    ///     [[rule]]
    ///     name = "SlowSearch"
    ///     figure = "latency"
    ///     quantile = 0.95
    ///     window = "5m"
    ///     route = "/search"
    ///     above = 0.5
    ///     for = "2m"
    ///     severity = "warning"
    ///     annotations = { summary = "p95 of /search is {{ $value | humanizeDuration }}" }
    /// "#).unwrap();
    /// assert_eq!(rules.len(), 5);
    ///
    /// let err = AlertRules::from_toml(r#"
    ///     [[rule]]
    ///     name = "Oops"
    ///     figure = "error_rate"
    ///     above = 0.1
    /// "#).unwrap_err();
    /// assert_eq!(err.to_string(), "alert rule \"Oops\", field `window`: error_rate needs a window");
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        Self::parse(text, "<string>")
    }

    /// Rules from a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RuleError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RuleError::File {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    fn parse(text: &str, path: &str) -> Result<Self, RuleError> {
        let file: File = toml::from_str(text).map_err(|e| RuleError::File {
            path: path.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        let mut rules = if file.recommended {
            Self::recommended()
        } else {
            Self::new()
        };
        if let Some(objective) = file.burn_rate_objective {
            rules = rules.extend(Self::burn_rate(objective));
        }
        for spec in file.rules {
            rules = rules.rule(spec.into_rule()?);
        }
        Ok(rules)
    }
}

impl RuleSpec {
    fn into_rule(self) -> Result<AlertRule, RuleError> {
        let name = self.name.clone();
        let fail = |field: &'static str, reason: String| RuleError::Invalid {
            rule: name.clone(),
            field,
            reason,
        };
        let duration_of =
            |field: &'static str, text: &Option<String>| -> Result<Option<Duration>, RuleError> {
                text.as_deref()
                    .map(|t| {
                        parse_duration(t).ok_or_else(|| {
                            fail(
                                field,
                                format!("{t:?} is not a duration (30s, 5m, 1h30m, 2d)"),
                            )
                        })
                    })
                    .transpose()
            };
        let needed = |field: &'static str, d: Option<Duration>| {
            d.ok_or_else(|| fail(field, format!("{} needs a {field}", self.figure)))
        };
        let window = duration_of("window", &self.window)?;
        let figure = match self.figure.as_str() {
            "error_rate" => Figure::error_rate(needed("window", window)?),
            "request_rate" => Figure::request_rate(needed("window", window)?),
            "latency" => Figure::latency_quantile(
                self.quantile.ok_or_else(|| fail("quantile", "latency needs a quantile (0.99 for p99)".into()))?,
                needed("window", window)?,
            ),
            "time_to_first_token" => Figure::time_to_first_token_quantile(
                self.quantile.ok_or_else(|| fail("quantile", "time_to_first_token needs a quantile (0.99 for p99)".into()))?,
                needed("window", window)?,
            ),
            "token_rate" => Figure::token_rate(needed("window", window)?),
            "cpu_utilization" => Figure::cpu_utilization(needed("window", window)?),
            "resident_memory" => Figure::ResidentMemory,
            "pool_health" => Figure::PoolHealth,
            "cache_hit_ratio" => Figure::cache_hit_ratio(needed("window", window)?),
            "counter_rate" => Figure::counter_rate(
                self.metric.clone().ok_or_else(|| fail("metric", "counter_rate needs a metric".into()))?,
                needed("window", window)?,
            ),
            "gauge" => Figure::gauge(
                self.metric.clone().ok_or_else(|| fail("metric", "gauge needs a metric".into()))?,
                self.aggregation.unwrap_or(GaugeAggregation::Max),
            ),
            "burn_rate" => Figure::BurnRate {
                objective: self.objective.ok_or_else(|| fail("objective", "burn_rate needs an objective (0.999)".into()))?,
                long: needed("long", duration_of("long", &self.long)?)?,
                short: needed("short", duration_of("short", &self.short)?)?,
            },
            "operation_error_rate" => Figure::operation_error_rate(
                self.operations.ok_or_else(|| fail("operations", "operation_error_rate needs operations (db, messaging_process, messaging_client, function)".into()))?,
                needed("window", window)?,
            ),
            "operation_latency" => Figure::operation_latency_quantile(
                self.operations.ok_or_else(|| fail("operations", "operation_latency needs operations (db, messaging_process, messaging_client, function)".into()))?,
                self.quantile.ok_or_else(|| fail("quantile", "operation_latency needs a quantile (0.99 for p99)".into()))?,
                needed("window", window)?,
            ),
            "queue_depth" => Figure::QueueDepth,
            "stuck_workers" => Figure::StuckWorkers,
            other => {
                return Err(fail(
                    "figure",
                    format!("unknown figure {other:?} (error_rate, request_rate, latency, cpu_utilization, resident_memory, pool_health, cache_hit_ratio, counter_rate, gauge, burn_rate, time_to_first_token, token_rate, operation_error_rate, operation_latency, queue_depth, stuck_workers)"),
                ))
            }
        };
        let comparisons = [
            (Comparison::Above, self.above),
            (Comparison::Below, self.below),
            (Comparison::AtLeast, self.at_least),
            (Comparison::AtMost, self.at_most),
        ];
        let mut set = comparisons.iter().filter_map(|(c, v)| Some((*c, (*v)?)));
        let (comparison, threshold) = set.next().ok_or_else(|| {
            fail(
                "threshold",
                "set one of above, below, at_least, at_most".into(),
            )
        })?;
        if set.next().is_some() {
            return Err(fail(
                "threshold",
                "set only one of above, below, at_least, at_most".into(),
            ));
        }
        let mut rule = AlertRule::new(self.name.clone(), figure).compare(comparison, threshold);
        if let Some(hold) = duration_of("for", &self.hold)? {
            rule = rule.for_duration(hold);
        }
        if let Some(keep) = duration_of("keep_firing_for", &self.keep_firing_for)? {
            rule = rule.keep_firing_for(keep);
        }
        if let Some(n) = self.min_requests {
            rule = rule.min_requests(n);
        }
        if let Some(severity) = self.severity {
            rule = rule.severity(severity);
        }
        if let Some(route) = self.route {
            rule = rule.route(route);
        }
        if let Some(method) = self.method {
            rule = rule.method(method);
        }
        for (k, v) in self.matchers {
            rule = rule.matching(k, v);
        }
        if let Some(label) = self.for_each {
            rule = rule.for_each(label);
        }
        for (k, v) in self.labels {
            rule = rule.label(k, v);
        }
        for (k, v) in self.annotations {
            rule = rule.annotation(k, v);
        }
        Ok(rule)
    }
}

/// `30s`, `5m`, `1h30m`, `2d`, `500ms`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(unit)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5w"), None);
    }

    #[test]
    fn file_errors_name_rule_and_field() {
        let err = AlertRules::from_toml("[[rule]]\nname = \"A\"\nfigure = \"nope\"\nabove = 1\n")
            .unwrap_err();
        assert!(
            matches!(
                err,
                RuleError::Invalid {
                    field: "figure",
                    ..
                }
            ),
            "{err}"
        );
        let err = AlertRules::from_toml("[[rule]]\nname = \"A\"\nfigure = \"pool_health\"\n")
            .unwrap_err();
        assert!(
            matches!(
                err,
                RuleError::Invalid {
                    field: "threshold",
                    ..
                }
            ),
            "{err}"
        );
        let err = AlertRules::from_toml(
            "[[rule]]\nname = \"A\"\nfigure = \"error_rate\"\nwindow = \"5x\"\nabove = 1\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RuleError::Invalid {
                    field: "window",
                    ..
                }
            ),
            "{err}"
        );
        let err = AlertRules::from_toml("[[rule]]\nname = \"A\"\nabve = 1\n").unwrap_err();
        assert!(matches!(err, RuleError::File { .. }), "{err}");
        assert!(err.to_string().contains("abve"), "{err}");
    }

    #[test]
    fn a_file_rule_equals_the_builder_rule() {
        let rules = AlertRules::from_toml(
            r#"
            [[rule]]
            name = "BackendErrors"
            figure = "error_rate"
            window = "5m"
            above = 0.05
            for = "2m"
            keep_firing_for = "1m"
            min_requests = 10
            severity = "critical"
            for_each = "backend"
            match = { model = "gpt" }
            labels = { team = "ml" }
            annotations = { summary = "{{ $labels.backend }} fails" }
            "#,
        )
        .unwrap();
        let built = AlertRule::new(
            "BackendErrors",
            Figure::error_rate(Duration::from_secs(300)),
        )
        .above(0.05)
        .for_duration(Duration::from_secs(120))
        .keep_firing_for(Duration::from_secs(60))
        .min_requests(10)
        .severity(Severity::Critical)
        .matching("model", "gpt")
        .for_each("backend")
        .label("team", "ml")
        .summary("{{ $labels.backend }} fails");
        assert_eq!(rules.rules()[0].condition(), built.condition());
        assert_eq!(format!("{:?}", rules.rules()[0]), format!("{built:?}"));
    }
}
