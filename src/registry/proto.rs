//! The Prometheus protobuf exposition format: length-delimited `io.prometheus.client.MetricFamily`
//! messages (client_model's `metrics.proto`), written by hand — a few field numbers and
//! varints, no code generator and no dependency.
//!
//! The registry lock is held only while the series list is copied, as for the text formats.
//! A native histogram's reading is consistent (count, sum, classic and native buckets agree);
//! see `native.rs`.

use std::sync::Arc;

use crate::sync::read;

use super::native::NativeSnapshot;
use super::storage::{AtomicHistogram, Exemplar};
use super::{FamilyMeta, Kind, Registry, Series, Storage};

#[derive(Debug, Default)]
pub(super) struct Scratch {
    families: Vec<(Arc<FamilyMeta>, Option<Arc<str>>, usize)>,
    series: Vec<Arc<Series>>,
    cumulative: Vec<u64>,
    native: NativeSnapshot,
    spans: Vec<(i32, u32)>,
    deltas: Vec<i64>,
    hex: String,
}

// Field numbers of client_model's metrics.proto.
mod field {
    // MetricFamily
    pub(super) const FAMILY_NAME: u32 = 1;
    pub(super) const FAMILY_HELP: u32 = 2;
    pub(super) const FAMILY_TYPE: u32 = 3;
    pub(super) const FAMILY_METRIC: u32 = 4;
    // Metric
    pub(super) const METRIC_LABEL: u32 = 1;
    pub(super) const METRIC_GAUGE: u32 = 2;
    pub(super) const METRIC_COUNTER: u32 = 3;
    pub(super) const METRIC_HISTOGRAM: u32 = 7;
    // LabelPair
    pub(super) const LABEL_NAME: u32 = 1;
    pub(super) const LABEL_VALUE: u32 = 2;
    // Gauge, Counter
    pub(super) const VALUE: u32 = 1;
    // Histogram
    pub(super) const SAMPLE_COUNT: u32 = 1;
    pub(super) const SAMPLE_SUM: u32 = 2;
    pub(super) const BUCKET: u32 = 3;
    pub(super) const SCHEMA: u32 = 5;
    pub(super) const ZERO_THRESHOLD: u32 = 6;
    pub(super) const ZERO_COUNT: u32 = 7;
    pub(super) const NEGATIVE_SPAN: u32 = 9;
    pub(super) const NEGATIVE_DELTA: u32 = 10;
    pub(super) const POSITIVE_SPAN: u32 = 12;
    pub(super) const POSITIVE_DELTA: u32 = 13;
    pub(super) const EXEMPLARS: u32 = 16;
    // Bucket
    pub(super) const CUMULATIVE_COUNT: u32 = 1;
    pub(super) const UPPER_BOUND: u32 = 2;
    pub(super) const BUCKET_EXEMPLAR: u32 = 3;
    // BucketSpan
    pub(super) const SPAN_OFFSET: u32 = 1;
    pub(super) const SPAN_LENGTH: u32 = 2;
    // Exemplar
    pub(super) const EXEMPLAR_LABEL: u32 = 1;
    pub(super) const EXEMPLAR_VALUE: u32 = 2;
    pub(super) const EXEMPLAR_TIMESTAMP: u32 = 3;
    // google.protobuf.Timestamp
    pub(super) const SECONDS: u32 = 1;
    pub(super) const NANOS: u32 = 2;
}

// MetricType
const COUNTER: u64 = 0;
const GAUGE: u64 = 1;
const HISTOGRAM: u64 = 4;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn sint(out: &mut Vec<u8>, field: u32, v: i64) {
    uint(out, field, zigzag(v));
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    key(out, field, LEN);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// Opens a nested message (or the top-level delimited one, `field` `None`): a one-byte length
/// placeholder, fixed by [`close`]. Returns where the body starts.
fn open(out: &mut Vec<u8>, field: Option<u32>) -> usize {
    if let Some(field) = field {
        key(out, field, LEN);
    }
    out.push(0);
    out.len()
}

/// Writes the length of the message opened at `start`, moving its body when the length takes
/// more than one byte.
fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let mut prefix = Vec::new();
    varint(&mut prefix, len as u64);
    out[start - 1] = prefix[0];
    if prefix.len() > 1 {
        out.splice(start..start, prefix[1..].iter().copied());
    }
}

