//! Prometheus native histograms: sparse exponential buckets recorded beside the classic ones.
//!
//! A bucket of schema `s` with index `i` holds the values in `(2^((i-1)·2^-s), 2^(i·2^-s)]`
//! (the sign is kept apart, values within the zero threshold go to the zero bucket), as in
//! Prometheus and OpenTelemetry's exponential histograms (where the schema is the *scale*).
//!
//! **Recording** is lock-free, like the Go client's: the cells come in two halves, *hot* and
//! *cold*. An observation takes a ticket (one `fetch_add` that also says which half is hot),
//! adds to that half's classic bucket, sum and native bucket, and marks itself done. The
//! native buckets of a half are a contiguous window of atomic counters; an index outside the
//! window (or a bucket count past the limit) goes to a small spill list and asks for a
//! consolidation.
//!
//! **Consolidation** (at each protobuf scrape, and when the window no longer fits) takes the
//! series' mutex, makes the hot half cold, waits for the observations in flight there to
//! finish (nanoseconds), and then has a quiescent half holding every observation so far: it
//! reads it (a consistent snapshot: count, sum, classic and native buckets agree), lowers the
//! schema while more buckets are populated than the limit (merging pairs of buckets, as the
//! Go client's `doubleBucketWidth`), moves the window to cover the data, swaps the halves back
//! and folds in what arrived meanwhile. A request never waits for it: a recording that needs
//! a consolidation only tries the mutex.
//!
//! Memory is bounded per series: two windows of at most twice the bucket limit (positive and
//! negative values), sized to the range actually observed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use arc_swap::ArcSwap;

use crate::sync::lock;

/// The lowest schema (resolution) of a native histogram: each bucket 2^16 times the previous.
pub const NATIVE_MIN_SCHEMA: i8 = -4;
/// The highest schema: 256 buckets per power of two.
pub const NATIVE_MAX_SCHEMA: i8 = 8;
/// The default schema, 3: 8 buckets per power of two, each about 9 % wider than the previous
/// (the Go client's default `NativeHistogramBucketFactor` of 1.1 gives the same).
pub const NATIVE_DEFAULT_SCHEMA: i8 = 3;
/// The default most populated buckets per native histogram (as the Go client's typical
/// setting and OpenTelemetry's exponential histograms' default).
pub const NATIVE_DEFAULT_MAX_BUCKETS: u32 = 160;
/// Values of at most this magnitude count in the zero bucket: 2^-128, the Go client's default.
pub const NATIVE_ZERO_THRESHOLD: f64 = f64::from_bits((1023 - 128) << 52);

/// How a histogram records its native buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NativeConfig {
    pub(crate) schema: i8,
    pub(crate) max_buckets: u32,
}

impl Default for NativeConfig {
    fn default() -> Self {
        Self {
            schema: NATIVE_DEFAULT_SCHEMA,
            max_buckets: NATIVE_DEFAULT_MAX_BUCKETS,
        }
    }
}

impl NativeConfig {
    /// The widest a window may grow, in buckets, before the schema is lowered.
    fn max_span(self) -> i64 {
        (2 * i64::from(self.max_buckets)).max(16)
    }
}

const HOT_BIT: u64 = 1 << 63;
/// Most distinct entries in a half's spill list; past it an observation lands in the
/// nearest bucket of the window (only if consolidations kept failing to get the mutex).
const MAX_SPILL: usize = 1024;

/// The bucket index of `magnitude` (> the zero threshold) at `schema`.
#[inline]
pub(crate) fn bucket_index(magnitude: f64, schema: i32) -> i32 {
    let v = if magnitude.is_finite() {
        magnitude
    } else {
        f64::MAX
    };
    // frexp: v = frac · 2^exp with frac in [0.5, 1); v is normal (above 2^-128).
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    if schema > 0 {
        let bounds = bounds(schema);
        let within = bounds.partition_point(|b| *b < frac) as i32;
        within + (exp - 1) * bounds.len() as i32
    } else {
        // An exact power of two is the upper bound of the bucket below.
        let key = if frac == 0.5 { exp - 1 } else { exp };
        let shift = -schema;
        (key + (1 << shift) - 1) >> shift
    }
}

