//! One outgoing call, from before it is sent until its response or error is recorded.

use std::sync::Arc;

use super::series::{ClientCompletion, ClientPart, Upstream};
use super::ClientOptions;
#[cfg(feature = "cache")]
use crate::cache::{CacheHandle, CacheStatus};
use crate::classify::{status_label, ClientRequest, ClientResponse, Failure, ResendCount};
use crate::hex;
use crate::labels::{protocol_version, HttpMethod};
use crate::stats::Outcome;
use crate::trace::{
    client_span_name, record_method_original, Capped, SpanIds, TraceContext, MAX_LOGGED_URL_LEN,
};
use crate::Observer;

/// How one attempt ended, for retry accounting.
#[derive(Debug)]
#[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
pub(crate) struct AttemptEnd {
    pub(crate) failure: Option<Failure>,
    /// The upstream it went to.
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// The attempt's IDs when it started a trace of its own: the next attempts of the same
    /// logical request continue that trace.
    pub(crate) root: Option<SpanIds>,
}

/// One outgoing call being measured: started before sending, finished with the response or
/// the error, recorded as `cancelled` if dropped before either.
#[derive(Debug)]
pub(crate) struct ClientCall {
    observer: Observer,
    part: Arc<ClientPart>,
    pub(crate) upstream: Option<Arc<Upstream>>,
    #[cfg(feature = "cache")]
    cache: Option<CacheHandle>,
    method: HttpMethod,
    start: u64,
    request_bytes: Option<u64>,
    resend_count: u32,
    pub(crate) span: tracing::Span,
    ids: SpanIds,
    /// This call's IDs when it started a trace of its own (no context to continue).
    root: Option<SpanIds>,
    done: bool,
}

impl ClientCall {
    pub(crate) fn start<R: ClientRequest>(
        observer: &Observer,
        part: &Arc<ClientPart>,
        options: &ClientOptions,
        req: &mut R,
        resend_count: Option<u32>,
    ) -> Self {
        let resend_count = resend_count
            .or_else(|| {
                req.extensions()
                    .and_then(|e| e.get::<ResendCount>())
                    .map(|r| r.0)
            })
            .unwrap_or(0);
        let method = observer.http_method(req.method());
        let parent = TraceContext::for_outgoing(req.extensions());
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut ids = TraceContext::client_span_ids(parent.as_ref());
        let server = req.server();
        let with_ids = !crate::trace::ids_come_later();
        let span = open_span(req, method, server, resend_count, with_ids.then_some(&ids));
        #[cfg(feature = "opentelemetry")]
        crate::trace::otel::join(&span, parent.as_ref(), &mut ids, with_ids);
        let upstream = server.map(|server| {
            part.call_started(
                observer,
                &options.upstream_cache,
                &options.labels,
                method,
                server,
            )
        });
        let root = parent.is_none().then_some(ids);
        let request_bytes = req.body_size();
        if options.propagate {
            TraceContext::inject_as_client(
                parent,
                ids,
                req.headers_mut(),
                &options.request_id_header,
            );
        }
        Self {
            observer: observer.clone(),
            part: part.clone(),
            upstream,
            #[cfg(feature = "cache")]
            cache: options.cache.clone(),
            method,
            start: observer.now_nanos(),
            request_bytes,
            resend_count,
            span,
            ids,
            root,
            done: false,
        }
    }

    /// Records a response.
    pub(crate) fn finish_response<Res: ClientResponse>(mut self, res: &Res) -> AttemptEnd {
        let status = res.status_code();
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.cache {
            if let Some(result) =
                CacheStatus::classify(res.response_headers(), res.response_extensions())
            {
                cache.record(result);
            }
        }
        let error = (status >= 400).then(|| status_label(status));
        let outcome = if status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let version = res.protocol_version();
        self.record(Response {
            status: Some(status),
            version,
            error_type: error.as_deref(),
            outcome,
            bytes: res.body_size(),
        });
        AttemptEnd {
            failure: Failure::of_status(status),
            upstream: self.upstream.clone(),
            root: self.root,
        }
    }

