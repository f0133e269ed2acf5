//! The [`Observer`]: one shared handle that owns the recording path.
//!
//! Every layer made from an observer records a finished request exactly once, through
//! [`Observer`]'s internal record call, which updates, in this order: the metric handles of
//! the request's label set (registered once with the recorder, then reused), the
//! `/v1/stats` cells, and any [`RecordSink`]s (history, alerts, exemplars and other later
//! consumers plug in there). A panic anywhere in that path, a user recorder's included, is
//! caught and counted; it never reaches the request.

mod client;
pub(crate) mod family;
#[cfg(feature = "tonic")]
mod grpc;
mod health;
mod series;
mod sink;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use metrics::{Counter, Key, Recorder};

use crate::clock::Clock;
use crate::labels::{is_valid_label_name, Dimensions, HttpMethod};
use crate::registry::storage::Exemplar;
use crate::registry::{Registry, RegistryBuilder, BODY_SIZE_BUCKETS, OTEL_DURATION_BUCKETS};

/// Buckets of `client_request_attempts`.
const ATTEMPT_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0];

/// Buckets of the gRPC messages-per-call histograms.
const MESSAGE_BUCKETS: [f64; 11] = [
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 512.0, 2048.0,
];
use crate::stats::{Outcome, Stats, StatsSnapshot};
use crate::trace::SpanIds;
use crate::{names, time_fmt};
#[cfg(feature = "tower-retry")]
pub(crate) use client::upstream_label;
use client::ClientSeries;
pub(crate) use client::{ClientCompletion, Endpoint, EndpointCache};
#[cfg(feature = "tonic")]
pub(crate) use grpc::GrpcCompletion;
pub use series::MAX_DIMENSIONS;
use series::{Context, SeriesCache, SeriesKeyRef};
pub(crate) use series::{ErrorType, GaugeHandle, HistogramHandle, RecorderSource, Scheme};
use sink::Sinks;
pub use sink::{HttpClientRecord, HttpServerRecord, RecordSink};

use crate::cache::CacheCounters;
use crate::client::ClientLayer;
use crate::pool::{BackendPool, PoolState};
use crate::retry::{RetryTarget, RetryTracker};
use family::Family;

enum Backend {
    Registry(Registry),
    Recorder(Arc<dyn Recorder + Send + Sync>),
    Global,
}

impl RecorderSource for Backend {
    fn with(&self, f: &mut dyn FnMut(&dyn Recorder)) {
        match self {
            Backend::Registry(r) => f(r),
            Backend::Recorder(r) => f(&**r),
            Backend::Global => metrics::with_recorder(|r| f(r)),
        }
    }

    fn registry(&self) -> Option<&Registry> {
        match self {
            Backend::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// Most retry targets, caches and pools per observer; past it they share an `_OTHER` entry.
const MAX_NAMED: usize = 256;

/// Where registrations go when the recorder panicked: nowhere.
struct NoRecorder;

impl RecorderSource for NoRecorder {
    fn with(&self, _: &mut dyn FnMut(&dyn Recorder)) {}

    fn registry(&self) -> Option<&Registry> {
        None
    }
}

type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

struct Inner {
    backend: Backend,
    renderer: Option<Renderer>,
    stats: Stats,
    clock: Clock,
    /// `clock.now_nanos()` at start.
    started: u64,
    started_wall: SystemTime,
    dimension_keys: Box<[Arc<str>]>,
    max_label_sets: usize,
    http: SeriesCache,
    client: ClientSeries,
    retry_targets: Family<RetryTarget>,
    caches: Family<CacheCounters>,
    pools: Family<PoolState>,
    #[cfg(feature = "tonic")]
    grpc: grpc::GrpcSeries,
    sinks: Sinks,
    health: crate::health::HealthOptions,
    service_version: Option<String>,
    reset_token: Option<String>,
    #[cfg(feature = "history")]
    history: Option<crate::history::History>,
    recording_failures: AtomicU64,
    request_id_rejected: OnceLock<Counter>,
}

/// The shared core of tower-observe: the recorder, the statistics and their configuration.
///
/// Cheap to clone. Make the layers and the endpoints from the same observer:
///
/// ```
/// # #[cfg(feature = "axum")]
/// # fn main() {
/// use axum::{routing::get, Router};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .merge(observer.router()) // GET /metrics and GET /v1/stats
///     .layer(observer.layer()); // request IDs + HTTP metrics
/// # }
/// # #[cfg(not(feature = "axum"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Observer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("dimensions", &self.inner.dimension_keys)
            .field("max_label_sets", &self.inner.max_label_sets)
            .field("clock", &self.inner.clock)
            .field("sinks", &self.inner.sinks)
            .finish_non_exhaustive()
    }
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

/// The inputs of one finished request, as the metrics layer hands them over.
pub(crate) struct HttpCompletion<'a> {
    pub(crate) method: HttpMethod,
    pub(crate) route: &'a str,
    pub(crate) scheme: Scheme,
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
    pub(crate) exemplar: Option<SpanIds>,
}

impl Observer {
    /// An observer with its own [`Registry`], OpenTelemetry duration buckets, no extra
    /// dimensions and a limit of 2000 label sets per metric.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// Starts configuring an observer.
    pub fn builder() -> ObserverBuilder {
        ObserverBuilder::default()
    }

