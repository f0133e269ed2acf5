//! [`ObserverBuilder`]: the core's settings, and the parts configured before the observer
//! exists.

use std::any::Any;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use metrics::Recorder;

use super::backend::RecorderBackend;
use super::handles::MAX_OVERFLOW_LABEL_SETS;
use super::{parts, Inner, Observer, RecordSink, Renderer};
use crate::clock::Clock;
use crate::labels::{check_label_name, KnownMethods, LabelError};
use crate::names;
use crate::registry::{Registry, RegistryBuilder};

/// Most extra dimensions an observer can be configured with.
pub const MAX_DIMENSIONS: usize = 8;

/// An invalid [`ObserverBuilder`] setting.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A dimension name is not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    InvalidDimension(String),
    /// A dimension name collides with one of the HTTP labels.
    ReservedDimension(String),
    /// More than [`MAX_DIMENSIONS`] dimensions.
    TooManyDimensions(usize),
    /// A known HTTP method that is not a valid method name, or one extension method more
    /// than the process can keep ([`MAX_EXTENSION_METHODS`](crate::labels::MAX_EXTENSION_METHODS)).
    InvalidMethod(String),
    /// The metric name prefix is not valid ([`ObserverBuilder::metric_prefix`]), or was set
    /// for an observer that records into another recorder (which has its own).
    InvalidMetricPrefix(String),
    /// An environment variable read by
    /// [`ObserverBuilder::configure_from_env`](crate::ObserverBuilder::configure_from_env)
    /// has a value that cannot be used (the reason never repeats a secret).
    InvalidVariable {
        /// The variable's name.
        variable: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A capability configured on the builder could not be set up as asked (a history file
    /// that cannot be opened with `require_durable`, …).
    Capability {
        /// The capability (`history`, …).
        capability: &'static str,
        /// The setting at fault (`path`, …).
        field: &'static str,
        /// What went wrong.
        reason: String,
    },
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
            BuildError::InvalidMethod(m) => write!(
                f,
                "known HTTP method {m:?} is not a method name, or one extension method too many"
            ),
            BuildError::InvalidMetricPrefix(reason) => f.write_str(reason),
            BuildError::InvalidVariable { variable, reason } => {
                write!(f, "environment variable {variable}: {reason}")
            }
            BuildError::Capability {
                capability,
                field,
                reason,
            } => write!(f, "{capability}, setting `{field}`: {reason}"),
        }
    }
}

impl std::error::Error for BuildError {}

debug_as_display!(BuildError);

impl From<LabelError> for BuildError {
    fn from(e: LabelError) -> Self {
        match e {
            LabelError::Invalid(name) => BuildError::InvalidDimension(name),
            LabelError::Reserved(name) => BuildError::ReservedDimension(name),
        }
    }
}

enum BackendChoice {
    Builtin,
    Recorder(Arc<dyn Recorder + Send + Sync>),
    Global,
}

/// A part configured on the builder, attached when the observer is built.
///
/// Capabilities that have builder settings (health, history, the reset token, …) keep them in
/// a `Pending` value of their own type, found with [`ObserverBuilder::pending`]; the builder
/// holds them without knowing what they are.
pub(crate) trait Pending: Any + Send {
    /// Attaches the part to the new observer; a part that consumes records returns itself as
    /// a sink.
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>>;

