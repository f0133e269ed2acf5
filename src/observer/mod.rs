//! The [`Observer`]: the small core every capability records through.
//!
//! The core owns what every capability needs and nothing else: the recorder (the built-in
//! [`Registry`], a recorder you passed, or the global one), the clock, the extra dimensions
//! and label limits, the record sinks, the guard that keeps a failing recorder away from the
//! request, and the [parts](parts) capabilities attach to it. It names no capability: the
//! HTTP server, the client, retries, caches, pools, gRPC, health and history each keep their
//! state in a part of their own and are asked for their `/v1/stats` sections, resets, health
//! input and routes through one trait. The map of the whole crate is the public
//! [`architecture`](crate::architecture) page.

mod backend;
#[allow(dead_code)] // used by optional capabilities
pub(crate) mod background;
mod builder;
// The toolkit of the capabilities whose label values come from outside the code.
#[allow(dead_code)] // used by optional capabilities
pub(crate) mod family;
pub(crate) mod handles;
pub(crate) mod parts;
mod sink;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::registry::storage::Exemplar;
use crate::registry::Registry;
use crate::stats::{StatsSnapshot, Warning};
use crate::time_fmt;

#[allow(unused_imports)] // used by optional capabilities
pub(crate) use backend::NoRecorder;
pub(crate) use backend::{RecorderBackend, RecorderSource};
pub(crate) use builder::Pending;
pub use builder::{BuildError, ObserverBuilder, MAX_DIMENSIONS};
use handles::{ExemplarIds, HistogramHandle};
pub use parts::Status;
pub(crate) use parts::{HealthInput, Part, Route, RouteHandler, RouteMethod};
pub use sink::{HttpClientRecord, HttpServerRecord, OperationRecord, RecordSink};

type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

struct Inner {
    backend: RecorderBackend,
    renderer: Option<Renderer>,
    clock: Clock,
    /// `clock.now_nanos()` at start.
    started: u64,
    started_wall: SystemTime,
    dimension_keys: Box<[Arc<str>]>,
    max_label_sets: usize,
    known_methods: crate::labels::KnownMethods,
    /// Set once, when the observer is built (after the builder's parts are attached).
    sinks: OnceLock<Box<[Arc<dyn RecordSink>]>>,
    parts: parts::Parts,
    recording_failures: AtomicU64,
    /// The warnings already logged (each is logged once).
    warned: std::sync::Mutex<Vec<Warning>>,
}

/// The shared core of tower-observe: the recorder, the clock and the one recording path every
/// layer records through.
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
///     .merge(observer.router()) // GET /metrics, GET /v1/stats, GET /health
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
            .field("parts", &self.inner.parts)
            .finish_non_exhaustive()
    }
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
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
    ///
    /// ```
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::builder()
    ///     .dimension("backend")
    ///     .max_label_sets_per_metric(500)
    ///     .build()
    ///     .unwrap();
    /// # let _ = observer;
    /// ```
    pub fn builder() -> ObserverBuilder {
        ObserverBuilder::default()
    }

    /// The registry the observer records into, unless it was given another recorder.
    ///
    /// Install it as the global `metrics` recorder to have your own `metrics::counter!`
    /// calls appear on `/metrics`: `metrics::set_global_recorder(observer.registry().unwrap().clone())`.
    pub fn registry(&self) -> Option<&Registry> {
        self.inner.backend.registry()
    }

    /// Renders `/metrics`: the registry's Prometheus text, or the output of the renderer
    /// configured with [`ObserverBuilder::renderer`]; `None` when there is neither.
    pub fn render_metrics(&self) -> Option<String> {
        self.refresh_parts();
        if let Some(render) = &self.inner.renderer {
            return catch_unwind(AssertUnwindSafe(|| render())).ok();
        }
        self.registry().map(Registry::render)
    }

    /// The statistics served at `/v1/stats`, as of now.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let stats = observer.stats();
    /// assert_eq!(stats.totals.requests, 0);
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        let elapsed = self.elapsed_seconds();
        let mut snapshot =
            StatsSnapshot::empty(time_fmt::rfc3339(self.inner.started_wall), elapsed);
        for part in self.inner.parts.all() {
            part.stats(&mut snapshot, elapsed);
        }
        snapshot.warnings = self.warnings();
        snapshot
    }

    /// The wiring and configuration problems noticed so far, as `/v1/stats` lists them
    /// (`warnings`) and `/health` gives them as reasons: a layer the application's requests
    /// do not pass through, a history kept in memory because its file could not be opened, an
    /// alert rule reading a metric nothing records. Each is logged once, at `WARN` (target
    /// `tower_observe`), when first seen; a problem that goes away leaves the list.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// assert!(observer.warnings().is_empty());
    /// ```
    pub fn warnings(&self) -> Vec<Warning> {
        let mut warnings = Vec::new();
        for part in self.inner.parts.all() {
            part.warnings(self, &mut warnings);
        }
        if !warnings.is_empty() {
            let mut warned = crate::sync::lock(&self.inner.warned);
            for warning in &warnings {
                if !warned.contains(warning) {
                    tracing::warn!(target: "tower_observe", { "event.code" = warning.code }, "{}", warning.message);
                    warned.push(warning.clone());
                }
            }
        }
        warnings
    }

    /// Clears the `/v1/stats` figures (routes, dimensions, upstreams, gRPC methods, retry and
    /// cache counts). Prometheus metrics are untouched: counters must stay monotonic.
    pub fn reset_stats(&self) {
        self.guarded(|| {
            for part in self.inner.parts.all() {
                part.reset();
            }
        });
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

    /// The extra dimensions this observer turns into labels and breakdowns.
    pub fn dimensions(&self) -> &[Arc<str>] {
        &self.inner.dimension_keys
    }
}