/// `2^(m/2^s - 1)` for `m` in `0..2^s`: the bucket bounds within `[0.5, 1)` at schema `s > 0`.
fn bounds(schema: i32) -> &'static [f64] {
    static TABLES: OnceLock<Vec<Box<[f64]>>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        (1..=i32::from(NATIVE_MAX_SCHEMA))
            .map(|s| {
                let k = 1u32 << s;
                (0..k)
                    .map(|m| (f64::from(m) / f64::from(k) - 1.0).exp2())
                    .collect()
            })
            .collect()
    });
    &tables[(schema.clamp(1, i32::from(NATIVE_MAX_SCHEMA)) - 1) as usize]
}

/// The index at `schema - shift` of the bucket `index` at `schema` (buckets merge in pairs
/// per step: `ceil(index / 2^shift)`).
#[inline]
fn reduce(index: i32, shift: i32) -> i32 {
    if shift <= 0 {
        return index;
    }
    let shift = shift.min(31);
    ((i64::from(index) + (1i64 << shift) - 1) >> shift) as i32
}

/// A contiguous run of bucket counters: bucket `offset + i` is `slots[i]`.
#[derive(Debug, Default)]
struct Window {
    offset: i32,
    slots: Box<[AtomicU64]>,
}

impl Window {
    #[inline]
    fn slot(&self, index: i32) -> Option<&AtomicU64> {
        let at = i64::from(index) - i64::from(self.offset);
        usize::try_from(at).ok().and_then(|at| self.slots.get(at))
    }

    fn covers(&self, lo: i32, hi: i32) -> bool {
        self.slot(lo).is_some() && self.slot(hi).is_some()
    }

    /// An empty window of `len` slots starting at `offset`.
    fn empty(offset: i32, len: usize) -> Self {
        Self {
            offset,
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Appends its populated buckets (ascending) to `out`.
    fn read_into(&self, out: &mut Vec<(i32, u64)>) {
        for (i, slot) in self.slots.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            if n > 0 {
                out.push((self.offset + i as i32, n));
            }
        }
    }
}

/// The bucket schema and windows of one half. Replaced only while the half is cold and
/// quiescent.
#[derive(Debug, Default)]
struct Layout {
    schema: i32,
    positive: Window,
    negative: Window,
}

impl Layout {
    /// An empty layout with the same schema and windows as `self`.
    fn empty_copy(&self) -> Self {
        Self {
            schema: self.schema,
            positive: Window::empty(self.positive.offset, self.positive.slots.len()),
            negative: Window::empty(self.negative.offset, self.negative.slots.len()),
        }
    }
}

/// One half of the cells. `done` counts the observations finished in it.
#[derive(Debug)]
struct Half {
    done: AtomicU64,
    sum: AtomicU64,
    zero: AtomicU64,
    classic: Box<[AtomicU64]>,
    layout: ArcSwap<Layout>,
    /// Populated native buckets (window slots that went from 0 to 1), for the limit.
    populated: AtomicUsize,
    /// Native buckets outside the window: `(negative, index, count)` at the layout's schema.
    spill: Mutex<Vec<(bool, i32, u64)>>,
}

impl Half {
    fn new(classic_len: usize, schema: i32) -> Self {
        Self {
            done: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            zero: AtomicU64::new(0),
            classic: (0..classic_len).map(|_| AtomicU64::new(0)).collect(),
            layout: ArcSwap::from_pointee(Layout {
                schema,
                ..Layout::default()
            }),
            populated: AtomicUsize::new(0),
            spill: Mutex::new(Vec::new()),
        }
    }