    /// Prepares what can fail before the observer exists (opens a file, …); an error fails
    /// [`ObserverBuilder::build`].
    fn prepare(&mut self) -> Result<(), BuildError> {
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Configures an [`Observer`].
#[must_use]
pub struct ObserverBuilder {
    backend: BackendChoice,
    registry: RegistryBuilder,
    duration_buckets: Vec<f64>,
    native_histograms: bool,
    renderer: Option<Renderer>,
    clock: Clock,
    dimensions: Vec<String>,
    max_label_sets: usize,
    sinks: Vec<Arc<dyn RecordSink>>,
    known_methods: Option<Vec<String>>,
    metric_prefix: Option<String>,
    pending: Vec<Box<dyn Pending>>,
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
            duration_buckets: names::OTEL_DURATION_BUCKETS.to_vec(),
            native_histograms: true,
            renderer: None,
            clock: Clock::system(),
            dimensions: Vec::new(),
            max_label_sets: crate::registry::DEFAULT_MAX_LABEL_SETS,
            sinks: Vec::new(),
            known_methods: std::env::var("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS")
                .ok()
                .map(|list| list.split(',').map(str::to_owned).collect()),
            metric_prefix: None,
            pending: Vec::new(),
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
    /// buckets. (The duration histograms' buckets are set with
    /// [`duration_buckets`](Self::duration_buckets).)
    pub fn configure_registry(
        mut self,
        f: impl FnOnce(RegistryBuilder) -> RegistryBuilder,
    ) -> Self {
        self.registry = f(self.registry);
        self
    }

    /// Prefixes every series name `/metrics` serves with `prefix` and `_`
    /// (`myapp_http_server_request_duration_seconds`), as axum-prometheus' `with_prefix` does;
    /// see [`RegistryBuilder::prefix`] for what a valid prefix is. An invalid one fails
    /// [`build`](Self::build) with [`BuildError::InvalidMetricPrefix`], as does a prefix with
    /// [`recorder`](Self::recorder) or [`global_recorder`](Self::global_recorder) (set the
    /// prefix on that recorder's exporter instead).
    ///
    /// Only the exposition carries it: the alert engine, `/v1/stats` and the dashboard read
    /// the metrics under their own names and work unchanged. The Grafana dashboards and the
    /// Prometheus rules shipped in `deploy/` (and those [`alerts`] renders) query the
    /// unprefixed names: with a prefix, adapt their queries.
    ///
    /// ```
    /// let observer = tower_observe::Observer::builder()
    ///     .metric_prefix("checkout")
    ///     .build()
    ///     .unwrap();
    /// # let _ = observer;
    /// ```
    ///
    /// [`alerts`]: https://docs.rs/tower-observe/latest/tower_observe/alerts/
    pub fn metric_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.metric_prefix = Some(prefix.into());
        self
    }

    /// Bucket bounds, in seconds, of the request and call duration histograms
    /// (`http_server_request_duration_seconds`, the client and RPC durations). Defaults to the
    /// OpenTelemetry advice: 5 ms … 10 s in 14 buckets.
    pub fn duration_buckets(mut self, bounds: &[f64]) -> Self {
        self.duration_buckets = bounds.to_vec();
        self
    }

    /// Whether the duration histograms (every histogram in seconds the crate records: HTTP
    /// server and client, gRPC, operations, queues, …) are also recorded as Prometheus native
    /// histograms, served beside their classic buckets to a scraper that negotiates the
    /// protobuf format (Prometheus with native histograms enabled). On by default; the text
    /// formats are the same either way. With the built-in registry only.
    pub fn native_histograms(mut self, on: bool) -> Self {
        self.native_histograms = on;
        self
    }

    /// The starting resolution (schema, −4 to 8, default 3: 8 buckets per power of two,
    /// about 9 % apart) of the native histograms.
    pub fn native_histogram_schema(mut self, schema: i8) -> Self {
        self.registry = self.registry.native_histogram_schema(schema);
        self
    }

    /// The most populated buckets of each native histogram (default 160); past it the
    /// resolution is lowered, merging buckets in pairs, as the Prometheus Go client does.
    pub fn native_histogram_max_buckets(mut self, limit: u32) -> Self {
        self.registry = self.registry.native_histogram_max_buckets(limit);
        self
    }

    /// Adds an extra dimension (`backend`, `model`, …): read from
    /// [`Dimensions`](crate::Dimensions) extensions, added as a label and broken down in
    /// `/v1/stats`.
    pub fn dimension(mut self, name: impl Into<String>) -> Self {
        self.dimensions.push(name.into());
        self
    }

    /// At most this many label sets per metric (default 2000); past it, new label sets
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

    /// The HTTP methods labelled by name, replacing the default list in full (the
    /// OpenTelemetry conventions' methods: RFC 9110's, `PATCH`, `QUERY`); every other method
    /// is `_OTHER`. Case-sensitive. The environment variable
    /// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` (comma-separated) sets the same list.
    ///
    /// ```
    /// use tower_observe::Observer;
    ///
    /// // A cache that takes PURGE; TRACE and CONNECT are not served, so they are `_OTHER`.
    /// let observer = Observer::builder()
    ///     .known_http_methods(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PURGE"])
    ///     .build()
    ///     .unwrap();
    /// # let _ = observer;
    /// ```
    pub fn known_http_methods<'a>(mut self, methods: impl IntoIterator<Item = &'a str>) -> Self {
        self.known_methods = Some(methods.into_iter().map(str::to_owned).collect());
        self
    }