/// The core's services to the capabilities.
impl Observer {
    /// The part of type `T`, attached (made by `make`) on first use. Call it when building a
    /// layer or handle and keep the `Arc`: it is a lookup, not for the request path.
    pub(crate) fn part<T: Part>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        self.inner.parts.get_or_attach(make)
    }

    /// The part of type `T`, if one is attached.
    pub(crate) fn attached<T: Part>(&self) -> Option<Arc<T>> {
        self.inner.parts.get::<T>()
    }

    /// Every attached part, in attachment order.
    pub(crate) fn parts(&self) -> Vec<Arc<dyn Part>> {
        self.inner.parts.all()
    }

    /// Asks every part to bring its scrape-time figures up to date (see `Part::refresh`).
    pub(crate) fn refresh_parts(&self) {
        for part in self.inner.parts.all() {
            self.guarded(|| part.refresh());
        }
    }

    /// What every part reports to `/health`.
    pub(crate) fn health_input(&self) -> HealthInput {
        let elapsed = self.elapsed_seconds();
        let mut input = HealthInput::default();
        for part in self.inner.parts.all() {
            part.health(elapsed, &mut input);
        }
        for warning in self.warnings() {
            input.degraded.push((Status::Green, warning.message));
        }
        input
    }

    /// The consumers of finished requests.
    #[inline]
    pub(crate) fn sinks(&self) -> &[Arc<dyn RecordSink>] {
        self.inner.sinks.get().map_or(&[], |s| s)
    }

    /// The `http_request_method` label of `method`.
    #[inline]
    pub(crate) fn http_method(&self, method: &http::Method) -> crate::labels::HttpMethod {
        self.inner.known_methods.label(method)
    }

    /// The most label sets per metric.
    pub(crate) fn max_label_sets(&self) -> usize {
        self.inner.max_label_sets
    }

    /// Seconds since the observer started.
    pub(crate) fn elapsed_seconds(&self) -> f64 {
        self.inner
            .clock
            .now_nanos()
            .saturating_sub(self.inner.started) as f64
            / 1e9
    }

    /// The whole second (since the observer started) of a `now_nanos` reading, for rate
    /// windows.
    #[inline]
    pub(crate) fn second_of(&self, nanos: u64) -> u64 {
        nanos.saturating_sub(self.inner.started) / 1_000_000_000
    }

    /// When the observer started (wall clock).
    pub(crate) fn started_wall(&self) -> SystemTime {
        self.inner.started_wall
    }

    /// `clock().now_nanos()`, for the layers.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// The wall-clock time of a `Clock::now_nanos` reading (following the system clock, not
    /// the start time plus elapsed monotonic time, which would drift).
    pub(crate) fn wall_at(&self, nanos: u64) -> SystemTime {
        self.inner.clock.wall_at(nanos)
    }

    /// Runs `f`, and counts instead of propagating a panic from a user recorder or sink.
    #[inline]
    pub(crate) fn guarded(&self, f: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            self.inner.recording_failures.fetch_add(1, Relaxed);
        }
    }

    /// Where handles are registered (unguarded: call it inside [`guarded`](Self::guarded)).
    pub(crate) fn source(&self) -> &dyn RecorderSource {
        &self.inner.backend
    }

    /// Runs `f` with the recorder, guarded like every recording.
    pub(crate) fn with_source(&self, f: impl FnOnce(&dyn RecorderSource)) {
        self.guarded(|| f(&self.inner.backend));
    }

    /// The entry called `name` of a family of named things (retry targets, caches, pools),
    /// made with the recorder on first use — or, should the recorder panic, a detached entry
    /// that records nowhere.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn named<T>(
        &self,
        family: &family::Family<T>,
        name: &str,
        make: impl Fn(&dyn RecorderSource, &str, Option<metrics::Counter>) -> T,
    ) -> Arc<T> {
        let mut entry = None;
        self.with_source(|source| {
            entry = Some(family.get(source, &[name], |v, overflow| make(source, v[0], overflow)));
        });
        entry.unwrap_or_else(|| Arc::new(make(&backend::NoRecorder, name, None)))
    }

    /// Records a duration that ended at `end` (a `now_nanos` reading), with the trace and
    /// span it belongs to as its exemplar (where the storage keeps exemplars).
    pub(crate) fn record_duration(
        &self,
        handle: &HistogramHandle,
        duration: Duration,
        end: u64,
        exemplar: Option<ExemplarIds>,
    ) {
        match exemplar {
            Some((trace_id, span_id)) => handle.record_with_exemplar(Exemplar {
                trace_id,
                span_id,
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
