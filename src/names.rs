//! Metric and label names, following the OpenTelemetry semantic conventions (v1.44) as
//! translated to Prometheus (`.` → `_`, unit suffix); every `error_type` value the crate
//! records; and `METRICS`, the (crate-private) table of every metric's kind, unit, help text and buckets.
//!
//! The table is data, not code: the observer applies the bucket layouts and registration
//! describes each metric from it, without knowing which feature records the metric.
//!
//! The metrics of HTTP servers — labels, what counts as a failure, dimensions, buckets,
//! cardinality and layer order — are described in [`server`](crate::server).

use metrics::Unit;

/// `http.server.request.duration`: histogram, seconds, ends when the response body ends.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http.server.active_requests`: gauge of requests whose response is not complete.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// `http.server.request.body.size`: histogram of request body bytes actually read.
pub const HTTP_SERVER_REQUEST_BODY_SIZE: &str = "http_server_request_body_size_bytes";
/// `http.server.response.body.size`: histogram of response body bytes actually sent.
pub const HTTP_SERVER_RESPONSE_BODY_SIZE: &str = "http_server_response_body_size_bytes";
/// `http.client.request.duration`: histogram, seconds, ends when the response headers arrive.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";
/// `http.client.active_requests`: gauge of client requests waiting for their response.
pub const HTTP_CLIENT_ACTIVE_REQUESTS: &str = "http_client_active_requests";
/// `http.client.request.body.size`: histogram of request body bytes, when known.
pub const HTTP_CLIENT_REQUEST_BODY_SIZE: &str = "http_client_request_body_size_bytes";
/// `http.client.response.body.size`: histogram of announced response body bytes.
pub const HTTP_CLIENT_RESPONSE_BODY_SIZE: &str = "http_client_response_body_size_bytes";
/// Resends of a logical client request, by target and the reason for the resend.
pub const CLIENT_RETRIES: &str = "client_retries_total";
/// Logical client requests that still failed after at least one retry.
pub const CLIENT_RETRY_EXHAUSTED: &str = "client_retry_exhausted_total";
/// Attempts per logical client request (histogram; 1 = no retry).
pub const CLIENT_REQUEST_ATTEMPTS: &str = "client_request_attempts";
/// Switches of a logical request from one backend to another.
pub const CLIENT_FAILOVERS: &str = "client_failovers_total";
/// Cache lookups by cache and result (`hit`, `miss`, `stale`, `bypass`).
pub const CACHE_REQUESTS: &str = "cache_requests_total";
/// Backends of a pool by state (`healthy`, `unhealthy`).
pub const BACKEND_POOL_MEMBERS: &str = "backend_pool_members";
/// Share of a pool's backends that are healthy, 0 to 1.
pub const BACKEND_POOL_HEALTH_RATIO: &str = "backend_pool_health_ratio";
/// Duration of backend health checks, by pool and result.
pub const BACKEND_HEALTH_CHECK_DURATION: &str = "backend_health_check_duration_seconds";
/// `rpc.server.call.duration`: histogram, seconds, to the end of the response stream.
pub const RPC_SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// `rpc.client.call.duration`: histogram, seconds, to the end of the response stream.
pub const RPC_CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";
/// `rpc.server.requests_per_rpc`: request messages per call served.
pub const RPC_SERVER_REQUESTS_PER_RPC: &str = "rpc_server_requests_per_rpc";
/// `rpc.server.responses_per_rpc`: response messages per call served.
pub const RPC_SERVER_RESPONSES_PER_RPC: &str = "rpc_server_responses_per_rpc";
/// `rpc.client.responses_per_rpc`: response messages per call made.
pub const RPC_CLIENT_RESPONSES_PER_RPC: &str = "rpc_client_responses_per_rpc";
/// `POST /v1/stats/reset` requests refused, by reason (`missing`, `invalid` token).
pub const STATS_RESET_REJECTED: &str = "tower_observe_stats_reset_rejected_total";
/// Requests to the dashboard or its live stream refused, by reason (`missing`, `invalid` token).
pub const DASHBOARD_REJECTED: &str = "tower_observe_dashboard_rejected_total";
/// History writes that failed (the data is kept in memory and retried).
pub const HISTORY_WRITE_ERRORS: &str = "tower_observe_history_write_errors_total";
/// Requests to the log store's routes refused, by reason (`missing`, `invalid` token).
pub const LOG_STORE_REJECTED: &str = "tower_observe_log_store_rejected_total";
/// Log events and spans the log store dropped because its buffer was full.
pub const LOG_STORE_DROPPED: &str = "tower_observe_log_store_dropped_total";
/// Log store writes that failed (the store reopens, or degrades to memory).
pub const LOG_STORE_WRITE_ERRORS: &str = "tower_observe_log_store_write_errors_total";
/// Incoming request IDs that were invalid and replaced by a fresh one.
pub const REQUEST_ID_REJECTED: &str = "tower_observe_request_id_rejected_total";
/// Ticks of a capability's background thread (history flusher, process sampler, alert
/// engine, dashboard stream) that panicked, by `capability`; the thread keeps ticking.
pub const BACKGROUND_PANICS: &str = "tower_observe_background_panics_total";
/// OTLP metric exports by `outcome`: `success`, `failure` (collector down, timeout,
/// rejection) and `skipped` (ticks missed while a slow export was still running).
pub const OTLP_METRICS_EXPORTS: &str = "tower_observe_otlp_metrics_exports_total";
/// Recordings folded into an `_OTHER` series by the cardinality limit.
pub const CARDINALITY_OVERFLOW: &str = "tower_observe_cardinality_overflow_total";
/// Duration of requests to the observer's own endpoints (`/metrics`, `/v1/*`, `/health*`,
/// `/dashboard*`), with the labels of [`HTTP_SERVER_REQUEST_DURATION`]: recorded apart from
/// it by default (`OwnEndpoints::Apart`), so that scrapes and probes do not count as the
/// application's traffic in its error rate, latency and alerts.
pub const OBSERVER_ENDPOINT_REQUEST_DURATION: &str =
    "tower_observe_endpoint_request_duration_seconds";
