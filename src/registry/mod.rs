#![doc = include_str!("../../docs/registry.md")]

mod native;
mod proto;
pub(crate) mod read;
mod render;
pub(crate) mod storage;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};

use crate::labels::OTHER;
use crate::sync::{read, write};
use storage::{AtomicCounter, Buckets};
pub(crate) use storage::{AtomicGauge, AtomicHistogram};

pub use crate::names::{BODY_SIZE_BUCKETS, OTEL_DURATION_BUCKETS};
pub(crate) use native::NativeConfig;
#[allow(unused_imports)] // used by optional capabilities
pub(crate) use native::NativeSnapshot;
pub use native::{
    NATIVE_DEFAULT_MAX_BUCKETS, NATIVE_DEFAULT_SCHEMA, NATIVE_MAX_SCHEMA, NATIVE_MIN_SCHEMA,
    NATIVE_ZERO_THRESHOLD,
};

/// Prometheus' classic default buckets, used for histograms nobody configured.
pub const PROMETHEUS_DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Default cap on label sets per metric name (the OpenTelemetry SDK's default too).
pub const DEFAULT_MAX_LABEL_SETS: usize = 2000;

/// Name of the self-metric that counts recordings folded into an `_OTHER` series.
pub const OVERFLOW_METRIC: &str = crate::names::CARDINALITY_OVERFLOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    /// A counter whose value is a float (CPU seconds), kept in an `f64` cell
    /// ([`Registry::float_counter_storage`]); rendered as a counter.
    FloatCounter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter | Kind::FloatCounter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Storage {
    Counter(Arc<AtomicCounter>),
    Gauge(Arc<AtomicGauge>),
    Histogram(Arc<AtomicHistogram>),
}

#[derive(Debug)]
struct Series {
    /// `a="x",b="y"` — escaped once, at registration.
    labels: String,
    /// The same labels, unescaped, for in-process reads (see `read`).
    pairs: Box<[(String, String)]>,
    storage: Storage,
}

#[derive(Debug)]
struct FamilyMeta {
    name: String,
    kind: Kind,
}

#[derive(Debug)]
struct Family {
    meta: Arc<FamilyMeta>,
    series: Vec<Arc<Series>>,
    overflow: Option<Storage>,
    overflow_count: Option<Arc<AtomicCounter>>,
}

#[derive(Debug, Default)]
struct State {
    families: BTreeMap<String, Family>,
    index: HashMap<Key, Storage>,
    help: HashMap<String, Arc<str>>,
}

/// Builds a [`Registry`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RegistryBuilder {
    default_buckets: Vec<f64>,
    buckets: Vec<(String, Vec<f64>)>,
    max_label_sets: usize,
    native: Vec<String>,
    native_config: NativeConfig,
    prefix: String,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self {
            default_buckets: PROMETHEUS_DEFAULT_BUCKETS.to_vec(),
            buckets: Vec::new(),
            max_label_sets: DEFAULT_MAX_LABEL_SETS,
            native: Vec::new(),
            native_config: NativeConfig::default(),
            prefix: String::new(),
        }
    }
}

impl RegistryBuilder {
    /// Buckets for histograms that have no bucket set of their own.
    pub fn default_buckets(mut self, bounds: &[f64]) -> Self {
        self.default_buckets = bounds.to_vec();
        self
    }

    /// Buckets for one histogram, by its (Prometheus) name. Later calls for the same name win.
    pub fn buckets_for(mut self, name: impl Into<String>, bounds: &[f64]) -> Self {
        let name = sanitize_metric_name(&name.into());
        self.buckets.retain(|(n, _)| *n != name);
        self.buckets.push((name, bounds.to_vec()));
        self
    }

    /// At most this many label sets per metric name; more fold into one `_OTHER` series
    /// and are counted in `tower_observe_cardinality_overflow_total{metric=…}`.
    pub fn max_label_sets_per_metric(mut self, limit: usize) -> Self {
        self.max_label_sets = limit.max(1);
        self
    }

    /// Records the histogram `name` (by its Prometheus name) as a Prometheus *native*
    /// histogram too: sparse exponential buckets, exposed beside its classic buckets in the
    /// protobuf format ([`Registry::render_protobuf`]). The text formats are unchanged.
    pub fn native_histogram(mut self, name: impl Into<String>) -> Self {
        let name = sanitize_metric_name(&name.into());
        if !self.native.contains(&name) {
            self.native.push(name);
        }
        self
    }

    /// No native histograms: undoes every [`native_histogram`](Self::native_histogram).
    pub fn no_native_histograms(mut self) -> Self {
        self.native.clear();
        self
    }

