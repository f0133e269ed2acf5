//! The server side: extract the caller's context, open the request's span.

use http::{HeaderMap, Request};

use super::w3c::TraceParent;
use super::{new_trace_id, non_zero_span_id, SpanIds, TraceContext};
use super::{Capped, MAX_LOGGED_URL_LEN, MAX_LOGGED_USER_AGENT_LEN};
use crate::hex;
use crate::labels::{Dimensions, HttpMethod, UNMATCHED_ROUTE};
use crate::names::ERROR_ABORTED;
use crate::request_id::{random_u64, RequestId};

/// How the observe layer traces requests; see the [module docs](super).
///
/// ```
/// use tower_observe::{trace::TraceOptions, Observer};
///
/// let observer = Observer::builder().dimension("tenant").build().unwrap();
/// let layer = observer.layer().traces(
///     TraceOptions::new()
///         .untrusted_parent(true)          // a public endpoint: link, don't parent
///         .root_sample_ratio(0.1)          // sample 10 % of the traces we start
///         .baggage_as_dimension("tenant"), // baggage `tenant=…` becomes a metric label
/// );
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TraceOptions {
    untrusted_parent: bool,
    root_sample_ratio: f64,
    baggage_dimensions: Vec<String>,
    pub(super) baggage_attributes: Vec<String>,
    access_log: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceOptions {
    /// Trust incoming parents, sample every trace this service starts, no baggage labels.
    pub fn new() -> Self {
        Self {
            untrusted_parent: false,
            root_sample_ratio: 1.0,
            baggage_dimensions: Vec::new(),
            baggage_attributes: Vec::new(),
            access_log: false,
        }
    }

    /// Adds the baggage entry `key` to the request's OpenTelemetry span as the attribute
    /// `baggage.{key}` (feature `opentelemetry`; `tracing` spans cannot take field names
    /// chosen at run time, so without that feature this does nothing).
    pub fn baggage_as_attribute(mut self, key: impl Into<String>) -> Self {
        self.baggage_attributes.push(key.into());
        self
    }

    /// Emits one `tracing` event per finished request, inside its span (so it carries the
    /// request ID and trace ID), with target `tower_observe::access`, level `INFO` (or
    /// `WARN` for failures), `http.response.status_code`, `error.type` and `event.duration`
    /// in nanoseconds; the span adds `http.request.method`, `url.path` and `http.route`.
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Treat incoming context as untrusted (a public endpoint): every request starts a new
    /// root trace, and a valid incoming `traceparent` is kept only as a link
    /// (`link.trace_id` / `link.span_id` on the span). Its `tracestate` and `baggage` are
    /// dropped.
    pub fn untrusted_parent(mut self, untrusted: bool) -> Self {
        self.untrusted_parent = untrusted;
        self
    }

    /// The share (0.0–1.0) of the traces this service starts that are sampled. Continued
    /// traces follow the caller's decision.
    pub fn root_sample_ratio(mut self, ratio: f64) -> Self {
        self.root_sample_ratio = if ratio.is_nan() {
            1.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self
    }

    /// Copies the baggage entry `key` into the request's [`Dimensions`], so it becomes a
    /// metric label and a `/v1/stats` breakdown (the observer must be configured with the same
    /// dimension; values are sanitised and bounded like any dimension).
    pub fn baggage_as_dimension(mut self, key: impl Into<String>) -> Self {
        self.baggage_dimensions.push(key.into());
        self
    }

    /// The trace context of an incoming request: continued, linked or new.
    pub(crate) fn extract(&self, headers: &HeaderMap) -> TraceContext {
        let incoming = TraceParent::from_headers(headers);
        let span_id = non_zero_span_id();
        match incoming {
            Some(parent) if !self.untrusted_parent => {
                let mut ctx = TraceContext::new(SpanIds {
                    trace_id: parent.trace_id,
                    span_id,
                    sampled: parent.sampled(),
                });
                ctx.parent_span_id = Some(parent.parent_id);
                ctx.continue_from(headers);
                ctx
            }
            linked => {
                let mut ctx = TraceContext::new(SpanIds {
                    trace_id: new_trace_id(),
                    span_id,
                    sampled: self.sample_root(),
                });
                ctx.set_link(linked);
                ctx
            }
        }
    }

    fn sample_root(&self) -> bool {
        self.root_sample_ratio >= 1.0
            || ((random_u64() >> 11) as f64 / (1u64 << 53) as f64) < self.root_sample_ratio
    }

    /// Starts tracing `req`: its context is extracted (baggage dimensions go into the
    /// extensions) and its span opens. The caller makes the context current for the handler
    /// and hands the span IDs to the metrics layer.
    pub(crate) fn start<B>(
        &self,
        req: &mut Request<B>,
        method: HttpMethod,
        route: Option<&str>,
        scheme: &'static str,
        request_id: Option<RequestId>,
    ) -> ServerTrace {
        let mut ctx = self.extract(req.headers());
        ctx.request_id = request_id;
        if let Some(baggage) = ctx.baggage() {
            let mut dims = Dimensions::new();
            for key in &self.baggage_dimensions {
                if let Some(value) = baggage.get(key) {
                    dims.set(key.clone(), value.to_owned());
                }
            }
            if !dims.is_empty() {
                match req.extensions_mut().get_mut::<Dimensions>() {
                    Some(existing) => existing.merge(&dims),
                    None => {
                        req.extensions_mut().insert(dims);
                    }
                }
            }
        }
        if !ctx.span.sampled && !self.access_log && !super::may_be_opentelemetry() {
            // Nobody will see this span: no trace is kept, no access line is written, and
            // no OpenTelemetry layer needs it as the parent of the handler's own spans (their
            // sampler follows it). The context still propagates, unsampled; lines logged in
            // the request find its IDs through `TraceContext::current()`.
            return ServerTrace {
                context: ctx,
                span: None,
            };
        }
        let route = route.filter(|r| *r != UNMATCHED_ROUTE);
        let details = Details {
            scheme,
            version: crate::labels::protocol_version(req.version()),
            user_agent: req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        };
        // An OpenTelemetry span's IDs are known once it has joined its trace: the bridge
        // records them then, once.
        let with_ids = !super::ids_come_later();
        // The access log is where these belong; OpenTelemetry gets them as attributes.
        let span = open_span(
            req,
            &ctx,
            method,
            route,
            self.access_log.then_some(&details),
            with_ids,
        );
        #[cfg(feature = "opentelemetry")]
        super::otel::bridge_server(
            &span,
            &mut ctx,
            &super::otel::ServerExtras {
                name: Some(span_name(method, route)),
                details: (!self.access_log).then_some(&details),
                baggage_attributes: &self.baggage_attributes,
            },
            with_ids,
        );
        ServerTrace {
            context: ctx,
            span: Some(SpanHandle {
                span,
                access_log: self.access_log,
            }),
        }
    }
}

/// The span name, `{method} {route}`, built only when recorded.
pub(crate) struct SpanName<'a> {
    method: &'a str,
    route: Option<&'a str>,
}

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.route {
            Some(route) => write!(f, "{} {route}", self.method),
            None => f.write_str(self.method),
        }
    }
}

