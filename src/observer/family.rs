//! Bounded label families for the metrics whose label values come from outside the code:
//! upstream hosts, retry reasons, cache and pool names, backend names, gRPC methods.
//!
//! A family maps label values to whatever one label set records into (metric handles plus the
//! counters `/v1/stats` reads), registering it once. Past its limit, a new label set goes to
//! an *overflow entry*: its high-cardinality values fold into `_OTHER`, while the values of
//! bounded domains that carry meaning (a status code, an error type) are kept, so failures stay
//! failures and successes stay successes in every error rate. The overflow entry's metrics
//! carry `otel_metric_overflow="true"` (the OpenTelemetry SDK's overflow attribute), and every
//! recording into it is counted in `tower_observe_cardinality_overflow_total{metric}`, so a
//! hostile or buggy input (a host name taken from a request, a model name from a JSON body)
//! cannot mint series, and the loss is visible.

use std::sync::{Arc, OnceLock, RwLock};

use hashbrown::{Equivalent, HashMap};
use metrics::Counter;

use super::backend::RecorderSource;
use super::handles;
use crate::labels::{sanitize_label_value, OTHER};
use crate::sync::{read, write};

/// Label values as stored: sanitised and owned.
type Values = Box<[Box<str>]>;

/// Borrowed label values; hashes like [`Values`] (a slice of strings either way).
#[derive(Hash)]
struct ValuesRef<'a>(&'a [&'a str]);

impl Equivalent<Values> for ValuesRef<'_> {
    fn equivalent(&self, key: &Values) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key.iter()).all(|(a, b)| *a == &**b)
    }
}

/// One metric family's label sets: at most `limit` of them, then overflow entries.
#[derive(Debug)]
pub(crate) struct Family<T> {
    /// The metric named in `tower_observe_cardinality_overflow_total{metric}`.
    metric: &'static str,
    limit: usize,
    /// Bit `i` set: value `i` keeps its value in overflow entries; the others fold.
    kept: u64,
    entries: RwLock<HashMap<Values, Arc<T>>>,
    overflow: RwLock<HashMap<Values, Arc<T>>>,
    overflow_count: OnceLock<Counter>,
}

impl<T> Family<T> {
    /// A family whose values all fold into `_OTHER` past the limit.
    pub(crate) fn new(metric: &'static str, limit: usize) -> Self {
        Self::keeping(metric, limit, 0)
    }

    /// A family whose values at the positions set in `kept` (bit `i`: value `i`) keep their
    /// value past the limit: bounded domains such as a status code, an error type, the
    /// method or a constant label.
    pub(crate) fn keeping(metric: &'static str, limit: usize, kept: u64) -> Self {
        Self {
            metric,
            limit: limit.max(1),
            kept,
            entries: RwLock::new(HashMap::new()),
            overflow: RwLock::new(HashMap::new()),
            overflow_count: OnceLock::new(),
        }
    }

    /// The entry of `values`, created by `make` on first use, with the sanitised values and,
    /// for an overflow entry (whose folded values are `_OTHER`), the counter each recording
    /// into it must increment.
    ///
    /// A lookup with unsanitised values that differ from their sanitised form (control
    /// characters, over-long) misses the fast path and is resolved with the sanitised ones,
    /// which stays correct.
    pub(crate) fn get(
        &self,
        source: &dyn RecorderSource,
        values: &[&str],
        make: impl FnOnce(&[&str], Option<Counter>) -> T,
    ) -> Arc<T> {
        if let Some(entry) = read(&self.entries).get(&ValuesRef(values)) {
            return entry.clone();
        }
        let sanitised: Vec<std::borrow::Cow<'_, str>> =
            values.iter().map(|v| sanitize_label_value(v)).collect();
        let clean: Vec<&str> = sanitised.iter().map(|v| &**v).collect();
        let full = {
            let entries = read(&self.entries);
            if let Some(entry) = entries.get(&ValuesRef(&clean)) {
                return entry.clone();
            }
            entries.len() >= self.limit
        };
        if !full {
            let mut entries = write(&self.entries);
            if let Some(entry) = entries.get(&ValuesRef(&clean)) {
                return entry.clone();
            }
            if entries.len() < self.limit {
                let entry = Arc::new(make(&clean, None));
                entries.insert(
                    clean.iter().map(|v| Box::<str>::from(*v)).collect(),
                    entry.clone(),
                );
                return entry;
            }
        }
        self.overflow_entry(source, &clean, make)
    }

