//! The JSON document served at `GET /v1/stats` (schema: `docs/stats-api.md`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::sketch::Summary;

/// Everything `/v1/stats` reports, as of one moment.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// When the observer started (RFC 3339, UTC).
    pub started_at: String,
    /// Seconds since the observer started.
    pub uptime_seconds: f64,
    /// Counts since start.
    pub totals: Totals,
    /// Requests per second over the last 60 s (or since start, if shorter).
    pub requests_per_second: f64,
    /// Requests whose response is not complete yet (the `http_server_active_requests`
    /// gauges summed); `null` when the observer records into another recorder.
    pub in_flight: Option<u64>,
    /// Share of completed requests that did not fail; `null` before the first one.
    pub success_rate: Option<f64>,
    /// Latency since start; `null` before the first request.
    pub latency_ms: Option<LatencyMs>,
    /// The same figures over recent windows (`"1m"`, `"5m"`), for the whole service: what is
    /// happening now, where the since-start figures flatten out after a while.
    pub windows: BTreeMap<&'static str, WindowEntry>,
    /// The largest relative error of the reported percentiles (0.0079 = 0.79 %).
    pub latency_relative_error: f64,
    /// Responses per status class.
    pub status_codes: StatusClasses,
    /// One entry per method and route template, sorted by route.
    pub routes: Vec<RouteEntry>,
    /// The observer's own endpoints (`/metrics`, `/v1/*`, `/health*`, `/dashboard*`), summed
    /// apart from the application's routes and figures (the server layer's default,
    /// `OwnEndpoints::Apart`; all zero with another setting).
    pub observer_endpoints: BreakdownEntry,
    /// Per extra dimension (backend, model, …): one entry per value.
    pub dimensions: BTreeMap<String, BTreeMap<String, BreakdownEntry>>,
    /// Calls made through the client instrumentation, per upstream `host:port` (one entry per
    /// attempt; errors are transport failures and 5xx responses).
    pub upstreams: BTreeMap<String, BreakdownEntry>,
    /// Retry accounting per target.
    pub retries: BTreeMap<String, super::RetryEntry>,
    /// Cache results and hit ratio per cache.
    pub caches: BTreeMap<String, super::CacheEntry>,
    /// Backend pools: health and members.
    pub pools: BTreeMap<String, super::PoolEntry>,
    /// gRPC calls per method, served and made (feature `tonic`; empty without it).
    pub grpc: super::GrpcStats,
    /// CPU, memory, file descriptors and threads of the process, and the tokio runtime
    /// (feature `process`, with `ObserverBuilder::process_metrics`); `None` without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<super::ProcessStats>,
    /// The alerts pending and firing now (feature `alerts`, with `ObserverBuilder::alerts`);
    /// `None` without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<super::ActiveAlerts>,
    /// GenAI traffic per provider and model, served and made (feature `llm`, once an LLM
    /// layer is made); `None` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<super::LlmStats>,
    /// What the log store holds and lost (feature `log-store`, with
    /// `ObserverBuilder::log_store`); `None` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_store: Option<super::LogStoreStats>,
    /// The OTLP metrics export: exports that succeeded, failed and were skipped, and the
    /// last failure (feature `otlp`, with `Observer::export_metrics`); `None` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_metrics: Option<super::OtlpMetricsStats>,
    /// Timed operations (database calls, messages processed, functions, external APIs), by
    /// kind (`db`, `messaging_process`, `messaging_client`, `function`), then sorted by
    /// system, name and target, the `_OTHER` entries last (feature `operations`; empty
    /// without it).
    pub operations: Vec<super::OperationEntry>,
    /// Queues of jobs and their workers, by queue name (feature `operations`; empty without
    /// it).
    pub queues: BTreeMap<String, super::QueueEntry>,
    /// Wiring and configuration problems noticed so far (a layer requests do not pass
    /// through, a history kept in memory, a rule with nothing to read); empty when all is
    /// well. See [`Observer::warnings`](crate::Observer::warnings).
    pub warnings: Vec<super::Warning>,
}