/// The conventions' span name: `{method} {route}`, `HTTP` for unknown methods, never the raw
/// path.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
fn span_name(method: HttpMethod, route: Option<&str>) -> SpanName<'_> {
    let method = match method {
        HttpMethod::Other => "HTTP",
        m => m.as_str(),
    };
    SpanName { method, route }
}

/// What the request says about its connection and its client: recorded where someone reads
/// it (the access-log line, an OpenTelemetry span), not on every line logged in the request.
pub(crate) struct Details<'a> {
    pub(crate) scheme: &'static str,
    pub(crate) version: &'static str,
    pub(crate) user_agent: Option<&'a str>,
}

/// The request's span. Its fields are the ones every line logged in the request carries
/// (the request's IDs, method, route and path), and the ones set when it ends; `details`
/// adds the connection's and the client's. Without `with_ids`, the IDs are left for the
/// OpenTelemetry bridge to record.
fn open_span<B>(
    req: &Request<B>,
    ctx: &TraceContext,
    method: HttpMethod,
    route: Option<&str>,
    details: Option<&Details<'_>>,
    with_ids: bool,
) -> tracing::Span {
    let user_agent = details
        .and_then(|d| d.user_agent)
        .map(|ua| Capped(ua, MAX_LOGGED_USER_AGENT_LEN).text());
    let path = Capped(req.uri().path(), MAX_LOGGED_URL_LEN).text();
    let ids = with_ids.then_some(&ctx.span);
    let trace_id = ids.map(|ids| hex::id16(&ids.trace_id));
    let span_id = ids.map(|ids| hex::id8(&ids.span_id));
    let link_trace_id = ctx.link().map(|l| hex::id16(&l.trace_id));
    let link_span_id = ctx.link().map(|l| hex::id8(&l.parent_id));
    // Values are plain strings where they can be (a subscriber records those without
    // formatting machinery); the IDs are hex on the stack.
    let span = tracing::info_span!(
        target: "tower_observe::http",
        "HTTP request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.request.method_original = tracing::field::Empty,
        http.route = route,
        url.path = path.as_ref(),
        url.scheme = details.map(|d| d.scheme),
        network.protocol.version = details.map(|d| d.version),
        user_agent.original = user_agent.as_deref(),
        request_id = ctx.request_id.as_ref().map(RequestId::as_str),
        trace_id = trace_id.as_ref().map(|id| id.as_str()),
        span_id = span_id.as_ref().map(|id| id.as_str()),
        parent_span_id = ctx
            .parent_span_id
            .as_ref()
            .filter(|_| ids.is_some())
            .map(hex::id8)
            .as_ref()
            .map(|p| p.as_str()),
        link.trace_id = link_trace_id.as_ref().map(|id| id.as_str()),
        link.span_id = link_span_id.as_ref().map(|id| id.as_str()),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if method == HttpMethod::Other {
        super::record_method_original(&span, req.method());
    }
    span
}

/// A request being traced: its context and its span.
#[derive(Debug)]
pub(crate) struct ServerTrace {
    pub(crate) context: TraceContext,
    /// `None` for a request nobody would see a span of (see [`TraceOptions::start`]).
    pub(crate) span: Option<SpanHandle>,
}

/// The request's span, closed when the request is recorded, so that the span's duration is
/// the duration the metrics record.
#[derive(Debug, Clone)]
pub(crate) struct SpanHandle {
    pub(crate) span: tracing::Span,
    access_log: bool,
}

impl SpanHandle {
    /// Records how the request ended, writes the access-log line if enabled, and closes the
    /// span (when this is the last handle).
    pub(crate) fn close(self, status: Option<u16>, error_type: Option<&str>, duration_nanos: u64) {
        let span = &self.span;
        if let Some(status) = status {
            span.record("http.response.status_code", status);
        }
        if let Some(error) = error_type {
            span.record("error.type", error);
            // The span status is the server's view (OpenTelemetry HTTP spans): an error for a
            // 5xx or a failure without a status, never for a 4xx (even one `failure_if` counts
            // as a failure) nor for a client that went away.
            let server_fault = match status {
                Some(status) if error.parse::<u16>() == Ok(status) => status >= 500,
                _ => error != ERROR_ABORTED,
            };
            if server_fault {
                span.record("otel.status_code", "ERROR");
            }
        }
        if self.access_log {
            span.in_scope(|| match error_type {
                None => tracing::event!(
                    target: "tower_observe::access",
                    tracing::Level::INFO,
                    { "http.response.status_code" = status, "event.duration" = duration_nanos },
                    "request completed"
                ),
                Some(error) => tracing::event!(
                    target: "tower_observe::access",
                    tracing::Level::WARN,
                    {
                        "http.response.status_code" = status,
                        "error.type" = error,
                        "event.duration" = duration_nanos,
                    },
                    "request failed"
                ),
            });
        }
    }
}
