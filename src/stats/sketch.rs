//! A lock-free, bounded-memory latency sketch with a fixed relative error.
//!
//! Durations (in nanoseconds) fall into log-linear buckets: every power-of-two range
//! ("octave") is split into 64 equal buckets, so a bucket is at most 1/64 of its lower
//! bound wide. Reporting a bucket's midpoint is then off by at most half of that: a
//! **relative error of at most 1/128 (0.79 %)** on every quantile, whatever the number of
//! samples. Values below 64 ns are kept exactly. An octave's bucket array is allocated the
//! first time a value lands in it (about 6 octaves for typical web latencies, 512 bytes
//! each), so memory never depends on the request count. Min, max, count and sum are exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Slot 0 holds 0..64 ns exactly; slot `s >= 1` holds the octave `[2^(s+5), 2^(s+6))`.
const SLOTS: usize = 64 - SUB_BITS as usize + 1;

/// The largest relative error of a reported quantile.
pub const RELATIVE_ERROR: f64 = 1.0 / (2 * SUB) as f64;

type Octave = Box<[AtomicU64; SUB]>;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct LatencySketch {
    /// Sum in microseconds: nanoseconds would overflow `u64` after a few days of heavy load.
    sum_micros: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
    slots: [OnceLock<Octave>; SLOTS],
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self {
            sum_micros: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
            slots: [const { OnceLock::new() }; SLOTS],
        }
    }
}

fn position(nanos: u64) -> (usize, usize) {
    if nanos < SUB as u64 {
        return (0, nanos as usize);
    }
    let exp = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exp - SUB_BITS)) as usize - SUB;
    ((exp - SUB_BITS + 1) as usize, sub)
}

/// The midpoint of a bucket, in nanoseconds.
fn representative(slot: usize, sub: usize) -> f64 {
    if slot == 0 {
        return sub as f64;
    }
    let shift = slot as u32 - 1;
    let lower = ((SUB + sub) as u64) << shift;
    let width = 1u64 << shift;
    lower as f64 + (width - 1) as f64 / 2.0
}

impl LatencySketch {
    /// Empties the sketch in place (handles to it stay valid). A recording racing with the
    /// reset may survive it in part (its bucket but not its sum); that is the only skew.
    pub(crate) fn reset(&self) {
        self.sum_micros.store(0, Relaxed);
        self.min_nanos.store(u64::MAX, Relaxed);
        self.max_nanos.store(0, Relaxed);
        for octave in self.slots.iter().filter_map(OnceLock::get) {
            for c in octave.iter() {
                c.store(0, Relaxed);
            }
        }
    }

    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        self.sum_micros.fetch_add((nanos + 500) / 1000, Relaxed);
        if nanos < self.min_nanos.load(Relaxed) {
            self.min_nanos.fetch_min(nanos, Relaxed);
        }
        if nanos > self.max_nanos.load(Relaxed) {
            self.max_nanos.fetch_max(nanos, Relaxed);
        }
        let (slot, sub) = position(nanos);
        let octave =
            self.slots[slot].get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        octave[sub].fetch_add(1, Relaxed);
    }

    /// Adds this sketch's current contents to `data` (sketches merge by adding buckets).
    pub(crate) fn read_into(&self, data: &mut SketchData) {
        let mut total = 0u64;
        for (slot, octave) in self.slots.iter().enumerate() {
            if let Some(octave) = octave.get() {
                for (sub, c) in octave.iter().enumerate() {
                    let c = c.load(Relaxed);
                    if c > 0 {
                        total += c;
                        *data.buckets.entry((slot * SUB + sub) as u16).or_default() += c;
                    }
                }
            }
        }
        if total == 0 {
            return;
        }
        // Read the buckets first: `count` may run ahead of them while requests land, never
        // behind, so quantile ranks always find their bucket.
        data.count += total;
        data.sum_micros += self.sum_micros.load(Relaxed);
        data.min_nanos = data.min_nanos.min(self.min_nanos.load(Relaxed));
        data.max_nanos = data.max_nanos.max(self.max_nanos.load(Relaxed));
    }
}

