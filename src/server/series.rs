//! The HTTP server's part of the observer: one entry per label set holding the metric handles
//! and the stats cells that label set records into, and the one recording path of a finished
//! request.
//!
//! The first request with a new label set registers handles with the recorder (once); every
//! later one finds them with one hash lookup keyed by small values and the borrowed route
//! string, so the hot path neither builds `metrics::Key`s nor allocates.

use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Label};

use crate::labels::{protocol_version, sanitize_label_value, Dimensions, HttpMethod, OTHER};
use crate::names;
use crate::observer::handles::{self, ExemplarIds, GaugeHandle, HistogramHandle};
use crate::observer::{HealthInput, HttpServerRecord, Observer, Part, RecorderSource};
use crate::stats::{HttpStats, Outcome, StatsCell, StatsSnapshot};
use crate::sync::{read, write};
use crate::MAX_DIMENSIONS;

/// `url.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Why a request counts as failed (`error.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorType {
    /// The status code itself is the error type (`"503"`).
    Status,
    Named(&'static str),
}

/// The inputs of one finished request, as the drop guard hands them over.
pub(crate) struct HttpCompletion<'a> {
    pub(crate) method: HttpMethod,
    pub(crate) route: &'a str,
    pub(crate) scheme: Scheme,
    pub(crate) version: http::Version,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<ErrorType>,
    pub(crate) outcome: Outcome,
    pub(crate) dimensions: Option<&'a Dimensions>,
    /// `Clock::now_nanos` readings.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    /// A sampled serving span, attached to the duration as an exemplar.
    pub(crate) exemplar: Option<ExemplarIds>,
    /// One of the observer's own endpoints, recorded apart ([`OwnEndpoints::Apart`]).
    ///
    /// [`OwnEndpoints::Apart`]: super::OwnEndpoints::Apart
    pub(crate) own: bool,
    /// The request's ID and trace, for record sinks.
    pub(crate) request_id: Option<&'a str>,
    pub(crate) trace_id: Option<[u8; 16]>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: HttpMethod,
    route: Box<str>,
    scheme: Scheme,
    version: http::Version,
    status: u16,
    error: Option<ErrorType>,
    dims: Box<[Option<Box<str>>]>,
    own: bool,
}

/// The borrowed form of [`SeriesKey`]; hashes identically (same field order and types that
/// hash like their owned forms).
#[derive(Hash)]
struct SeriesKeyRef<'a> {
    method: HttpMethod,
    route: &'a str,
    scheme: Scheme,
    version: http::Version,
    status: u16,
    error: Option<ErrorType>,
    dims: &'a [Option<&'a str>],
    own: bool,
}

impl Equivalent<Arc<SeriesKey>> for SeriesKeyRef<'_> {
    fn equivalent(&self, key: &Arc<SeriesKey>) -> bool {
        self.method == key.method
            && self.status == key.status
            && self.scheme == key.scheme
            && self.version == key.version
            && self.error == key.error
            && self.own == key.own
            && *self.route == *key.route
            && self.dims.len() == key.dims.len()
            && self
                .dims
                .iter()
                .zip(key.dims.iter())
                .all(|(a, b)| *a == b.as_deref())
    }
}

impl SeriesKeyRef<'_> {
    fn to_owned_key(&self) -> SeriesKey {
        SeriesKey {
            method: self.method,
            route: self.route.into(),
            scheme: self.scheme,
            version: self.version,
            status: self.status,
            error: self.error,
            dims: self.dims.iter().map(|d| d.map(Into::into)).collect(),
            own: self.own,
        }
    }
}

/// The three histograms of one label set.
#[derive(Debug)]
struct Handles {
    duration: HistogramHandle,
    request_size: HistogramHandle,
    response_size: HistogramHandle,
}

impl Handles {
    fn register(source: &dyn RecorderSource, labels: &[Label]) -> Self {
        let h = |name: &'static str| {
            handles::histogram(source, &metrics::Key::from_parts(name, labels.to_vec()))
        };
        Self {
            duration: h(names::HTTP_SERVER_REQUEST_DURATION),
            request_size: h(names::HTTP_SERVER_REQUEST_BODY_SIZE),
            response_size: h(names::HTTP_SERVER_RESPONSE_BODY_SIZE),
        }
    }

    /// The handles of one of the observer's own endpoints, recorded apart: a duration under
    /// its own name, and no body sizes. Every rule, panel and query over the
    /// `http.server.*` families sees only the application's requests.
    fn register_own(source: &dyn RecorderSource, labels: &[Label]) -> Self {
        let key =
            metrics::Key::from_parts(names::OBSERVER_ENDPOINT_REQUEST_DURATION, labels.to_vec());
        Self {
            duration: handles::histogram(source, &key),
            request_size: HistogramHandle::noop(),
            response_size: HistogramHandle::noop(),
        }
    }
}

