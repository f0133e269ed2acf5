//! The `/v1/stats` sections that capabilities fill: retries, caches, backend pools, gRPC,
//! process, alerts.
//!
//! The schema of the whole document lives in this module and `snapshot.rs`, in one place
//! (and in `docs/stats-api.md`); each section is filled by the part of the capability it
//! describes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Retry accounting of one target (module `retry`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct RetryEntry {
    /// Logical requests that finished (each may have made several attempts).
    pub logical_requests: u64,
    /// Attempts made by those logical requests.
    pub attempts: u64,
    /// Average attempts per finished logical request; `null` before the first.
    pub attempts_avg: Option<f64>,
    /// Resends, in all.
    pub retries: u64,
    /// Resends per reason (`503`, `timeout`, `connection_refused`, …).
    pub retries_by_reason: BTreeMap<String, u64>,
    /// Logical requests that still failed after at least one retry.
    pub exhausted: u64,
    /// Switches from one backend to another, keyed `"from -> to"`.
    pub failovers: BTreeMap<String, u64>,
}

/// Results of one cache (module `cache`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// Served from the cache.
    pub hit: u64,
    /// Not in the cache; fetched.
    pub miss: u64,
    /// Served stale or revalidated.
    pub stale: u64,
    /// The cache was not consulted.
    pub bypass: u64,
    /// `hit / (hit + miss + stale)`; bypasses are not lookups. `null` before the first lookup.
    pub hit_ratio: Option<f64>,
}

/// One backend pool (module `pool`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct PoolEntry {
    /// The selection strategy the pool was registered with (`round_robin`, …).
    pub strategy: String,
    /// Backends currently healthy.
    pub healthy: u64,
    /// Backends currently unhealthy.
    pub unhealthy: u64,
    /// `100 × healthy / (healthy + unhealthy)`; `null` for an empty pool.
    pub health_percent: Option<f64>,
    /// Every backend of the pool.
    pub backends: BTreeMap<String, BackendEntry>,
}

/// One backend of a pool.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct BackendEntry {
    /// The last reported state.
    pub healthy: bool,
    /// Health checks recorded.
    pub checks: u64,
    /// Health checks that failed.
    pub failed_checks: u64,
    /// Duration of the last health check, in milliseconds.
    pub last_check_ms: Option<f64>,
}

/// Per side (`server`, `client`), one entry per method (`pkg.Service/Method` or `_OTHER`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GrpcStats {
    /// Calls served.
    pub server: BTreeMap<String, GrpcMethodEntry>,
    /// Calls made.
    pub client: BTreeMap<String, GrpcMethodEntry>,
}

/// The statistics of one gRPC method.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GrpcMethodEntry {
    /// Calls recorded.
    pub calls: u64,
    /// Calls that failed (server: the server-fault codes; client: every non-`OK` code).
    pub errors: u64,
    /// Calls whose stream was dropped before its end.
    pub cancelled: u64,
    /// Calls per second over the last minute.
    pub calls_per_second: f64,
    /// Share of completed calls that did not fail.
    pub success_rate: Option<f64>,
    /// Latency to the end of the stream.
    pub latency_ms: Option<super::LatencyMs>,
    /// Calls per gRPC status (`OK`, `NOT_FOUND`, …), codes seen only.
    pub status_codes: BTreeMap<&'static str, u64>,
}

/// The `process` section (module `process`): the process's CPU, memory, file descriptors and threads, and the watched tokio runtime, as
/// of the latest sample (at most one sample interval old). A figure that could not be read
/// is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// CPUs in use: CPU seconds per wall second over the latest window of at least one
    /// second (Prometheus' `rate(process_cpu_seconds_total[…])`); `null` until a window has
    /// closed.
    pub cpu_cores_used: Option<f64>,
    /// `cpu_cores_used / available_cores`, 0 to 1 (OpenTelemetry's `process.cpu.utilization`);
    /// `null` until a window has closed.
    pub cpu_utilization: Option<f64>,
    /// CPUs available to the process: `std::thread::available_parallelism` (affinity and a
    /// cgroup CPU quota applied).
    pub available_cores: Option<u64>,
    /// CPU time, user and system, since the process started, in seconds.
    pub cpu_seconds_total: Option<f64>,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors; `null` when unlimited.
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// When the process started (RFC 3339, UTC; whole seconds).
    pub start_time: Option<String>,
    /// The watched tokio runtime; `null` when none is watched.
    pub runtime: Option<RuntimeStats>,
}

/// The stable figures of a tokio runtime (no `--cfg tokio_unstable` needed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Worker threads (1 for a current-thread runtime).
    pub workers: u64,
    /// Tasks spawned and not yet finished.
    pub alive_tasks: u64,
    /// Tasks waiting in the global (injection) queue.
    pub global_queue_depth: u64,
    /// Busy time over wall time × workers over the latest window of at least one second, 0
    /// to 1; `null` until a window has closed (or where tokio does not measure busy time:
    /// targets without 64-bit atomics).
    pub busy_ratio: Option<f64>,
}

/// The alerts pending and firing now: the `alerts` section (module `alerts`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ActiveAlerts {
    /// Every pending or firing alert.
    pub active: Vec<ActiveAlert>,
    /// How many rules are evaluated.
    pub rules: usize,
}

/// One pending or firing alert.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ActiveAlert {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity: `info`, `warning`, `critical` or `page`.
    pub severity: &'static str,
    /// `pending` or `firing`.
    pub state: &'static str,
    /// The label set of this alert (for a rule evaluated per route, backend, …).
    pub labels: BTreeMap<String, String>,
    /// When its condition started to hold (RFC 3339).
    pub active_since: String,
    /// The figure at the last evaluation where the condition held.
    pub value: Option<f64>,
    /// The rule's `summary` annotation, filled in.
    pub summary: Option<String>,
}

