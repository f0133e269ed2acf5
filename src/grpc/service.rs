//! The server and client services of the gRPC layers.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};

use super::body::{complete_at_headers, header_status, GrpcRequestBody, GrpcResponseBody};
use super::call::{self, GrpcCall};
use super::future::{GrpcClientFuture, GrpcServerFuture};
use super::{method_of, Code, GrpcClientLayer, GrpcServerLayer, Side};
use crate::hex;
use crate::request_id::RequestId;
use crate::server::CatchUnwind;
use crate::trace::{TraceContext, WithContext};

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServer {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`GrpcServerLayer`].
#[derive(Debug, Clone)]
pub struct GrpcServer<S> {
    inner: S,
    layer: Arc<GrpcServerLayer>,
}

impl<S> GrpcServer<S> {
    inner_service_accessors!();
}

/// The span name and `rpc.method` before the status is known.
fn span_method(method: Option<&str>, known: bool) -> &str {
    match method {
        Some(m) if known => m,
        _ => crate::labels::OTHER,
    }
}

impl<S, B, RB> Service<Request<B>> for GrpcServer<S>
where
    S: Service<Request<GrpcRequestBody<B>>, Response = Response<RB>>,
    RB: http_body::Body,
{
    type Response = Response<GrpcResponseBody<RB>>;
    type Error = S::Error;
    type Future = GrpcServerFuture<Instrumented<WithContext<CatchUnwind<S::Future>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &*self.layer;
        let start = layer.observer.now_nanos();
        let echo = layer
            .request_id
            .as_ref()
            .map(|r| (r.header.clone(), r.assign(&mut req)));
        let method = method_of(req.uri().path());
        let known = method.is_some_and(|m| layer.knows(m));
        let deadline = call::deadline(req.headers(), start);
        let (context, span, ids) = match &layer.traces {
            // Untraced: no span, but the request ID and the caller's trace still reach the
            // calls the handler makes.
            None => {
                let request_id = req.extensions().get::<RequestId>().cloned();
                let ctx = TraceContext::passed_through(req.headers(), request_id);
                (Some(ctx), tracing::Span::none(), None)
            }
            Some(options) => {
                #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
                let mut ctx = options.extract(req.headers());
                ctx.request_id = req.extensions().get::<RequestId>().cloned();
                let name = span_method(method, known);
                // As for HTTP: an OpenTelemetry span's IDs wait until they are final.
                let with_ids = !crate::trace::ids_come_later();
                let trace_id = with_ids.then(|| hex::id16(&ctx.span.trace_id));
                let span_id = with_ids.then(|| hex::id8(&ctx.span.span_id));
                let parent_span_id = ctx
                    .parent_span_id
                    .as_ref()
                    .filter(|_| with_ids)
                    .map(hex::id8);
                let span = tracing::info_span!(
                    target: "tower_observe::grpc",
                    "gRPC request",
                    otel.name = if name == crate::labels::OTHER { "grpc" } else { name },
                    otel.kind = "server",
                    rpc.system.name = "grpc",
                    rpc.method = name,
                    rpc.method_original = tracing::field::Empty,
                    rpc.status_code = tracing::field::Empty,
                    request_id = ctx.request_id.as_ref().map(|r| r.as_str()),
                    trace_id = trace_id.as_ref().map(|id| id.as_str()),
                    span_id = span_id.as_ref().map(|id| id.as_str()),
                    parent_span_id = parent_span_id.as_ref().map(|id| id.as_str()),
                    error.type = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                );
                #[cfg(feature = "opentelemetry")]
                crate::trace::otel::bridge_server(
                    &span,
                    &mut ctx,
                    &crate::trace::otel::ServerExtras {
                        name: None,
                        details: None,
                        baggage_attributes: &[],
                    },
                    with_ids,
                );
                let ids = ctx.span;
                (Some(ctx), span, Some(ids))
            }
        };
        let requests = Arc::new(AtomicU64::new(0));
        let call = GrpcCall {
            observer: layer.observer.clone(),
            part: layer.part.clone(),
            side: Side::Server,
            method: method.map(Into::into),
            known_service: known,
            start,
            header_status: None,
            requests: Some(requests.clone()),
            span: span.clone(),
            ids,
            deadline,
            server: None,
        };
        let req = req.map(|body| GrpcRequestBody::new(body, requests));
        // A panic in the handler (its `call` or its future) is caught inside the span and the
        // context, where it is logged with the call's IDs, and answered INTERNAL.
        let mut context = context;
        let inner = span.in_scope(|| {
            TraceContext::with_current(&mut context, || CatchUnwind::call(|| self.inner.call(req)))
        });
        GrpcServerFuture::new(
            WithContext::new(inner, context).instrument(span),
            call,
            echo,
        )
    }
}