    /// The registry the observer records into, unless it was given another recorder.
    ///
    /// Install it as the global `metrics` recorder to have your own `metrics::counter!`
    /// calls appear on `/metrics`: `metrics::set_global_recorder(observer.registry().unwrap().clone())`.
    pub fn registry(&self) -> Option<&Registry> {
        match &self.inner.backend {
            Backend::Registry(r) => Some(r),
            _ => None,
        }
    }

    /// Renders `/metrics`: the registry's Prometheus text, or the output of the renderer
    /// configured with [`ObserverBuilder::renderer`]; `None` when there is neither.
    pub fn render_metrics(&self) -> Option<String> {
        if let Some(render) = &self.inner.renderer {
            return catch_unwind(AssertUnwindSafe(|| render())).ok();
        }
        self.registry().map(Registry::render)
    }

    /// Seconds since the observer started.
    pub(crate) fn elapsed_seconds(&self) -> f64 {
        self.inner
            .clock
            .now_nanos()
            .saturating_sub(self.inner.started) as f64
            / 1e9
    }

    /// The request history, when configured (feature `history`).
    #[cfg(feature = "history")]
    pub fn history(&self) -> Option<&crate::history::History> {
        self.inner.history.as_ref()
    }

    /// Whether `/health` and `/health/live` are served.
    pub(crate) fn health_enabled(&self) -> bool {
        self.inner.health.enabled
    }

    /// Whether `POST /v1/stats/reset` is enabled.
    pub(crate) fn reset_enabled(&self) -> bool {
        self.inner.reset_token.is_some()
    }

    /// The statistics served at `/v1/stats`, as of now.
    pub fn stats(&self) -> StatsSnapshot {
        let elapsed = self.elapsed_seconds();
        let mut snapshot = self
            .inner
            .stats
            .snapshot(elapsed, time_fmt::rfc3339(self.inner.started_wall));
        let name = |values: Vec<String>| values.into_iter().next().unwrap_or_default();
        snapshot.retries = (self.inner.retry_targets.entries().into_iter())
            .map(|(k, v)| (name(k), v.entry()))
            .collect();
        snapshot.caches = (self.inner.caches.entries().into_iter())
            .map(|(k, v)| (name(k), v.entry()))
            .collect();
        snapshot.pools = (self.inner.pools.entries().into_iter())
            .map(|(k, v)| (name(k), v.entry()))
            .collect();
        #[cfg(feature = "tonic")]
        {
            use crate::grpc::Side;
            let entries = |side| {
                self.inner
                    .grpc
                    .cells(side)
                    .into_iter()
                    .map(|(k, v)| (k, v.entry(elapsed)))
                    .collect()
            };
            snapshot.grpc.server = entries(Side::Server);
            snapshot.grpc.client = entries(Side::Client);
        }
        snapshot
    }

    /// Instrumentation for an HTTP client (tower layer, or `reqwest-middleware` middleware);
    /// see [`crate::client`].
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::new();
    /// // Any tower HTTP client; here one that answers 204 to everything.
    /// let client = ServiceBuilder::new()
    ///     .layer(observer.client_layer().propagate(false))
    ///     .service(tower::service_fn(|_req: http::Request<String>| async {
    ///         Ok::<_, std::io::Error>(http::Response::builder().status(204).body(String::new()).unwrap())
    ///     }));
    /// # let _ = client;
    /// ```
    pub fn client_layer(&self) -> ClientLayer {
        ClientLayer::new(self.clone())
    }

