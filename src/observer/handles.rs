//! Metric handles, and the one place that registers and describes them.
//!
//! metrics-rs's rule, kept everywhere: a handle is registered once (when its label set is
//! first seen) and kept; the hot path only calls it. With the observer's own registry the
//! handle is the registry's storage itself, called without dynamic dispatch; with any other
//! recorder it is the `metrics` facade handle. Each registration also describes its metric
//! from the [`METRICS`](crate::names::METRICS) table (describing is idempotent), so help
//! texts and units are written once, next to the names.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label};

use super::backend::RecorderSource;
use crate::names;
use crate::registry::storage::Exemplar;
use crate::registry::{AtomicGauge, AtomicHistogram};

/// Most overflow label sets of one metric past its limit. An overflow label set keeps only
/// values from bounded domains (status, error type, method), so this is a last resort: past
/// it those fold into `_OTHER` too. The registry leaves the crate's metrics this much room
/// above the limit.
pub(crate) const MAX_OVERFLOW_LABEL_SETS: usize = 256;

/// The trace and span IDs an exemplar points to.
pub(crate) type ExemplarIds = ([u8; 16], [u8; 8]);

/// A histogram: our own storage, called directly, or any recorder's, through the facade.
#[derive(Debug)]
pub(crate) enum HistogramHandle {
    Builtin(Arc<AtomicHistogram>),
    Facade(Histogram),
}

impl HistogramHandle {
    #[inline]
    pub(crate) fn record(&self, value: f64) {
        match self {
            HistogramHandle::Builtin(h) => h.observe(value),
            HistogramHandle::Facade(h) => h.record(value),
        }
    }

    /// Records `exemplar.value`, keeping the exemplar where the storage can (the `metrics`
    /// facade has no place for one).
    pub(crate) fn record_with_exemplar(&self, exemplar: Exemplar) {
        match self {
            HistogramHandle::Builtin(h) => h.observe_with_exemplar(exemplar.value, exemplar),
            HistogramHandle::Facade(h) => h.record(exemplar.value),
        }
    }

    /// A handle that records nowhere.
    pub(crate) fn noop() -> Self {
        HistogramHandle::Facade(Histogram::noop())
    }
}

/// A gauge, like [`HistogramHandle`].
#[derive(Debug)]
pub(crate) enum GaugeHandle {
    Builtin(Arc<AtomicGauge>),
    Facade(Gauge),
}

impl GaugeHandle {
    #[inline]
    pub(crate) fn add(&self, delta: f64) {
        match self {
            GaugeHandle::Builtin(g) => metrics::GaugeFn::increment(&**g, delta),
            GaugeHandle::Facade(g) => g.increment(delta),
        }
    }

    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn set(&self, value: f64) {
        match self {
            GaugeHandle::Builtin(g) => metrics::GaugeFn::set(&**g, value),
            GaugeHandle::Facade(g) => g.set(value),
        }
    }

    /// A handle that records nowhere.
    pub(crate) fn noop() -> Self {
        GaugeHandle::Facade(Gauge::noop())
    }

    /// The gauge's value, when it lives in the built-in registry (a facade gauge cannot be
    /// read back).
    pub(crate) fn value(&self) -> Option<f64> {
        match self {
            GaugeHandle::Builtin(g) => Some(g.get()),
            GaugeHandle::Facade(_) => None,
        }
    }
}

fn metadata() -> metrics::Metadata<'static> {
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

/// A metric key from label names and values (registration only, so owning them is free).
pub(crate) fn key(name: &'static str, labels: &[(&str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

/// Counts one recording into an overflow entry (`None` for a regular entry).
#[inline]
pub(crate) fn count_overflow(overflow: &Option<Counter>) {
    if let Some(counter) = overflow {
        counter.increment(1);
    }
}

/// The key of an entry of a bounded family: with `otel_metric_overflow="true"` when the entry
/// is the family's overflow (`overflow` is its counter).
#[allow(dead_code)] // used by optional capabilities
pub(crate) fn entry_key(
    name: &'static str,
    labels: &[(&str, &str)],
    overflow: &Option<Counter>,
) -> Key {
    let mut key = key(name, labels);
    if overflow.is_some() {
        key = key.with_extra_labels(vec![Label::from_static_parts(
            names::OTEL_METRIC_OVERFLOW,
            "true",
        )]);
    }
    key
}

/// Describes `name` from the metrics table, on whatever recorder `source` reaches.
fn describe(source: &dyn RecorderSource, name: &str) {
    let Some(spec) = names::spec_of(name) else {
        return;
    };
    source.with(&mut |r| {
        let (key, help) = (spec.name.into(), spec.help.into());
        match spec.kind {
            names::Kind::Counter => r.describe_counter(key, spec.unit, help),
            names::Kind::Gauge => r.describe_gauge(key, spec.unit, help),
            names::Kind::Histogram(_) => r.describe_histogram(key, spec.unit, help),
        }
    });
}

/// Registers a histogram, on our own storage when the recorder is our registry.
pub(crate) fn histogram(source: &dyn RecorderSource, key: &Key) -> HistogramHandle {
    describe(source, key.name());
    if let Some(storage) = source.registry().and_then(|reg| reg.histogram_storage(key)) {
        return HistogramHandle::Builtin(storage);
    }
    let mut handle = HistogramHandle::noop();
    source.with(&mut |r| handle = HistogramHandle::Facade(r.register_histogram(key, &metadata())));
    handle
}

/// Registers a gauge, like [`histogram`].
pub(crate) fn gauge(source: &dyn RecorderSource, key: &Key) -> GaugeHandle {
    describe(source, key.name());
    if let Some(storage) = source.registry().and_then(|reg| reg.gauge_storage(key)) {
        return GaugeHandle::Builtin(storage);
    }
    let mut handle = GaugeHandle::noop();
    source.with(&mut |r| handle = GaugeHandle::Facade(r.register_gauge(key, &metadata())));
    handle
}

/// Registers a counter.
pub(crate) fn counter(source: &dyn RecorderSource, key: &Key) -> Counter {
    describe(source, key.name());
    let mut handle = Counter::noop();
    source.with(&mut |r| handle = r.register_counter(key, &metadata()));
    handle
}

/// `tower_observe_cardinality_overflow_total{metric}`: recordings of `metric` that went into
/// its overflow series.
pub(crate) fn overflow_counter(source: &dyn RecorderSource, metric: &'static str) -> Counter {
    counter(
        source,
        &key(names::CARDINALITY_OVERFLOW, &[("metric", metric)]),
    )
}