/// Alert notifications by channel and result (`success`, `failure` after the last retry,
/// `dropped` because the channel's queue was full).
pub const ALERT_NOTIFICATIONS: &str = "alert_notifications_total";
/// Process CPU time, user and system, in seconds (a float counter).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Resident memory of the process, in bytes.
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Virtual memory of the process, in bytes.
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// The address-space limit of the process, in bytes (only when it is limited).
pub const PROCESS_VIRTUAL_MEMORY_MAX: &str = "process_virtual_memory_max_bytes";
/// Open file descriptors of the process.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// The open file descriptor limit of the process (only when it is limited).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// When the process started, in seconds since the Unix epoch.
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
/// OS threads of the process.
pub const PROCESS_THREADS: &str = "process_threads";
/// CPUs available to the process (cgroup quota and affinity applied).
pub const PROCESS_CPU_AVAILABLE_CORES: &str = "process_cpu_available_cores";
/// `process.cpu.utilization`: CPU time over wall time × available CPUs, between samples, 0 to 1.
pub const PROCESS_CPU_UTILIZATION: &str = "process_cpu_utilization_ratio";
/// Worker threads of the watched tokio runtime.
pub const TOKIO_WORKERS: &str = "tokio_workers";
/// Tasks alive in the watched tokio runtime.
pub const TOKIO_ALIVE_TASKS: &str = "tokio_alive_tasks";
/// Tasks waiting in the watched tokio runtime's global queue.
pub const TOKIO_GLOBAL_QUEUE_DEPTH: &str = "tokio_global_queue_depth";
/// Time the watched tokio runtime's workers spent busy, summed over workers, in seconds.
pub const TOKIO_BUSY_DURATION: &str = "tokio_busy_duration_seconds_total";
/// Busy time over wall time × workers of the watched tokio runtime, between samples, 0 to 1.
pub const TOKIO_BUSY_RATIO: &str = "tokio_busy_ratio";

// --- LLM traffic (module `llm`): the OpenTelemetry GenAI metrics -----------------------------

/// `gen_ai.client.token.usage`: histogram of tokens per operation, by `gen_ai_token_type`
/// (`input`, `output`) and `usage_source` (`provider`, `estimated`).
pub const GEN_AI_CLIENT_TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// `gen_ai.client.operation.duration`: histogram, seconds, of calls to a model provider, to
/// the end of the response body.
pub const GEN_AI_CLIENT_OPERATION_DURATION: &str = "gen_ai_client_operation_duration_seconds";
/// `gen_ai.client.operation.time_to_first_chunk`: histogram, seconds, from sending a streamed
/// call to its first content chunk.
pub const GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK: &str =
    "gen_ai_client_operation_time_to_first_chunk_seconds";
/// `gen_ai.server.request.duration`: histogram, seconds, of requests to a model API served,
/// to the end of the response body.
pub const GEN_AI_SERVER_REQUEST_DURATION: &str = "gen_ai_server_request_duration_seconds";
/// `gen_ai.server.time_to_first_token`: histogram, seconds, from a streamed request's arrival
/// to its first content token.
pub const GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_seconds";
/// `gen_ai.server.time_per_output_token`: histogram, seconds, of (end − first token) / (output
/// tokens − 1) of a completed stream.
pub const GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: &str = "gen_ai_server_time_per_output_token_seconds";

/// `gen_ai.operation.name`: `chat`, `text_completion`, `embeddings`, …
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai_operation_name";
/// `gen_ai.provider.name`: `openai`, `anthropic`, `aws.bedrock`, …
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai_provider_name";
/// `gen_ai.request.model`: the model asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai_request_model";
/// `gen_ai.token.type`: `input` or `output`.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai_token_type";
/// Where a token count comes from: `provider` (the provider's `usage` object, or counts the
/// handler set) or `estimated` (content chunks counted). Not an OpenTelemetry attribute.
pub const USAGE_SOURCE: &str = "usage_source";