    fn overflow_entry(
        &self,
        source: &dyn RecorderSource,
        clean: &[&str],
        make: impl FnOnce(&[&str], Option<Counter>) -> T,
    ) -> Arc<T> {
        let mut folded: Vec<&str> = clean
            .iter()
            .enumerate()
            .map(|(i, v)| if self.kept >> i & 1 == 1 { *v } else { OTHER })
            .collect();
        if let Some(entry) = read(&self.overflow).get(&ValuesRef(&folded)) {
            return entry.clone();
        }
        let mut overflow = write(&self.overflow);
        if overflow.len() >= handles::MAX_OVERFLOW_LABEL_SETS {
            folded.iter_mut().for_each(|v| *v = OTHER);
        }
        if let Some(entry) = overflow.get(&ValuesRef(&folded)) {
            return entry.clone();
        }
        let counter = self
            .overflow_count
            .get_or_init(|| handles::overflow_counter(source, self.metric))
            .clone();
        let entry = Arc::new(make(&folded, Some(counter)));
        overflow.insert(
            folded.iter().map(|v| Box::<str>::from(*v)).collect(),
            entry.clone(),
        );
        entry
    }

    /// Every entry with its label values (the overflow entries last), for `/v1/stats`.
    pub(crate) fn entries(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let collect = |map: &HashMap<Values, Arc<T>>| {
            let mut out: Vec<(Vec<String>, Arc<T>)> = map
                .iter()
                .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), v.clone()))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        };
        let mut out = collect(&read(&self.entries));
        out.extend(collect(&read(&self.overflow)));
        out
    }
}

impl<T> Family<T> {
    /// Every entry's figures by its name (a family of one label: targets, caches, pools),
    /// for a `/v1/stats` section.
    pub(crate) fn by_name<E>(
        &self,
        figures: impl Fn(&T) -> E,
    ) -> std::collections::BTreeMap<String, E> {
        self.entries()
            .into_iter()
            .map(|(name, entry)| (name.concat(), figures(&entry)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn overflow_keeps_the_bounded_values_and_counts_recordings() {
        let registry = crate::registry::Registry::new();
        let source = super::super::RecorderBackend::Registry(registry.clone());
        // (host, status): the host folds, the status is kept.
        let family: Family<(String, Option<Counter>)> = Family::keeping("m", 2, 0b10);
        let get = |host: &str, status: &str| {
            family.get(&source, &[host, status], |v, overflow| {
                (v.join(","), overflow)
            })
        };
        assert_eq!(get("a", "200").0, "a,200");
        assert_eq!(get("b", "500").0, "b,500");
        let c = get("c", "500");
        assert_eq!(c.0, "_OTHER,500");
        let d = get("d", "200");
        assert_eq!(d.0, "_OTHER,200");
        assert!(Arc::ptr_eq(&c, &get("e", "500")));
        for _ in 0..5 {
            handles::count_overflow(&d.1);
        }
        assert!(registry
            .render()
            .contains("tower_observe_cardinality_overflow_total{metric=\"m\"} 5\n"));
        assert_eq!(family.entries().len(), 4);
    }

    #[test]
    fn borrowed_and_owned_values_hash_alike() {
        let owned: Values = vec![Box::from("a"), Box::from("bc")].into_boxed_slice();
        let values = ["a", "bc"];
        let s = hashbrown::DefaultHashBuilder::default();
        assert_eq!(s.hash_one(&owned), s.hash_one(ValuesRef(&values)));
        assert!(ValuesRef(&values).equivalent(&owned));
    }
}