// --- LLM traffic (module `llm`) ---------------------------------------------------------------

/// The `llm` section (module `llm`): GenAI requests served (`server`) and calls made to model
/// providers (`client`), per provider and per model.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct LlmStats {
    /// Requests to the service's own model API.
    pub server: LlmSideStats,
    /// Calls to upstream model providers.
    pub client: LlmSideStats,
}

/// One side of the `llm` section.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct LlmSideStats {
    /// Per `gen_ai.provider.name` (`_OTHER` past the allow-list or the label limit).
    pub providers: BTreeMap<String, LlmEntry>,
    /// Per `gen_ai.request.model`, whatever the provider.
    pub models: BTreeMap<String, LlmEntry>,
}

/// The figures of one provider or model.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LlmEntry {
    /// Requests recorded, cancelled ones included.
    pub requests: u64,
    /// Requests that failed (an error status, a body or stream error).
    pub errors: u64,
    /// Requests whose stream was dropped before its end.
    pub cancelled: u64,
    /// `errors / completed requests`; `null` before the first completed one.
    pub error_rate: Option<f64>,
    /// Requests per second over the last minute.
    pub requests_per_second: f64,
    /// Latency to the end of the response body, of completed requests.
    pub latency_ms: Option<super::LatencyMs>,
    /// Time to the first content token of streamed responses.
    pub ttft_ms: Option<super::LatencyMs>,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Of `input_tokens + output_tokens`, how many were estimated (content chunks counted)
    /// rather than reported by the provider or the handler.
    pub estimated_tokens: u64,
}

/// The `log_store` section (module `log_store`): what the embedded log and span store holds
/// and what it lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LogStoreStats {
    /// Whether records are written to a file (false in memory, or after the file failed).
    pub durable: bool,
    /// Events and spans stored (flushed); `null` when the store cannot be read.
    pub records: Option<u64>,
    /// Their keys, encoded records and index entries, in bytes; `null` when unreadable.
    pub bytes: Option<u64>,
    /// Records dropped because the capture buffer was full, since start.
    pub dropped: u64,
    /// Failed writes since start.
    pub write_errors: u64,
}
/// The `otlp_metrics` section (module `otlp`): how the periodic OTLP metrics export fares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OtlpMetricsStats {
    /// The collector's URL (its scheme, host, port and path; no credentials or query).
    pub endpoint: String,
    /// `cumulative`, `delta` or `lowmemory`.
    pub temporality: &'static str,
    /// Exports the collector accepted, since start.
    pub exported: u64,
    /// Exports that failed (collector down, timeout, rejection), since start.
    pub failed: u64,
    /// Ticks skipped because an export was still running.
    pub skipped: u64,
    /// Why the last export failed, while the exports fail; `null` once one succeeds.
    pub last_error: Option<String>,
}

// --- operations and queues (module `operations`) ---

/// One timed operation (module `operations`): a database call, a message processed, a
/// function or external API call.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct OperationEntry {
    /// `db`, `messaging_process`, `messaging_client` or `function`.
    pub kind: &'static str,
    /// `db.system.name`, `messaging.system`, or the function's module.
    pub system: String,
    /// `db.operation.name`, `messaging.operation.name`, or the function's name (`_OTHER` past
    /// the cardinality limit).
    pub name: String,
    /// `db.collection.name` or `messaging.destination.name`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Calls recorded (completed and cancelled).
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls dropped before they finished (a dropped future or guard).
    pub cancelled: u64,
    /// `errors / completed calls`; `null` before the first completed call. Cancelled calls
    /// are not failures.
    pub error_rate: Option<f64>,
    /// Calls per second over the last minute.
    pub calls_per_second: f64,
    /// Latency of completed calls.
    pub latency_ms: Option<super::LatencyMs>,
}

/// Workers of one queue by status.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerCounts {
    /// Running a job, with a sign of life within the queue's threshold.
    pub busy: u64,
    /// Waiting for a job.
    pub idle: u64,
    /// Busy (or, for a worker that sends heartbeats, silent) longer than the threshold.
    pub stuck: u64,
}

/// One queue of jobs (module `operations`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct QueueEntry {
    /// `messaging.system` of the queue.
    pub system: String,
    /// Jobs waiting now: set by the application, sampled from its closure, or enqueued
    /// minus started.
    pub depth: f64,
    /// Jobs enqueued.
    pub enqueued: u64,
    /// Jobs whose processing started.
    pub started: u64,
    /// Jobs whose processing finished (ok or failed).
    pub finished: u64,
    /// Of the finished jobs, those that failed.
    pub failed: u64,
    /// Jobs dropped while processing.
    pub cancelled: u64,
    /// Time from enqueueing to the start of processing.
    pub wait_ms: Option<super::LatencyMs>,
    /// Processing time of finished jobs.
    pub processing_ms: Option<super::LatencyMs>,
    /// Workers by status.
    pub workers: WorkerCounts,
    /// The names of the stuck workers.
    pub stuck_workers: Vec<String>,
}

// --- end operations and queues ---
/// A wiring or configuration problem the observer noticed: a layer that requests do not pass
/// through, a history kept in memory because its file could not be opened, a rule that reads
/// a metric nothing records. Listed in `/v1/stats` (`warnings`), as a reason in `/health`
/// (without changing its colour) and on the dashboard; each is logged once, at `WARN`, when
/// first seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Warning {
    /// A stable identifier of the problem (`layer_not_in_front`, `layer_outside_router`,
    /// `history_not_durable`, `rule_reads_unrecorded_metric`).
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Warning {
    /// A warning with its code and message.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
