//! OTLP metric export: [`OtlpMetrics`] configures it, [`Observer::export_metrics`] starts it.
//!
//! Every `export_interval` the background thread `tower-observe-otlp_metrics` reads the
//! built-in registry — the same series `/metrics` renders, recorded once — turns them into an
//! `ExportMetricsServiceRequest` (see `convert.rs`) and POSTs it as `application/x-protobuf`.
//! One export at a time: the thread waits for its export (bounded by the timeout) before the
//! next tick, so a slow collector makes ticks be skipped (counted) rather than pile up, and
//! nothing of it ever runs on a request's path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use metrics::Counter;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message as _;

use super::config::{self, ExportCode, Lookup, Signal};
use super::convert::{Convert, Temporalities};
use super::{client, OtlpError};
use crate::observer::background::{self, Background};
use crate::observer::parts::Part;
use crate::observer::{handles, Observer};
use crate::registry::Registry;
use crate::stats::{OtlpMetricsStats, StatsSnapshot};
use crate::sync::lock;

/// The variable naming the export interval, in milliseconds (default 60000).
const INTERVAL_ENV: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// The variable bounding one export, in milliseconds (default 30000).
const EXPORT_TIMEOUT_ENV: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// The variable choosing the temporality.
const TEMPORALITY_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";

/// How sums and histograms report their values over successive exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Temporality {
    /// Every export carries the totals since the start (the default; what Prometheus and most
    /// backends expect). A failed export loses nothing: the next one carries the totals.
    #[default]
    Cumulative,
    /// Counters and histograms carry what was recorded since the last export the collector
    /// accepted (a failed export's share goes with the next one); up-down counters stay
    /// cumulative, as the specification's `delta` preference says.
    Delta,
    /// The specification's `lowmemory`: like `Delta` for counters and histograms recorded as
    /// they happen, cumulative for counters set from an absolute figure (CPU time) and for
    /// up-down counters.
    LowMemory,
}

impl Temporality {
    fn as_str(self) -> &'static str {
        match self {
            Temporality::Cumulative => "cumulative",
            Temporality::Delta => "delta",
            Temporality::LowMemory => "lowmemory",
        }
    }
}

/// Configures OTLP metric export; start it with [`Observer::export_metrics`]. What is not set
/// here comes from the `OTEL_*` variables (`OTEL_EXPORTER_OTLP_METRICS_*`,
/// `OTEL_EXPORTER_OTLP_*`, `OTEL_METRIC_EXPORT_*`), read when the export starts.
#[derive(Debug, Clone)]
#[must_use]
pub struct OtlpMetrics {
    export: ExportCode,
    service_name: Option<String>,
    fallback_service_name: Option<String>,
    service_version: Option<String>,
    resource_attributes: Vec<(String, String)>,
    interval: Option<Duration>,
    export_timeout: Option<Duration>,
    temporality: Option<Temporality>,
}

