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
/// `error.type`
pub const ERROR_TYPE: &str = "error_type";

/// `error_type` of a response whose client went away before its end.
pub const ERROR_ABORTED: &str = "aborted";
/// `error_type` of a response whose body failed mid-stream.
pub const ERROR_BODY: &str = "body_error";
/// `error_type` when the inner service returned an error instead of a response.
pub const ERROR_SERVICE: &str = "_OTHER";