impl StatsSnapshot {
    /// The document with nothing recorded yet: the parts fill in what they know.
    pub(crate) fn empty(started_at: String, uptime_seconds: f64) -> Self {
        Self {
            started_at,
            uptime_seconds,
            totals: Totals {
                requests: 0,
                errors: 0,
                aborted: 0,
            },
            requests_per_second: 0.0,
            in_flight: None,
            success_rate: None,
            latency_ms: None,
            windows: BTreeMap::new(),
            latency_relative_error: super::LATENCY_RELATIVE_ERROR,
            status_codes: StatusClasses::default(),
            routes: Vec::new(),
            observer_endpoints: super::StatsCell::default().entry(uptime_seconds),
            dimensions: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            retries: BTreeMap::new(),
            caches: BTreeMap::new(),
            pools: BTreeMap::new(),
            grpc: super::GrpcStats::default(),
            process: None,
            alerts: None,
            llm: None,
            log_store: None,
            otlp_metrics: None,
            operations: Vec::new(),
            queues: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// Request counts since start.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Every recorded request.
    pub requests: u64,
    /// Requests classified as failures (default: 5xx) and requests that failed in transport.
    pub errors: u64,
    /// Requests whose client went away before the response was complete.
    pub aborted: u64,
}

/// Latency summary in milliseconds. Percentiles come from a sketch with a relative error of at
/// most [`LATENCY_RELATIVE_ERROR`](super::LATENCY_RELATIVE_ERROR); min, max and avg are exact.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct LatencyMs {
    pub min: f64,
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    pub(crate) fn from_summary(s: &Summary) -> Self {
        let ms = |nanos: f64| nanos / 1e6;
        let q = |i: usize| s.quantile_nanos.get(i).copied().map_or(0.0, ms);
        Self {
            min: ms(s.min_nanos),
            avg: s.sum_micros as f64 / 1e3 / s.count.max(1) as f64,
            p50: q(0),
            p95: q(1),
            p99: q(2),
            max: ms(s.max_nanos),
        }
    }
}

/// Responses per status class. Requests aborted before a status was sent are in none.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub s1xx: u64,
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

impl StatusClasses {
    pub(crate) fn from_counts(c: &[u64]) -> Self {
        let at = |i: usize| c.get(i).copied().unwrap_or(0);
        Self {
            s1xx: at(0),
            s2xx: at(1),
            s3xx: at(2),
            s4xx: at(3),
            s5xx: at(4),
        }
    }
}

/// The statistics of one slice of traffic (a route, or one value of a dimension).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BreakdownEntry {
    /// Requests in this slice.
    pub requests: u64,
    /// Failed requests in this slice.
    pub errors: u64,
    /// Aborted requests in this slice.
    pub aborted: u64,
    /// Requests per second over the last minute.
    pub requests_per_second: f64,
    /// Share of completed requests that did not fail.
    pub success_rate: Option<f64>,
    /// Latency summary.
    pub latency_ms: Option<LatencyMs>,
    /// Responses per status class.
    pub status_codes: StatusClasses,
}

/// Statistics of one route.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteEntry {
    /// `GET`, `POST`, …, or `_OTHER`.
    pub method: &'static str,
    /// The route template, or `_UNMATCHED`.
    pub route: String,
    /// The numbers.
    #[serde(flatten)]
    pub stats: BreakdownEntry,
    /// The route's figures over recent windows (`"1m"`, `"5m"`).
    pub windows: BTreeMap<&'static str, WindowEntry>,
}

/// Figures over a recent window (the last minute, the last five minutes), from a ring of
/// per-step sketches (see [`WINDOW_STEP_SECONDS`](super::WINDOW_STEP_SECONDS)): the window
/// covers between its length less one step and its length.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WindowEntry {
    /// The seconds the figures cover (shorter than the window just after the start, and by up
    /// to one step as the current step fills).
    pub seconds: f64,
    /// Requests that ended in the window (completed and aborted).
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Aborted requests.
    pub aborted: u64,
    /// `requests / seconds`.
    pub requests_per_second: f64,
    /// Share of completed requests that did not fail; `null` without one.
    pub success_rate: Option<f64>,
    /// Latency of the completed requests; `null` without one.
    pub latency_ms: Option<LatencyMs>,
}

impl WindowEntry {
    pub(crate) fn from_data(data: &super::window::WindowData, seconds: f64) -> Self {
        let summary = data.latency.summary(&[0.5, 0.95, 0.99]);
        let completed = summary.as_ref().map_or(0, |s| s.count);
        let requests = completed + data.aborted;
        Self {
            seconds,
            requests,
            errors: data.errors,
            aborted: data.aborted,
            requests_per_second: requests as f64 / seconds,
            success_rate: (completed > 0)
                .then(|| completed.saturating_sub(data.errors) as f64 / completed as f64),
            latency_ms: summary.map(|s| LatencyMs::from_summary(&s)),
        }
    }
}