    /// Retry and failover accounting for `target`; see [`crate::retry`].
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let mut call = observer.retries("search").call();
    /// call.retry("timeout");
    /// call.failed(); // still failing after a retry: exhausted
    /// assert_eq!(observer.stats().retries["search"].exhausted, 1);
    /// ```
    pub fn retries(&self, target: &str) -> RetryTracker {
        let entry = self.named(&self.inner.retry_targets, target, RetryTarget::new);
        RetryTracker::new(self.clone(), entry)
    }

    pub(crate) fn cache_counters(&self, name: &str) -> Arc<CacheCounters> {
        self.named(&self.inner.caches, name, CacheCounters::new)
    }

    /// The pool of backends called `name`, selected with `strategy` (`round_robin`,
    /// `least_latency`, `random`, …); see [`crate::pool`]. The strategy is fixed by the first
    /// call for a name.
    pub fn backend_pool(&self, name: &str, strategy: &str) -> BackendPool {
        let entry = self.named(&self.inner.pools, name, |source, name| {
            PoolState::new(source, name, strategy)
        });
        BackendPool::new(self.clone(), entry)
    }

    /// The entry called `name` of a family of named things (retry targets, caches, pools),
    /// made with the recorder on first use — or, should the recorder panic, a detached entry
    /// that records nowhere.
    fn named<T>(
        &self,
        family: &Family<T>,
        name: &str,
        make: impl Fn(&dyn RecorderSource, &str) -> T,
    ) -> Arc<T> {
        let mut entry = None;
        self.with_source(|source| {
            entry = Some(family.get(source, &[name], |v| make(source, v[0])));
        });
        entry.unwrap_or_else(|| Arc::new(make(&NoRecorder, name)))
    }

    /// Runs `f` with the recorder, guarded like every recording.
    pub(crate) fn with_source(&self, f: impl FnOnce(&dyn RecorderSource)) {
        self.guarded(|| f(&self.inner.backend));
    }

    /// How many times recording a request failed (a recorder or sink panicked). Those
    /// requests were served normally; only their measurement was lost.
    pub fn recording_failures(&self) -> u64 {
        self.inner.recording_failures.load(Relaxed)
    }

    /// The clock the layers read.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// `clock().now_nanos()`, for the layers.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// The extra dimensions this observer turns into labels and breakdowns.
    pub fn dimensions(&self) -> &[Arc<str>] {
        &self.inner.dimension_keys
    }

    /// Runs `f`, and counts instead of propagating a panic from a user recorder or sink.
    pub(crate) fn guarded(&self, f: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            self.inner.recording_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn request_started(&self, method: HttpMethod, scheme: Scheme) {
        self.guarded(|| {
            self.inner
                .http
                .active_gauge(method, scheme, &self.inner.backend)
                .add(1.0);
        });
    }

    pub(crate) fn request_id_rejected(&self) {
        self.guarded(|| {
            self.inner
                .request_id_rejected
                .get_or_init(|| {
                    let mut counter = Counter::noop();
                    self.inner.backend.with(&mut |r| {
                        r.describe_counter(
                            names::REQUEST_ID_REJECTED.into(),
                            None,
                            "Incoming request IDs that were invalid and replaced by a fresh one."
                                .into(),
                        );
                        counter = r.register_counter(
                            &Key::from_name(names::REQUEST_ID_REJECTED),
                            &metrics::Metadata::new(module_path!(), metrics::Level::INFO, None),
                        );
                    });
                    counter
                })
                .increment(1);
        });
    }

    /// The one recording path for a finished HTTP server request.
    pub(crate) fn record_http(&self, c: &HttpCompletion<'_>) {
        self.guarded(|| self.record_http_unguarded(c));
    }

    fn record_http_unguarded(&self, c: &HttpCompletion<'_>) {
        let inner = &*self.inner;
        inner
            .http
            .active_gauge(c.method, c.scheme, &inner.backend)
            .add(-1.0);
        let mut dim_values: [Option<&str>; MAX_DIMENSIONS] = [None; MAX_DIMENSIONS];
        let dim_count = inner.dimension_keys.len();
        if let Some(dims) = c.dimensions {
            for (slot, key) in dim_values.iter_mut().zip(inner.dimension_keys.iter()) {
                *slot = dims.get(key);
            }
        }
        let key = SeriesKeyRef {
            method: c.method,
            route: c.route,
            scheme: c.scheme,
            status: c.status.unwrap_or(0),
            error: c.error,
            dims: &dim_values[..dim_count],
        };
        let ctx = Context {
            source: &inner.backend,
            stats: &inner.stats,
            dimension_keys: &inner.dimension_keys,
            max_label_sets: inner.max_label_sets,
        };
        let nanos = c.end.saturating_sub(c.start);
        let duration = Duration::from_nanos(nanos);
        let second = c.end.saturating_sub(inner.started) / 1_000_000_000;
        inner.http.with_series(&key, &ctx, |series| {
            inner.record_duration(&series.handles.duration, duration, c.end, c.exemplar);
            series.handles.request_size.record(c.request_bytes as f64);
            series.handles.response_size.record(c.response_bytes as f64);
            series
                .route_stats
                .record(nanos, second, c.status, c.outcome);
            for cell in series.dim_stats.iter() {
                cell.record(nanos, second, c.status, c.outcome);
            }
            if !inner.sinks.0.is_empty() {
                let record = HttpServerRecord {
                    method: c.method.as_str(),
                    route: &series.route,
                    scheme: c.scheme.as_str(),
                    status: c.status,
                    error_type: series.error_type.as_deref(),
                    dimensions: &series.dims,
                    duration,
                    end: inner.wall_at(c.end),
                    request_body_bytes: c.request_bytes,
                    response_body_bytes: c.response_bytes,
                };
                for sink in inner.sinks.0.iter() {
                    sink.record_http_server(&record);
                }
            }
        });
    }
}

impl Inner {
    /// The wall-clock time of a `Clock::now_nanos` reading.
    fn wall_at(&self, nanos: u64) -> SystemTime {
        self.started_wall + Duration::from_nanos(nanos.saturating_sub(self.started))
    }

