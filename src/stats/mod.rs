#![doc = include_str!("../../docs/stats-api.md")]

mod rate;
mod sections;
pub(crate) mod sketch;
mod snapshot;
mod window;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

pub use sections::{
    ActiveAlert, ActiveAlerts, BackendEntry, CacheEntry, GrpcMethodEntry, GrpcStats, LogStoreStats,
    OtlpMetricsStats, PoolEntry, ProcessStats, RetryEntry, RuntimeStats, Warning,
};
pub use sections::{LlmEntry, LlmSideStats, LlmStats};
pub use sections::{OperationEntry, QueueEntry, WorkerCounts};
pub use sketch::RELATIVE_ERROR as LATENCY_RELATIVE_ERROR;
pub use snapshot::{
    BreakdownEntry, LatencyMs, RouteEntry, StatsSnapshot, StatusClasses, Totals, WindowEntry,
};
pub use window::STEP_SECONDS as WINDOW_STEP_SECONDS;

use crate::labels::HttpMethod;

/// How a recorded request ended, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// The client went away (future or body dropped) before the response was complete.
    Aborted,
}

/// Counters for one slice of traffic.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    latency: sketch::LatencySketch,
    errors: AtomicU64,
    aborted: AtomicU64,
    status_classes: [AtomicU64; 5],
    rate: rate::RateWindow,
    /// Failures only, for the recent error rate of `/health` (successes cost nothing extra).
    failure_rate: rate::RateWindow,
    /// The recent windows; filled by [`record_windows`](Self::record_windows) only (the
    /// server's route cells), so other cells pay one pointer per slot.
    windows: window::WindowRing,
}

