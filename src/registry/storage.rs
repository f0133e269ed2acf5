//! Lock-free storage behind the handles our recorder hands out.
//!
//! Memory is fixed at registration: a histogram is a bucket array, never a list of samples,
//! so nothing grows between scrapes however rarely Prometheus comes by.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{CounterFn, GaugeFn, HistogramFn};

use super::native::{NativeCells, NativeConfig, NativeSnapshot};

/// A monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounter(AtomicU64);

impl AtomicCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Relaxed);
    }
}

/// A gauge holding an `f64` as bits.
#[derive(Debug, Default)]
pub(crate) struct AtomicGauge(AtomicU64);

impl AtomicGauge {
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    /// Raises the value to `value` if that is larger (a float counter set from an absolute
    /// total never goes back); NaN is ignored.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn fetch_max(&self, value: f64) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |bits| {
            (value > f64::from_bits(bits)).then_some(value.to_bits())
        });
    }
}

pub(super) fn add_f64(cell: &AtomicU64, delta: f64) {
    // `fetch_update` retries on contention; the closure never returns `None`.
    let _ = cell.fetch_update(Relaxed, Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

impl GaugeFn for AtomicGauge {
    fn increment(&self, value: f64) {
        add_f64(&self.0, value);
    }

    fn decrement(&self, value: f64) {
        add_f64(&self.0, -value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Relaxed);
    }
}

/// Upper bounds of a histogram's buckets, with their `le` label values pre-formatted.
#[derive(Debug)]
pub(crate) struct Buckets {
    pub(crate) bounds: Box<[f64]>,
    pub(crate) le_labels: Box<[String]>,
}

impl Buckets {
    /// Sorts, de-duplicates and drops non-finite bounds (`+Inf` is always implied).
    pub(crate) fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let le_labels = bounds
            .iter()
            .map(|b| {
                let mut s = String::new();
                super::render::push_f64(&mut s, *b);
                s
            })
            .collect();
        Self {
            bounds: bounds.into_boxed_slice(),
            le_labels,
        }
    }
}

/// The trace of one observation, shown next to its bucket in OpenMetrics output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) value: f64,
    /// Seconds since the Unix epoch.
    pub(crate) timestamp: f64,
}

/// The latest exemplar of each bucket. Allocated on the first exemplar; written with
/// `try_lock`, so a contended slot skips an exemplar rather than making a request wait.
type ExemplarSlots = Box<[Mutex<Option<Exemplar>>]>;

/// A fixed-bucket histogram: per-bucket counts (not cumulative) plus the sum; or, when it is
/// also recorded as a native histogram, cells that hold both (see [`NativeCells`]).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    pub(crate) buckets: Arc<Buckets>,
    /// One more than `buckets.bounds`: the last slot is the `+Inf` overflow. Empty when
    /// `native` holds the counts.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    native: Option<Box<NativeCells>>,
    exemplars: OnceLock<ExemplarSlots>,
}

impl AtomicHistogram {
    #[cfg(test)]
    pub(crate) fn new(buckets: Arc<Buckets>) -> Self {
        Self::with_native(buckets, None)
    }

    /// A histogram recorded in classic buckets and, with `native`, in native buckets too.
    pub(crate) fn with_native(buckets: Arc<Buckets>, native: Option<NativeConfig>) -> Self {
        let len = buckets.bounds.len() + 1;
        let native = native.map(|config| Box::new(NativeCells::new(len, config)));
        let counts = if native.is_some() { 0 } else { len };
        Self {
            buckets,
            counts: (0..counts).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            native,
            exemplars: OnceLock::new(),
        }
    }

    /// A consistent reading of the native histogram (`false`, untouched, for a classic one).
    pub(crate) fn native_snapshot(&self, out: &mut NativeSnapshot) -> bool {
        match &self.native {
            Some(native) => {
                native.snapshot(out);
                true
            }
            None => false,
        }
    }

    /// Whether it is also recorded as a native histogram.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    #[inline]
    pub(crate) fn observe(&self, value: f64) {
        self.observe_at(value);
    }