/// `error_type` of an LLM stream that carried an `error` event (or a JSON body with an
/// `error` object).
pub const ERROR_STREAM: &str = "stream_error";

/// Bucket bounds of `gen_ai.client.token.usage` (OpenTelemetry's advice: powers of 4 from 1).
pub const GEN_AI_TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket bounds (seconds) of the GenAI operation and request durations and of the time to
/// the first chunk (OpenTelemetry's advice: doubling from 10 ms).
pub const GEN_AI_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Bucket bounds (seconds) of `gen_ai.server.time_to_first_token` (OpenTelemetry's advice).
pub const GEN_AI_TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Bucket bounds (seconds) of `gen_ai.server.time_per_output_token` (OpenTelemetry's advice).
pub const GEN_AI_TPOT_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
// --- operations (feature `operations`): database calls, messaging, functions, queues ---

/// `db.client.operation.duration`: histogram, seconds, one database operation (stable
/// OpenTelemetry convention).
pub const DB_CLIENT_OPERATION_DURATION: &str = "db_client_operation_duration_seconds";
/// `messaging.process.duration`: histogram, seconds, processing one message or job.
pub const MESSAGING_PROCESS_DURATION: &str = "messaging_process_duration_seconds";
/// `messaging.client.operation.duration`: histogram, seconds, one send, receive or
/// settlement call to a messaging system (not processing).
pub const MESSAGING_CLIENT_OPERATION_DURATION: &str = "messaging_client_operation_duration_seconds";
/// autometrics' `function.calls`: calls of a function or external API by `result`
/// (`ok`, `error`, and `cancelled`, which autometrics has not).
pub const FUNCTION_CALLS: &str = "function_calls_total";
/// autometrics' `function.calls.duration`: histogram, seconds, by `function` and `module`.
pub const FUNCTION_CALLS_DURATION: &str = "function_calls_duration_seconds";
/// Jobs waiting in a queue (no OpenTelemetry convention: queue depth is system-specific).
pub const QUEUE_DEPTH: &str = "queue_depth";
/// Jobs put into a queue.
pub const QUEUE_ENQUEUED: &str = "queue_enqueued_total";
/// Histogram, seconds, from a job's enqueueing to the start of its processing; its count
/// is the jobs started.
pub const QUEUE_WAIT_DURATION: &str = "queue_wait_duration_seconds";
/// Workers of a queue by `state` (`busy`, `idle`, `stuck`).
pub const QUEUE_WORKERS: &str = "queue_workers";
/// `db.system.name`
pub const DB_SYSTEM_NAME: &str = "db_system_name";
/// `db.operation.name`
pub const DB_OPERATION_NAME: &str = "db_operation_name";
/// `db.collection.name`
pub const DB_COLLECTION_NAME: &str = "db_collection_name";
/// `messaging.system`
pub const MESSAGING_SYSTEM: &str = "messaging_system";
/// `messaging.destination.name`
pub const MESSAGING_DESTINATION_NAME: &str = "messaging_destination_name";
/// `messaging.operation.name`
pub const MESSAGING_OPERATION_NAME: &str = "messaging_operation_name";
/// autometrics' `function` label.
pub const FUNCTION: &str = "function";
/// autometrics' `module` label.
pub const MODULE: &str = "module";
/// autometrics' `result` label: `ok`, `error`, `cancelled`.
pub const RESULT: &str = "result";

/// Bucket bounds (seconds) that OpenTelemetry advises for `db.client.operation.duration`.
pub const DB_DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

// --- end operations ---

/// `http.request.method`
pub const HTTP_REQUEST_METHOD: &str = "http_request_method";
/// `http.route`
pub const HTTP_ROUTE: &str = "http_route";
/// `http.response.status_code`
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http_response_status_code";
/// `url.scheme`
pub const URL_SCHEME: &str = "url_scheme";
/// `rpc.system.name`
pub const RPC_SYSTEM_NAME: &str = "rpc_system_name";
/// `rpc.method`
pub const RPC_METHOD: &str = "rpc_method";
/// `rpc.status_code`
pub const RPC_STATUS_CODE: &str = "rpc_status_code";
/// `server.address`
pub const SERVER_ADDRESS: &str = "server_address";
/// `server.port`
pub const SERVER_PORT: &str = "server_port";
/// `error.type`
pub const ERROR_TYPE: &str = "error_type";
/// `network.protocol.version`: `1.0`, `1.1`, `2`, `3`.
pub const NETWORK_PROTOCOL_VERSION: &str = "network_protocol_version";
/// `otel.metric.overflow`: `"true"` on the series that label sets past the cardinality limit
/// fold into (the OpenTelemetry SDK's overflow attribute).
pub const OTEL_METRIC_OVERFLOW: &str = "otel_metric_overflow";

/// The labels of the HTTP server metrics (extra dimensions may not reuse them).
pub(crate) const HTTP_SERVER_LABELS: &[&str] = &[
    HTTP_REQUEST_METHOD,
    HTTP_ROUTE,
    HTTP_RESPONSE_STATUS_CODE,
    URL_SCHEME,
    ERROR_TYPE,
    NETWORK_PROTOCOL_VERSION,
    OTEL_METRIC_OVERFLOW,
];

/// The labels of the HTTP client metrics (constant client labels may not reuse them).
#[allow(dead_code)] // used by optional capabilities
pub(crate) const HTTP_CLIENT_LABELS: &[&str] = &[
    HTTP_REQUEST_METHOD,
    URL_SCHEME,
    SERVER_ADDRESS,
    SERVER_PORT,
    HTTP_RESPONSE_STATUS_CODE,
    ERROR_TYPE,
    NETWORK_PROTOCOL_VERSION,
    OTEL_METRIC_OVERFLOW,
];

/// `error_type` of a response whose client went away before its end.
pub const ERROR_ABORTED: &str = "aborted";
/// `error_type` of a response whose body failed mid-stream.
pub const ERROR_BODY: &str = "body_error";
/// `error_type` of a request whose inner service panicked (caught by the server layer,
/// answered 500 when the headers were not sent yet).
pub const ERROR_PANIC: &str = "panic";
/// `error_type` when the inner service returned an error instead of a response, and of a
/// client error nothing more specific is known about.
pub const ERROR_SERVICE: &str = "_OTHER";
/// `error_type` of a client call whose deadline passed.
pub const ERROR_TIMEOUT: &str = "timeout";
/// `error_type` of a client call whose connection was refused.
pub const ERROR_CONNECTION_REFUSED: &str = "connection_refused";
/// `error_type` of a client call that could not connect for another reason (DNS, TLS,
/// unreachable).
pub const ERROR_CONNECT: &str = "connect";
/// `error_type` of a client call whose connection was reset or closed mid-exchange.
pub const ERROR_CONNECTION_RESET: &str = "connection_reset";
/// `error_type` of a client call dropped by its caller before the response arrived.
pub const ERROR_CANCELLED: &str = "cancelled";
/// `error_type` of a reqwest call that failed following redirects.
pub const ERROR_REDIRECT: &str = "redirect";
/// `error_type` of a reqwest call whose body could not be sent or decoded.
pub const ERROR_CLIENT_BODY: &str = "body";
/// `error_type` of a reqwest call that failed building or sending the request.
pub const ERROR_REQUEST: &str = "request";

/// Bucket bounds (seconds) that OpenTelemetry advises for HTTP and RPC durations.
pub const OTEL_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket bounds (bytes) used for body sizes: powers of four from 0 to 1 GiB.
pub const BODY_SIZE_BUCKETS: [f64; 14] = [
    0.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// Bucket bounds of `client_request_attempts`.
pub const ATTEMPT_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0];

/// Bucket bounds of the gRPC messages-per-call histograms.
pub const MESSAGE_BUCKETS: [f64; 11] = [
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 512.0, 2048.0,
];

/// What kind of metric a name is, and for histograms their buckets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram(Buckets),
}

/// The bucket layout of a histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Buckets {
    /// The observer's duration buckets (`ObserverBuilder::duration_buckets`; the OpenTelemetry
    /// advice by default).
    Duration,
    Fixed(&'static [f64]),
}

/// One metric the crate records.
#[derive(Debug)]
pub(crate) struct MetricSpec {
    /// The Prometheus name (what the registry and `/metrics` use).
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) unit: Option<Unit>,
    pub(crate) help: &'static str,
    /// The OpenTelemetry semantic-convention name and UCUM unit, where one exists (`None`:
    /// [`otel_name`] derives a dotted form of `name`).
    pub(crate) otel: Option<(&'static str, &'static str)>,
    /// A gauge that is an OpenTelemetry `UpDownCounter` (a count that goes up and down,
    /// additive across series: requests in flight, memory in use), not a `Gauge` (a ratio, a
    /// limit, a timestamp).
    pub(crate) up_down: bool,
}

