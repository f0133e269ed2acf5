//! What the engine shows: the `GET /v1/alerts` document, and the alerts pending and firing
//! now for `/v1/stats`.

use std::time::Duration;

use serde::Serialize;

use super::engine::{AlertsPart, Transition};
use super::notify::ChannelStatus;
use super::promql::Labels;
use super::state::AlertState;
use super::Severity;
use crate::stats::{ActiveAlert, ActiveAlerts};
use crate::sync::lock;
use crate::time_fmt::rfc3339;

/// The `/v1/alerts` document.
#[derive(Debug, Serialize)]
pub(super) struct AlertsReport {
    evaluation_interval_seconds: f64,
    evaluations: u64,
    last_evaluation: Option<String>,
    last_evaluation_ms: f64,
    series: usize,
    firing: usize,
    pending: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    rules: Vec<RuleReport>,
    transitions: Vec<Transition>,
    channels: Vec<ChannelStatus>,
}

#[derive(Debug, Serialize)]
struct RuleReport {
    name: String,
    severity: Severity,
    state: AlertState,
    expression: String,
    for_seconds: f64,
    keep_firing_for_seconds: f64,
    last_evaluation: Option<String>,
    values: Vec<ValueReport>,
    alerts: Vec<InstanceReport>,
    untracked: u64,
    /// Why the rule cannot fire as the observer is configured (a metric nothing records).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct ValueReport {
    labels: Labels,
    value: Option<f64>,
}

#[derive(Debug, Serialize)]
struct InstanceReport {
    labels: Labels,
    state: AlertState,
    active_since: String,
    firing_since: Option<String>,
    value: Option<f64>,
}

impl AlertsPart {
    /// The `/v1/alerts` document.
    pub(super) fn report(&self) -> AlertsReport {
        let notes = lock(&self.notes).clone();
        let state = lock(&self.state);
        let now = self.clock.now_nanos();
        let t = (now.saturating_sub(self.start) / 1_000_000) as i64;
        let wall = self.clock.wall_at(now);
        let rules = self
            .rules
            .iter()
            .zip(&state.alerts)
            .zip(&state.status)
            .zip(notes)
            .map(|(((compiled, alerts), status), note)| {
                let rule = &compiled.rule;
                RuleReport {
                    name: rule.name.clone(),
                    severity: rule.severity,
                    state: alerts.state(),
                    expression: compiled.condition.to_string(),
                    for_seconds: rule.hold.as_secs_f64(),
                    keep_firing_for_seconds: rule.keep_firing_for.as_secs_f64(),
                    last_evaluation: status.last_evaluation.map(rfc3339),
                    values: status
                        .values
                        .iter()
                        .map(|(labels, value)| ValueReport {
                            labels: labels.clone(),
                            value: finite(*value),
                        })
                        .collect(),
                    alerts: alerts
                        .instances
                        .iter()
                        .map(|(labels, a)| {
                            let since = |at: i64| {
                                let ago = Duration::from_millis(t.saturating_sub(at).max(0) as u64);
                                rfc3339(wall.checked_sub(ago).unwrap_or(wall))
                            };
                            InstanceReport {
                                labels: labels.clone(),
                                state: a.state,
                                active_since: since(a.active_at),
                                firing_since: a.fired_at.map(since),
                                value: finite(a.value),
                            }
                        })
                        .collect(),
                    untracked: alerts.dropped,
                    note,
                }
            })
            .collect::<Vec<_>>();
        AlertsReport {
            evaluation_interval_seconds: self.interval.as_secs_f64(),
            evaluations: state.evaluations,
            last_evaluation: state.last_evaluation.map(rfc3339),
            last_evaluation_ms: state.last_duration.as_secs_f64() * 1e3,
            series: state.store.series_count(),
            firing: rules
                .iter()
                .map(|r| {
                    r.alerts
                        .iter()
                        .filter(|a| a.state == AlertState::Firing)
                        .count()
                })
                .sum(),
            pending: rules
                .iter()
                .map(|r| {
                    r.alerts
                        .iter()
                        .filter(|a| a.state == AlertState::Pending)
                        .count()
                })
                .sum(),
            error: self.registry.is_none().then_some(
                "rules read the built-in registry; this observer records into another recorder",
            ),
            rules,
            transitions: state.transitions.iter().rev().cloned().collect(),
            channels: self.notifier.statuses(),
        }
    }

    /// The alerts pending and firing now, for `/v1/stats` (and so the dashboard's stream).
    pub(super) fn active(&self) -> ActiveAlerts {
        let state = lock(&self.state);
        let now = self.clock.now_nanos();
        let t = (now.saturating_sub(self.start) / 1_000_000) as i64;
        let wall = self.clock.wall_at(now);
        let mut active = Vec::new();
        for (compiled, alerts) in self.rules.iter().zip(&state.alerts) {
            let rule = &compiled.rule;
            for (labels, alert) in &alerts.instances {
                let ago = Duration::from_millis(t.saturating_sub(alert.active_at).max(0) as u64);
                let mut full = labels.clone();
                full.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let summary = compiled
                    .annotations
                    .iter()
                    .find(|(name, _)| name == "summary")
                    .map(|(_, template)| template.render(alert.value, &full));
                active.push(ActiveAlert {
                    rule: rule.name.clone(),
                    severity: rule.severity.as_str(),
                    state: alert.state.as_str(),
                    labels: labels.clone(),
                    active_since: rfc3339(wall.checked_sub(ago).unwrap_or(wall)),
                    value: finite(alert.value),
                    summary,
                });
            }
        }
        ActiveAlerts {
            active,
            rules: self.rules.len(),
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
