//! Sampling the built-in registry into the rules' sample store, each family as a Prometheus
//! scrape of it would read.

use std::collections::BTreeSet;

use super::promql::SampleStore;
use crate::registry::read::Reading;
use crate::registry::Registry;

/// Reads the families the rules need from the registry into the store, at `t` (ms).
/// Histograms become `_bucket` (with `le`), `_count` and `_sum` series, as Prometheus sees them.
///
/// `previous` is the time of the previous sampling: a counter or histogram series first seen
/// now was created since then, so it counted from zero at `previous`.
pub(crate) fn sample(registry: &Registry, store: &mut SampleStore, t: i64, previous: Option<i64>) {
    let mut families = BTreeSet::new();
    for metric in store.metrics() {
        families.insert(metric.to_owned());
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = metric.strip_suffix(suffix) {
                families.insert(base.to_owned());
            }
        }
    }
    for family in families {
        let (bucket, count, sum) = (
            format!("{family}_bucket"),
            format!("{family}_count"),
            format!("{family}_sum"),
        );
        let wants_buckets = store.keeps(&bucket);
        registry.read_family(&family, &mut |labels, reading| match reading {
            Reading::Counter(v) => store.push_counter(&family, labels, t, v, previous),
            Reading::Gauge(v) => store.push(&family, labels, t, v),
            Reading::Histogram {
                bounds,
                cumulative,
                sum: total,
            } => {
                let observations = cumulative.last().copied().unwrap_or(0) as f64;
                store.push_counter(&count, labels, t, observations, previous);
                store.push_counter(&sum, labels, t, total, previous);
                if wants_buckets {
                    let mut with_le = labels.to_vec();
                    with_le.push(("le".to_owned(), String::new()));
                    for (i, c) in cumulative.iter().enumerate() {
                        let le = bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
                        if let Some(last) = with_le.last_mut() {
                            last.1 = le;
                        }
                        store.push_counter(&bucket, &with_le, t, *c as f64, previous);
                    }
                }
            }
        });
    }
}