    /// The starting resolution of native histograms, from [`NATIVE_MIN_SCHEMA`] (−4, each
    /// bucket 65,536 times as wide as the previous) to [`NATIVE_MAX_SCHEMA`] (8, 256 buckets
    /// per power of two); clamped to that range. Default [`NATIVE_DEFAULT_SCHEMA`] (3, buckets
    /// about 9 % apart).
    pub fn native_histogram_schema(mut self, schema: i8) -> Self {
        self.native_config.schema = schema.clamp(NATIVE_MIN_SCHEMA, NATIVE_MAX_SCHEMA);
        self
    }

    /// The most populated buckets a native histogram keeps (default
    /// [`NATIVE_DEFAULT_MAX_BUCKETS`], 160; at least 1): past it the schema is lowered by one,
    /// merging buckets in pairs, until they fit, as the Go client does. The resolution is
    /// also lowered when the observed range spans more than twice this many buckets.
    pub fn native_histogram_max_buckets(mut self, limit: u32) -> Self {
        self.native_config.max_buckets = limit.max(1);
        self
    }

    /// Prefixes every series name in the exposition (`/metrics`, text and OpenMetrics) with
    /// `prefix` and `_`: `myapp` makes `myapp_http_server_request_duration_seconds` — like
    /// axum-prometheus' `with_prefix`. Metrics are registered, looked up and read back under
    /// their own names; only the rendered text carries the prefix, written in front of each
    /// name as it is rendered (no name is copied).
    ///
    /// The prefix must itself be a valid metric name without colons (colons are left to
    /// recording rules) and must not start with `__` (reserved by Prometheus): letters,
    /// digits and `_`, not starting with a digit. A trailing `_` is kept as the separator.
    ///
    /// ```
    /// use tower_observe::registry::Registry;
    ///
    /// let registry = Registry::builder().prefix("myapp").unwrap().build();
    /// metrics::with_local_recorder(&registry, || metrics::counter!("jobs_total").increment(1));
    /// assert_eq!(registry.render(), "# TYPE myapp_jobs_total counter\nmyapp_jobs_total 1\n");
    /// assert!(Registry::builder().prefix("my-app").is_err());
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Result<Self, InvalidMetricPrefix> {
        let valid = !prefix.is_empty()
            && !prefix.starts_with("__")
            && prefix.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit())
            });
        if !valid {
            return Err(InvalidMetricPrefix(prefix.to_owned()));
        }
        self.prefix = prefix.to_owned();
        if !self.prefix.ends_with('_') {
            self.prefix.push('_');
        }
        Ok(self)
    }

    /// Builds the registry.
    pub fn build(self) -> Registry {
        let default_buckets = Arc::new(Buckets::new(&self.default_buckets));
        let buckets = self
            .buckets
            .into_iter()
            .map(|(n, b)| (n, Arc::new(Buckets::new(&b))))
            .collect();
        Registry {
            shared: Arc::new(Shared {
                state: RwLock::new(State::default()),
                default_buckets,
                buckets,
                max_label_sets: self.max_label_sets,
                native: self.native,
                native_config: self.native_config,
                scratch: Mutex::new(render::Scratch::default()),
                proto_scratch: Mutex::new(proto::Scratch::default()),
                prefix: self.prefix.into_boxed_str(),
            }),
        }
    }
}

struct Shared {
    state: RwLock<State>,
    default_buckets: Arc<Buckets>,
    buckets: HashMap<String, Arc<Buckets>>,
    max_label_sets: usize,
    /// Histograms also recorded as native histograms, by name.
    native: Vec<String>,
    native_config: NativeConfig,
    scratch: Mutex<render::Scratch>,
    proto_scratch: Mutex<proto::Scratch>,
    /// Written before every name in the exposition (with its `_`); empty: none.
    prefix: Box<str>,
}

/// A metric name prefix that is not a valid start of a Prometheus metric name; see
/// [`RegistryBuilder::prefix`].
#[derive(Clone, PartialEq, Eq)]
pub struct InvalidMetricPrefix(pub String);

impl fmt::Display for InvalidMetricPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metric prefix {:?} is not valid: use letters, digits and _, not starting with a digit or __, without colons",
            self.0
        )
    }
}

impl std::error::Error for InvalidMetricPrefix {}

debug_as_display!(InvalidMetricPrefix);