    /// Adds a consumer of finished requests.
    pub fn sink(mut self, sink: Arc<dyn RecordSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The pending part of type `T`, added (as `T::default()`) on first use: where a
    /// capability's builder setters keep their settings.
    pub(crate) fn pending<T: Pending + Default>(&mut self) -> &mut T {
        let at = match self
            .pending
            .iter_mut()
            .position(|p| p.as_any_mut().is::<T>())
        {
            Some(at) => at,
            None => {
                self.pending.push(Box::new(T::default()));
                self.pending.len() - 1
            }
        };
        match self.pending[at].as_any_mut().downcast_mut::<T>() {
            Some(pending) => pending,
            None => unreachable!("the entry at `at` is a T"),
        }
    }

    /// Builds the observer.
    pub fn build(mut self) -> Result<Observer, BuildError> {
        for pending in &mut self.pending {
            pending.prepare()?;
        }
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(BuildError::TooManyDimensions(self.dimensions.len()));
        }
        let mut dimension_keys: Vec<Arc<str>> = Vec::new();
        for d in &self.dimensions {
            check_label_name(d, names::HTTP_SERVER_LABELS)?;
            if !dimension_keys.iter().any(|k| **k == **d) {
                dimension_keys.push(Arc::from(d.as_str()));
            }
        }
        let known_methods = match &self.known_methods {
            None => KnownMethods::default(),
            Some(list) => KnownMethods::exactly(list.iter().map(String::as_str))
                .map_err(BuildError::InvalidMethod)?,
        };
        let backend = match self.backend {
            _ if self.metric_prefix.is_some()
                && !matches!(self.backend, BackendChoice::Builtin) =>
            {
                return Err(BuildError::InvalidMetricPrefix(
                    "a metric prefix applies to the built-in registry only; this observer records into another recorder: set the prefix on its exporter".to_owned(),
                ));
            }
            BackendChoice::Builtin => {
                // The crate's families bound their label sets themselves (the limit, then
                // overflow label sets); the registry's own limit, for metrics recorded directly,
                // leaves them that room.
                let own = self.max_label_sets.saturating_add(MAX_OVERFLOW_LABEL_SETS);
                let mut registry = self.registry.max_label_sets_per_metric(own);
                if let Some(prefix) = &self.metric_prefix {
                    registry = registry
                        .prefix(prefix)
                        .map_err(|e| BuildError::InvalidMetricPrefix(e.to_string()))?;
                }
                for spec in names::METRICS {
                    if let names::Kind::Histogram(buckets) = spec.kind {
                        let bounds = match buckets {
                            names::Buckets::Duration => &self.duration_buckets[..],
                            names::Buckets::Fixed(bounds) => bounds,
                        };
                        registry = registry.buckets_for(spec.name, bounds);
                        if self.native_histograms && spec.unit == Some(metrics::Unit::Seconds) {
                            registry = registry.native_histogram(spec.name);
                        }
                    }
                }
                RecorderBackend::Registry(registry.build())
            }
            BackendChoice::Recorder(r) => RecorderBackend::Recorder(r),
            BackendChoice::Global => RecorderBackend::Global,
        };
        self.clock.warm_up();
        let started = self.clock.now_nanos();
        let started_wall = self.clock.wall();
        let observer = Observer {
            inner: Arc::new(Inner {
                backend,
                renderer: self.renderer,
                clock: self.clock,
                started,
                started_wall,
                dimension_keys: dimension_keys.into_boxed_slice(),
                max_label_sets: self.max_label_sets,
                known_methods,
                sinks: OnceLock::new(),
                parts: parts::Parts::default(),
                recording_failures: AtomicU64::new(0),
                warned: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let mut sinks = self.sinks;
        for pending in self.pending {
            sinks.extend(pending.attach(&observer));
        }
        let _ = observer.inner.sinks.set(sinks.into_boxed_slice());
        // What is wrong from the start (a rule with nothing to read, a history in memory) is
        // logged now rather than at the first request.
        observer.warnings();
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

    #[test]
    fn rejects_a_bad_metric_prefix_or_one_without_the_registry() {
        let err = Observer::builder()
            .metric_prefix("my-app")
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidMetricPrefix(r) if r.contains("\"my-app\"")),
            "{err}"
        );
        let err = Observer::builder()
            .metric_prefix("app")
            .recorder(metrics::NoopRecorder)
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::InvalidMetricPrefix(_)), "{err}");
        let observer = Observer::builder().metric_prefix("app").build().unwrap();
        let text = observer.render_metrics().unwrap();
        assert!(
            text.is_empty() || text.starts_with("# ") && text.contains(" app_"),
            "{text}"
        );
    }
}