/// Wraps the response body once the headers are in, noting a status carried in them; a
/// trailers-only response is recorded right away.
pub(super) fn wrap<RB: http_body::Body>(
    mut call: GrpcCall,
    res: Response<RB>,
) -> Response<GrpcResponseBody<RB>> {
    let status = res.status().as_u16();
    call.header_status = header_status(res.headers())
        .or_else(|| (status != 200).then(|| Code::from_http_status(status)));
    if complete_at_headers(res.body(), &call) {
        let code = call.header_status.unwrap_or(Code::Unknown);
        call.finish(code, 0, false);
        return res.map(GrpcResponseBody::new_unrecorded);
    }
    res.map(|body| GrpcResponseBody::new(body, call))
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`GrpcClientLayer`].
#[derive(Debug, Clone)]
pub struct GrpcClient<S> {
    inner: S,
    layer: Arc<GrpcClientLayer>,
}

impl<S> GrpcClient<S> {
    inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for GrpcClient<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
{
    type Response = Response<GrpcResponseBody<RB>>;
    type Error = S::Error;
    type Future = GrpcClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &*self.layer;
        let start = layer.observer.now_nanos();
        let method: Option<Box<str>> = method_of(req.uri().path()).map(Into::into);
        let parent = TraceContext::for_outgoing(Some(req.extensions()));
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut ids = TraceContext::client_span_ids(parent.as_ref());
        let name = method.as_deref().unwrap_or(crate::labels::OTHER);
        let server = layer.server.clone().or_else(|| {
            let uri = req.uri();
            let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().map_or(String::new(), |p| p.to_string());
            Some(Arc::new((host.into(), port.into())))
        });
        let (address, port) = server.as_deref().map_or(("", ""), |(a, p)| (&**a, &**p));
        let with_ids = !crate::trace::ids_come_later();
        let trace_id = with_ids.then(|| hex::id16(&ids.trace_id));
        let span_id = with_ids.then(|| hex::id8(&ids.span_id));
        let span = tracing::info_span!(
            target: "tower_observe::grpc",
            "gRPC client request",
            otel.name = if method.is_some() { name } else { "grpc" },
            otel.kind = "client",
            rpc.system.name = "grpc",
            rpc.method = name,
            rpc.method_original = tracing::field::Empty,
            rpc.status_code = tracing::field::Empty,
            server.address = (!address.is_empty()).then_some(address),
            server.port = port.parse::<u16>().ok(),
            trace_id = trace_id.as_ref().map(|id| id.as_str()),
            span_id = span_id.as_ref().map(|id| id.as_str()),
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        #[cfg(feature = "opentelemetry")]
        crate::trace::otel::join(&span, parent.as_ref(), &mut ids, with_ids);
        let deadline = call::deadline(req.headers(), start);
        if layer.propagate {
            TraceContext::inject_as_client(
                parent,
                ids,
                req.headers_mut(),
                &layer.request_id_header,
            );
        }
        let call = GrpcCall {
            observer: layer.observer.clone(),
            part: layer.part.clone(),
            side: Side::Client,
            method,
            known_service: true,
            start,
            header_status: None,
            requests: None,
            span: span.clone(),
            ids: Some(ids),
            deadline,
            server,
        };
        let inner = span.in_scope(|| self.inner.call(req));
        GrpcClientFuture::new(inner, call)
    }
}