const fn spec(
    name: &'static str,
    kind: Kind,
    unit: Option<Unit>,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        kind,
        unit,
        help,
        otel: None,
        up_down: false,
    }
}

impl MetricSpec {
    /// The OpenTelemetry name and unit of this metric.
    const fn otel(mut self, name: &'static str, unit: &'static str) -> Self {
        self.otel = Some((name, unit));
        self
    }

    /// Marks a gauge as an OpenTelemetry `UpDownCounter`.
    const fn up_down(mut self) -> Self {
        self.up_down = true;
        self
    }
}

/// The OpenTelemetry name and UCUM unit of the metric registered as `name`: the table's, else,
/// for a metric of the table, a dotted form of its Prometheus name (`_total` and the unit
/// suffix dropped, `tower_observe_` kept as one namespace: `client_retries_total` →
/// `client.retries`, `tower_observe_request_id_rejected_total` →
/// `tower_observe.request.id.rejected`); a metric the crate does not know keeps its name.
#[allow(dead_code)] // used by optional capabilities
pub(crate) fn otel_name(name: &str) -> (std::borrow::Cow<'static, str>, &'static str) {
    use std::borrow::Cow;
    let Some(spec) = spec_of(name) else {
        return (Cow::Owned(name.to_owned()), "");
    };
    if let Some((otel, unit)) = spec.otel {
        return (Cow::Borrowed(otel), unit);
    }
    let mut base = name.strip_suffix("_total").unwrap_or(name);
    let unit = match spec.unit {
        Some(Unit::Seconds) => {
            base = base.strip_suffix("_seconds").unwrap_or(base);
            "s"
        }
        Some(Unit::Bytes) => {
            base = base.strip_suffix("_bytes").unwrap_or(base);
            "By"
        }
        _ => match base.strip_suffix("_ratio") {
            Some(stripped) => {
                base = stripped;
                "1"
            }
            None => "",
        },
    };
    let dotted = match base.strip_prefix("tower_observe_") {
        Some(rest) => format!("tower_observe.{}", rest.replace('_', ".")),
        None => base.replace('_', "."),
    };
    (Cow::Owned(dotted), unit)
}

