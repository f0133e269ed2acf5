//! The HTTP server series cache: one entry per label set, holding the metric handles and the
//! stats cells that label set records into.
//!
//! The first request with a new label set registers handles with the recorder (once); every
//! later one finds them with one hash lookup keyed by small values and the borrowed route
//! string, so the hot path neither builds `metrics::Key`s nor allocates.

use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arc_swap::ArcSwap;

use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};

use crate::labels::{sanitize_label_value, HttpMethod, OTHER};
use crate::names;
use crate::registry::storage::Exemplar;
use crate::registry::{AtomicGauge, AtomicHistogram, Registry};
use crate::stats::{Stats, StatsCell};
use crate::sync::{read, write};

/// Most extra dimensions an observer can be configured with.
pub const MAX_DIMENSIONS: usize = 8;

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

#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: HttpMethod,
    route: Box<str>,
    scheme: Scheme,
    status: u16,
    error: Option<ErrorType>,
    dims: Box<[Option<Box<str>>]>,
}

/// The borrowed form of [`SeriesKey`]; hashes identically (same field order and types that
/// hash like their owned forms).
#[derive(Hash)]
pub(crate) struct SeriesKeyRef<'a> {
    pub(crate) method: HttpMethod,
    pub(crate) route: &'a str,
    pub(crate) scheme: Scheme,
    pub(crate) status: u16,
    pub(crate) error: Option<ErrorType>,
    pub(crate) dims: &'a [Option<&'a str>],
}

impl Equivalent<Arc<SeriesKey>> for SeriesKeyRef<'_> {
    fn equivalent(&self, key: &Arc<SeriesKey>) -> bool {
        self.method == key.method
            && self.status == key.status
            && self.scheme == key.scheme
            && self.error == key.error
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
            status: self.status,
            error: self.error,
            dims: self.dims.iter().map(|d| d.map(Into::into)).collect(),
        }
    }
}

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
}

/// The three histograms of one label set.
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) duration: HistogramHandle,
    pub(crate) request_size: HistogramHandle,
    pub(crate) response_size: HistogramHandle,
}

/// Everything one label set records into.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) handles: Arc<Handles>,
    pub(crate) route_stats: Arc<StatsCell>,
    pub(crate) dim_stats: Box<[Arc<StatsCell>]>,
    /// Label values as recorded (after sanitising and overflow), for record sinks.
    pub(crate) route: Arc<str>,
    pub(crate) error_type: Option<Box<str>>,
    pub(crate) dims: Box<[(Arc<str>, Arc<str>)]>,
}

/// Method and route template.
type RouteKey = (HttpMethod, Box<str>);

/// Label set → series. Read on every request, written once per new label set.
type SeriesMap = HashMap<Arc<SeriesKey>, Arc<Series>>;

#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    /// Readers load a snapshot without writing to any shared cache line (an `RwLock` read
    /// would bump one counter shared by every core on every request); writers, serialised by
    /// `creating`, publish a new map.
    map: ArcSwap<SeriesMap>,
    creating: Mutex<()>,
    /// Past the limit: one overflow series per route, sharing one set of `_OTHER` handles,
    /// so route statistics stay right while the metrics stop growing.
    overflow: RwLock<HashMap<RouteKey, Arc<Series>>>,
    overflow_handles: OnceLock<Arc<Handles>>,
    overflow_count: OnceLock<Counter>,
    active: [[OnceLock<GaugeHandle>; 2]; HttpMethod::ALL.len()],
    described: OnceLock<()>,
}

/// Where the cache registers handles: a recorder it owns, one it was given, or the global
/// one (reachable only inside `metrics::with_recorder`).
pub(crate) trait RecorderSource {
    fn with(&self, f: &mut dyn FnMut(&dyn Recorder));

    /// Our own registry, when that is the recorder: its storage is then used directly.
    fn registry(&self) -> Option<&Registry>;
}

/// What the cache needs from its observer to create a series.
pub(crate) struct Context<'a> {
    pub(crate) source: &'a dyn RecorderSource,
    pub(crate) stats: &'a Stats,
    pub(crate) dimension_keys: &'a [Arc<str>],
    pub(crate) max_label_sets: usize,
}