impl OtlpMetrics {
    /// Exports to the collector at `endpoint` (its base URL, e.g. `http://127.0.0.1:4318`;
    /// `/v1/metrics` is added unless the URL already has a path), as service `service_name`.
    /// Both win over the variables.
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self::unset().endpoint(endpoint).service_name(service_name)
    }

    /// Configured by the `OTEL_*` variables alone, when `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`None` otherwise). `service_name` applies only
    /// when neither `OTEL_SERVICE_NAME` nor a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is
    /// set.
    pub fn from_env(service_name: impl Into<String>) -> Option<Self> {
        config::endpoint_configured(Signal::Metrics, &config::process_env).then(|| {
            let mut metrics = Self::unset();
            metrics.fallback_service_name = Some(service_name.into());
            metrics
        })
    }

    fn unset() -> Self {
        Self {
            export: ExportCode::default(),
            service_name: None,
            fallback_service_name: None,
            service_version: None,
            resource_attributes: Vec::new(),
            interval: None,
            export_timeout: None,
            temporality: None,
        }
    }

    super::config::export_setters!("METRICS", "/v1/metrics");

    /// The resource's `service.version` (e.g. `env!("CARGO_PKG_VERSION")`); over a
    /// `service.version` in `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// How long the collector may take to answer one export; over
    /// `OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT` (default 10 s). An export never takes longer
    /// than [`export_timeout`](Self::export_timeout) either.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.export.timeout = Some(timeout);
        self
    }

    /// How often the metrics are exported; over `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s;
    /// at least 10 ms).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// The most one export may take, from reading the registry to the collector's answer;
    /// over `OTEL_METRIC_EXPORT_TIMEOUT` (default 30 s).
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    /// Cumulative or delta sums and histograms; over
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`, `delta` or
    /// `lowmemory`, any case; default cumulative).
    pub fn temporality(mut self, temporality: Temporality) -> Self {
        self.temporality = Some(temporality);
        self
    }

    /// Everything an export needs, resolved: code, else the variables, else the defaults.
    pub(super) fn resolve(&self, env: Lookup<'_>) -> Result<Settings, OtlpError> {
        let export = config::export(Signal::Metrics, &self.export, env)?;
        let interval = match self.interval {
            Some(d) => d,
            None => config::millis(env, INTERVAL_ENV)?.unwrap_or(Duration::from_secs(60)),
        }
        .max(Duration::from_millis(10));
        let export_timeout = match self.export_timeout {
            Some(d) => d,
            None => config::millis(env, EXPORT_TIMEOUT_ENV)?.unwrap_or(Duration::from_secs(30)),
        };
        let temporality = match self.temporality {
            Some(t) => t,
            None => match config::get(env, TEMPORALITY_ENV) {
                None => Temporality::Cumulative,
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "cumulative" => Temporality::Cumulative,
                    "delta" => Temporality::Delta,
                    "lowmemory" => Temporality::LowMemory,
                    _ => {
                        return Err(config::invalid(
                            TEMPORALITY_ENV,
                            format!("{v:?} is not one of cumulative, delta, lowmemory"),
                        ))
                    }
                },
            },
        };
        let mut attributes = self.resource_attributes.clone();
        if let Some(version) = &self.service_version {
            attributes.retain(|(k, _)| k != "service.version");
            attributes.push(("service.version".to_owned(), version.clone()));
        }
        let resource = config::resource(
            self.service_name.as_deref(),
            self.fallback_service_name.as_deref(),
            &attributes,
            env,
        )?;
        let mut resource: Vec<KeyValue> = resource
            .iter()
            .map(|(k, v)| string_attribute(k.as_str(), v.as_str().into_owned()))
            .collect();
        if !resource.iter().any(|kv| kv.key == "service.instance.id") {
            resource.push(string_attribute(
                "service.instance.id",
                instance_id().to_owned(),
            ));
        }
        resource.sort_by(|a, b| a.key.cmp(&b.key));
        let timeout = export.timeout.min(export_timeout);
        Ok(Settings {
            client: client::UreqClient::new(&export.url, &export.roots, timeout, export.headers)?,
            endpoint: shown_endpoint(&export.url),
            url: export.url,
            interval,
            temporality,
            resource,
        })
    }
}

fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// A random ID for this process (UUID v4 form), the resource's `service.instance.id` unless
/// one is configured: stable while the process runs, different in every process, so two
/// replicas' cumulative series never mix.
fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            // RandomState is seeded from the OS; the time and process ID tell two apart even
            // where it is not.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u32(std::process::id());
            h.write_u128(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = crate::hex::to_string(&bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

/// The URL without credentials or query: what `/v1/stats` shows.
fn shown_endpoint(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

/// The resolved settings of an export.
pub(super) struct Settings {
    pub(super) url: String,
    endpoint: String,
    client: client::UreqClient,
    pub(super) interval: Duration,
    pub(super) temporality: Temporality,
    pub(super) resource: Vec<KeyValue>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("client", &self.client)
            .field("interval", &self.interval)
            .field("temporality", &self.temporality)
            .finish_non_exhaustive()
    }
}

/// Counts of exports by outcome.
#[derive(Debug, Default)]
struct Counts {
    exported: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

/// The `tower_observe_otlp_metrics_exports_total{outcome}` counters.
struct Outcomes {
    success: Counter,
    failure: Counter,
    skipped: Counter,
}

/// One running export: its settings, what the last accepted export sent, its counts.
pub(super) struct Exporter {
    settings: Settings,
    registry: Registry,
    /// When the observer started: the start of every cumulative series.
    started: SystemTime,
    /// Held for a whole export: at most one runs at a time.
    convert: Mutex<Convert>,
    counts: Counts,
    outcomes: Outcomes,
    last_error: Mutex<Option<String>>,
    background: Mutex<Option<Background>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("settings", &self.settings)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// How one export ended.
enum Outcome {
    Exported,
    Failed,
    /// Another export was running.
    Busy,
}

impl Exporter {
    /// Reads the registry, sends one request. With `wait`, after the export running now;
    /// else not at all while one runs.
    fn export(&self, wait: bool) -> Outcome {
        let mut convert = match self.convert.try_lock() {
            Ok(convert) => convert,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => lock(&self.convert),
            Err(std::sync::TryLockError::WouldBlock) => return Outcome::Busy,
        };
        let now = SystemTime::now();
        let request = convert.request(&self.registry, &self.settings.resource, self.started, now);
        let body = request.encode_to_vec();
        match self.settings.client.post_protobuf(&self.settings.url, body) {
            Ok(()) => {
                convert.commit(now);
                self.counts.exported.fetch_add(1, Relaxed);
                self.outcomes.success.increment(1);
                *lock(&self.last_error) = None;
                Outcome::Exported
            }
            Err(reason) => {
                convert.discard();
                self.counts.failed.fetch_add(1, Relaxed);
                self.outcomes.failure.increment(1);
                *lock(&self.last_error) = Some(reason);
                Outcome::Failed
            }
        }
    }

    fn skip(&self, ticks: u64) {
        if ticks > 0 {
            self.counts.skipped.fetch_add(ticks, Relaxed);
            self.outcomes.skipped.increment(ticks);
        }
    }

    /// One tick of the background thread.
    fn tick(&self, observer: &Observer) {
        // Figures read at scrape time (process metrics) are brought up to date first.
        observer.refresh_parts();
        let started = Instant::now();
        match self.export(false) {
            Outcome::Busy => self.skip(1),
            Outcome::Exported | Outcome::Failed => {
                // The thread waits for the interval after the export: the ticks an export
                // longer than the interval ran over are skipped, not queued.
                let interval = self.settings.interval.as_nanos().max(1);
                self.skip((started.elapsed().as_nanos() / interval) as u64);
            }
        }
    }
}

/// The running OTLP metric export of an observer, from [`Observer::export_metrics`]: its
/// counts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OtlpMetricsHandle {
    exporter: Arc<Exporter>,
}

impl OtlpMetricsHandle {
    /// Exports the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exporter.counts.exported.load(Relaxed)
    }

    /// Exports that failed (collector down, timeout, rejection). With cumulative
    /// temporality the next export carries the totals; with delta, what the failed one
    /// carried.
    pub fn failed(&self) -> u64 {
        self.exporter.counts.failed.load(Relaxed)
    }

    /// Ticks skipped because an export was still running.
    pub fn skipped(&self) -> u64 {
        self.exporter.counts.skipped.load(Relaxed)
    }

    /// Why the last export failed, while exports fail (`None` once one succeeds). Never
    /// holds a header value.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.exporter.last_error).clone()
    }

    /// Exports now, on the calling thread (blocking, up to the timeout, after the background
    /// export if one is running), and says whether the collector accepted it: call it before
    /// the process exits, so the last interval is not lost. Not from an async task: it blocks.
    pub fn flush(&self) -> bool {
        matches!(self.exporter.export(true), Outcome::Exported)
    }

    /// Stops the periodic export (the handle keeps its counts).
    pub fn stop(&self) {
        lock(&self.exporter.background).take();
    }
}

/// The export attached to an observer.
#[derive(Default)]
struct OtlpMetricsPart {
    exporter: Mutex<Option<Arc<Exporter>>>,
}

impl Part for OtlpMetricsPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, _elapsed: f64) {
        let Some(e) = lock(&self.exporter).clone() else {
            return;
        };
        snapshot.otlp_metrics = Some(OtlpMetricsStats {
            endpoint: e.settings.endpoint.clone(),
            temporality: e.settings.temporality.as_str(),
            exported: e.counts.exported.load(Relaxed),
            failed: e.counts.failed.load(Relaxed),
            skipped: e.counts.skipped.load(Relaxed),
            last_error: lock(&e.last_error).clone(),
        });
    }
}

impl Observer {
    /// Pushes the built-in registry's metrics to an OpenTelemetry collector every
    /// `export_interval`, from a background thread (feature `otlp`; see
    /// [`OtlpMetrics`] and `docs/metrics.md`): counters as monotonic sums, gauges as gauges
    /// or (counts that go up and down) non-monotonic sums, the native duration histograms as
    /// exponential histograms and the others as explicit-bucket histograms, under their
    /// OpenTelemetry names and attributes.
    ///
    /// A second call replaces the running export. Fails on a malformed `OTEL_*` variable
    /// ([`OtlpError::InvalidVariable`] naming it), a bad endpoint or certificate, or an
    /// observer that records into another recorder ([`OtlpError::NoRegistry`]).
    ///
    /// ```no_run
    /// use tower_observe::otlp::OtlpMetrics;
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::new();
    /// let export = observer.export_metrics(
    ///     OtlpMetrics::new("http://127.0.0.1:4318", "checkout")
    ///         .service_version(env!("CARGO_PKG_VERSION")),
    /// )?;
    /// // ... serve; before exiting:
    /// export.flush();
    /// # Ok::<(), tower_observe::otlp::OtlpError>(())
    /// ```
    pub fn export_metrics(&self, metrics: OtlpMetrics) -> Result<OtlpMetricsHandle, OtlpError> {
        self.export_metrics_with(metrics, &config::process_env)
    }

    pub(super) fn export_metrics_with(
        &self,
        metrics: OtlpMetrics,
        env: Lookup<'_>,
    ) -> Result<OtlpMetricsHandle, OtlpError> {
        let registry = self.registry().ok_or(OtlpError::NoRegistry)?.clone();
        let settings = metrics.resolve(env)?;
        let mut outcomes = None;
        self.with_source(|source| {
            let counter = |outcome| {
                handles::counter(
                    source,
                    &handles::key(crate::names::OTLP_METRICS_EXPORTS, &[("outcome", outcome)]),
                )
            };
            outcomes = Some(Outcomes {
                success: counter("success"),
                failure: counter("failure"),
                skipped: counter("skipped"),
            });
        });
        let outcomes = outcomes.unwrap_or_else(|| Outcomes {
            success: Counter::noop(),
            failure: Counter::noop(),
            skipped: Counter::noop(),
        });
        let temporalities = Temporalities::from(settings.temporality);
        let interval = settings.interval;
        let exporter = Arc::new(Exporter {
            settings,
            registry,
            started: self.started_wall(),
            convert: Mutex::new(Convert::new(temporalities)),
            counts: Counts::default(),
            outcomes,
            last_error: Mutex::new(None),
            background: Mutex::new(None),
        });
        let thread = background::spawn(
            background::task!(
                "otlp_metrics",
                "cannot start the OTLP metrics export thread; metrics are exported only on flush()"
            ),
            self,
            &exporter,
            interval,
            |observer, exporter| exporter.tick(observer),
        );
        *lock(&exporter.background) = Some(thread);
        let part = self.part(OtlpMetricsPart::default);
        let previous = lock(&part.exporter).replace(exporter.clone());
        if let Some(previous) = previous {
            lock(&previous.background).take();
        }
        Ok(OtlpMetricsHandle { exporter })
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
