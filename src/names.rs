//! Metric and label names, following the OpenTelemetry semantic conventions (v1.44) as
//! translated to Prometheus (`.` → `_`, unit suffix).

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
/// History writes that failed (the data is kept in memory and retried).
pub const HISTORY_WRITE_ERRORS: &str = "tower_observe_history_write_errors_total";
/// Incoming request IDs that were invalid and replaced by a fresh one.
pub const REQUEST_ID_REJECTED: &str = "tower_observe_request_id_rejected_total";
/// Recordings folded into an `_OTHER` series by the cardinality limit.
pub const CARDINALITY_OVERFLOW: &str = crate::registry::OVERFLOW_METRIC;

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

/// `error_type` of a response whose client went away before its end.
pub const ERROR_ABORTED: &str = "aborted";
/// `error_type` of a response whose body failed mid-stream.
pub const ERROR_BODY: &str = "body_error";
/// `error_type` when the inner service returned an error instead of a response.
pub const ERROR_SERVICE: &str = "_OTHER";