/// Everything one label set records into.
#[derive(Debug)]
struct Series {
    handles: Arc<Handles>,
    route_stats: Arc<StatsCell>,
    dim_stats: Box<[Arc<StatsCell>]>,
    /// Label values as recorded (after sanitising and overflow), for record sinks.
    route: Arc<str>,
    error_type: Option<Box<str>>,
    dims: Box<[(Arc<str>, Arc<str>)]>,
    /// Set for an overflow series: counts the recordings that went there.
    overflow: Option<Counter>,
    /// One of the observer's own endpoints: `route_stats` is the summary of them all, and
    /// nothing else (windows, dimensions, sinks) sees it.
    own: bool,
}

/// Overflow series by route (so route statistics stay right) and what they keep.
type OverflowSeries = HashMap<(Box<str>, OverflowKey), Arc<Series>>;

/// What an overflow series keeps of a label set: everything but the route and the
/// dimensions, which are what grows (a failure stays a failure, a status keeps its value).
type OverflowKey = (HttpMethod, Scheme, http::Version, u16, Option<ErrorType>);

/// Label set → series. Read on every request, written once per new label set.
type SeriesMap = HashMap<Arc<SeriesKey>, Arc<Series>>;

/// The HTTP server's state in an observer: its series, its statistics and its active-request
/// gauges. Attached when the first server layer is made.
#[derive(Debug, Default)]
pub(crate) struct ServerPart {
    /// Readers load a snapshot without writing to any shared cache line (an `RwLock` read
    /// would bump one counter shared by every core on every request); writers, serialised by
    /// `creating`, publish a new map.
    map: ArcSwap<SeriesMap>,
    creating: Mutex<()>,
    /// Past the limit: overflow series keyed by route (so route statistics stay right) and
    /// what an overflow series keeps; their metric handles fold the route and dimensions
    /// into `_OTHER` and are shared by every route.
    overflow: RwLock<OverflowSeries>,
    overflow_handles: Mutex<HashMap<OverflowKey, Arc<Handles>>>,
    /// Past `MAX_OVERFLOW_LABEL_SETS` overflow label sets, the one that keeps nothing.
    last_resort: OnceLock<Arc<Handles>>,
    overflow_count: OnceLock<Counter>,
    active: [[OnceLock<GaugeHandle>; 2]; HttpMethod::COUNT],
    pub(super) stats: HttpStats,
    /// The observer's own endpoints, recorded apart: `observer_endpoints` in `/v1/stats`.
    own: Arc<StatsCell>,
    /// Whether requests pass through the layer (see `wiring.rs`).
    pub(super) wiring: super::wiring::Wiring,
}

impl Part for ServerPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        self.stats.snapshot_into(snapshot, elapsed);
        snapshot.observer_endpoints = self.own.entry(elapsed);
        let gauges = self.active.iter().flatten().filter_map(OnceLock::get);
        snapshot.in_flight = gauges
            .map(GaugeHandle::value)
            .sum::<Option<f64>>()
            .map(|n| n.max(0.0) as u64);
    }

    fn reset(&self) {
        self.stats.reset();
        self.own.reset();
    }

    fn health(&self, elapsed: f64, input: &mut HealthInput) {
        input.traffic(self.stats.recent(elapsed));
    }

    fn warnings(&self, observer: &Observer, out: &mut Vec<crate::stats::Warning>) {
        self.wiring_warnings(observer, out);
    }
}

impl ServerPart {
    /// A request arrived: its active-requests gauge goes up.
    pub(crate) fn request_started(&self, observer: &Observer, method: HttpMethod, scheme: Scheme) {
        observer.guarded(|| self.active_gauge(observer, method, scheme).add(1.0));
    }

    /// A request not recorded ([`OwnEndpoints::Ignore`]) ended: its gauge comes back down.
    ///
    /// [`OwnEndpoints::Ignore`]: super::OwnEndpoints::Ignore
    pub(crate) fn request_ignored(&self, observer: &Observer, method: HttpMethod, scheme: Scheme) {
        observer.guarded(|| self.active_gauge(observer, method, scheme).add(-1.0));
    }

    /// The one recording path of a finished HTTP server request.
    pub(crate) fn record(&self, observer: &Observer, c: &HttpCompletion<'_>) {
        observer.guarded(|| self.record_unguarded(observer, c));
    }