/// The type of an OpenTelemetry attribute a label stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // used by optional capabilities
pub(crate) enum AttributeType {
    String,
    /// An integer (`http.response.status_code`, `server.port`); a value that is not one
    /// (the overflow series' `_OTHER`) stays a string.
    Int,
    /// A boolean (`otel.metric.overflow`).
    Bool,
}

/// Every label that stands for an OpenTelemetry attribute: its name in Prometheus (`.` → `_`)
/// and the attribute's name and type, for exports that speak OpenTelemetry (OTLP). Other
/// labels (`capability`, `target`, `result`, dimensions, …) are attributes of the same name.
#[allow(dead_code)] // used by optional capabilities
pub(crate) const ATTRIBUTES: &[(&str, &str, AttributeType)] = &[
    (
        HTTP_REQUEST_METHOD,
        "http.request.method",
        AttributeType::String,
    ),
    (HTTP_ROUTE, "http.route", AttributeType::String),
    (
        HTTP_RESPONSE_STATUS_CODE,
        "http.response.status_code",
        AttributeType::Int,
    ),
    (URL_SCHEME, "url.scheme", AttributeType::String),
    (RPC_SYSTEM_NAME, "rpc.system.name", AttributeType::String),
    (RPC_METHOD, "rpc.method", AttributeType::String),
    (RPC_STATUS_CODE, "rpc.status_code", AttributeType::String),
    (SERVER_ADDRESS, "server.address", AttributeType::String),
    (SERVER_PORT, "server.port", AttributeType::Int),
    (ERROR_TYPE, "error.type", AttributeType::String),
    (
        NETWORK_PROTOCOL_VERSION,
        "network.protocol.version",
        AttributeType::String,
    ),
    (
        OTEL_METRIC_OVERFLOW,
        "otel.metric.overflow",
        AttributeType::Bool,
    ),
    (
        GEN_AI_OPERATION_NAME,
        "gen_ai.operation.name",
        AttributeType::String,
    ),
    (
        GEN_AI_PROVIDER_NAME,
        "gen_ai.provider.name",
        AttributeType::String,
    ),
    (
        GEN_AI_REQUEST_MODEL,
        "gen_ai.request.model",
        AttributeType::String,
    ),
    (
        GEN_AI_TOKEN_TYPE,
        "gen_ai.token.type",
        AttributeType::String,
    ),
    (DB_SYSTEM_NAME, "db.system.name", AttributeType::String),
    (
        DB_OPERATION_NAME,
        "db.operation.name",
        AttributeType::String,
    ),
    (
        DB_COLLECTION_NAME,
        "db.collection.name",
        AttributeType::String,
    ),
    (MESSAGING_SYSTEM, "messaging.system", AttributeType::String),
    (
        MESSAGING_DESTINATION_NAME,
        "messaging.destination.name",
        AttributeType::String,
    ),
    (
        MESSAGING_OPERATION_NAME,
        "messaging.operation.name",
        AttributeType::String,
    ),
];

/// The OpenTelemetry attribute a label stands for (the label's own name when none).
#[allow(dead_code)] // used by optional capabilities
pub(crate) fn attribute_of(label: &str) -> (&str, AttributeType) {
    ATTRIBUTES
        .iter()
        .find(|(l, _, _)| *l == label)
        .map_or((label, AttributeType::String), |(_, a, t)| (*a, *t))
}

const DURATION: Kind = Kind::Histogram(Buckets::Duration);
const BODY_SIZE: Kind = Kind::Histogram(Buckets::Fixed(&BODY_SIZE_BUCKETS));
const MESSAGES: Kind = Kind::Histogram(Buckets::Fixed(&MESSAGE_BUCKETS));
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const BYTES: Option<Unit> = Some(Unit::Bytes);