    /// Records a duration, with the span of a sampled trace as its exemplar (where the storage
    /// keeps exemplars). `end` is the `Clock::now_nanos` reading at the end.
    fn record_duration(
        &self,
        handle: &HistogramHandle,
        duration: Duration,
        end: u64,
        exemplar: Option<SpanIds>,
    ) {
        match exemplar {
            Some(ids) if ids.sampled => handle.record_with_exemplar(Exemplar {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                value: duration.as_secs_f64(),
                timestamp: self
                    .wall_at(end)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            }),
            _ => handle.record(duration.as_secs_f64()),
        }
    }
}

/// An invalid [`ObserverBuilder`] setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A dimension name is not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    InvalidDimension(String),
    /// A dimension name collides with one of the HTTP labels.
    ReservedDimension(String),
    /// More than [`MAX_DIMENSIONS`] dimensions.
    TooManyDimensions(usize),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidDimension(d) => write!(
                f,
                "dimension {d:?} is not a valid label name (use letters, digits and _, not starting with a digit)"
            ),
            BuildError::ReservedDimension(d) => {
                write!(f, "dimension {d:?} collides with a built-in HTTP label")
            }
            BuildError::TooManyDimensions(n) => write!(
                f,
                "{n} dimensions configured; at most {MAX_DIMENSIONS} are supported"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

enum BackendChoice {
    Builtin,
    Recorder(Arc<dyn Recorder + Send + Sync>),
    Global,
}

/// Configures an [`Observer`].
#[must_use]
pub struct ObserverBuilder {
    backend: BackendChoice,
    registry: RegistryBuilder,
    duration_buckets: Vec<f64>,
    renderer: Option<Renderer>,
    clock: Clock,
    dimensions: Vec<String>,
    max_label_sets: usize,
    sinks: Vec<Arc<dyn RecordSink>>,
    health: crate::health::HealthOptions,
    service_version: Option<String>,
    reset_token: Option<String>,
    #[cfg(feature = "history")]
    history: Option<crate::history::HistoryOptions>,
}

impl fmt::Debug for ObserverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserverBuilder")
            .field("dimensions", &self.dimensions)
            .field("max_label_sets", &self.max_label_sets)
            .finish_non_exhaustive()
    }
}

impl Default for ObserverBuilder {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Builtin,
            registry: Registry::builder(),
            duration_buckets: OTEL_DURATION_BUCKETS.to_vec(),
            renderer: None,
            clock: Clock::system(),
            dimensions: Vec::new(),
            max_label_sets: crate::registry::DEFAULT_MAX_LABEL_SETS,
            sinks: Vec::new(),
            health: crate::health::HealthOptions::new(),
            service_version: None,
            reset_token: None,
            #[cfg(feature = "history")]
            history: None,
        }
    }
}