impl SeriesCache {
    /// Runs `f` with the series for `key`, creating it on first use.
    pub(crate) fn with_series<T>(
        &self,
        key: &SeriesKeyRef<'_>,
        ctx: &Context<'_>,
        f: impl FnOnce(&Series) -> T,
    ) -> T {
        if let Some(series) = self.map.load().get(key) {
            return f(series);
        }
        let mut created = None;
        ctx.source
            .with(&mut |r| created = Some(self.create(r, ctx, key)));
        f(&created.unwrap_or_else(|| detached(ctx, key)))
    }

    pub(crate) fn active_gauge(
        &self,
        method: HttpMethod,
        scheme: Scheme,
        source: &dyn RecorderSource,
    ) -> &GaugeHandle {
        let slot = &self.active[method.index()][scheme as usize];
        slot.get_or_init(|| {
            let key = Key::from_parts(
                names::HTTP_SERVER_ACTIVE_REQUESTS,
                vec![
                    Label::from_static_parts(names::HTTP_REQUEST_METHOD, method.as_str()),
                    Label::from_static_parts(names::URL_SCHEME, scheme.as_str()),
                ],
            );
            let mut gauge = GaugeHandle::Facade(Gauge::noop());
            source.with(&mut |r| {
                self.described.get_or_init(|| describe(r));
                gauge = match source.registry().and_then(|reg| reg.gauge_storage(&key)) {
                    Some(g) => GaugeHandle::Builtin(g),
                    None => GaugeHandle::Facade(r.register_gauge(&key, &metadata())),
                };
            });
            gauge
        })
    }
}

fn metadata() -> metrics::Metadata<'static> {
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

fn describe(r: &dyn Recorder) {
    use metrics::Unit;
    r.describe_histogram(
        names::HTTP_SERVER_REQUEST_DURATION.into(),
        Some(Unit::Seconds),
        "Duration of HTTP server requests, from arrival to the end of the response body.".into(),
    );
    r.describe_histogram(
        names::HTTP_SERVER_REQUEST_BODY_SIZE.into(),
        Some(Unit::Bytes),
        "Size of HTTP server request bodies, in bytes actually read.".into(),
    );
    r.describe_histogram(
        names::HTTP_SERVER_RESPONSE_BODY_SIZE.into(),
        Some(Unit::Bytes),
        "Size of HTTP server response bodies, in bytes actually sent.".into(),
    );
    r.describe_gauge(
        names::HTTP_SERVER_ACTIVE_REQUESTS.into(),
        None,
        "Number of HTTP server requests whose response is not yet complete.".into(),
    );
    r.describe_counter(
        names::CARDINALITY_OVERFLOW.into(),
        None,
        "Recordings whose label set exceeded the per-metric limit and were folded into the _OTHER series.".into(),
    );
}

fn register(r: &dyn Recorder, registry: Option<&Registry>, labels: &[Label]) -> Handles {
    let md = metadata();
    let h = |name: &'static str| {
        let key = Key::from_parts(name, labels.to_vec());
        match registry.and_then(|reg| reg.histogram_storage(&key)) {
            Some(storage) => HistogramHandle::Builtin(storage),
            None => HistogramHandle::Facade(r.register_histogram(&key, &md)),
        }
    };
    Handles {
        duration: h(names::HTTP_SERVER_REQUEST_DURATION),
        request_size: h(names::HTTP_SERVER_REQUEST_BODY_SIZE),
        response_size: h(names::HTTP_SERVER_RESPONSE_BODY_SIZE),
    }
}