    fn record_unguarded(&self, observer: &Observer, c: &HttpCompletion<'_>) {
        self.active_gauge(observer, c.method, c.scheme).add(-1.0);
        let dimension_keys = observer.dimensions();
        let mut dim_values: [Option<&str>; MAX_DIMENSIONS] = [None; MAX_DIMENSIONS];
        if let Some(dims) = c.dimensions {
            for (slot, key) in dim_values.iter_mut().zip(dimension_keys) {
                *slot = dims.get(key);
            }
        }
        let key = SeriesKeyRef {
            method: c.method,
            route: c.route,
            scheme: c.scheme,
            version: c.version,
            status: c.status.unwrap_or(0),
            error: c.error,
            dims: &dim_values[..dimension_keys.len()],
            own: c.own,
        };
        let nanos = c.end.saturating_sub(c.start);
        let second = observer.second_of(c.end);
        self.with_series(observer, &key, |series| {
            Self::record_into(observer, series, c, nanos, second);
        });
    }

    fn record_into(
        observer: &Observer,
        series: &Series,
        c: &HttpCompletion<'_>,
        nanos: u64,
        second: u64,
    ) {
        let duration = Duration::from_nanos(nanos);
        handles::count_overflow(&series.overflow);
        observer.record_duration(&series.handles.duration, duration, c.end, c.exemplar);
        series.handles.request_size.record(c.request_bytes as f64);
        series.handles.response_size.record(c.response_bytes as f64);
        series
            .route_stats
            .record(nanos, second, c.status, c.outcome);
        if series.own {
            return;
        }
        series.route_stats.record_windows(nanos, second, c.outcome);
        for cell in series.dim_stats.iter() {
            cell.record(nanos, second, c.status, c.outcome);
        }
        let sinks = observer.sinks();
        if !sinks.is_empty() {
            let record = HttpServerRecord {
                method: c.method.as_str(),
                route: &series.route,
                scheme: c.scheme.as_str(),
                status: c.status,
                error_type: series.error_type.as_deref(),
                dimensions: &series.dims,
                duration,
                end: observer.wall_at(c.end),
                request_body_bytes: c.request_bytes,
                response_body_bytes: c.response_bytes,
                request_id: c.request_id,
                trace_id: c.trace_id,
            };
            for sink in sinks {
                sink.record_http_server(&record);
            }
        }
    }

    /// Runs `f` with the series of `key`, created on first use. A known series is borrowed
    /// from the map's snapshot: no reference count is touched on the request path.
    fn with_series<T>(
        &self,
        observer: &Observer,
        key: &SeriesKeyRef<'_>,
        f: impl FnOnce(&Series) -> T,
    ) -> T {
        let map = self.map.load();
        if let Some(series) = map.get(key) {
            return f(series);
        }
        // Full: straight to the overflow series, without the creation lock. The observer's
        // own endpoints are a fixed set of routes, exempt from the limit (and from the
        // application's `_OTHER` series).
        let series = if map.len() >= observer.max_label_sets() && !key.own {
            self.overflow_series(observer, key)
        } else {
            self.create(observer, key)
        };
        f(&series)
    }

    fn active_gauge(
        &self,
        observer: &Observer,
        method: HttpMethod,
        scheme: Scheme,
    ) -> &GaugeHandle {
        let slot = &self.active[method.index()][scheme as usize];
        slot.get_or_init(|| {
            handles::gauge(
                observer.source(),
                &handles::key(
                    names::HTTP_SERVER_ACTIVE_REQUESTS,
                    &[
                        (names::HTTP_REQUEST_METHOD, method.as_str()),
                        (names::URL_SCHEME, scheme.as_str()),
                    ],
                ),
            )
        })
    }

    fn create(&self, observer: &Observer, key: &SeriesKeyRef<'_>) -> Arc<Series> {
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let map = self.map.load_full();
        if let Some(series) = map.get(key) {
            return series.clone();
        }
        if map.len() >= observer.max_label_sets() && !key.own {
            return self.overflow_series(observer, key);
        }
        let error_type = key.error.map(|e| error_type_str(e, key.status));
        let dims: Box<[(Arc<str>, Arc<str>)]> = observer
            .dimensions()
            .iter()
            .zip(key.dims)
            .filter_map(|(k, v)| {
                v.map(|v| (k.clone(), Arc::from(sanitize_label_value(v).as_ref())))
            })
            .collect();
        let mut labels = series_labels(key, key.route, error_type.as_deref());
        for (k, v) in dims.iter() {
            labels.push(Label::new(k.to_string(), v.to_string()));
        }
        let handles = Arc::new(if key.own {
            Handles::register_own(observer.source(), &labels)
        } else {
            Handles::register(observer.source(), &labels)
        });
        let series = self.new_series(key, handles, error_type, dims, None);
        let mut next = SeriesMap::clone(&map);
        next.insert(Arc::new(key.to_owned_key()), series.clone());
        self.map.store(Arc::new(next));
        series
    }