/// Every metric the crate records: its kind, unit, help text and buckets.
pub(crate) const METRICS: &[MetricSpec] = &[
    spec(HTTP_SERVER_REQUEST_DURATION, DURATION, SECONDS,
        "Duration of HTTP server requests, from arrival to the end of the response body.")
        .otel("http.server.request.duration", "s"),
    spec(HTTP_SERVER_REQUEST_BODY_SIZE, BODY_SIZE, BYTES,
        "Size of HTTP server request bodies, in bytes actually read.")
        .otel("http.server.request.body.size", "By"),
    spec(HTTP_SERVER_RESPONSE_BODY_SIZE, BODY_SIZE, BYTES,
        "Size of HTTP server response bodies, in bytes actually sent.")
        .otel("http.server.response.body.size", "By"),
    spec(HTTP_SERVER_ACTIVE_REQUESTS, Kind::Gauge, None,
        "Number of HTTP server requests whose response is not yet complete.")
        .otel("http.server.active_requests", "{request}")
        .up_down(),
    spec(HTTP_CLIENT_REQUEST_DURATION, DURATION, SECONDS,
        "Duration of HTTP client requests, from sending to the response headers.")
        .otel("http.client.request.duration", "s"),
    spec(HTTP_CLIENT_REQUEST_BODY_SIZE, BODY_SIZE, BYTES,
        "Size of HTTP client request bodies, when known before sending.")
        .otel("http.client.request.body.size", "By"),
    spec(HTTP_CLIENT_RESPONSE_BODY_SIZE, BODY_SIZE, BYTES,
        "Size of HTTP client response bodies, as announced by Content-Length.")
        .otel("http.client.response.body.size", "By"),
    spec(HTTP_CLIENT_ACTIVE_REQUESTS, Kind::Gauge, None,
        "Number of HTTP client requests waiting for their response.")
        .otel("http.client.active_requests", "{request}")
        .up_down(),
    spec(CLIENT_RETRIES, Kind::Counter, None,
        "Resends of logical client requests, by target and the reason the previous attempt failed."),
    spec(CLIENT_RETRY_EXHAUSTED, Kind::Counter, None,
        "Logical client requests that still failed after at least one retry."),
    spec(CLIENT_REQUEST_ATTEMPTS, Kind::Histogram(Buckets::Fixed(&ATTEMPT_BUCKETS)), None,
        "Attempts per logical client request (1 = no retry)."),
    spec(CLIENT_FAILOVERS, Kind::Counter, None,
        "Switches of a logical client request from one backend to another."),
    spec(CACHE_REQUESTS, Kind::Counter, None,
        "Cache lookups by cache and result (hit, miss, stale, bypass)."),
    spec(BACKEND_POOL_MEMBERS, Kind::Gauge, None,
        "Backends of a pool by reported state (healthy, unhealthy).")
        .up_down(),
    spec(BACKEND_POOL_HEALTH_RATIO, Kind::Gauge, None,
        "Share of a pool's backends that are healthy, 0 to 1."),
    spec(BACKEND_HEALTH_CHECK_DURATION, Kind::Histogram(Buckets::Fixed(&OTEL_DURATION_BUCKETS)), SECONDS,
        "Duration of backend health checks, by pool and result."),
    spec(RPC_SERVER_CALL_DURATION, DURATION, SECONDS,
        "Duration of gRPC calls served, to the end of the response stream.")
        .otel("rpc.server.call.duration", "s"),
    spec(RPC_CLIENT_CALL_DURATION, DURATION, SECONDS,
        "Duration of gRPC calls made, to the end of the response stream.")
        .otel("rpc.client.call.duration", "s"),
    spec(RPC_SERVER_REQUESTS_PER_RPC, MESSAGES, None, "Request messages per gRPC call served.")
        .otel("rpc.server.requests_per_rpc", "{count}"),
    spec(RPC_SERVER_RESPONSES_PER_RPC, MESSAGES, None, "Response messages per gRPC call served.")
        .otel("rpc.server.responses_per_rpc", "{count}"),
    spec(RPC_CLIENT_RESPONSES_PER_RPC, MESSAGES, None, "Response messages per gRPC call made.")
        .otel("rpc.client.responses_per_rpc", "{count}"),
    spec(DASHBOARD_REJECTED, Kind::Counter, None,
        "Requests to the dashboard or its live stream refused, by reason (missing, invalid token)."),
    spec(STATS_RESET_REJECTED, Kind::Counter, None,
        "POST /v1/stats/reset requests refused, by reason (missing, invalid token)."),
    spec(HISTORY_WRITE_ERRORS, Kind::Counter, None,
        "History writes that failed (kept in memory and retried)."),
    spec(LOG_STORE_REJECTED, Kind::Counter, None,
        "Requests to the log store's routes refused, by reason (missing, invalid token)."),
    spec(LOG_STORE_DROPPED, Kind::Counter, None,
        "Log events and spans dropped because the log store's buffer was full."),
    spec(LOG_STORE_WRITE_ERRORS, Kind::Counter, None,
        "Log store writes that failed (the store reopens, or degrades to memory)."),
    spec(REQUEST_ID_REJECTED, Kind::Counter, None,
        "Incoming request IDs that were invalid and replaced by a fresh one."),
    spec(BACKGROUND_PANICS, Kind::Counter, None,
        "Ticks of a background thread that panicked, by capability (the thread keeps ticking)."),
    spec(OTLP_METRICS_EXPORTS, Kind::Counter, None,
        "OTLP metric exports by outcome (success, failure, skipped while a slow export was running)."),
    spec(CARDINALITY_OVERFLOW, Kind::Counter, None,
        "Recordings whose label set exceeded the per-metric limit and were folded into the _OTHER series."),
    spec(OBSERVER_ENDPOINT_REQUEST_DURATION, DURATION, SECONDS,
        "Duration of requests to the observer's own endpoints (/metrics, /v1/*, /health*, /dashboard*), kept apart from the application's."),
    spec(ALERT_NOTIFICATIONS, Kind::Counter, None,
        "Alert notifications by channel and result (success, failure after retries, dropped when the queue was full)."),
    spec(PROCESS_CPU_SECONDS, Kind::Counter, SECONDS,
        "Total user and system CPU time spent by the process, in seconds.")
        .otel("process.cpu.time", "s"),
    spec(PROCESS_RESIDENT_MEMORY, Kind::Gauge, BYTES, "Resident memory size of the process, in bytes.")
        .otel("process.memory.usage", "By")
        .up_down(),
    spec(PROCESS_VIRTUAL_MEMORY, Kind::Gauge, BYTES, "Virtual memory size of the process, in bytes.")
        .otel("process.memory.virtual", "By")
        .up_down(),
    spec(PROCESS_VIRTUAL_MEMORY_MAX, Kind::Gauge, BYTES,
        "Maximum amount of virtual memory available to the process, in bytes (absent when unlimited)."),
    spec(PROCESS_OPEN_FDS, Kind::Gauge, None, "Number of open file descriptors.")
        .up_down(),
    spec(PROCESS_MAX_FDS, Kind::Gauge, None,
        "Maximum number of open file descriptors (absent when unlimited)."),
    spec(PROCESS_START_TIME, Kind::Gauge, SECONDS,
        "Start time of the process since the Unix epoch, in seconds."),
    spec(PROCESS_THREADS, Kind::Gauge, None, "Number of OS threads in the process.")
        .otel("process.thread.count", "{thread}")
        .up_down(),
    spec(PROCESS_CPU_AVAILABLE_CORES, Kind::Gauge, None,
        "CPUs available to the process (affinity and cgroup CPU quota applied, rounded down, at least 1)."),
    spec(PROCESS_CPU_UTILIZATION, Kind::Gauge, None,
        "CPU time used over wall time times available CPUs, between samples, 0 to 1 (OpenTelemetry process.cpu.utilization).")
        .otel("process.cpu.utilization", "1"),
    spec(TOKIO_WORKERS, Kind::Gauge, None, "Worker threads of the tokio runtime.")
        .up_down(),
    spec(TOKIO_ALIVE_TASKS, Kind::Gauge, None, "Tasks alive in the tokio runtime.")
        .up_down(),
    spec(TOKIO_GLOBAL_QUEUE_DEPTH, Kind::Gauge, None,
        "Tasks waiting in the tokio runtime's global (injection) queue.")
        .up_down(),
    spec(TOKIO_BUSY_DURATION, Kind::Counter, SECONDS,
        "Time the tokio runtime's workers spent busy, summed over workers, in seconds."),
    spec(TOKIO_BUSY_RATIO, Kind::Gauge, None,
        "Busy time of the tokio runtime's workers over wall time times workers, between samples, 0 to 1."),
    // LLM traffic (module `llm`).
    spec(GEN_AI_CLIENT_TOKEN_USAGE, Kind::Histogram(Buckets::Fixed(&GEN_AI_TOKEN_BUCKETS)), None,
        "Tokens used per GenAI operation, by token type (input, output) and usage source (provider, estimated).")
        .otel("gen_ai.client.token.usage", "{token}"),
    spec(GEN_AI_CLIENT_OPERATION_DURATION, Kind::Histogram(Buckets::Fixed(&GEN_AI_DURATION_BUCKETS)), SECONDS,
        "Duration of GenAI calls to a model provider, to the end of the response body.")
        .otel("gen_ai.client.operation.duration", "s"),
    spec(GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK, Kind::Histogram(Buckets::Fixed(&GEN_AI_DURATION_BUCKETS)), SECONDS,
        "Time from sending a streamed GenAI call to its first content chunk.")
        .otel("gen_ai.client.operation.time_to_first_chunk", "s"),
    spec(GEN_AI_SERVER_REQUEST_DURATION, Kind::Histogram(Buckets::Fixed(&GEN_AI_DURATION_BUCKETS)), SECONDS,
        "Duration of GenAI requests served, to the end of the response body.")
        .otel("gen_ai.server.request.duration", "s"),
    spec(GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, Kind::Histogram(Buckets::Fixed(&GEN_AI_TTFT_BUCKETS)), SECONDS,
        "Time from a streamed GenAI request's arrival to its first content token (not the first byte).")
        .otel("gen_ai.server.time_to_first_token", "s"),
    spec(GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, Kind::Histogram(Buckets::Fixed(&GEN_AI_TPOT_BUCKETS)), SECONDS,
        "Time per output token after the first, of completed GenAI streams.")
        .otel("gen_ai.server.time_per_output_token", "s"),
    // operations (feature `operations`)
    spec(DB_CLIENT_OPERATION_DURATION, Kind::Histogram(Buckets::Fixed(&DB_DURATION_BUCKETS)), SECONDS,
        "Duration of database client operations (OpenTelemetry db.client.operation.duration).")
        .otel("db.client.operation.duration", "s"),
    spec(MESSAGING_PROCESS_DURATION, Kind::Histogram(Buckets::Fixed(&OTEL_DURATION_BUCKETS)), SECONDS,
        "Duration of processing one message or job (OpenTelemetry messaging.process.duration).")
        .otel("messaging.process.duration", "s"),
    spec(MESSAGING_CLIENT_OPERATION_DURATION, Kind::Histogram(Buckets::Fixed(&OTEL_DURATION_BUCKETS)), SECONDS,
        "Duration of messaging client operations such as send and receive (OpenTelemetry messaging.client.operation.duration).")
        .otel("messaging.client.operation.duration", "s"),
    spec(FUNCTION_CALLS, Kind::Counter, None,
        "Calls of a function or external API by result (ok, error, cancelled); autometrics-compatible.")
        .otel("function.calls", "{call}"),
    spec(FUNCTION_CALLS_DURATION, Kind::Histogram(Buckets::Fixed(&OTEL_DURATION_BUCKETS)), SECONDS,
        "Duration of calls of a function or external API; autometrics-compatible.")
        .otel("function.calls.duration", "s"),
    spec(QUEUE_DEPTH, Kind::Gauge, None, "Jobs waiting in a queue.")
        .up_down(),
    spec(QUEUE_ENQUEUED, Kind::Counter, None, "Jobs put into a queue."),
    spec(QUEUE_WAIT_DURATION, Kind::Histogram(Buckets::Fixed(&OTEL_DURATION_BUCKETS)), SECONDS,
        "Time a job waited in its queue, from enqueueing to the start of its processing."),
    spec(QUEUE_WORKERS, Kind::Gauge, None,
        "Workers of a queue by state (busy, idle, stuck: busy or silent longer than the queue's threshold).")
        .up_down(),
    // end operations
];