fn label(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    let at = open(out, Some(field));
    bytes(out, field::LABEL_NAME, name.as_bytes());
    bytes(out, field::LABEL_VALUE, value.as_bytes());
    close(out, at);
}

pub(super) fn render(registry: &Registry, out: &mut Vec<u8>) {
    let mut owned;
    let mut guard = registry.shared.proto_scratch.try_lock().ok();
    let scratch: &mut Scratch = match guard.as_deref_mut() {
        Some(s) => s,
        None => {
            owned = Scratch::default();
            &mut owned
        }
    };
    {
        let state = read(&registry.shared.state);
        for family in state.families.values() {
            if family.series.is_empty() {
                continue;
            }
            let help = state.help.get(&family.meta.name).cloned();
            scratch
                .families
                .push((family.meta.clone(), help, family.series.len()));
            scratch.series.extend(family.series.iter().cloned());
        }
    }
    let families = std::mem::take(&mut scratch.families);
    let series = std::mem::take(&mut scratch.series);
    let mut next = series.iter();
    for (meta, help, count) in &families {
        let family = open(out, None);
        let prefix = registry.shared.prefix.as_bytes();
        key(out, field::FAMILY_NAME, LEN);
        varint(out, (prefix.len() + meta.name.len()) as u64);
        out.extend_from_slice(prefix);
        out.extend_from_slice(meta.name.as_bytes());
        if let Some(help) = help {
            bytes(out, field::FAMILY_HELP, help.as_bytes());
        }
        let kind = match meta.kind {
            Kind::Counter | Kind::FloatCounter => COUNTER,
            Kind::Gauge => GAUGE,
            Kind::Histogram => HISTOGRAM,
        };
        uint(out, field::FAMILY_TYPE, kind);
        for s in next.by_ref().take(*count) {
            let metric = open(out, Some(field::FAMILY_METRIC));
            for (name, value) in s.pairs.iter() {
                label(out, field::METRIC_LABEL, name, value);
            }
            match &s.storage {
                Storage::Counter(c) => {
                    let at = open(out, Some(field::METRIC_COUNTER));
                    double(out, field::VALUE, c.get() as f64);
                    close(out, at);
                }
                Storage::Gauge(g) => {
                    let slot = if meta.kind == Kind::FloatCounter {
                        field::METRIC_COUNTER
                    } else {
                        field::METRIC_GAUGE
                    };
                    let at = open(out, Some(slot));
                    double(out, field::VALUE, g.get());
                    close(out, at);
                }
                Storage::Histogram(h) => {
                    let at = open(out, Some(field::METRIC_HISTOGRAM));
                    histogram(out, h, scratch);
                    close(out, at);
                }
            }
            close(out, metric);
        }
        close(out, family);
    }
    scratch.families = families;
    scratch.series = series;
    scratch.families.clear();
    scratch.series.clear();
}