    fn push_spill(&self, negative: bool, index: i32, count: u64, layout: &Layout) {
        let mut spill = lock(&self.spill);
        if let Some(entry) = spill
            .iter_mut()
            .find(|(n, i, _)| *n == negative && *i == index)
        {
            entry.2 += count;
            return;
        }
        if spill.len() >= MAX_SPILL {
            let window = if negative {
                &layout.negative
            } else {
                &layout.positive
            };
            if let Some(last) = window.slots.len().checked_sub(1) {
                let at = i64::from(index) - i64::from(window.offset);
                let at = at.clamp(0, last as i64) as usize;
                window.slots[at].fetch_add(count, Ordering::Relaxed);
                return;
            }
        }
        spill.push((negative, index, count));
    }
}

/// A consistent reading of a native histogram (and its classic buckets).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct NativeSnapshot {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) zero_count: u64,
    /// Observations (NaN is dropped, as by the classic buckets).
    pub(crate) count: u64,
    pub(crate) sum: f64,
    /// Per classic bucket (not cumulative); the last is `+Inf`.
    pub(crate) classic: Vec<u64>,
    /// Populated positive buckets `(index, count)`, ascending.
    pub(crate) positive: Vec<(i32, u64)>,
    /// Populated negative buckets `(index, count)`, ascending by index (by magnitude).
    pub(crate) negative: Vec<(i32, u64)>,
}

impl NativeSnapshot {
    /// Lowers the resolution to `schema` (merging buckets as a consolidation does); nothing
    /// when the snapshot's schema is already that low.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn downscale(&mut self, schema: i32) {
        let shift = self.schema - schema;
        if shift <= 0 {
            return;
        }
        for list in [&mut self.positive, &mut self.negative] {
            for entry in list.iter_mut() {
                entry.0 = reduce(entry.0, shift);
            }
            normalize(list);
        }
        self.schema = schema;
    }
}

/// The cells of a histogram recorded both ways: classic buckets and native buckets.
#[derive(Debug)]
pub(crate) struct NativeCells {
    config: NativeConfig,
    /// Tickets taken (low 63 bits) and which half is hot (top bit).
    tickets: AtomicU64,
    halves: [Half; 2],
    /// Held while consolidating; scratch lists reused between consolidations.
    consolidating: Mutex<Scratch>,
}

#[derive(Debug, Default)]
struct Scratch {
    positive: Vec<(i32, u64)>,
    negative: Vec<(i32, u64)>,
}

impl NativeCells {
    /// Cells for `classic_len` classic buckets (the last one `+Inf`).
    pub(crate) fn new(classic_len: usize, config: NativeConfig) -> Self {
        let schema = i32::from(config.schema.clamp(NATIVE_MIN_SCHEMA, NATIVE_MAX_SCHEMA));
        let config = NativeConfig {
            schema: schema as i8,
            max_buckets: config.max_buckets.max(1),
        };
        Self {
            config,
            tickets: AtomicU64::new(0),
            halves: [
                Half::new(classic_len, schema),
                Half::new(classic_len, schema),
            ],
            consolidating: Mutex::new(Scratch::default()),
        }
    }

    /// Records `value` (not NaN) whose classic bucket is `classic`.
    #[inline]
    pub(crate) fn observe(&self, value: f64, classic: usize) {
        let ticket = self.tickets.fetch_add(1, Ordering::AcqRel);
        let half = &self.halves[(ticket >> 63) as usize];
        if let Some(cell) = half.classic.get(classic) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        super::storage::add_f64(&half.sum, value);
        let magnitude = value.abs();
        let mut consolidate = false;
        if magnitude <= NATIVE_ZERO_THRESHOLD {
            half.zero.fetch_add(1, Ordering::Relaxed);
        } else {
            let layout = half.layout.load();
            let index = bucket_index(magnitude, layout.schema);
            let negative = value < 0.0;
            let window = if negative {
                &layout.negative
            } else {
                &layout.positive
            };
            match window.slot(index) {
                Some(slot) => {
                    if slot.fetch_add(1, Ordering::Relaxed) == 0 {
                        let populated = half.populated.fetch_add(1, Ordering::Relaxed) + 1;
                        consolidate = populated > self.config.max_buckets as usize;
                    }
                }
                None => {
                    half.push_spill(negative, index, 1, &layout);
                    consolidate = true;
                }
            }
        }
        half.done.fetch_add(1, Ordering::Release);
        if consolidate {
            // A request never waits: if a scrape or another recording is consolidating, the
            // spill waits for the next one.
            if let Ok(mut scratch) = self.consolidating.try_lock() {
                self.consolidate(&mut scratch, None);
            }
        }
    }