impl StatsCell {
    /// Counts one request. Latency is that of completed requests: an aborted request (the
    /// client went away) ended when the client chose, so it is counted apart and its duration
    /// stays out of the percentiles.
    pub(crate) fn record(&self, nanos: u64, second: u64, status: Option<u16>, outcome: Outcome) {
        self.rate.record(second);
        match outcome {
            Outcome::Success => self.latency.record(nanos),
            Outcome::Failure => {
                self.latency.record(nanos);
                self.errors.fetch_add(1, Relaxed);
                self.failure_rate.record(second);
            }
            Outcome::Aborted => {
                self.aborted.fetch_add(1, Relaxed);
            }
        }
        if let Some(class) = status.and_then(|s| (s / 100).checked_sub(1)) {
            if let Some(c) = self.status_classes.get(class as usize) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts one request in the recent windows too (after [`record`](Self::record)).
    #[inline]
    pub(crate) fn record_windows(&self, nanos: u64, second: u64, outcome: Outcome) {
        self.windows.record(nanos, second, outcome);
    }

    /// Requests and failures of the last minute.
    pub(crate) fn recent(&self, elapsed: f64) -> (u64, u64) {
        (self.rate.total(elapsed), self.failure_rate.total(elapsed))
    }

    /// Zeroes the cell in place (series caches keep their handles to it).
    pub(crate) fn reset(&self) {
        self.latency.reset();
        self.errors.store(0, Relaxed);
        self.aborted.store(0, Relaxed);
        for c in &self.status_classes {
            c.store(0, Relaxed);
        }
        self.rate.reset();
        self.failure_rate.reset();
        self.windows.reset();
    }

    /// Adds this cell's current contents to `data`.
    fn read_into(&self, data: &mut CellData, elapsed: f64) {
        self.latency.read_into(&mut data.latency);
        data.errors += self.errors.load(Relaxed);
        data.aborted += self.aborted.load(Relaxed);
        for (sum, c) in data.status_classes.iter_mut().zip(&self.status_classes) {
            *sum += c.load(Relaxed);
        }
        data.requests_per_second += self.rate.per_second(elapsed);
    }

    pub(crate) fn entry(&self, elapsed: f64) -> BreakdownEntry {
        let mut data = CellData::default();
        self.read_into(&mut data, elapsed);
        data.entry()
    }

    /// The figures of several cells merged (sketches merge exactly): a breakdown whose slices
    /// are read together, such as every model of one provider.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn merged_entry<'a>(
        cells: impl IntoIterator<Item = &'a StatsCell>,
        elapsed: f64,
    ) -> BreakdownEntry {
        let mut data = CellData::default();
        for cell in cells {
            cell.read_into(&mut data, elapsed);
        }
        data.entry()
    }
}

/// One or more cells, read and merged.
#[derive(Debug, Default)]
struct CellData {
    latency: sketch::SketchData,
    errors: u64,
    aborted: u64,
    status_classes: [u64; 5],
    requests_per_second: f64,
}

impl CellData {
    fn entry(&self) -> BreakdownEntry {
        let summary = self.latency.summary(&[0.5, 0.95, 0.99]);
        // The sketch holds the completed requests; aborted ones are counted apart.
        let completed = summary.as_ref().map_or(0, |s| s.count);
        let requests = completed + self.aborted;
        let success_rate = (completed > 0)
            .then(|| completed.saturating_sub(self.errors) as f64 / completed as f64);
        BreakdownEntry {
            requests,
            errors: self.errors,
            aborted: self.aborted,
            requests_per_second: self.requests_per_second,
            success_rate,
            latency_ms: summary.map(|s| LatencyMs::from_summary(&s)),
            status_codes: StatusClasses::from_counts(&self.status_classes),
        }
    }
}

/// Cells keyed by what they count (a route, a dimension value, an upstream), created on first
/// use. Written once per key; callers keep the `Arc` they got.
#[derive(Debug)]
pub(crate) struct CellMap<K>(RwLock<BTreeMap<K, Arc<StatsCell>>>);

impl<K> Default for CellMap<K> {
    fn default() -> Self {
        Self(RwLock::new(BTreeMap::new()))
    }
}

impl<K: Ord + Clone> CellMap<K> {
    /// The cell of `key`, created on first use.
    pub(crate) fn cell<Q>(&self, key: &Q) -> Arc<StatsCell>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(cell) = crate::sync::read(&self.0).get(key) {
            return cell.clone();
        }
        crate::sync::write(&self.0)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Every cell with its key (a snapshot: the lock is not held while they are read).
    pub(crate) fn cells(&self) -> Vec<(K, Arc<StatsCell>)> {
        crate::sync::read(&self.0)
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    /// Requests and failures of the last minute, over every cell.
    pub(crate) fn recent(&self, elapsed: f64) -> (u64, u64) {
        crate::sync::read(&self.0)
            .values()
            .fold((0, 0), |(all, failed), cell| {
                let (a, f) = cell.recent(elapsed);
                (all + a, failed + f)
            })
    }

    /// Zeroes every cell in place.
    pub(crate) fn reset(&self) {
        for cell in crate::sync::read(&self.0).values() {
            cell.reset();
        }
    }

    /// Every cell's figures, by key.
    pub(crate) fn entries(&self, elapsed: f64) -> BTreeMap<K, BreakdownEntry> {
        self.cells()
            .into_iter()
            .map(|(k, c)| (k, c.entry(elapsed)))
            .collect()
    }
}

/// The HTTP server's figures: one cell per route and one per dimension value. Every request
/// lands in exactly one route cell, so the service-wide figures are the route cells merged at
/// read time (sketches merge exactly), which keeps one set of atomics off the hot path.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    routes: CellMap<(String, HttpMethod)>,
    dimensions: CellMap<(String, String)>,
}

impl HttpStats {
    pub(crate) fn route_cell(&self, method: HttpMethod, route: &str) -> Arc<StatsCell> {
        self.routes.cell(&(route.to_owned(), method))
    }

    pub(crate) fn dimension_cell(&self, key: &str, value: &str) -> Arc<StatsCell> {
        self.dimensions.cell(&(key.to_owned(), value.to_owned()))
    }

    /// Requests and failures of the last minute, over every route.
    pub(crate) fn recent(&self, elapsed: f64) -> (u64, u64) {
        self.routes.recent(elapsed)
    }