fn histogram(out: &mut Vec<u8>, h: &AtomicHistogram, scratch: &mut Scratch) {
    let native = h.native_snapshot(&mut scratch.native);
    let (count, sum) = if native {
        let mut running = 0;
        scratch.cumulative.clear();
        for n in &scratch.native.classic {
            running += n;
            scratch.cumulative.push(running);
        }
        (scratch.native.count, scratch.native.sum)
    } else {
        let sum = h.snapshot_into(&mut scratch.cumulative);
        (scratch.cumulative.last().copied().unwrap_or(0), sum)
    };
    uint(out, field::SAMPLE_COUNT, count);
    double(out, field::SAMPLE_SUM, sum);
    let bounds = &h.buckets.bounds;
    for (i, cumulative) in scratch.cumulative.iter().enumerate() {
        let exemplar = h.exemplar(i);
        // The `+Inf` bucket is implied by the count; it is written only to carry an exemplar.
        let upper = match bounds.get(i) {
            Some(b) => *b,
            None if exemplar.is_some() => f64::INFINITY,
            None => continue,
        };
        let at = open(out, Some(field::BUCKET));
        uint(out, field::CUMULATIVE_COUNT, *cumulative);
        double(out, field::UPPER_BOUND, upper);
        if let Some(e) = &exemplar {
            write_exemplar(out, field::BUCKET_EXEMPLAR, e, &mut scratch.hex);
        }
        close(out, at);
    }
    if !native {
        return;
    }
    let snap = &scratch.native;
    sint(out, field::SCHEMA, i64::from(snap.schema));
    double(out, field::ZERO_THRESHOLD, snap.zero_threshold);
    uint(out, field::ZERO_COUNT, snap.zero_count);
    for (list, span_field, delta_field) in [
        (&snap.negative, field::NEGATIVE_SPAN, field::NEGATIVE_DELTA),
        (&snap.positive, field::POSITIVE_SPAN, field::POSITIVE_DELTA),
    ] {
        spans_and_deltas(list, &mut scratch.spans, &mut scratch.deltas);
        for &(offset, length) in &scratch.spans {
            let at = open(out, Some(span_field));
            sint(out, field::SPAN_OFFSET, i64::from(offset));
            uint(out, field::SPAN_LENGTH, u64::from(length));
            close(out, at);
        }
        if !scratch.deltas.is_empty() {
            let at = open(out, Some(delta_field));
            for d in &scratch.deltas {
                varint(out, zigzag(*d));
            }
            close(out, at);
        }
    }
    if snap.positive.is_empty() && snap.negative.is_empty() {
        // A no-op span marks an empty histogram as native (client_model's rule).
        let at = open(out, Some(field::POSITIVE_SPAN));
        sint(out, field::SPAN_OFFSET, 0);
        uint(out, field::SPAN_LENGTH, 0);
        close(out, at);
    }
    // The classic buckets' exemplars, each with its timestamp, serve the native histogram.
    for i in 0..=bounds.len() {
        if let Some(e) = h.exemplar(i) {
            write_exemplar(out, field::EXEMPLARS, &e, &mut scratch.hex);
        }
    }
}

/// Spans and deltas of a sorted bucket list, as the Go client writes them: gaps of up to two
/// empty buckets are filled with zeros rather than starting a new span.
fn spans_and_deltas(list: &[(i32, u64)], spans: &mut Vec<(i32, u32)>, deltas: &mut Vec<i64>) {
    spans.clear();
    deltas.clear();
    let mut previous: Option<i32> = None;
    let mut last_count = 0i64;
    for &(index, count) in list {
        let count = count as i64;
        match previous {
            None => spans.push((index, 1)),
            Some(p) => {
                let gap = index - p - 1;
                if gap <= 2 {
                    for _ in 0..gap {
                        deltas.push(-last_count);
                        last_count = 0;
                    }
                    if let Some(span) = spans.last_mut() {
                        span.1 += gap as u32 + 1;
                    }
                } else {
                    spans.push((gap, 1));
                }
            }
        }
        deltas.push(count - last_count);
        last_count = count;
        previous = Some(index);
    }
}

fn write_exemplar(out: &mut Vec<u8>, slot: u32, e: &Exemplar, hex: &mut String) {
    let at = open(out, Some(slot));
    hex.clear();
    crate::hex::push(hex, &e.trace_id);
    label(out, field::EXEMPLAR_LABEL, "trace_id", hex);
    hex.clear();
    crate::hex::push(hex, &e.span_id);
    label(out, field::EXEMPLAR_LABEL, "span_id", hex);
    double(out, field::EXEMPLAR_VALUE, e.value);
    let ts = open(out, Some(field::EXEMPLAR_TIMESTAMP));
    let seconds = e.timestamp.floor();
    uint(out, field::SECONDS, seconds as i64 as u64);
    let nanos = ((e.timestamp - seconds) * 1e9).round().min(999_999_999.0) as u64;
    uint(out, field::NANOS, nanos);
    close(out, ts);
    close(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_lengths() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-3), 5);
        let mut out = Vec::new();
        let at = open(&mut out, Some(1));
        out.extend_from_slice(&[7u8; 200]);
        close(&mut out, at);
        assert_eq!(&out[..3], &[0x0a, 0xc8, 0x01]);
        assert_eq!(out.len(), 203);
    }

    #[test]
    fn spans_fill_small_gaps_and_split_large_ones() {
        let (mut spans, mut deltas) = (Vec::new(), Vec::new());
        spans_and_deltas(
            &[(-2, 3), (-1, 1), (2, 4), (10, 1)],
            &mut spans,
            &mut deltas,
        );
        // -2, -1, then two empty buckets filled (0, 1), then 2; then a gap of 7.
        assert_eq!(spans, [(-2, 5), (7, 1)]);
        assert_eq!(deltas, [3, -2, -1, 0, 4, -3]);
    }
}