/// The table entry of `name`.
pub(crate) fn spec_of(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_once() {
        for (i, m) in METRICS.iter().enumerate() {
            assert!(!m.help.is_empty(), "{}", m.name);
            assert!(
                METRICS[i + 1..].iter().all(|o| o.name != m.name),
                "{} twice",
                m.name
            );
            if let Kind::Counter = m.kind {
                assert!(m.name.ends_with("_total"), "{}", m.name);
            }
            assert!(
                !m.up_down || matches!(m.kind, Kind::Gauge),
                "{}: only a gauge is an up-down counter",
                m.name
            );
        }
    }

    #[test]
    fn every_metric_has_one_opentelemetry_name() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            let (name, unit) = otel_name(m.name);
            assert!(!name.contains('_') || name.contains('.'), "{name}");
            assert!(seen.insert(name.clone()), "{name} twice");
            // Translated back as Prometheus does (`.` → `_`, unit suffix, `_total`), the
            // name is the one `/metrics` shows, for every derived name.
            if m.otel.is_none() {
                let mut back = name.replace('.', "_");
                match unit {
                    "s" => back.push_str("_seconds"),
                    "By" => back.push_str("_bytes"),
                    "1" => back.push_str("_ratio"),
                    _ => {}
                }
                if matches!(m.kind, Kind::Counter) {
                    back.push_str("_total");
                }
                assert_eq!(back, m.name);
            }
        }
        assert_eq!(
            otel_name(HTTP_SERVER_REQUEST_DURATION),
            ("http.server.request.duration".into(), "s")
        );
        assert_eq!(otel_name(CLIENT_RETRIES), ("client.retries".into(), ""));
        assert_eq!(
            otel_name(OTLP_METRICS_EXPORTS),
            ("tower_observe.otlp.metrics.exports".into(), "")
        );
        assert_eq!(
            otel_name(BACKEND_POOL_HEALTH_RATIO),
            ("backend.pool.health".into(), "1")
        );
        assert_eq!(otel_name("my_orders_total"), ("my_orders_total".into(), ""));
    }

    #[test]
    fn labels_map_back_to_attributes() {
        assert_eq!(
            attribute_of(HTTP_REQUEST_METHOD),
            ("http.request.method", AttributeType::String)
        );
        assert_eq!(
            attribute_of(HTTP_RESPONSE_STATUS_CODE),
            ("http.response.status_code", AttributeType::Int)
        );
        assert_eq!(
            attribute_of("capability"),
            ("capability", AttributeType::String)
        );
        for (label, attribute, _) in ATTRIBUTES {
            assert_eq!(attribute.replace('.', "_"), *label);
        }
    }
}
