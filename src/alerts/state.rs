//! The life of an alert, exactly as Prometheus runs it: inactive → pending → firing →
//! resolved, with `for` and `keep_firing_for`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::promql::{Labels, Vector};

/// Most alerts one rule keeps at once (a rule evaluated per route or per backend).
pub(crate) const MAX_INSTANCES: usize = 100;

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition does not hold.
    Inactive,
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition has held for `for` (or stopped holding less than `keep_firing_for` ago).
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one label set of the rule's condition.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) state: AlertState,
    /// When the condition started holding (ms).
    pub(crate) active_at: i64,
    pub(crate) fired_at: Option<i64>,
    keep_firing_since: Option<i64>,
    /// The value at the last evaluation where the condition held.
    pub(crate) value: f64,
}

/// A change of an alert's state, as one evaluation found it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    /// The label set of the condition's element (without the rule's own labels).
    pub(crate) labels: Labels,
    pub(crate) from: AlertState,
    pub(crate) to: AlertState,
    pub(crate) value: f64,
    pub(crate) active_at: i64,
}

/// The alerts of one rule.
#[derive(Debug, Default)]
pub(crate) struct RuleAlerts {
    pub(crate) instances: BTreeMap<Labels, Instance>,
    /// Elements beyond [`MAX_INSTANCES`] that were not tracked.
    pub(crate) dropped: u64,
}

impl RuleAlerts {
    /// Applies one evaluation at `t` (ms): `result` holds the elements for which the
    /// condition holds. Returns the changes, in label order.
    pub(crate) fn evaluate(
        &mut self,
        result: Vector,
        t: i64,
        hold: i64,
        keep_firing_for: i64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut holding: BTreeMap<Labels, f64> = BTreeMap::new();
        for (labels, value) in result {
            holding.insert(labels, value);
        }
        for (labels, value) in &holding {
            let full = self.instances.len() >= MAX_INSTANCES;
            match self.instances.get_mut(labels) {
                Some(alert) => {
                    alert.value = *value;
                    alert.keep_firing_since = None;
                }
                None if full => self.dropped += 1,
                None => {
                    self.instances.insert(
                        labels.clone(),
                        Instance {
                            state: AlertState::Pending,
                            active_at: t,
                            fired_at: None,
                            keep_firing_since: None,
                            value: *value,
                        },
                    );
                    changes.push(Change {
                        labels: labels.clone(),
                        from: AlertState::Inactive,
                        to: AlertState::Pending,
                        value: *value,
                        active_at: t,
                    });
                }
            }
        }
        let mut gone = Vec::new();
        for (labels, alert) in &mut self.instances {
            if !holding.contains_key(labels) {
                let mut keep_firing = false;
                if alert.state == AlertState::Firing && keep_firing_for > 0 {
                    let since = *alert.keep_firing_since.get_or_insert(t);
                    keep_firing = t - since < keep_firing_for;
                }
                if !keep_firing {
                    changes.push(Change {
                        labels: labels.clone(),
                        from: alert.state,
                        to: AlertState::Inactive,
                        value: alert.value,
                        active_at: alert.active_at,
                    });
                    gone.push(labels.clone());
                    continue;
                }
            }
            if alert.state == AlertState::Pending && t - alert.active_at >= hold {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(t);
                // Firing with `for: 0` on the first evaluation: one change, inactive → firing.
                match changes.iter_mut().find(|c| c.labels == *labels) {
                    Some(c) => c.to = AlertState::Firing,
                    None => changes.push(Change {
                        labels: labels.clone(),
                        from: AlertState::Pending,
                        to: AlertState::Firing,
                        value: alert.value,
                        active_at: alert.active_at,
                    }),
                }
            }
        }
        for labels in gone {
            self.instances.remove(&labels);
        }
        changes
    }

    /// The worst state of the rule's alerts.
    pub(crate) fn state(&self) -> AlertState {
        self.instances
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn v(value: Option<f64>) -> Vector {
        value.map(|v| (Labels::new(), v)).into_iter().collect()
    }

    /// Runs a rule over per-minute results and returns the state after each evaluation.
    fn timeline(results: &[Option<f64>], hold: i64, keep: i64) -> Vec<AlertState> {
        let mut alerts = RuleAlerts::default();
        results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                alerts.evaluate(v(*r), i as i64 * MIN, hold, keep);
                alerts.state()
            })
            .collect()
    }

    use AlertState::{Firing as F, Inactive as I, Pending as P};

    #[test]
    fn the_state_machine_against_a_table() {
        let b = Some(0.2); // breach
        let n = None; // condition does not hold (no element, as PromQL filters it out)
                      // (name, results per minute, for, keep_firing_for, expected states)
        type Row = (&'static str, Vec<Option<f64>>, i64, i64, Vec<AlertState>);
        let table: &[Row] = &[
            (
                "steady breach fires after `for`",
                vec![n, b, b, b, b, b],
                3 * MIN,
                0,
                vec![I, P, P, P, F, F],
            ),
            ("for 0 fires at once", vec![n, b, n], 0, 0, vec![I, F, I]),
            (
                "flapping never fires",
                vec![b, b, n, b, b, n, b],
                2 * MIN,
                0,
                vec![P, P, I, P, P, I, P],
            ),
            (
                "flapping while firing resolves without keep_firing_for",
                vec![b, b, n, b],
                MIN,
                0,
                vec![P, F, I, P],
            ),
            (
                "keep_firing_for bridges a gap",
                vec![b, b, n, b, n, n, n],
                MIN,
                2 * MIN,
                vec![P, F, F, F, F, F, I],
            ),
            (
                "recovery resolves",
                vec![b, b, b, n, n],
                MIN,
                0,
                vec![P, F, F, I, I],
            ),
            // Minimum traffic is part of the condition: too few requests = no element.
            (
                "minimum traffic: idle is no breach",
                vec![n, n, n],
                0,
                0,
                vec![I, I, I],
            ),
        ];
        for (name, results, hold, keep, expected) in table {
            assert_eq!(&timeline(results, *hold, *keep), expected, "{name}");
        }
    }

    #[test]
    fn changes_are_reported_once_with_their_value() {
        let mut alerts = RuleAlerts::default();
        let c = alerts.evaluate(v(Some(0.3)), 0, 0, 0);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].from, c[0].to, c[0].value), (I, F, 0.3));
        assert!(alerts.evaluate(v(Some(0.4)), MIN, 0, 0).is_empty());
        let c = alerts.evaluate(v(None), 2 * MIN, 0, 0);
        // Resolved with the last value that breached.
        assert_eq!((c[0].from, c[0].to, c[0].value), (F, I, 0.4));
    }

    #[test]
    fn instances_are_bounded() {
        let mut alerts = RuleAlerts::default();
        let many: Vector = (0..150)
            .map(|i| {
                let mut l = Labels::new();
                l.insert("route".into(), format!("/{i}"));
                (l, 1.0)
            })
            .collect();
        alerts.evaluate(many, 0, MIN, 0);
        assert_eq!(alerts.instances.len(), MAX_INSTANCES);
        assert_eq!(alerts.dropped, 50);
    }
}