    /// The classic buckets, cumulative (the last one `+Inf`), and the sum: both halves added,
    /// without stopping recording (as precise as the classic histogram's own reading).
    pub(crate) fn classic_into(&self, cumulative: &mut Vec<u64>) -> f64 {
        cumulative.clear();
        let [a, b] = &self.halves;
        let mut running = 0u64;
        for (x, y) in a.classic.iter().zip(b.classic.iter()) {
            running += x.load(Ordering::Relaxed) + y.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        f64::from_bits(a.sum.load(Ordering::Relaxed))
            + f64::from_bits(b.sum.load(Ordering::Relaxed))
    }

    /// A consistent reading of every observation so far.
    pub(crate) fn snapshot(&self, out: &mut NativeSnapshot) {
        let mut scratch = lock(&self.consolidating);
        self.consolidate(&mut scratch, Some(out));
    }

    /// The configuration, schema and limit clamped to their ranges.
    #[cfg(test)]
    pub(crate) fn config(&self) -> NativeConfig {
        self.config
    }

    /// Waits until `half` has finished `count` observations (those in flight take
    /// nanoseconds, unless their thread was preempted between two instructions).
    fn cool_down(half: &Half, count: u64) {
        let mut spins = 0u32;
        while half.done.load(Ordering::Acquire) != count {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Flips the hot half and waits for the one that went cold; returns `(cold, hot, tickets)`.
    fn swap(&self) -> (usize, usize, u64) {
        let before = self.tickets.fetch_add(HOT_BIT, Ordering::AcqRel);
        let cold = (before >> 63) as usize;
        (cold, cold ^ 1, before & !HOT_BIT)
    }

    fn consolidate(&self, scratch: &mut Scratch, out: Option<&mut NativeSnapshot>) {
        // 1. Everything so far is in the hot half (the other is empty): make it cold, wait.
        let (a, b, count_a) = self.swap();
        let (full, other) = (&self.halves[a], &self.halves[b]);
        Self::cool_down(full, count_a);

        // 2. Read it: window and spill, at its schema.
        let layout = full.layout.load_full();
        let mut schema = layout.schema;
        scratch.positive.clear();
        scratch.negative.clear();
        layout.positive.read_into(&mut scratch.positive);
        layout.negative.read_into(&mut scratch.negative);
        let spill = std::mem::take(&mut *lock(&full.spill));
        let spilled = !spill.is_empty();
        for (negative, index, count) in spill {
            let list = if negative {
                &mut scratch.negative
            } else {
                &mut scratch.positive
            };
            list.push((index, count));
        }
        if spilled {
            normalize(&mut scratch.positive);
            normalize(&mut scratch.negative);
        }

        // 3. Lower the resolution while the buckets are too many or too spread out.
        let max_span = self.config.max_span();
        while schema > i32::from(NATIVE_MIN_SCHEMA)
            && (scratch.positive.len() + scratch.negative.len() > self.config.max_buckets as usize
                || span(&scratch.positive) > max_span
                || span(&scratch.negative) > max_span)
        {
            schema -= 1;
            merge_pairs(&mut scratch.positive);
            merge_pairs(&mut scratch.negative);
        }

        if let Some(out) = out {
            out.schema = schema;
            out.zero_threshold = NATIVE_ZERO_THRESHOLD;
            out.zero_count = full.zero.load(Ordering::Relaxed);
            out.count = count_a;
            out.sum = f64::from_bits(full.sum.load(Ordering::Relaxed));
            out.classic.clear();
            out.classic
                .extend(full.classic.iter().map(|c| c.load(Ordering::Relaxed)));
            out.positive.clone_from(&scratch.positive);
            out.negative.clone_from(&scratch.negative);
        }

        // 4. A new layout when the schema fell or the data left the windows.
        let relayout = schema != layout.schema
            || !fits(&layout.positive, &scratch.positive)
            || !fits(&layout.negative, &scratch.negative);
        if relayout {
            let positive = window_for(
                &scratch.positive,
                &layout.positive,
                schema,
                layout.schema,
                max_span,
            );
            let negative = window_for(
                &scratch.negative,
                &layout.negative,
                schema,
                layout.schema,
                max_span,
            );
            for &(i, n) in &scratch.positive {
                if let Some(slot) = positive.slot(i) {
                    slot.store(n, Ordering::Relaxed);
                }
            }
            for &(i, n) in &scratch.negative {
                if let Some(slot) = negative.slot(i) {
                    slot.store(n, Ordering::Relaxed);
                }
            }
            full.layout.store(std::sync::Arc::new(Layout {
                schema,
                positive,
                negative,
            }));
        } else if spilled {
            for &(i, n) in &scratch.positive {
                if let Some(slot) = layout.positive.slot(i) {
                    slot.store(n, Ordering::Relaxed);
                }
            }
            for &(i, n) in &scratch.negative {
                if let Some(slot) = layout.negative.slot(i) {
                    slot.store(n, Ordering::Relaxed);
                }
            }
        }
        full.populated.store(
            scratch.positive.len() + scratch.negative.len(),
            Ordering::Relaxed,
        );

        // 5. Make it hot again; wait for what went into the other half meanwhile.
        let (b_again, _, count_b) = self.swap();
        debug_assert_eq!(b_again, b);
        let arrived = count_b - count_a;
        Self::cool_down(other, arrived);

        // 6. Fold that into the hot half, converting to its schema, and empty the other half.
        let hot_layout = full.layout.load();
        let old = other.layout.load_full();
        let shift = old.schema - hot_layout.schema;
        for (negative, window) in [(false, &old.positive), (true, &old.negative)] {
            let target = if negative {
                &hot_layout.negative
            } else {
                &hot_layout.positive
            };
            for (i, slot) in window.slots.iter().enumerate() {
                if slot.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let n = slot.swap(0, Ordering::Relaxed);
                let index = reduce(window.offset + i as i32, shift);
                add_bucket(full, target, negative, index, n, &hot_layout);
            }
        }
        for (negative, index, n) in std::mem::take(&mut *lock(&other.spill)) {
            let target = if negative {
                &hot_layout.negative
            } else {
                &hot_layout.positive
            };
            add_bucket(full, target, negative, reduce(index, shift), n, &hot_layout);
        }
        for (x, y) in full.classic.iter().zip(other.classic.iter()) {
            let n = y.swap(0, Ordering::Relaxed);
            if n > 0 {
                x.fetch_add(n, Ordering::Relaxed);
            }
        }
        let sum = f64::from_bits(other.sum.swap(0f64.to_bits(), Ordering::Relaxed));
        if sum != 0.0 {
            super::storage::add_f64(&full.sum, sum);
        }
        let zero = other.zero.swap(0, Ordering::Relaxed);
        if zero > 0 {
            full.zero.fetch_add(zero, Ordering::Relaxed);
        }
        other.populated.store(0, Ordering::Relaxed);
        if relayout {
            other
                .layout
                .store(std::sync::Arc::new(hot_layout.empty_copy()));
        }
        // Last: the hot half's count includes everything, the cold one is empty.
        other.done.store(0, Ordering::Relaxed);
        full.done.fetch_add(arrived, Ordering::Release);
    }
}

/// Adds `n` to bucket `index` of the live (hot) half: in its window, or its spill list.
fn add_bucket(half: &Half, window: &Window, negative: bool, index: i32, n: u64, layout: &Layout) {
    match window.slot(index) {
        Some(slot) => {
            if slot.fetch_add(n, Ordering::Relaxed) == 0 {
                half.populated.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => half.push_spill(negative, index, n, layout),
    }
}

/// Sorts by index and adds up duplicates.
fn normalize(list: &mut Vec<(i32, u64)>) {
    list.sort_unstable_by_key(|(i, _)| *i);
    list.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
}

/// Halves the resolution of a sorted bucket list: buckets `2j-1` and `2j` become `j`.
fn merge_pairs(list: &mut Vec<(i32, u64)>) {
    for entry in list.iter_mut() {
        entry.0 = reduce(entry.0, 1);
    }
    normalize(list);
}

fn span(list: &[(i32, u64)]) -> i64 {
    match (list.first(), list.last()) {
        (Some(first), Some(last)) => i64::from(last.0) - i64::from(first.0) + 1,
        _ => 0,
    }
}

fn fits(window: &Window, list: &[(i32, u64)]) -> bool {
    match (list.first(), list.last()) {
        (Some(first), Some(last)) => window.covers(first.0, last.0),
        _ => true,
    }
}

/// An empty window at `schema` covering `list` with room to grow, or one like `current`
/// (converted from `current_schema`) when that already covers it.
fn window_for(
    list: &[(i32, u64)],
    current: &Window,
    schema: i32,
    current_schema: i32,
    max_span: i64,
) -> Window {
    let shift = current_schema - schema;
    let (lo, hi) = match (list.first(), list.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ if current.slots.is_empty() => return Window::default(),
        // Nothing recorded on this side: keep a window over the same range of values.
        _ => (
            reduce(current.offset, shift),
            reduce(current.offset + current.slots.len() as i32 - 1, shift),
        ),
    };
    if shift == 0 && current.covers(lo, hi) {
        return Window::empty(current.offset, current.slots.len());
    }
    let needed = i64::from(hi) - i64::from(lo) + 1;
    // Room for half as much again (at least 16 buckets), within the most a window may span.
    let len = ((needed + needed / 2).max(16) as u64).next_power_of_two() as i64;
    let len = len.min(max_span.max(needed));
    let offset = i64::from(lo) - (len - needed) / 2;
    Window::empty(offset as i32, len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(schema: i8, max_buckets: u32) -> NativeCells {
        NativeCells::new(
            2,
            NativeConfig {
                schema,
                max_buckets,
            },
        )
    }

    fn record(c: &NativeCells, v: f64) {
        c.observe(v, usize::from(v > 1.0));
    }

    #[test]
    fn indices_match_the_prometheus_definition() {
        // Schema 0: bucket i holds (2^(i-1), 2^i].
        assert_eq!(bucket_index(1.0, 0), 0);
        assert_eq!(bucket_index(1.5, 0), 1);
        assert_eq!(bucket_index(2.0, 0), 1);
        assert_eq!(bucket_index(2.1, 0), 2);
        assert_eq!(bucket_index(0.5, 0), -1);
        assert_eq!(bucket_index(0.3, 0), -1);
        // Schema -1: bucket i holds (4^(i-1), 4^i].
        assert_eq!(bucket_index(4.0, -1), 1);
        assert_eq!(bucket_index(5.0, -1), 2);
        assert_eq!(bucket_index(1.0, -1), 0);
        // Every schema: the value is within its bucket's bounds.
        for schema in -4..=8 {
            let base = 2f64.powf(2f64.powi(-schema));
            for v in [
                1e-9, 0.000_37, 0.003, 0.0125, 0.1, 0.7, 1.0, 3.3, 42.0, 1234.5,
            ] {
                let i = bucket_index(v, schema);
                let upper = base.powi(i);
                let lower = base.powi(i - 1);
                assert!(
                    v <= upper * (1.0 + 1e-12) && v > lower * (1.0 - 1e-12),
                    "schema {schema}: {v} not in ({lower}, {upper}] (bucket {i})"
                );
            }
        }
        assert_eq!(bucket_index(f64::INFINITY, 3), bucket_index(f64::MAX, 3));
    }

    #[test]
    fn records_a_consistent_snapshot() {
        let c = cells(3, 160);
        for v in [0.0, 0.001, 0.001, 0.01, 0.5, 2.0, -0.25] {
            record(&c, v);
        }
        let mut s = NativeSnapshot::default();
        c.snapshot(&mut s);
        assert_eq!(s.schema, 3);
        assert_eq!(s.count, 7);
        assert_eq!(s.zero_count, 1);
        assert_eq!(s.classic, vec![6, 1]);
        assert!((s.sum - 2.2620).abs() < 1e-9, "{}", s.sum);
        let positives: u64 = s.positive.iter().map(|b| b.1).sum();
        assert_eq!(positives, 5);
        assert_eq!(s.positive[0], (bucket_index(0.001, 3), 2));
        assert_eq!(s.negative, vec![(bucket_index(0.25, 3), 1)]);
        // Scraping again changes nothing; more observations add up.
        let mut again = NativeSnapshot::default();
        c.snapshot(&mut again);
        assert_eq!(again, s);
        record(&c, 0.001);
        c.snapshot(&mut again);
        assert_eq!(again.count, 8);
        assert_eq!(again.positive[0].1, 3);
    }

    #[test]
    fn too_many_buckets_lower_the_schema() {
        let c = cells(8, 20);
        // 1 ms to 10 s: about 13 powers of two, 3400 buckets at schema 8.
        let mut v = 0.001;
        let mut n = 0;
        while v < 10.0 {
            record(&c, v);
            v *= 1.01;
            n += 1;
        }
        let mut s = NativeSnapshot::default();
        c.snapshot(&mut s);
        assert!(s.positive.len() <= 20, "{} buckets", s.positive.len());
        assert!(s.schema <= 0, "schema {}", s.schema);
        assert_eq!(s.positive.iter().map(|b| b.1).sum::<u64>(), n);
        assert_eq!(s.count, n);
        // Every bucket is where its values are at the reduced schema.
        assert_eq!(s.positive[0].0, bucket_index(0.001, s.schema));
    }

    #[test]
    fn concurrent_recording_and_scraping_lose_nothing() {
        let c = std::sync::Arc::new(cells(3, 40));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let v = f64::from((i * 7919 + t * 31) % 100_000 + 1) * 1e-5;
                        record(&c, v);
                    }
                })
            })
            .collect();
        let mut s = NativeSnapshot::default();
        let mut last = 0;
        for _ in 0..50 {
            c.snapshot(&mut s);
            let buckets: u64 = s.positive.iter().map(|b| b.1).sum::<u64>() + s.zero_count;
            assert_eq!(
                buckets, s.count,
                "buckets and count agree in every snapshot"
            );
            assert_eq!(s.classic.iter().sum::<u64>(), s.count);
            assert!(s.count >= last);
            assert!(s.positive.len() <= 40);
            last = s.count;
        }
        for t in threads {
            t.join().unwrap();
        }
        c.snapshot(&mut s);
        assert_eq!(s.count, 80_000);
        assert_eq!(s.positive.iter().map(|b| b.1).sum::<u64>(), 80_000);
        let mut cumulative = Vec::new();
        c.classic_into(&mut cumulative);
        assert_eq!(cumulative.last(), Some(&80_000));
    }

    #[test]
    fn config_is_clamped() {
        let c = cells(12, 0);
        assert_eq!(c.config().schema, 8);
        assert_eq!(c.config().max_buckets, 1);
        let c = cells(-9, 5);
        assert_eq!(c.config().schema, -4);
    }
}
