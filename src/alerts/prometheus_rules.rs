//! The rules as a Prometheus rules file: the same conditions, in PromQL over the exported
//! metric names, for a service whose alerts Prometheus evaluates.

use std::fmt::Write as _;

use super::promql::{duration, ms};
use super::AlertRules;

/// The labels [`AlertRules::to_prometheus_rules`] keeps services apart by: Prometheus'
/// `job` (one per scrape configuration, or per Service with the Prometheus Operator) and
/// Kubernetes' `namespace`. A label the series do not have groups nothing.
pub const SERVICE_LABELS: [&str; 2] = ["namespace", "job"];

impl AlertRules {
    /// The rules as a Prometheus rules file (YAML) with one group, `group`: `alert`, `expr`,
    /// `for`, `keep_firing_for`, `labels` (with `severity`) and `annotations` (the same
    /// templates), ready for `promtool check rules` and Prometheus ≥ 2.42.
    ///
    /// Every aggregation is kept per service ([`SERVICE_LABELS`], `sum by (namespace, job)`):
    /// a Prometheus that scrapes several services alerts on each one's figures, with its
    /// `job` among the alert's labels, rather than on their sum. Within a service, the
    /// instances are summed, as the service's users see it (`for_each("instance")` alerts
    /// per instance).
    ///
    /// ```
    /// use tower_observe::alerts::AlertRules;
    ///
    /// let yaml = AlertRules::recommended().to_prometheus_rules("my-service");
    /// assert!(yaml.contains("- alert: HighErrorRate"));
    /// assert!(yaml.contains("sum by (namespace, job) (increase(http_server_request_duration_seconds_count"));
    /// assert!(yaml.contains("keep_firing_for: 2m"));
    /// ```
    pub fn to_prometheus_rules(&self, group: &str) -> String {
        self.to_prometheus_rules_per(group, &SERVICE_LABELS)
    }

    /// [`to_prometheus_rules`](Self::to_prometheus_rules), keeping apart what
    /// `service_labels` tell apart instead: `&["cluster", "namespace", "job"]` for one
    /// Prometheus over several clusters, `&[]` for one alert over everything it scrapes.
    ///
    /// ```
    /// use tower_observe::alerts::AlertRules;
    ///
    /// let yaml = AlertRules::recommended().to_prometheus_rules_per("fleet", &[]);
    /// assert!(yaml.contains("(sum(increase(http_server_request_duration_seconds_count"));
    /// ```
    pub fn to_prometheus_rules_per(&self, group: &str, service_labels: &[&str]) -> String {
        let mut out = String::from(
            "# Alert rules rendered by tower-observe (AlertRules::to_prometheus_rules): the same\n\
             # conditions the in-process engine evaluates, over the metrics /metrics exports.\n",
        );
        out.push_str("groups:\n");
        let _ = writeln!(out, "  - name: {}", quote(group));
        out.push_str("    rules:\n");
        for rule in &self.rules {
            let _ = writeln!(out, "      - alert: {}", rule.name);
            let _ = writeln!(
                out,
                "        expr: {}",
                quote(&rule.condition().scoped_by(service_labels).to_string())
            );
            if !rule.hold.is_zero() {
                let _ = writeln!(out, "        for: {}", duration(ms(rule.hold)));
            }
            if !rule.keep_firing_for.is_zero() {
                let _ = writeln!(
                    out,
                    "        keep_firing_for: {}",
                    duration(ms(rule.keep_firing_for))
                );
            }
            out.push_str("        labels:\n");
            let _ = writeln!(out, "          severity: {}", rule.severity.as_str());
            for (k, v) in &rule.labels {
                let _ = writeln!(out, "          {k}: {}", quote(v));
            }
            if !rule.annotations.is_empty() {
                out.push_str("        annotations:\n");
                for (k, v) in &rule.annotations {
                    let _ = writeln!(out, "          {k}: {}", quote(v));
                }
            }
        }
        out
    }
}

/// A YAML single-quoted scalar (quotes doubled; line breaks kept as spaces).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''").replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_yaml() {
        assert_eq!(quote("it's"), "'it''s'");
    }
}