impl ObserverBuilder {
    /// Records into `recorder` instead of the built-in [`Registry`] (for example a
    /// `metrics-exporter-prometheus` recorder). Pair it with [`renderer`](Self::renderer)
    /// to keep serving `/metrics`.
    pub fn recorder<R: Recorder + Send + Sync + 'static>(mut self, recorder: R) -> Self {
        self.backend = BackendChoice::Recorder(Arc::new(recorder));
        self
    }

    /// Records into whatever global recorder `metrics::set_global_recorder` installed.
    ///
    /// Handles are looked up when each label set is first seen and kept, so install the
    /// global recorder before the first request; label sets seen before that record nowhere.
    pub fn global_recorder(mut self) -> Self {
        self.backend = BackendChoice::Global;
        self
    }

    /// What `/metrics` serves, when the observer does not own the registry.
    pub fn renderer(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.renderer = Some(Arc::new(render));
        self
    }

    /// Further settings of the built-in registry: buckets of your own histograms, default
    /// buckets. (The HTTP histograms' buckets are set with [`duration_buckets`](Self::duration_buckets).)
    pub fn configure_registry(
        mut self,
        f: impl FnOnce(RegistryBuilder) -> RegistryBuilder,
    ) -> Self {
        self.registry = f(self.registry);
        self
    }

    /// Bucket bounds, in seconds, of `http_server_request_duration_seconds`. Defaults to the
    /// OpenTelemetry advice: 5 ms … 10 s in 14 buckets.
    pub fn duration_buckets(mut self, bounds: &[f64]) -> Self {
        self.duration_buckets = bounds.to_vec();
        self
    }

    /// Adds an extra dimension (`backend`, `model`, …): read from [`Dimensions`]
    /// extensions, added as a label and broken down in `/v1/stats`.
    pub fn dimension(mut self, name: impl Into<String>) -> Self {
        self.dimensions.push(name.into());
        self
    }

    /// At most this many label sets per HTTP metric (default 2000); past it, new label sets
    /// fold into one `_OTHER` series and `tower_observe_cardinality_overflow_total` counts them.
    pub fn max_label_sets_per_metric(mut self, limit: usize) -> Self {
        self.max_label_sets = limit.max(1);
        self
    }

    /// The time source (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Health thresholds and dependency checks for `GET /health`.
    pub fn health(mut self, options: crate::health::HealthOptions) -> Self {
        self.health = options;
        self
    }

    /// The service's version, reported by `GET /health` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Enables `POST /v1/stats/reset`, allowed only with `Authorization: Bearer <token>`.
    /// Without a token the route does not exist. An empty token is ignored.
    pub fn reset_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.reset_token = (!token.is_empty()).then_some(token);
        self
    }

    /// Keeps request history with rollups and retention, served at `GET /v1/stats/history`
    /// (feature `history`; see [`crate::history`]).
    #[cfg(feature = "history")]
    pub fn history(mut self, options: crate::history::HistoryOptions) -> Self {
        self.history = Some(options);
        self
    }

    /// Adds a consumer of finished requests.
    pub fn sink(mut self, sink: Arc<dyn RecordSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Builds the observer.
    #[cfg_attr(not(feature = "history"), allow(unused_mut))]
    pub fn build(mut self) -> Result<Observer, BuildError> {
        const RESERVED: [&str; 5] = [
            names::HTTP_REQUEST_METHOD,
            names::HTTP_ROUTE,
            names::HTTP_RESPONSE_STATUS_CODE,
            names::URL_SCHEME,
            names::ERROR_TYPE,
        ];
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(BuildError::TooManyDimensions(self.dimensions.len()));
        }
        let mut dimension_keys: Vec<Arc<str>> = Vec::new();
        for d in &self.dimensions {
            if !is_valid_label_name(d) {
                return Err(BuildError::InvalidDimension(d.clone()));
            }
            if RESERVED.contains(&d.as_str()) || d.starts_with("__") || d == "le" {
                return Err(BuildError::ReservedDimension(d.clone()));
            }
            if !dimension_keys.iter().any(|k| **k == **d) {
                dimension_keys.push(Arc::from(d.as_str()));
            }
        }
        let backend = match self.backend {
            BackendChoice::Builtin => Backend::Registry(
                self.registry
                    .max_label_sets_per_metric(self.max_label_sets.saturating_add(1))
                    .buckets_for(names::HTTP_SERVER_REQUEST_DURATION, &self.duration_buckets)
                    .buckets_for(names::HTTP_SERVER_REQUEST_BODY_SIZE, &BODY_SIZE_BUCKETS)
                    .buckets_for(names::HTTP_SERVER_RESPONSE_BODY_SIZE, &BODY_SIZE_BUCKETS)
                    .buckets_for(names::HTTP_CLIENT_REQUEST_DURATION, &self.duration_buckets)
                    .buckets_for(names::HTTP_CLIENT_REQUEST_BODY_SIZE, &BODY_SIZE_BUCKETS)
                    .buckets_for(names::HTTP_CLIENT_RESPONSE_BODY_SIZE, &BODY_SIZE_BUCKETS)
                    .buckets_for(names::CLIENT_REQUEST_ATTEMPTS, &ATTEMPT_BUCKETS)
                    .buckets_for(names::RPC_SERVER_CALL_DURATION, &self.duration_buckets)
                    .buckets_for(names::RPC_CLIENT_CALL_DURATION, &self.duration_buckets)
                    .buckets_for(names::RPC_SERVER_REQUESTS_PER_RPC, &MESSAGE_BUCKETS)
                    .buckets_for(names::RPC_SERVER_RESPONSES_PER_RPC, &MESSAGE_BUCKETS)
                    .buckets_for(names::RPC_CLIENT_RESPONSES_PER_RPC, &MESSAGE_BUCKETS)
                    .buckets_for(names::BACKEND_HEALTH_CHECK_DURATION, &OTEL_DURATION_BUCKETS)
                    .build(),
            ),
            BackendChoice::Recorder(r) => Backend::Recorder(r),
            BackendChoice::Global => Backend::Global,
        };
        #[cfg(feature = "history")]
        let history = self.history.map(|options| {
            let history = crate::history::History::open(
                options,
                self.clock.clone(),
                dimension_keys.clone().into_boxed_slice(),
            );
            self.sinks.push(Arc::new(history.clone()));
            history
        });
        self.clock.warm_up();
        let started = self.clock.now_nanos();
        let started_wall = self.clock.wall();
        let observer = Observer {
            inner: Arc::new(Inner {
                backend,
                renderer: self.renderer,
                stats: Stats::default(),
                clock: self.clock,
                started,
                started_wall,
                dimension_keys: dimension_keys.into_boxed_slice(),
                max_label_sets: self.max_label_sets,
                http: SeriesCache::default(),
                client: ClientSeries::new(self.max_label_sets),
                retry_targets: Family::new(names::CLIENT_REQUEST_ATTEMPTS, MAX_NAMED),
                caches: Family::new(names::CACHE_REQUESTS, MAX_NAMED),
                pools: Family::new(names::BACKEND_POOL_HEALTH_RATIO, MAX_NAMED),
                #[cfg(feature = "tonic")]
                grpc: grpc::GrpcSeries::new(self.max_label_sets),
                sinks: Sinks(self.sinks.into_boxed_slice()),
                health: self.health,
                service_version: self.service_version,
                reset_token: self.reset_token,
                #[cfg(feature = "history")]
                history,
                recording_failures: AtomicU64::new(0),
                request_id_rejected: OnceLock::new(),
            }),
        };
        #[cfg(feature = "history")]
        if let Some(history) = observer.history() {
            observer.with_source(|source| {
                source.with(&mut |r| {
                    r.describe_counter(
                        names::HISTORY_WRITE_ERRORS.into(),
                        None,
                        "History writes that failed (kept in memory and retried).".into(),
                    );
                });
                history.set_error_counter(family::counter(
                    source,
                    &Key::from_name(names::HISTORY_WRITE_ERRORS),
                ));
            });
        }
        Ok(observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_dimensions() {
        assert_eq!(
            Observer::builder()
                .dimension("back-end")
                .build()
                .unwrap_err(),
            BuildError::InvalidDimension("back-end".into())
        );
        assert_eq!(
            Observer::builder()
                .dimension("http_route")
                .build()
                .unwrap_err(),
            BuildError::ReservedDimension("http_route".into())
        );
        let mut b = Observer::builder();
        for i in 0..9 {
            b = b.dimension(format!("d{i}"));
        }
        assert_eq!(b.build().unwrap_err(), BuildError::TooManyDimensions(9));
    }
}