    /// Records `value` and returns its bucket index (`None` for NaN, which is dropped).
    #[inline]
    fn observe_at(&self, value: f64) -> Option<usize> {
        if value.is_nan() {
            return None;
        }
        let index = self.buckets.bounds.partition_point(|b| *b < value);
        match &self.native {
            None => {
                self.counts[index].fetch_add(1, Relaxed);
                add_f64(&self.sum, value);
            }
            Some(native) => native.observe(value, index),
        }
        Some(index)
    }

    /// Records `value` and keeps `exemplar` as its bucket's latest exemplar.
    pub(crate) fn observe_with_exemplar(&self, value: f64, exemplar: Exemplar) {
        let Some(index) = self.observe_at(value) else {
            return;
        };
        let slots = self.exemplars.get_or_init(|| {
            (0..=self.buckets.bounds.len())
                .map(|_| Mutex::new(None))
                .collect()
        });
        if let Some(Ok(mut slot)) = slots.get(index).map(Mutex::try_lock) {
            *slot = Some(exemplar);
        }
    }

    /// The latest exemplar of bucket `index`, if any.
    pub(crate) fn exemplar(&self, index: usize) -> Option<Exemplar> {
        let slot = self.exemplars.get()?.get(index)?;
        match slot.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Writes the cumulative count of each bucket (the last one is `+Inf`) and returns the sum.
    pub(crate) fn snapshot_into(&self, cumulative: &mut Vec<u64>) -> f64 {
        if let Some(native) = &self.native {
            return native.classic_into(cumulative);
        }
        cumulative.clear();
        let mut running = 0u64;
        for c in self.counts.iter() {
            running += c.load(Relaxed);
            cumulative.push(running);
        }
        f64::from_bits(self.sum.load(Relaxed))
    }
}

impl HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        self.observe(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_semantics_and_inf() {
        let h = AtomicHistogram::new(Arc::new(Buckets::new(&[1.0, 0.5, 2.0, f64::INFINITY])));
        for v in [0.5, 0.7, 1.0, 3.0, f64::NAN] {
            h.observe(v);
        }
        let mut cum = Vec::new();
        let sum = h.snapshot_into(&mut cum);
        assert_eq!(cum, vec![1, 3, 3, 4]);
        assert_eq!(sum, 5.2);
    }

    #[test]
    fn exemplars_land_in_their_bucket_and_the_latest_wins() {
        let h = AtomicHistogram::new(Arc::new(Buckets::new(&[0.1, 1.0])));
        assert_eq!(h.exemplar(0), None);
        let ex = |v: f64, n: u8| Exemplar {
            trace_id: [n; 16],
            span_id: [n; 8],
            value: v,
            timestamp: 1.5,
        };
        h.observe_with_exemplar(0.05, ex(0.05, 1));
        h.observe_with_exemplar(0.07, ex(0.07, 2));
        h.observe_with_exemplar(5.0, ex(5.0, 3));
        assert_eq!(h.exemplar(0), Some(ex(0.07, 2)));
        assert_eq!(h.exemplar(1), None);
        assert_eq!(h.exemplar(2), Some(ex(5.0, 3)));
        let mut cum = Vec::new();
        h.snapshot_into(&mut cum);
        assert_eq!(cum, vec![2, 2, 3]);
    }

    #[test]
    fn gauge_up_down() {
        let g = AtomicGauge::default();
        g.increment(2.0);
        g.decrement(0.5);
        assert_eq!(g.get(), 1.5);
        g.set(-3.0);
        assert_eq!(g.get(), -3.0);
    }

    #[test]
    fn float_counter_cell_only_rises() {
        let g = AtomicGauge::default();
        g.fetch_max(1.25);
        g.fetch_max(0.5);
        g.fetch_max(f64::NAN);
        assert_eq!(g.get(), 1.25);
        g.fetch_max(2.5);
        assert_eq!(g.get(), 2.5);
    }

    #[test]
    fn counter_absolute_never_goes_back() {
        let c = AtomicCounter::default();
        c.increment(5);
        c.absolute(3);
        assert_eq!(c.get(), 5);
        c.absolute(9);
        assert_eq!(c.get(), 9);
    }
}