impl SeriesCache {
    fn create(&self, r: &dyn Recorder, ctx: &Context<'_>, key: &SeriesKeyRef<'_>) -> Arc<Series> {
        self.described.get_or_init(|| describe(r));
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let map = self.map.load_full();
        if let Some(series) = map.get(key) {
            return series.clone();
        }
        if map.len() >= ctx.max_label_sets {
            return self.overflow_series(r, ctx, key);
        }
        let error_type: Option<Box<str>> = key.error.map(|e| match e {
            ErrorType::Status => status_str(key.status).into(),
            ErrorType::Named(name) => name.into(),
        });
        let dims: Box<[(Arc<str>, Arc<str>)]> = ctx
            .dimension_keys
            .iter()
            .zip(key.dims)
            .filter_map(|(k, v)| {
                v.map(|v| (k.clone(), Arc::from(sanitize_label_value(v).as_ref())))
            })
            .collect();
        let mut labels = vec![
            Label::from_static_parts(names::HTTP_REQUEST_METHOD, key.method.as_str()),
            Label::new(names::HTTP_ROUTE, key.route.to_owned()),
            Label::from_static_parts(names::URL_SCHEME, key.scheme.as_str()),
        ];
        if key.status != 0 {
            labels.push(Label::new(
                names::HTTP_RESPONSE_STATUS_CODE,
                status_str(key.status),
            ));
        }
        if let Some(e) = &error_type {
            labels.push(Label::new(names::ERROR_TYPE, e.to_string()));
        }
        for (k, v) in dims.iter() {
            labels.push(Label::new(k.to_string(), v.to_string()));
        }
        let series = Arc::new(Series {
            handles: Arc::new(register(r, ctx.source.registry(), &labels)),
            route_stats: ctx.stats.route_cell(key.method, key.route),
            dim_stats: dims
                .iter()
                .map(|(k, v)| ctx.stats.dimension_cell(k, v))
                .collect(),
            route: Arc::from(key.route),
            error_type,
            dims,
        });
        let mut next = SeriesMap::clone(&map);
        next.insert(Arc::new(key.to_owned_key()), series.clone());
        self.map.store(Arc::new(next));
        series
    }

    fn overflow_series(
        &self,
        r: &dyn Recorder,
        ctx: &Context<'_>,
        key: &SeriesKeyRef<'_>,
    ) -> Arc<Series> {
        self.overflow_count
            .get_or_init(|| {
                let key = Key::from_parts(
                    names::CARDINALITY_OVERFLOW,
                    vec![Label::from_static_parts(
                        "metric",
                        names::HTTP_SERVER_REQUEST_DURATION,
                    )],
                );
                r.register_counter(&key, &metadata())
            })
            .increment(1);
        let route_key = (key.method, Box::<str>::from(key.route));
        if let Some(series) = read(&self.overflow).get(&route_key) {
            return series.clone();
        }
        let handles = self
            .overflow_handles
            .get_or_init(|| {
                let mut labels: Vec<Label> = [
                    names::HTTP_REQUEST_METHOD,
                    names::HTTP_ROUTE,
                    names::URL_SCHEME,
                    names::HTTP_RESPONSE_STATUS_CODE,
                ]
                .into_iter()
                .map(|k| Label::from_static_parts(k, OTHER))
                .collect();
                for k in ctx.dimension_keys {
                    labels.push(Label::new(k.to_string(), OTHER));
                }
                Arc::new(register(r, ctx.source.registry(), &labels))
            })
            .clone();
        let other: Arc<str> = Arc::from(OTHER);
        let dims: Box<[(Arc<str>, Arc<str>)]> = ctx
            .dimension_keys
            .iter()
            .map(|k| (k.clone(), other.clone()))
            .collect();
        let series = Arc::new(Series {
            handles,
            route_stats: ctx.stats.route_cell(key.method, key.route),
            dim_stats: dims
                .iter()
                .map(|(k, v)| ctx.stats.dimension_cell(k, v))
                .collect(),
            route: Arc::from(key.route),
            error_type: None,
            dims,
        });
        write(&self.overflow)
            .entry(route_key)
            .or_insert(series)
            .clone()
    }
}

/// A series that records nowhere, for when no recorder could be reached.
fn detached(ctx: &Context<'_>, key: &SeriesKeyRef<'_>) -> Arc<Series> {
    Arc::new(Series {
        handles: Arc::new(Handles {
            duration: HistogramHandle::Facade(Histogram::noop()),
            request_size: HistogramHandle::Facade(Histogram::noop()),
            response_size: HistogramHandle::Facade(Histogram::noop()),
        }),
        route_stats: ctx.stats.route_cell(key.method, key.route),
        dim_stats: Box::default(),
        route: Arc::from(key.route),
        error_type: None,
        dims: Box::default(),
    })
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
            status: 200,
            error: Some(ErrorType::Named("aborted")),
            dims: &dims,
        };
        let owned = Arc::new(r.to_owned_key());
        let s = hashbrown::DefaultHashBuilder::default();
        assert_eq!(s.hash_one(&r), s.hash_one(&owned));
        assert!(r.equivalent(&owned));
    }
}