/// A metric registry and `metrics` recorder with a fast Prometheus text renderer.
///
/// Cheap to clone; clones share the same metrics. See the [module docs](self).
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let families = self
            .shared
            .state
            .read()
            .map(|s| s.families.len())
            .unwrap_or(0);
        f.debug_struct("Registry")
            .field("families", &families)
            .field("max_label_sets", &self.shared.max_label_sets)
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with default buckets and a label-set cap of 2000 per metric.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Renders every metric as Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Renders into `out` (appending), reusing its capacity.
    pub fn render_into(&self, out: &mut String) {
        render::render(self, out, render::Format::Prometheus);
    }

    /// Renders every metric as OpenMetrics 1.0 text, with the latest exemplar of each
    /// histogram bucket (`{trace_id, span_id}` of a sampled request) and the closing `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        render::render(self, &mut out, render::Format::OpenMetrics);
        out
    }

    /// Renders every metric in the Prometheus protobuf format: length-delimited
    /// `io.prometheus.client.MetricFamily` messages, served to a scraper that asks for
    /// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
    /// encoding=delimited`. Histograms carry their classic buckets (with exemplars) and, for
    /// the native ones, their sparse buckets and exemplars.
    pub fn render_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_protobuf_into(&mut out);
        out
    }

    /// Renders the protobuf format into `out` (appending), reusing its capacity.
    pub fn render_protobuf_into(&self, out: &mut Vec<u8>) {
        proto::render(self, out);
    }

    /// Number of series registered under `name` (sanitised), the `_OTHER` overflow series included.
    pub fn label_sets(&self, name: &str) -> usize {
        let name = sanitize_metric_name(name);
        read(&self.shared.state)
            .families
            .get(&name)
            .map_or(0, |f| f.series.len())
    }

    /// The storage behind a histogram, for callers inside the crate that skip the facade's
    /// dynamic dispatch on the hot path.
    pub(crate) fn histogram_storage(&self, key: &Key) -> Option<Arc<AtomicHistogram>> {
        match self.register(key, Kind::Histogram) {
            Some(Storage::Histogram(h)) => Some(h),
            _ => None,
        }
    }

    /// The storage behind a gauge (see [`histogram_storage`](Self::histogram_storage)).
    pub(crate) fn gauge_storage(&self, key: &Key) -> Option<Arc<AtomicGauge>> {
        match self.register(key, Kind::Gauge) {
            Some(Storage::Gauge(g)) => Some(g),
            _ => None,
        }
    }

    /// The storage behind a counter whose value is a float (`process_cpu_seconds_total`): an
    /// `f64` cell in a family rendered `# TYPE … counter`. The owner keeps it monotonic
    /// ([`AtomicGauge::fetch_max`]); the name cannot also be a `u64` counter (that
    /// registration gets a no-op). The `u64` counters' storage and hot path are untouched.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn float_counter_storage(&self, key: &Key) -> Option<Arc<AtomicGauge>> {
        match self.register(key, Kind::FloatCounter) {
            Some(Storage::Gauge(g)) => Some(g),
            _ => None,
        }
    }

    fn buckets_for(&self, name: &str) -> Arc<Buckets> {
        self.shared
            .buckets
            .get(name)
            .unwrap_or(&self.shared.default_buckets)
            .clone()
    }

    fn register(&self, key: &Key, kind: Kind) -> Option<Storage> {
        let key = sanitize_key(key);
        if let Some(existing) = read(&self.shared.state).index.get(&key) {
            return Some(existing.clone());
        }
        let mut state = write(&self.shared.state);
        if let Some(existing) = state.index.get(&key) {
            return Some(existing.clone());
        }
        let name = key.name().to_owned();
        let limit = self.shared.max_label_sets;
        let buckets = (kind == Kind::Histogram).then(|| self.buckets_for(&name));
        let native = self
            .shared
            .native
            .contains(&name)
            .then_some(self.shared.native_config);
        let family = state
            .families
            .entry(name.clone())
            .or_insert_with(|| Family {
                meta: Arc::new(FamilyMeta {
                    name: name.clone(),
                    kind,
                }),
                series: Vec::new(),
                overflow: None,
                overflow_count: None,
            });
        if family.meta.kind != kind {
            // Prometheus cannot expose one name as two types; the second kind gets a no-op.
            tracing::warn!({ "labels.metric" = %name }, "metric registered as two different types; ignoring the second");
            return None;
        }
        let new_storage = || match kind {
            Kind::Counter => Storage::Counter(Arc::default()),
            Kind::Gauge | Kind::FloatCounter => Storage::Gauge(Arc::default()),
            Kind::Histogram => Storage::Histogram(Arc::new(AtomicHistogram::with_native(
                buckets
                    .clone()
                    .unwrap_or_else(|| self.shared.default_buckets.clone()),
                native,
            ))),
        };
        if family.series.len() >= limit && name != OVERFLOW_METRIC {
            if let (Some(storage), Some(counter)) = (&family.overflow, &family.overflow_count) {
                metrics::CounterFn::increment(&**counter, 1);
                return Some(storage.clone());
            }
            let storage = new_storage();
            let overflow_labels: Vec<Label> = key
                .labels()
                .map(|l| Label::new(l.key().to_owned(), OTHER))
                .collect();
            family.series.push(Arc::new(Series {
                labels: render::format_labels(overflow_labels.iter()),
                pairs: read::pairs(overflow_labels.iter()),
                storage: storage.clone(),
            }));
            family.overflow = Some(storage.clone());
            let counter = self.overflow_counter(&mut state, &name);
            metrics::CounterFn::increment(&*counter, 1);
            if let Some(family) = state.families.get_mut(&name) {
                family.overflow_count = Some(counter);
            }
            return Some(storage);
        }
        let storage = new_storage();
        family.series.push(Arc::new(Series {
            labels: render::format_labels(key.labels()),
            pairs: read::pairs(key.labels()),
            storage: storage.clone(),
        }));
        state.index.insert(key, storage.clone());
        Some(storage)
    }

    /// The `tower_observe_cardinality_overflow_total{metric=name}` counter, registered in `state`.
    fn overflow_counter(&self, state: &mut State, name: &str) -> Arc<AtomicCounter> {
        let key = Key::from_parts(OVERFLOW_METRIC, vec![Label::new("metric", name.to_owned())]);
        if let Some(Storage::Counter(c)) = state.index.get(&key) {
            return c.clone();
        }
        let counter = Arc::new(AtomicCounter::default());
        let family = state
            .families
            .entry(OVERFLOW_METRIC.to_owned())
            .or_insert_with(|| Family {
                meta: Arc::new(FamilyMeta {
                    name: OVERFLOW_METRIC.to_owned(),
                    kind: Kind::Counter,
                }),
                series: Vec::new(),
                overflow: None,
                overflow_count: None,
            });
        family.series.push(Arc::new(Series {
            labels: render::format_labels(key.labels()),
            pairs: read::pairs(key.labels()),
            storage: Storage::Counter(counter.clone()),
        }));
        state.help.entry(OVERFLOW_METRIC.to_owned()).or_insert_with(|| {
            Arc::from("Recordings whose label set exceeded the per-metric limit and were folded into the _OTHER series.")
        });
        state.index.insert(key, Storage::Counter(counter.clone()));
        counter
    }

    fn describe(&self, key: KeyName, description: SharedString) {
        let name = sanitize_metric_name(key.as_str());
        write(&self.shared.state)
            .help
            .insert(name, Arc::from(description.as_ref()));
    }
}

