//! The registry's series as an OTLP `ExportMetricsServiceRequest`.
//!
//! Names and units come from `names::METRICS` (the OpenTelemetry name of each entry, or a
//! dotted form of its Prometheus name), attribute keys from `names::ATTRIBUTES`. Counters
//! become monotonic sums, gauges gauges or — counts that go up and down — non-monotonic sums,
//! native histograms exponential histograms (a native bucket of schema `s` and index `i` is
//! the OpenTelemetry bucket of scale `s` and index `i - 1`: Prometheus' bucket `i` ends at
//! `2^(i·2^-s)`, OpenTelemetry's starts there), classic histograms explicit-bucket ones.
//!
//! For delta temporality the values each series carried in the last export the collector
//! accepted are kept; a series' point is the difference, starting at that export. A failed
//! export changes nothing, so the next one carries its share.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::metrics::Temporality;
use crate::names::{self, AttributeType};
use crate::registry::read::{FamilyKind, LabelPairs, Reading, SeriesReading};
use crate::registry::{NativeSnapshot, Registry};

/// Which instruments are exported as deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Temporalities {
    /// Counters recorded as things happen.
    counters: bool,
    /// Counters set from an absolute figure (asynchronous counters).
    observed_counters: bool,
    histograms: bool,
}

impl From<Temporality> for Temporalities {
    fn from(t: Temporality) -> Self {
        match t {
            Temporality::Cumulative => Self::default(),
            Temporality::Delta => Self {
                counters: true,
                observed_counters: true,
                histograms: true,
            },
            Temporality::LowMemory => Self {
                counters: true,
                observed_counters: false,
                histograms: true,
            },
        }
    }
}

fn temporality(delta: bool) -> i32 {
    if delta {
        AggregationTemporality::Delta as i32
    } else {
        AggregationTemporality::Cumulative as i32
    }
}

/// What a series carried in an export, for the next delta.
#[derive(Debug, Clone)]
enum Carried {
    Value(f64),
    /// Per-bucket counts (not cumulative), the sum.
    Classic(Vec<u64>, f64),
    Native(NativeSnapshot),
}

/// A family's OpenTelemetry identity.
#[derive(Debug)]
struct Family {
    name: String,
    unit: &'static str,
    description: &'static str,
    up_down: bool,
}

/// The conversion state of one exporter.
#[derive(Debug)]
pub(super) struct Convert {
    delta: Temporalities,
    /// By series key: what the last accepted export carried.
    committed: HashMap<String, Carried>,
    /// What the export being sent carries.
    next: HashMap<String, Carried>,
    /// When the last accepted export read the registry.
    last_export: Option<SystemTime>,
    families: HashMap<String, Family>,
    key: String,
}

impl Convert {
    pub(super) fn new(delta: Temporalities) -> Self {
        Self {
            delta,
            committed: HashMap::new(),
            next: HashMap::new(),
            last_export: None,
            families: HashMap::new(),
            key: String::new(),
        }
    }

    /// The collector took the last request: its values are the next deltas' base.
    pub(super) fn commit(&mut self, at: SystemTime) {
        std::mem::swap(&mut self.committed, &mut self.next);
        self.next.clear();
        self.last_export = Some(at);
    }

    /// The collector did not take it: the next request covers its interval too.
    pub(super) fn discard(&mut self) {
        self.next.clear();
    }