/// The contents of one or more merged sketches.
#[derive(Debug, Clone)]
pub(crate) struct SketchData {
    count: u64,
    sum_micros: u64,
    min_nanos: u64,
    max_nanos: u64,
    buckets: std::collections::BTreeMap<u16, u64>,
}

impl Default for SketchData {
    fn default() -> Self {
        Self {
            count: 0,
            sum_micros: 0,
            min_nanos: u64::MAX,
            max_nanos: 0,
            buckets: Default::default(),
        }
    }
}

// Single-threaded recording and the byte encoding serve the history store.
#[allow(dead_code)] // used by optional capabilities
impl SketchData {
    /// Adds one value (for single-threaded aggregation, such as history rollups).
    pub(crate) fn record(&mut self, nanos: u64) {
        self.count += 1;
        self.sum_micros += (nanos + 500) / 1000;
        self.min_nanos = self.min_nanos.min(nanos);
        self.max_nanos = self.max_nanos.max(nanos);
        let (slot, sub) = position(nanos);
        *self.buckets.entry((slot * SUB + sub) as u16).or_default() += 1;
    }

    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Appends a compact encoding (LEB128 varints; bucket indexes delta-coded).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.count,
            self.sum_micros,
            self.min_nanos,
            self.max_nanos,
            self.buckets.len() as u64,
        ] {
            put_varint(out, v);
        }
        let mut previous = 0u16;
        for (&index, &count) in &self.buckets {
            put_varint(out, u64::from(index - previous));
            put_varint(out, count);
            previous = index;
        }
    }

    /// Reads what [`encode`](Self::encode) wrote, advancing `input`; `None` if malformed.
    pub(crate) fn decode(input: &mut &[u8]) -> Option<Self> {
        let mut next = || get_varint(input);
        let (count, sum_micros, min_nanos, max_nanos, n) =
            (next()?, next()?, next()?, next()?, next()?);
        let mut buckets = std::collections::BTreeMap::new();
        let mut index = 0u64;
        for _ in 0..n.min(SLOTS as u64 * SUB as u64) {
            index += get_varint(input)?;
            let count = get_varint(input)?;
            buckets.insert(u16::try_from(index).ok()?, count);
        }
        Some(Self {
            count,
            sum_micros,
            min_nanos,
            max_nanos,
            buckets,
        })
    }

    /// Merges `other` into `self`.
    pub(crate) fn merge(&mut self, other: &SketchData) {
        self.count += other.count;
        self.sum_micros += other.sum_micros;
        self.min_nanos = self.min_nanos.min(other.min_nanos);
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        for (k, v) in &other.buckets {
            *self.buckets.entry(*k).or_default() += v;
        }
    }

    /// Answers every quantile in `quantiles` (ascending, in 0..=1); `None` when empty.
    pub(crate) fn summary(&self, quantiles: &[f64]) -> Option<Summary> {
        if self.count == 0 {
            return None;
        }
        let total: u64 = self.buckets.values().sum();
        let min = self.min_nanos as f64;
        let max = self.max_nanos as f64;
        let mut values = Vec::with_capacity(quantiles.len());
        let mut seen = 0u64;
        let mut iter = self.buckets.iter();
        let mut current = None;
        for q in quantiles {
            let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
            while seen < rank {
                match iter.next() {
                    Some((&index, &c)) => {
                        seen += c;
                        let index = usize::from(index);
                        current = Some(representative(index / SUB, index % SUB));
                    }
                    None => break,
                }
            }
            values.push(current.unwrap_or(max).clamp(min, max));
        }
        Some(Summary {
            count: self.count,
            sum_micros: self.sum_micros,
            min_nanos: min,
            max_nanos: max,
            quantile_nanos: values,
        })
    }
}