impl Recorder for Registry {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        match self.register(key, Kind::Counter) {
            Some(Storage::Counter(c)) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        match self.register(key, Kind::Gauge) {
            Some(Storage::Gauge(g)) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        match self.register(key, Kind::Histogram) {
            Some(Storage::Histogram(h)) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

/// Replaces characters Prometheus does not allow in metric names with `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize_name(name, true)
}

fn sanitize_name(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
        if ok || (i > 0 && c.is_ascii_digit()) {
            out.push(c);
        } else if i == 0 && c.is_ascii_digit() {
            out.push('_');
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn sanitize_key(key: &Key) -> Key {
    let clean_name = key.name().chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    }) && !key.name().is_empty();
    let clean_labels = key
        .labels()
        .all(|l| crate::labels::is_valid_label_name(l.key()));
    if clean_name && clean_labels {
        return key.clone();
    }
    let labels: Vec<Label> = key
        .labels()
        .map(|l| Label::new(sanitize_name(l.key(), false), l.value().to_owned()))
        .collect();
    Key::from_parts(sanitize_metric_name(key.name()), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(
            sanitize_metric_name("http.server.duration"),
            "http_server_duration"
        );
        assert_eq!(sanitize_metric_name("1abc"), "_1abc");
        assert_eq!(sanitize_metric_name("a:b"), "a:b");
        assert_eq!(sanitize_metric_name(""), "_");
    }

    #[test]
    fn same_key_same_storage() {
        let r = Registry::new();
        metrics::with_local_recorder(&r, || {
            metrics::counter!("c_total", "a" => "1").increment(1);
            metrics::counter!("c_total", "a" => "1").increment(2);
        });
        assert_eq!(r.label_sets("c_total"), 1);
        assert!(r.render().contains("c_total{a=\"1\"} 3\n"));
    }

    #[test]
    fn label_set_cap_folds_into_other() {
        let r = Registry::builder().max_label_sets_per_metric(3).build();
        metrics::with_local_recorder(&r, || {
            for i in 0..10 {
                metrics::counter!("req_total", "user" => i.to_string()).increment(1);
            }
        });
        let text = r.render();
        assert!(text.contains("req_total{user=\"_OTHER\"} 7\n"), "{text}");
        assert!(text.contains("tower_observe_cardinality_overflow_total{metric=\"req_total\"} 7\n"));
        assert_eq!(r.label_sets("req_total"), 4);
    }

    #[test]
    fn kind_conflict_is_a_noop_not_a_panic() {
        let r = Registry::new();
        metrics::with_local_recorder(&r, || {
            metrics::counter!("x").increment(1);
            metrics::gauge!("x").set(5.0);
        });
        assert!(r.render().contains("# TYPE x counter"));
    }
}