    /// Everything the registry holds now, as one request.
    pub(super) fn request(
        &mut self,
        registry: &Registry,
        resource: &[KeyValue],
        started: SystemTime,
        now: SystemTime,
    ) -> ExportMetricsServiceRequest {
        let cumulative_start = nanos(started);
        let delta_start = nanos(self.last_export.unwrap_or(started));
        let now = nanos(now);
        let mut metrics: Vec<Metric> = Vec::new();
        let mut family: Option<String> = None;
        let mut open: Option<Metric> = None;
        registry.read_all(&mut |series| {
            if family.as_deref() != Some(series.family) {
                metrics.extend(open.take());
                family = Some(series.family.to_owned());
                open = Some(self.metric(series));
            }
            if let Some(metric) = open.as_mut() {
                self.point(series, metric, cumulative_start, delta_start, now);
            }
        });
        metrics.extend(open);
        metrics.retain(has_points);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource.to_vec(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "tower-observe".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// An empty metric for the family of `series`.
    fn metric(&mut self, series: &SeriesReading<'_>) -> Metric {
        let family = self
            .families
            .entry(series.family.to_owned())
            .or_insert_with(|| {
                let (name, unit) = names::otel_name(series.family);
                let spec = names::spec_of(series.family);
                Family {
                    name: name.into_owned(),
                    unit,
                    description: spec.map_or("", |s| s.help),
                    up_down: spec.is_some_and(|s| s.up_down),
                }
            });
        let data = match (series.kind, series.native.is_some()) {
            (FamilyKind::Counter, _) => Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: temporality(self.delta.counters),
                is_monotonic: true,
            }),
            (FamilyKind::ObservedCounter, _) => Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: temporality(self.delta.observed_counters),
                is_monotonic: true,
            }),
            (FamilyKind::Gauge, _) if family.up_down => Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: temporality(false),
                is_monotonic: false,
            }),
            (FamilyKind::Gauge, _) => Data::Gauge(Gauge {
                data_points: Vec::new(),
            }),
            (FamilyKind::Histogram, true) => Data::ExponentialHistogram(ExponentialHistogram {
                data_points: Vec::new(),
                aggregation_temporality: temporality(self.delta.histograms),
            }),
            (FamilyKind::Histogram, false) => Data::Histogram(Histogram {
                data_points: Vec::new(),
                aggregation_temporality: temporality(self.delta.histograms),
            }),
        };
        Metric {
            name: family.name.clone(),
            description: family.description.to_owned(),
            unit: family.unit.to_owned(),
            metadata: Vec::new(),
            data: Some(data),
        }
    }

    /// Adds the point of `series` to `metric`.
    fn point(
        &mut self,
        series: &SeriesReading<'_>,
        metric: &mut Metric,
        cumulative_start: u64,
        delta_start: u64,
        now: u64,
    ) {
        let attributes = attributes(series.labels);
        self.key.clear();
        self.key.push_str(series.family);
        for (k, v) in series.labels.iter() {
            self.key.push('\0');
            self.key.push_str(k);
            self.key.push('\0');
            self.key.push_str(v);
        }
        let delta = match series.kind {
            FamilyKind::Counter => self.delta.counters,
            FamilyKind::ObservedCounter => self.delta.observed_counters,
            FamilyKind::Histogram => self.delta.histograms,
            FamilyKind::Gauge => false,
        };
        let start = if delta { delta_start } else { cumulative_start };
        let previous = if delta {
            self.committed.get(self.key.as_str())
        } else {
            None
        };
        match (&mut metric.data, series.reading) {
            (Some(Data::Sum(sum)), Reading::Counter(total)) => {
                let value = match previous {
                    Some(Carried::Value(before)) => (total - before).max(0.0),
                    _ => total,
                };
                let value = if series.kind == FamilyKind::Counter {
                    number_data_point::Value::AsInt(value as i64)
                } else {
                    number_data_point::Value::AsDouble(value)
                };
                sum.data_points
                    .push(number_point(attributes, start, now, value));
                if delta {
                    self.next.insert(self.key.clone(), Carried::Value(total));
                }
            }
            (Some(Data::Sum(sum)), Reading::Gauge(value)) => {
                sum.data_points.push(number_point(
                    attributes,
                    cumulative_start,
                    now,
                    number_data_point::Value::AsDouble(value),
                ));
            }
            (Some(Data::Gauge(gauge)), Reading::Gauge(value)) => {
                gauge.data_points.push(number_point(
                    attributes,
                    0,
                    now,
                    number_data_point::Value::AsDouble(value),
                ));
            }
            (
                Some(Data::Histogram(histogram)),
                Reading::Histogram {
                    bounds,
                    cumulative,
                    sum,
                },
            ) => {
                let mut counts: Vec<u64> = cumulative
                    .iter()
                    .scan(0u64, |before, &c| {
                        let n = c.saturating_sub(*before);
                        *before = c;
                        Some(n)
                    })
                    .collect();
                let mut point_sum = sum;
                if delta {
                    self.next
                        .insert(self.key.clone(), Carried::Classic(counts.clone(), sum));
                    if let Some(Carried::Classic(before, before_sum)) = previous {
                        for (n, b) in counts.iter_mut().zip(before) {
                            *n = n.saturating_sub(*b);
                        }
                        point_sum -= before_sum;
                    }
                }
                histogram.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: counts.iter().sum(),
                    sum: Some(point_sum),
                    bucket_counts: counts,
                    explicit_bounds: bounds.to_vec(),
                    ..Default::default()
                });
            }
            (Some(Data::ExponentialHistogram(histogram)), _) => {
                let Some(native) = series.native else {
                    return;
                };
                let point = match previous {
                    Some(Carried::Native(before)) => native_delta(native, before),
                    _ => native.clone(),
                };
                if delta {
                    self.next
                        .insert(self.key.clone(), Carried::Native(native.clone()));
                }
                histogram.data_points.push(ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: point.count,
                    sum: Some(point.sum),
                    scale: point.schema,
                    zero_count: point.zero_count,
                    zero_threshold: point.zero_threshold,
                    positive: buckets(&point.positive),
                    negative: buckets(&point.negative),
                    ..Default::default()
                });
            }
            _ => {}
        }
    }
}

