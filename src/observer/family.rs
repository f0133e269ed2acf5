//! Bounded label families for the metrics whose label values come from outside the code:
//! upstream hosts, retry reasons, cache and pool names, backend names.
//!
//! A family maps label values to whatever one label set records into (metric handles plus the
//! counters `/v1/stats` reads), registering it once. Past its limit, new label sets share one
//! entry whose values are all `_OTHER`, and the overflow is counted, so a hostile or buggy input
//! (a host name taken from a request, a model name from a JSON body) cannot mint series.

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

/// One metric family's label sets, at most `limit` of them.
#[derive(Debug)]
pub(crate) struct Family<T> {
    /// The metric named in `tower_observe_cardinality_overflow_total{metric}`.
    metric: &'static str,
    limit: usize,
    entries: RwLock<HashMap<Values, Arc<T>>>,
    overflow: OnceLock<Arc<T>>,
    overflow_count: OnceLock<Counter>,
}

impl<T> Family<T> {
    pub(crate) fn new(metric: &'static str, limit: usize) -> Self {
        Self {
            metric,
            limit: limit.max(1),
            entries: RwLock::new(HashMap::new()),
            overflow: OnceLock::new(),
            overflow_count: OnceLock::new(),
        }
    }

    /// The entry of `values`, created by `make` (with the sanitised values) on first use.
    ///
    /// The values used for a new entry are sanitised; a lookup with unsanitised values that
    /// differ from their sanitised form (control characters, over-long) misses the fast path
    /// and is resolved under the write lock, which stays correct.
    pub(crate) fn get(
        &self,
        source: &dyn RecorderSource,
        values: &[&str],
        make: impl FnOnce(&[&str]) -> T,
    ) -> Arc<T> {
        if let Some(entry) = read(&self.entries).get(&ValuesRef(values)) {
            return entry.clone();
        }
        let sanitised: Vec<std::borrow::Cow<'_, str>> =
            values.iter().map(|v| sanitize_label_value(v)).collect();
        let clean: Vec<&str> = sanitised.iter().map(|v| &**v).collect();
        let mut entries = write(&self.entries);
        if let Some(entry) = entries.get(&ValuesRef(&clean)) {
            return entry.clone();
        }
        if entries.len() >= self.limit {
            drop(entries);
            self.count_overflow(source);
            let others = vec![OTHER; values.len()];
            return self
                .overflow
                .get_or_init(|| Arc::new(make(&others)))
                .clone();
        }
        let entry = Arc::new(make(&clean));
        entries.insert(
            clean.iter().map(|v| Box::<str>::from(*v)).collect(),
            entry.clone(),
        );
        entry
    }

    /// Every entry with its label values (the overflow entry last, if any), for `/v1/stats`.
    #[cfg(any(
        feature = "tonic",
        feature = "retry",
        feature = "cache",
        feature = "pool"
    ))]
    pub(crate) fn entries(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let mut out: Vec<(Vec<String>, Arc<T>)> = read(&self.entries)
            .iter()
            .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(overflow) = self.overflow.get() {
            out.push((vec![OTHER.to_owned()], overflow.clone()));
        }
        out
    }

    fn count_overflow(&self, source: &dyn RecorderSource) {
        self.overflow_count
            .get_or_init(|| handles::overflow_counter(source, self.metric))
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn borrowed_and_owned_values_hash_alike() {
        let owned: Values = vec![Box::from("a"), Box::from("bc")].into_boxed_slice();
        let values = ["a", "bc"];
        let s = hashbrown::DefaultHashBuilder::default();
        assert_eq!(s.hash_one(&owned), s.hash_one(ValuesRef(&values)));
        assert!(ValuesRef(&values).equivalent(&owned));
    }
}