    /// Records a transport error.
    pub(crate) fn finish_error(mut self, error_type: &'static str) -> AttemptEnd {
        self.record(Response {
            error_type: Some(error_type),
            outcome: Outcome::Failure,
            ..Response::NONE
        });
        AttemptEnd {
            failure: Some(Failure::Error(error_type)),
            upstream: self.upstream.clone(),
            root: self.root,
        }
    }

    fn record(&mut self, res: Response<'_>) {
        self.done = true;
        let end = self.observer.now_nanos();
        let span = &self.span;
        if let Some(status) = res.status {
            span.record("http.response.status_code", status);
        }
        if let Some(version) = res.version {
            span.record("network.protocol.version", protocol_version(version));
        }
        if let Some(error) = res.error_type {
            span.record("error.type", error);
            span.record("otel.status_code", "ERROR");
        }
        if let Some(upstream) = &self.upstream {
            self.part.record(
                &self.observer,
                &ClientCompletion {
                    upstream,
                    method: self.method,
                    status: res.status,
                    version: res.version,
                    error_type: res.error_type,
                    outcome: res.outcome,
                    start: self.start,
                    end,
                    request_bytes: self.request_bytes,
                    response_bytes: res.bytes,
                    resend_count: self.resend_count,
                    exemplar: self.ids.exemplar(),
                },
            );
        }
    }
}

/// How an attempt ended, as recorded.
struct Response<'a> {
    status: Option<u16>,
    version: Option<http::Version>,
    error_type: Option<&'a str>,
    outcome: Outcome,
    bytes: Option<u64>,
}

impl Response<'_> {
    /// No response.
    const NONE: Self = Response {
        status: None,
        version: None,
        error_type: None,
        outcome: Outcome::Aborted,
        bytes: None,
    };
}

impl Drop for ClientCall {
    /// The caller gave up before the response (dropped the future): recorded without a status
    /// and, as the HTTP conventions ask for a cancellation, without an `error.type`; counted
    /// as aborted in `/v1/stats`.
    fn drop(&mut self) {
        if !self.done {
            self.record(Response::NONE);
        }
    }
}

/// The client span, with the OpenTelemetry HTTP client attributes. `url.full` leaves out the
/// query and any user info (credentials).
fn open_span<R: ClientRequest>(
    req: &R,
    method: HttpMethod,
    server: Option<(&str, &str, u16)>,
    resend_count: u32,
    ids: Option<&SpanIds>,
) -> tracing::Span {
    let trace_id = ids.map(|ids| hex::id16(&ids.trace_id));
    let span_id = ids.map(|ids| hex::id8(&ids.span_id));
    let span = tracing::info_span!(
        target: "tower_observe::http_client",
        "HTTP client request",
        otel.name = client_span_name(req.method()),
        otel.kind = "client",
        http.request.method = method.as_str(),
        http.request.method_original = tracing::field::Empty,
        server.address = server.map(|(_, host, _)| host),
        server.port = server.map(|(_, _, port)| port),
        url.full = server.map(|(scheme, host, port)| {
            tracing::field::display(UrlFull { scheme, host, port, path: req.path() })
        }),
        http.request.resend_count = (resend_count > 0).then_some(resend_count),
        trace_id = trace_id.as_ref().map(|id| id.as_str()),
        span_id = span_id.as_ref().map(|id| id.as_str()),
        http.response.status_code = tracing::field::Empty,
        network.protocol.version = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if method == HttpMethod::Other {
        record_method_original(&span, req.method());
    }
    span
}

struct UrlFull<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// `url.full` without the query and user info (credentials), at most
/// [`MAX_LOGGED_URL_LEN`] bytes.
impl std::fmt::Display for UrlFull<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, host, port) = (self.scheme, self.host, self.port);
        let url = if host.contains(':') {
            format!("{scheme}://[{host}]:{port}{}", self.path)
        } else {
            format!("{scheme}://{host}:{port}{}", self.path)
        };
        Capped(&url, MAX_LOGGED_URL_LEN).fmt(f)
    }
}
