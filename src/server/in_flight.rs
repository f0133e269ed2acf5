//! The request's drop guard: what a request carries from its arrival until it is recorded.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::Request;

use super::layer::Config;
use super::route::RouteLabel;
use super::series::{ErrorType, HttpCompletion, Scheme};
use crate::labels::{Dimensions, HttpMethod};
use crate::names::{ERROR_ABORTED, ERROR_BODY, ERROR_PANIC, ERROR_SERVICE};
use crate::request_id::RequestId;
use crate::stats::Outcome;
use crate::trace::{ServerTrace, SpanHandle, SpanIds, TraceContext};

/// What a request knows from its arrival until it is recorded.
///
/// It is a drop guard: it moves from the service call into the response future, then into the
/// response body, and records exactly once — when told how the request ended (a caught panic
/// included), or, if it is dropped first (client gone, timeout, a panic not caught because
/// `catch_panics(false)`), as `aborted`. So the active-requests gauge always comes back down.
pub(crate) struct InFlight {
    pub(crate) config: Arc<Config>,
    /// Everything known when the request arrived.
    arrival: Arrival,
    /// Known once the response headers are out.
    status: Option<u16>,
    failed_status: bool,
    /// The response is one of the observer's own endpoints ([`ObserverEndpoint`]).
    ///
    /// [`ObserverEndpoint`]: super::ObserverEndpoint
    own: bool,
    pub(crate) response_bytes: u64,
    recorded: bool,
}

/// What is known of a request when it arrives.
struct Arrival {
    /// `Clock::now_nanos` at arrival.
    start: u64,
    method: HttpMethod,
    scheme: Scheme,
    version: http::Version,
    route: RouteLabel,
    /// Boxed: rare, and keeps the state every request moves around small.
    dimensions: Option<Box<Dimensions>>,
    request_bytes: Option<Arc<AtomicU64>>,
    /// The serving span, for an exemplar (from the request or response extensions).
    span_ids: Option<SpanIds>,
    /// The request's trace context, current while the handler runs (taken out of the guard
    /// for each poll and put back after), so its calls carry the request ID and the trace
    /// whether or not the request is traced.
    context: Option<TraceContext>,
    /// The request's span, when traced; closed when the request is recorded. Boxed: untraced
    /// requests keep a small guard.
    span: Option<Box<SpanHandle>>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Finish {
    Complete,
    BodyError,
    Aborted,
    ServiceError,
    /// The inner service panicked (and the layer caught it).
    Panic,
}

impl InFlight {
    /// Starts measuring `req`, which arrived at `start` (an observer clock reading): the
    /// active-requests gauge goes up, and comes down when this guard records.
    pub(crate) fn arrive<B>(
        config: Arc<Config>,
        req: &Request<B>,
        (start, method, scheme, route): (u64, HttpMethod, Scheme, RouteLabel),
        trace: Option<ServerTrace>,
        request_id: Option<RequestId>,
    ) -> Self {
        let dimensions = if config.observer.dimensions().is_empty() {
            None
        } else {
            req.extensions().get::<Dimensions>().cloned().map(Box::new)
        };
        let (context, span, span_ids) = match trace {
            Some(trace) => {
                let ids = trace.context.span;
                (Some(trace.context), trace.span.map(Box::new), Some(ids))
            }
            None => {
                let context = TraceContext::passed_through(req.headers(), request_id);
                (
                    Some(context),
                    None,
                    req.extensions().get::<SpanIds>().copied(),
                )
            }
        };
        config
            .series
            .request_started(&config.observer, method, scheme);
        Self {
            config,
            arrival: Arrival {
                start,
                method,
                scheme,
                version: req.version(),
                route,
                dimensions,
                request_bytes: None,
                span_ids,
                context,
                span,
            },
            status: None,
            failed_status: false,
            own: false,
            response_bytes: 0,
            recorded: false,
        }
    }

    /// Counts the request body's bytes as the application reads them.
    /// The request's ID, if it has one.
    pub(crate) fn request_id(&self) -> Option<&RequestId> {
        self.arrival.context.as_ref()?.request_id.as_ref()
    }

    pub(crate) fn count_request_bytes(&mut self, counter: Option<Arc<AtomicU64>>) {
        self.arrival.request_bytes = counter;
    }