#[allow(dead_code)] // used by optional capabilities
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[allow(dead_code)] // used by optional capabilities
pub(crate) fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// One read of a [`LatencySketch`].
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) sum_micros: u64,
    pub(crate) min_nanos: f64,
    pub(crate) max_nanos: f64,
    pub(crate) quantile_nanos: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_merges() {
        let mut a = SketchData::default();
        for v in [0u64, 63, 64, 1_000, 12_345_678, u64::MAX / 3] {
            a.record(v);
        }
        let mut bytes = Vec::new();
        a.encode(&mut bytes);
        let mut input = &bytes[..];
        let b = SketchData::decode(&mut input).unwrap();
        assert!(input.is_empty());
        assert_eq!(
            (b.count, b.sum_micros, b.min_nanos, b.max_nanos),
            (a.count, a.sum_micros, a.min_nanos, a.max_nanos)
        );
        assert_eq!(b.buckets, a.buckets);
        assert!(SketchData::decode(&mut &bytes[..bytes.len() - 1]).is_none());
    }

    fn exact_quantile(sorted: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1] as f64
    }

    #[test]
    fn position_and_representative_agree() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1_000,
            999_999,
            12_345_678_901,
            u64::MAX,
        ] {
            let (slot, sub) = position(v);
            assert!(slot < SLOTS && sub < SUB, "{v}");
            let rep = representative(slot, sub);
            let err = (rep - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= RELATIVE_ERROR, "{v}: {rep} err {err}");
        }
    }

    #[test]
    fn quantiles_within_stated_error_on_known_distributions() {
        // Uniform, exponential-ish and bimodal latencies from 50 µs to 30 s.
        let mut rng = fastrand::Rng::with_seed(7);
        let distributions: Vec<Vec<u64>> = vec![
            (0..20_000).map(|_| rng.u64(50_000..200_000_000)).collect(),
            (0..20_000)
                .map(|_| (-(rng.f64().max(1e-12)).ln() * 20e6) as u64 + 1)
                .collect(),
            (0..20_000)
                .map(|i| {
                    if i % 10 == 0 {
                        rng.u64(1_000_000_000..30_000_000_000)
                    } else {
                        rng.u64(1_000_000..3_000_000)
                    }
                })
                .collect(),
        ];
        let qs = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];
        for mut samples in distributions {
            let sketch = LatencySketch::default();
            for &s in &samples {
                sketch.record(s);
            }
            samples.sort_unstable();
            let mut data = SketchData::default();
            sketch.read_into(&mut data);
            let summary = data.summary(&qs).expect("samples recorded");
            assert_eq!(summary.count, samples.len() as u64);
            assert_eq!(summary.min_nanos, samples[0] as f64);
            assert_eq!(summary.max_nanos, *samples.last().unwrap() as f64);
            for (q, got) in qs.iter().zip(&summary.quantile_nanos) {
                let want = exact_quantile(&samples, *q);
                let err = (got - want).abs() / want;
                assert!(
                    err <= RELATIVE_ERROR,
                    "q={q}: got {got}, want {want}, err {err}"
                );
            }
        }
    }

    #[test]
    fn empty_sketch_has_no_summary() {
        let mut data = SketchData::default();
        LatencySketch::default().read_into(&mut data);
        assert!(data.summary(&[0.5]).is_none());
    }

    #[test]
    fn merged_sketches_answer_like_one() {
        let (a, b, both) = (
            LatencySketch::default(),
            LatencySketch::default(),
            LatencySketch::default(),
        );
        for v in 1..=10_000u64 {
            let nanos = v * 1_000;
            if v % 3 == 0 {
                a.record(nanos)
            } else {
                b.record(nanos)
            }
            both.record(nanos);
        }
        let (mut merged, mut single, mut part) = (
            SketchData::default(),
            SketchData::default(),
            SketchData::default(),
        );
        a.read_into(&mut merged);
        b.read_into(&mut part);
        merged.merge(&part);
        both.read_into(&mut single);
        let qs = [0.5, 0.99];
        let (m, s) = (merged.summary(&qs).unwrap(), single.summary(&qs).unwrap());
        assert_eq!(m.quantile_nanos, s.quantile_nanos);
        assert_eq!(
            (m.count, m.min_nanos, m.max_nanos),
            (s.count, s.min_nanos, s.max_nanos)
        );
    }

    #[test]
    fn memory_is_bounded_by_octaves_not_samples() {
        let sketch = LatencySketch::default();
        for i in 0..1_000_000u64 {
            sketch.record(1_000_000 + (i % 1000) * 1000);
        }
        let allocated = sketch.slots.iter().filter(|s| s.get().is_some()).count();
        assert!(allocated <= 2, "{allocated} octaves for 1..2 ms");
    }
}