fn has_points(metric: &Metric) -> bool {
    match &metric.data {
        Some(Data::Sum(s)) => !s.data_points.is_empty(),
        Some(Data::Gauge(g)) => !g.data_points.is_empty(),
        Some(Data::Histogram(h)) => !h.data_points.is_empty(),
        Some(Data::ExponentialHistogram(h)) => !h.data_points.is_empty(),
        _ => false,
    }
}

fn number_point(
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(value),
        ..Default::default()
    }
}

/// A series' labels as OpenTelemetry attributes: keys mapped back (`http_request_method` →
/// `http.request.method`), integers and booleans typed as the conventions type them.
fn attributes(labels: &LabelPairs) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(label, value)| {
            let (key, kind) = names::attribute_of(label);
            let typed = match kind {
                AttributeType::Int => value.parse::<i64>().ok().map(any_value::Value::IntValue),
                AttributeType::Bool => value.parse::<bool>().ok().map(any_value::Value::BoolValue),
                AttributeType::String => None,
            };
            KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue {
                    value: Some(
                        typed.unwrap_or_else(|| any_value::Value::StringValue(value.clone())),
                    ),
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// Dense OpenTelemetry buckets from populated native ones (`None` when there are none).
fn buckets(list: &[(i32, u64)]) -> Option<Buckets> {
    let (first, last) = (list.first()?.0, list.last()?.0);
    let mut counts = vec![0u64; (i64::from(last) - i64::from(first) + 1) as usize];
    for &(index, n) in list {
        counts[(index - first) as usize] += n;
    }
    Some(Buckets {
        offset: first - 1,
        bucket_counts: counts,
    })
}

/// What `now` recorded since `before`, at the lower of their schemas.
fn native_delta(now: &NativeSnapshot, before: &NativeSnapshot) -> NativeSnapshot {
    let mut now = now.clone();
    let mut before = before.clone();
    let schema = now.schema.min(before.schema);
    now.downscale(schema);
    before.downscale(schema);
    now.count = now.count.saturating_sub(before.count);
    now.sum -= before.sum;
    now.zero_count = now.zero_count.saturating_sub(before.zero_count);
    subtract(&mut now.positive, &before.positive);
    subtract(&mut now.negative, &before.negative);
    now
}

/// `list -= before`, both sorted by index; empty buckets dropped.
fn subtract(list: &mut Vec<(i32, u64)>, before: &[(i32, u64)]) {
    let mut j = 0;
    for entry in list.iter_mut() {
        while j < before.len() && before[j].0 < entry.0 {
            j += 1;
        }
        if j < before.len() && before[j].0 == entry.0 {
            entry.1 = entry.1.saturating_sub(before[j].1);
        }
    }
    list.retain(|(_, n)| *n > 0);
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_buckets_map_to_opentelemetry_indices() {
        // Prometheus bucket 1 at schema 0 is (1, 2]: OpenTelemetry's bucket 0.
        let b = buckets(&[(1, 2), (3, 1)]).unwrap();
        assert_eq!(b.offset, 0);
        assert_eq!(b.bucket_counts, [2, 0, 1]);
        assert!(buckets(&[]).is_none());
    }

    #[test]
    fn native_deltas_subtract_at_the_lower_schema() {
        let before = NativeSnapshot {
            schema: 2,
            count: 3,
            sum: 3.0,
            zero_count: 1,
            positive: vec![(1, 1), (2, 1)],
            ..Default::default()
        };
        let now = NativeSnapshot {
            schema: 1,
            count: 6,
            sum: 7.5,
            zero_count: 1,
            positive: vec![(1, 4), (2, 1)],
            ..Default::default()
        };
        let d = native_delta(&now, &before);
        assert_eq!(d.schema, 1);
        assert_eq!((d.count, d.sum, d.zero_count), (3, 4.5, 0));
        // Before, at schema 1: buckets 1 and 2 of schema 2 both fall in bucket 1.
        assert_eq!(d.positive, [(1, 2), (2, 1)]);
    }
}
