//! One outgoing call, from before it is sent until its response or error is recorded.

use std::sync::Arc;

use super::series::{ClientCompletion, ClientPart, Upstream};
use super::ClientOptions;
#[cfg(feature = "cache")]
use crate::cache::{CacheHandle, CacheStatus};
use crate::classify::{status_label, ClientRequest, ClientResponse, Failure, ResendCount};
use crate::hex::Hex;
use crate::labels::HttpMethod;
use crate::names::ERROR_CANCELLED;
use crate::stats::Outcome;
use crate::trace::{SpanIds, TraceContext};
use crate::Observer;

/// How one attempt ended, for retry accounting.
#[derive(Debug)]
#[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
pub(crate) struct AttemptEnd {
    pub(crate) failure: Option<Failure>,
    /// The upstream it went to.
    pub(crate) upstream: Option<Arc<Upstream>>,
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
        let method = HttpMethod::from_method(req.method());
        let parent = TraceContext::for_outgoing(req.extensions());
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut ids = TraceContext::client_span_ids(parent.as_ref());
        let server = req.server();
        let span = open_span(req, method, server, resend_count, &ids, parent.as_ref());
        #[cfg(feature = "opentelemetry")]
        crate::trace::otel::adopt(&span, &mut ids);
        let upstream = server.map(|server| {
            part.call_started(observer, &options.upstream_cache, &options.labels, server)
        });
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
        self.record(Some(status), error.as_deref(), outcome, res.body_size());
        AttemptEnd {
            failure: Failure::of_status(status),
            upstream: self.upstream.clone(),
        }
    }

    /// Records a transport error.
    pub(crate) fn finish_error(mut self, error_type: &'static str) -> AttemptEnd {
        self.record(None, Some(error_type), Outcome::Failure, None);
        AttemptEnd {
            failure: Some(Failure::Error(error_type)),
            upstream: self.upstream.clone(),
        }
    }

    fn record(
        &mut self,
        status: Option<u16>,
        error_type: Option<&str>,
        outcome: Outcome,
        response_bytes: Option<u64>,
    ) {
        self.done = true;
        let end = self.observer.now_nanos();
        if let Some(status) = status {
            self.span.record("http.response.status_code", status);
        }
        if let Some(error) = error_type {
            self.span.record("error.type", error);
            if error != ERROR_CANCELLED {
                self.span.record("otel.status_code", "ERROR");
            }
        }
        if let Some(upstream) = &self.upstream {
            self.part.record(
                &self.observer,
                &ClientCompletion {
                    upstream,
                    method: self.method,
                    status,
                    error_type,
                    outcome,
                    start: self.start,
                    end,
                    request_bytes: self.request_bytes,
                    response_bytes,
                    resend_count: self.resend_count,
                    exemplar: self.ids.exemplar(),
                },
            );
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if !self.done {
            self.record(None, Some(ERROR_CANCELLED), Outcome::Aborted, None);
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
    ids: &SpanIds,
    parent: Option<&TraceContext>,
) -> tracing::Span {
    let name = match method {
        HttpMethod::Other => "HTTP",
        m => m.as_str(),
    };
    let (scheme, host, port) = server.unwrap_or(("", "", 0));
    let span = tracing::info_span!(
        target: "tower_observe::http_client",
        "HTTP client request",
        otel.name = name,
        otel.kind = "client",
        http.request.method = method.as_str(),
        http.request.method_original = tracing::field::Empty,
        server.address = host,
        server.port = port,
        url.full = %UrlFull { scheme, host, port, path: req.path() },
        http.request.resend_count = (resend_count > 0).then_some(resend_count),
        // Inside a served request the trace ID is the server span's (log layers read the
        // whole scope), so only a root client span records its own.
        trace_id = parent.is_none().then(|| tracing::field::display(Hex(&ids.trace_id))),
        span_id = %Hex(&ids.span_id),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if method == HttpMethod::Other {
        span.record("http.request.method_original", req.method().as_str());
    }
    span
}

struct UrlFull<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

impl std::fmt::Display for UrlFull<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host;
        if host.contains(':') {
            write!(f, "{}://[{host}]:{}{}", self.scheme, self.port, self.path)
        } else {
            write!(f, "{}://{host}:{}{}", self.scheme, self.port, self.path)
        }
    }
}
