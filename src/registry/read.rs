//! Reading current values back out of the registry, for evaluation inside the process (the
//! alert engine reads the same series Prometheus would scrape).

use std::sync::Arc;

use metrics::Label;

use super::native::NativeSnapshot;
use super::{Kind, Registry, Series, Storage};
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

/// What a family records, as an exporter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // used by optional capabilities
pub(crate) enum FamilyKind {
    /// Monotonic totals: `u64` counters.
    Counter,
    /// Monotonic totals set from an absolute figure read elsewhere (CPU seconds): float
    /// counters, whose owner keeps them from going back.
    ObservedCounter,
    /// Current values.
    Gauge,
    /// Distributions.
    Histogram,
}

/// One series, as [`Registry::read_all`] hands it over.
#[derive(Debug)]
#[allow(dead_code)] // used by optional capabilities
pub(crate) struct SeriesReading<'a> {
    /// The family's (Prometheus) name.
    pub(crate) family: &'a str,
    pub(crate) kind: FamilyKind,
    pub(crate) labels: &'a LabelPairs,
    /// The value; for a histogram, its classic buckets.
    pub(crate) reading: Reading<'a>,
    /// A histogram also recorded as a native histogram: its reading, consistent with the
    /// classic buckets in `reading` (count, sum and buckets agree).
    pub(crate) native: Option<&'a NativeSnapshot>,
}

#[allow(dead_code)] // used by optional capabilities
impl Registry {
    /// Calls `visit` with every series of every family, families in name order: the reading
    /// that every exporter of the registry other than the Prometheus formats makes. The
    /// registry lock is held only while the series list is copied; a native histogram's
    /// reading takes its consolidation lock, as a protobuf scrape does (recording never waits
    /// for it).
    pub(crate) fn read_all(&self, visit: &mut dyn FnMut(&SeriesReading<'_>)) {
        let mut families: Vec<(Arc<super::FamilyMeta>, Vec<Arc<Series>>)> = Vec::new();
        {
            let state = read(&self.shared.state);
            for family in state.families.values() {
                if !family.series.is_empty() {
                    families.push((family.meta.clone(), family.series.clone()));
                }
            }
        }
        let mut cumulative = Vec::new();
        let mut native = NativeSnapshot::default();
        for (meta, series) in &families {
            let kind = match meta.kind {
                Kind::Counter => FamilyKind::Counter,
                Kind::FloatCounter => FamilyKind::ObservedCounter,
                Kind::Gauge => FamilyKind::Gauge,
                Kind::Histogram => FamilyKind::Histogram,
            };
            for s in series {
                let (reading, native) = match &s.storage {
                    Storage::Counter(c) => (Reading::Counter(c.get() as f64), None),
                    Storage::Gauge(g) if kind == FamilyKind::ObservedCounter => {
                        (Reading::Counter(g.get()), None)
                    }
                    Storage::Gauge(g) => (Reading::Gauge(g.get()), None),
                    Storage::Histogram(h) => {
                        let sum = if h.native_snapshot(&mut native) {
                            cumulative.clear();
                            let mut running = 0;
                            for n in &native.classic {
                                running += n;
                                cumulative.push(running);
                            }
                            native.sum
                        } else {
                            h.snapshot_into(&mut cumulative)
                        };
                        let has_native = h.is_native();
                        (
                            Reading::Histogram {
                                bounds: &h.buckets.bounds,
                                cumulative: &cumulative,
                                sum,
                            },
                            has_native.then_some(&native),
                        )
                    }
                };
                visit(&SeriesReading {
                    family: &meta.name,
                    kind,
                    labels: &s.pairs,
                    reading,
                    native,
                });
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
    fn read_all_hands_over_every_series_with_its_kind_and_native_reading() {
        let registry = Registry::builder()
            .buckets_for("lat_seconds", &[0.1, 1.0])
            .native_histogram("lat_seconds")
            .build();
        metrics::with_local_recorder(&registry, || {
            metrics::counter!("hits_total", "route" => "/a").increment(3);
            metrics::gauge!("up").set(0.5);
            metrics::histogram!("lat_seconds").record(0.5);
            metrics::histogram!("lat_seconds").record(2.0);
            metrics::histogram!("sizes").record(7.0);
        });
        let cpu = registry
            .float_counter_storage(&metrics::Key::from_name("cpu_seconds_total"))
            .unwrap();
        cpu.fetch_max(1.5);
        let mut seen = Vec::new();
        registry.read_all(&mut |s| {
            let native = s.native.map(|n| (n.count, n.positive.len()));
            let value = match s.reading {
                Reading::Counter(v) | Reading::Gauge(v) => v,
                Reading::Histogram { cumulative, .. } => *cumulative.last().unwrap() as f64,
            };
            seen.push((s.family.to_owned(), s.kind, s.labels.len(), value, native));
        });
        assert_eq!(
            seen,
            [
                (
                    "cpu_seconds_total".to_owned(),
                    FamilyKind::ObservedCounter,
                    0,
                    1.5,
                    None
                ),
                ("hits_total".to_owned(), FamilyKind::Counter, 1, 3.0, None),
                (
                    "lat_seconds".to_owned(),
                    FamilyKind::Histogram,
                    0,
                    2.0,
                    Some((2, 2))
                ),
                ("sizes".to_owned(), FamilyKind::Histogram, 0, 1.0, None),
                ("up".to_owned(), FamilyKind::Gauge, 0, 0.5, None),
            ]
        );
    }

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
