//! Plugging more consumers into the one recording path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One finished HTTP server request, as every consumer of the recording path sees it.
///
/// Label values here are the ones the metrics carry: sanitised, and folded into `_OTHER`
/// past the cardinality limit.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpServerRecord<'a> {
    /// `GET`, `POST`, …, or `_OTHER`.
    pub method: &'static str,
    /// The route template, `_UNMATCHED`, or `_OTHER`.
    pub route: &'a str,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The response status, if one was produced.
    pub status: Option<u16>,
    /// Set only on failure: the status code (`"503"`), `aborted`, `body_error` or `_OTHER`.
    pub error_type: Option<&'a str>,
    /// Extra dimensions (`backend`, `model`, …) present on this request.
    pub dimensions: &'a [(Arc<str>, Arc<str>)],
    /// From the request's arrival to the end (or drop) of its response body.
    pub duration: Duration,
    /// When the request ended (wall clock).
    pub end: SystemTime,
    /// Request body bytes the application read.
    pub request_body_bytes: u64,
    /// Response body bytes sent.
    pub response_body_bytes: u64,
    /// The request's ID (`x-request-id`), when the layer assigns them.
    pub request_id: Option<&'a str>,
    /// The W3C trace the request belongs to: its span's trace when traced, else the caller's
    /// trace passed through (or the root its outgoing calls share).
    pub trace_id: Option<[u8; 16]>,
}

/// One finished HTTP client call (one attempt, when retried), as every consumer of the
/// recording path sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpClientRecord<'a> {
    /// `GET`, `POST`, …, or `_OTHER`.
    pub method: &'static str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The upstream host (`_OTHER` past the cardinality limit).
    pub server_address: &'a str,
    /// The upstream port.
    pub server_port: &'a str,
    /// The response status, if a response arrived.
    pub status: Option<u16>,
    /// Set on failure: the status code for 4xx and 5xx, else `timeout`, `connection_refused`, …
    pub error_type: Option<&'a str>,
    /// 0 for the first attempt, 1 for the first resend, …
    pub resend_count: u32,
    /// From sending to the response headers (or the error).
    pub duration: Duration,
    /// When the call ended (wall clock).
    pub end: SystemTime,
    /// Request body bytes, when known before sending.
    pub request_body_bytes: Option<u64>,
    /// Response body bytes announced by `Content-Length`.
    pub response_body_bytes: Option<u64>,
}

/// One finished operation (a database call, a message processed, a function or external API
/// call), as every consumer of the recording path sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct OperationRecord<'a> {
    /// `db`, `messaging_process`, `messaging_client` or `function`.
    pub kind: &'static str,
    /// `db.system.name`, `messaging.system`, or the function's module.
    pub system: &'a str,
    /// The operation's name (`_OTHER` past the cardinality limit).
    pub name: &'a str,
    /// `db.collection.name` or `messaging.destination.name`; empty when not set.
    pub target: &'a str,
    /// Set on failure: the error type; `cancelled` for a call dropped before it finished.
    pub error_type: Option<&'a str>,
    /// Whether the call was dropped before it finished.
    pub cancelled: bool,
    /// From the start of the call to its end (or drop).
    pub duration: Duration,
    /// When the call ended (wall clock).
    pub end: SystemTime,
}

/// A consumer of finished requests, called once per request after the metrics and
/// `/v1/stats` are updated.
///
/// It runs on the request's task, so it must be quick and must not block: hand heavy work to
/// a channel. A panic in a sink is caught and counted; it never reaches the request.
///
/// ```
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// use tower_observe::{HttpServerRecord, Observer, RecordSink};
///
/// #[derive(Default)]
/// struct SlowRequests(AtomicU64);
///
/// impl RecordSink for SlowRequests {
///     fn record_http_server(&self, record: &HttpServerRecord<'_>) {
///         if record.duration.as_secs() >= 1 {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let slow = Arc::new(SlowRequests::default());
/// let observer = Observer::builder().sink(slow.clone()).build().unwrap();
/// ```
pub trait RecordSink: Send + Sync + 'static {
    /// Called once per finished HTTP server request.
    fn record_http_server(&self, record: &HttpServerRecord<'_>);

    /// Called once per finished HTTP client call made through the client instrumentation.
    fn record_http_client(&self, record: &HttpClientRecord<'_>) {
        let _ = record;
    }

    /// Called once per finished operation timed by the operations instrumentation.
    fn record_operation(&self, record: &OperationRecord<'_>) {
        let _ = record;
    }
}