    /// A series of `key` over `handles`, with its `/v1/stats` cells (per route and per
    /// dimension value).
    fn new_series(
        &self,
        key: &SeriesKeyRef<'_>,
        handles: Arc<Handles>,
        error_type: Option<Box<str>>,
        dims: Box<[(Arc<str>, Arc<str>)]>,
        overflow: Option<Counter>,
    ) -> Arc<Series> {
        let (route_stats, dim_stats) = if key.own {
            (self.own.clone(), Box::default())
        } else {
            (
                self.stats.route_cell(key.method, key.route),
                dims.iter()
                    .map(|(k, v)| self.stats.dimension_cell(k, v))
                    .collect(),
            )
        };
        Arc::new(Series {
            handles,
            route_stats,
            dim_stats,
            route: Arc::from(key.route),
            error_type,
            dims,
            overflow,
            own: key.own,
        })
    }

    fn overflow_series(&self, observer: &Observer, key: &SeriesKeyRef<'_>) -> Arc<Series> {
        let kept: OverflowKey = (key.method, key.scheme, key.version, key.status, key.error);
        let route_key = (Box::<str>::from(key.route), kept);
        if let Some(series) = read(&self.overflow).get(&route_key) {
            return series.clone();
        }
        let source = observer.source();
        let counter = self
            .overflow_count
            .get_or_init(|| handles::overflow_counter(source, names::HTTP_SERVER_REQUEST_DURATION))
            .clone();
        let dimension_keys = observer.dimensions();
        let error_type = key.error.map(|e| error_type_str(e, key.status));
        let handles = {
            let mut shared = self
                .overflow_handles
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let register = |kept_labels: Vec<Label>| {
                let mut labels = kept_labels;
                for k in dimension_keys {
                    labels.push(Label::new(k.to_string(), OTHER));
                }
                labels.push(Label::from_static_parts(
                    names::OTEL_METRIC_OVERFLOW,
                    "true",
                ));
                Arc::new(Handles::register(source, &labels))
            };
            match shared.get(&kept) {
                Some(handles) => handles.clone(),
                // The last resort: nothing but the fact of the overflow is kept.
                None if shared.len() >= handles::MAX_OVERFLOW_LABEL_SETS => self
                    .last_resort
                    .get_or_init(|| {
                        let other = |name| Label::from_static_parts(name, OTHER);
                        register(vec![
                            other(names::HTTP_REQUEST_METHOD),
                            other(names::HTTP_ROUTE),
                        ])
                    })
                    .clone(),
                None => shared
                    .entry(kept)
                    .or_insert_with(|| register(series_labels(key, OTHER, error_type.as_deref())))
                    .clone(),
            }
        };
        let other: Arc<str> = Arc::from(OTHER);
        let dims: Box<[(Arc<str>, Arc<str>)]> = dimension_keys
            .iter()
            .map(|k| (k.clone(), other.clone()))
            .collect();
        let series = self.new_series(key, handles, error_type, dims, Some(counter));
        write(&self.overflow)
            .entry(route_key)
            .or_insert(series)
            .clone()
    }
}

/// The labels of a label set: `route` (the template, or `_OTHER` for an overflow series) and
/// what the key holds; the dimensions are added by the caller.
fn series_labels(key: &SeriesKeyRef<'_>, route: &str, error_type: Option<&str>) -> Vec<Label> {
    let mut labels = vec![
        Label::from_static_parts(names::HTTP_REQUEST_METHOD, key.method.as_str()),
        Label::new(names::HTTP_ROUTE, route.to_owned()),
        Label::from_static_parts(names::URL_SCHEME, key.scheme.as_str()),
    ];
    if key.status != 0 {
        labels.push(Label::new(
            names::HTTP_RESPONSE_STATUS_CODE,
            status_str(key.status),
        ));
    }
    if let Some(e) = error_type {
        labels.push(Label::new(names::ERROR_TYPE, e.to_owned()));
    }
    labels.push(Label::from_static_parts(
        names::NETWORK_PROTOCOL_VERSION,
        protocol_version(key.version),
    ));
    labels
}

/// The `error_type` label of a failure.
fn error_type_str(error: ErrorType, status: u16) -> Box<str> {
    match error {
        ErrorType::Status => status_str(status).into(),
        ErrorType::Named(name) => name.into(),
    }
}

fn status_str(status: u16) -> String {
    itoa::Buffer::new().format(status).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn borrowed_and_owned_keys_hash_alike() {
        let dims = [Some("eu"), None];
        let r = SeriesKeyRef {
            method: HttpMethod::Get,
            route: "/users/{id}",
            scheme: Scheme::Http,
            version: http::Version::HTTP_11,
            status: 200,
            error: Some(ErrorType::Named("aborted")),
            dims: &dims,
            own: false,
        };
        let owned = Arc::new(r.to_owned_key());
        let s = hashbrown::DefaultHashBuilder::default();
        assert_eq!(s.hash_one(&r), s.hash_one(&owned));
        assert!(r.equivalent(&owned));
    }
}