    /// Requests recorded on a matched route, and successful (2xx) requests recorded as
    /// unmatched: how the wiring checks tell a layer that sees the routes from one that
    /// does not.
    pub(crate) fn matched_and_unmatched_2xx(&self) -> (u64, u64) {
        let (mut matched, mut unmatched_2xx) = (0, 0);
        for ((route, _), cell) in self.routes.cells() {
            if route == crate::labels::UNMATCHED_ROUTE {
                unmatched_2xx += cell.status_classes[1].load(Relaxed);
            } else {
                matched += cell
                    .status_classes
                    .iter()
                    .map(|c| c.load(Relaxed))
                    .sum::<u64>()
                    + cell.aborted.load(Relaxed);
            }
        }
        (matched, unmatched_2xx)
    }

    /// Zeroes every route and dimension cell.
    pub(crate) fn reset(&self) {
        self.routes.reset();
        self.dimensions.reset();
    }

    /// Fills the service-wide figures, `routes` and `dimensions`.
    pub(crate) fn snapshot_into(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        let mut all = CellData::default();
        let mut all_windows: [window::WindowData; window::WINDOWS.len()] = Default::default();
        snapshot.routes = self
            .routes
            .cells()
            .into_iter()
            .map(|((route, method), cell)| {
                let mut data = CellData::default();
                cell.read_into(&mut data, elapsed);
                let mut windows = BTreeMap::new();
                for ((name, seconds), sum) in window::WINDOWS.iter().zip(&mut all_windows) {
                    let mut w = window::WindowData::default();
                    cell.windows.read_into(elapsed, *seconds, &mut w);
                    sum.merge(&w);
                    let covered = window::covered_seconds(elapsed, *seconds);
                    windows.insert(*name, WindowEntry::from_data(&w, covered));
                }
                all.latency.merge(&data.latency);
                all.errors += data.errors;
                all.aborted += data.aborted;
                for (sum, c) in all.status_classes.iter_mut().zip(data.status_classes) {
                    *sum += c;
                }
                all.requests_per_second += data.requests_per_second;
                RouteEntry {
                    method: method.as_str(),
                    route,
                    stats: data.entry(),
                    windows,
                }
            })
            .collect();
        snapshot.windows = window::WINDOWS
            .iter()
            .zip(&all_windows)
            .map(|((name, seconds), w)| {
                let covered = window::covered_seconds(elapsed, *seconds);
                (*name, WindowEntry::from_data(w, covered))
            })
            .collect();
        let global = all.entry();
        snapshot.totals = Totals {
            requests: global.requests,
            errors: global.errors,
            aborted: global.aborted,
        };
        snapshot.requests_per_second = global.requests_per_second;
        snapshot.success_rate = global.success_rate;
        snapshot.latency_ms = global.latency_ms;
        snapshot.status_codes = global.status_codes;
        for ((key, value), entry) in self.dimensions.entries(elapsed) {
            snapshot
                .dimensions
                .entry(key)
                .or_default()
                .insert(value, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_rate_ignores_aborted_and_counts_failures() {
        let cell = StatsCell::default();
        for _ in 0..8 {
            cell.record(1_000_000, 0, Some(200), Outcome::Success);
        }
        cell.record(1_000_000, 0, Some(503), Outcome::Failure);
        cell.record(1_000_000, 0, Some(500), Outcome::Failure);
        cell.record(1_000_000, 0, None, Outcome::Aborted);
        cell.record(60_000_000_000, 0, None, Outcome::Aborted);
        let e = cell.entry(1.0);
        assert_eq!((e.requests, e.errors, e.aborted), (12, 2, 2));
        assert_eq!(e.success_rate, Some(0.8));
        // Latency is that of the ten completed requests: the aborted ones stay out.
        let latency = e.latency_ms.unwrap();
        assert_eq!((latency.min, latency.max), (1.0, 1.0));
        assert_eq!(e.status_codes.s2xx, 8);
        assert_eq!(e.status_codes.s5xx, 2);
    }

    #[test]
    fn empty_cell_has_nulls() {
        let e = StatsCell::default().entry(1.0);
        assert_eq!(e.requests, 0);
        assert!(e.success_rate.is_none());
        assert!(e.latency_ms.is_none());
    }
}
