//! Reading current values back out of the registry, for evaluation inside the process (the
//! alert engine reads the same series Prometheus would scrape).

use std::sync::Arc;

use metrics::Label;

use super::{Registry, Series, Storage};
use crate::sync::read;

/// A series' labels, unescaped: `(name, value)` pairs.
pub(crate) type LabelPairs = [(String, String)];

/// Label pairs, unescaped, as kept beside each series.
pub(super) fn pairs<'a>(labels: impl Iterator<Item = &'a Label>) -> Box<[(String, String)]> {
    labels
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect()
}

/// One series' value as of the read.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // used by optional capabilities
pub(crate) enum Reading<'a> {
    /// A counter's total.
    Counter(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: bucket upper bounds (the last is `+Inf`), the cumulative count of each
    /// bucket, and the sum of observations.
    Histogram {
        bounds: &'a [f64],
        cumulative: &'a [u64],
        sum: f64,
    },
}

#[allow(dead_code)] // used by optional capabilities
impl Registry {
    /// Calls `visit` with the labels and current value of every series of the family `name`.
    /// The registry lock is held only while the series list is copied.
    pub(crate) fn read_family(&self, name: &str, visit: &mut dyn FnMut(&LabelPairs, Reading<'_>)) {
        let series: Vec<Arc<Series>> = match read(&self.shared.state).families.get(name) {
            Some(family) => family.series.clone(),
            None => return,
        };
        let mut cumulative = Vec::new();
        for s in &series {
            match &s.storage {
                Storage::Counter(c) => visit(&s.pairs, Reading::Counter(c.get() as f64)),
                Storage::Gauge(g) => visit(&s.pairs, Reading::Gauge(g.get())),
                Storage::Histogram(h) => {
                    let sum = h.snapshot_into(&mut cumulative);
                    visit(
                        &s.pairs,
                        Reading::Histogram {
                            bounds: &h.buckets.bounds,
                            cumulative: &cumulative,
                            sum,
                        },
                    );
                }
            }
        }
    }
}

#[allow(dead_code)] // used by optional capabilities
impl Registry {
    /// The latest exemplars (newest first, at most `max`) of the histogram family `name`'s
    /// series that `keep` accepts: a few recent requests of that kind, by trace.
    pub(crate) fn recent_exemplars(
        &self,
        name: &str,
        keep: &dyn Fn(&LabelPairs) -> bool,
        max: usize,
    ) -> Vec<super::storage::Exemplar> {
        let series: Vec<Arc<Series>> = match read(&self.shared.state).families.get(name) {
            Some(family) => family.series.clone(),
            None => return Vec::new(),
        };
        let mut found = Vec::new();
        for s in series.iter().filter(|s| keep(&s.pairs)) {
            if let Storage::Histogram(h) = &s.storage {
                found.extend((0..=h.buckets.bounds.len()).filter_map(|i| h.exemplar(i)));
            }
        }
        found.sort_by(|a, b| b.timestamp.total_cmp(&a.timestamp));
        found.dedup_by_key(|e| e.trace_id);
        found.truncate(max);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_recorded() {
        let registry = Registry::builder().buckets_for("lat", &[0.1, 1.0]).build();
        let labels = [("route", "/a")];
        metrics::with_local_recorder(&registry, || {
            metrics::counter!("hits_total", &labels).increment(3);
            metrics::gauge!("up", &labels).set(0.5);
            metrics::histogram!("lat", &labels).record(0.5);
        });
        let mut seen = Vec::new();
        for name in ["hits_total", "up", "lat", "absent"] {
            registry.read_family(name, &mut |labels, reading| {
                let value = match reading {
                    Reading::Counter(v) | Reading::Gauge(v) => v,
                    Reading::Histogram { cumulative, .. } => cumulative[1] as f64,
                };
                seen.push((name, labels[0].1.clone(), value));
            });
        }
        assert_eq!(
            seen,
            [
                ("hits_total", "/a".to_owned(), 3.0),
                ("up", "/a".to_owned(), 0.5),
                ("lat", "/a".to_owned(), 1.0)
            ]
        );
    }
}