    /// Runs `f` with the request's trace context current, in its span when traced.
    #[inline]
    pub(crate) fn in_scope<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let arrival = &mut self.arrival;
        let _entered = arrival.span.as_ref().map(|s| s.span.enter());
        TraceContext::with_current(&mut arrival.context, f)
    }

    /// Records the request (the first call only).
    pub(crate) fn finish(&mut self, how: Finish) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let (error, outcome) = match how {
            Finish::Complete if self.failed_status => (Some(ErrorType::Status), Outcome::Failure),
            Finish::Complete => (None, Outcome::Success),
            Finish::BodyError => (Some(ErrorType::Named(ERROR_BODY)), Outcome::Failure),
            Finish::Aborted => (Some(ErrorType::Named(ERROR_ABORTED)), Outcome::Aborted),
            Finish::ServiceError => (Some(ErrorType::Named(ERROR_SERVICE)), Outcome::Failure),
            Finish::Panic => (Some(ErrorType::Named(ERROR_PANIC)), Outcome::Failure),
        };
        let config = &*self.config;
        let own = self.own && config.own_endpoints != super::OwnEndpoints::Record;
        // Not recorded: an own endpoint under `OwnEndpoints::Ignore`, or a route the layer
        // was told to ignore. Otherwise the route's label, grouped if the layer says so.
        let route = if own && config.own_endpoints == super::OwnEndpoints::Ignore {
            None
        } else {
            config.routes.label(self.arrival.route.as_str())
        };
        let Some(route) = route else {
            let arrival = &self.arrival;
            config
                .series
                .request_ignored(&config.observer, arrival.method, arrival.scheme);
            return;
        };
        let end = config.observer.now_nanos();
        config.series.record(
            &config.observer,
            &HttpCompletion {
                method: self.arrival.method,
                route,
                scheme: self.arrival.scheme,
                version: self.arrival.version,
                status: self.status,
                error,
                outcome,
                dimensions: self.arrival.dimensions.as_deref(),
                start: self.arrival.start,
                end,
                request_bytes: self
                    .arrival
                    .request_bytes
                    .as_ref()
                    .map_or(0, |c| c.load(Relaxed)),
                response_bytes: self.response_bytes,
                exemplar: self.arrival.span_ids.and_then(SpanIds::exemplar),
                own,
                request_id: self.request_id().map(RequestId::as_str),
                trace_id: self
                    .arrival
                    .context
                    .as_ref()
                    .map(|c| c.span.trace_id)
                    .filter(|t| *t != [0; 16]),
            },
        );
        if let Some(span) = self.arrival.span.take() {
            let status_text = self
                .status
                .map(|s| itoa::Buffer::new().format(s).to_owned());
            let error_text = match error {
                Some(ErrorType::Status) => status_text.as_deref(),
                Some(ErrorType::Named(name)) => Some(name),
                None => None,
            };
            span.close(
                self.status,
                error_text,
                end.saturating_sub(self.arrival.start),
            );
        }
    }

    /// Whether this response carries no body on the wire (HEAD, 1xx, 204, 304, a successful
    /// CONNECT): servers drop such bodies unpolled, so the response is complete at its headers.
    pub(crate) fn is_bodiless(&self, status: http::StatusCode) -> bool {
        self.arrival.method == HttpMethod::Head
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
            || (self.arrival.method == HttpMethod::Connect && status.is_success())
    }

    /// Takes in what the response headers tell.
    pub(crate) fn on_response(&mut self, parts: &http::response::Parts) {
        self.status = Some(parts.status.as_u16());
        self.failed_status = self.config.is_failure(parts.status);
        self.own = parts.extensions.get::<super::ObserverEndpoint>().is_some();
        if self.arrival.route.is_unmatched() {
            self.arrival.route = RouteLabel::from_response(&parts.extensions);
        }
        if let Some(ids) = parts.extensions.get::<SpanIds>() {
            self.arrival.span_ids = Some(*ids);
        }
        if self.config.observer.dimensions().is_empty() {
            return;
        }
        if let Some(extra) = parts.extensions.get::<Dimensions>() {
            match &mut self.arrival.dimensions {
                Some(dims) => dims.merge(extra),
                None => self.arrival.dimensions = Some(Box::new(extra.clone())),
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(Finish::Aborted);
    }
}
