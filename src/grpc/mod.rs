#![doc = include_str!("../../docs/grpc.md")]

mod body;
mod call;
mod code;
pub mod future;
mod series;
mod service;

pub use body::{GrpcRequestBody, GrpcResponseBody};
pub use code::Code;
pub use service::{GrpcClient, GrpcServer};

use std::sync::Arc;

use http::HeaderName;

use crate::request_id::AssignRequestIdLayer;
use crate::trace::TraceOptions;
use crate::Observer;
use series::GrpcPart;

/// Which end of a call is recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Side {
    Server,
    Client,
}

/// Instruments a gRPC server; made by [`Observer::grpc_server_layer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct GrpcServerLayer {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<GrpcPart>,
    pub(crate) services: Arc<[Box<str>]>,
    pub(crate) request_id: Option<AssignRequestIdLayer>,
    pub(crate) traces: Option<TraceOptions>,
}

impl GrpcServerLayer {
    /// Declares a service the server serves (`"echo.v1.Echo"`; tonic's generated servers
    /// have it as `NAME`). Once any is declared, calls to other services are labelled
    /// `_OTHER`. Either way, a call answered `UNIMPLEMENTED` is labelled `_OTHER` (the
    /// method is not served), so scanners cannot mint series.
    pub fn service(mut self, name: &str) -> Self {
        let mut services: Vec<Box<str>> = self.services.iter().cloned().collect();
        services.push(name.into());
        self.services = services.into();
        self
    }

    /// Replaces the request-ID settings (IDs are assigned by default; `x-request-id`
    /// metadata).
    pub fn request_id(mut self, layer: AssignRequestIdLayer) -> Self {
        self.request_id = Some(layer);
        self
    }

    /// Leaves request IDs alone.
    pub fn without_request_id(mut self) -> Self {
        self.request_id = None;
        self
    }

    /// Traces calls: W3C context from the metadata, a server span per call (named
    /// `pkg.Service/Method`, ending with the stream), the context current in the handler.
    pub fn traces(mut self, options: TraceOptions) -> Self {
        self.traces = Some(options);
        self
    }

    pub(crate) fn knows(&self, method: &str) -> bool {
        self.services.is_empty()
            || method
                .split_once('/')
                .is_some_and(|(service, _)| self.services.iter().any(|s| **s == *service))
    }
}

/// Instruments a gRPC client (a tonic `Channel`, or any gRPC `tower::Service`); made by
/// [`Observer::grpc_client_layer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct GrpcClientLayer {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<GrpcPart>,
    pub(crate) propagate: bool,
    pub(crate) request_id_header: HeaderName,
    /// `server.address` and `server.port`, when told.
    pub(crate) server: Option<Arc<(Box<str>, Box<str>)>>,
}

impl GrpcClientLayer {
    /// Whether to send `traceparent`, `tracestate`, `baggage` and the request ID as metadata
    /// (default `true`).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// The metadata key that carries the request ID (default `x-request-id`).
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.request_id_header = header;
        self
    }

    /// The server the channel talks to, for `server_address` / `server_port` on the metrics
    /// and the span. Needed with tonic: its generated clients send requests whose URI is the
    /// path only, so the layer cannot see the host (without this, the host and port of an
    /// absolute request URI are used, when there is one).
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer.grpc_client_layer().server("echo.internal", 50051);
    /// # let _ = layer;
    /// ```
    pub fn server(mut self, address: &str, port: u16) -> Self {
        let address = address.trim_start_matches('[').trim_end_matches(']');
        self.server = Some(Arc::new((address.into(), port.to_string().into())));
        self
    }
}

impl Observer {
    /// Instruments a gRPC server; see [`crate::grpc`].
    ///
    /// ```
    /// use tower_observe::{trace::TraceOptions, Observer};
    ///
    /// let observer = Observer::new();
    /// let layer = observer
    ///     .grpc_server_layer()
    ///     .service("helloworld.Greeter") // calls to other services are `_OTHER`
    ///     .traces(TraceOptions::new());
    /// // tonic::transport::Server::builder().layer(layer).add_service(…)
    /// # let _ = layer;
    /// ```
    pub fn grpc_server_layer(&self) -> GrpcServerLayer {
        GrpcServerLayer {
            observer: self.clone(),
            part: self.grpc_part(),
            services: Arc::from(Vec::new()),
            request_id: Some(self.request_id_layer()),
            traces: None,
        }
    }

    /// Instruments a gRPC client; see [`crate::grpc`].
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer.grpc_client_layer();
    /// // let channel = tower::ServiceBuilder::new().layer(layer).service(channel);
    /// // let client = GreeterClient::new(channel);
    /// # let _ = layer;
    /// ```
    pub fn grpc_client_layer(&self) -> GrpcClientLayer {
        GrpcClientLayer {
            observer: self.clone(),
            part: self.grpc_part(),
            propagate: true,
            request_id_header: HeaderName::from_static(crate::request_id::X_REQUEST_ID),
            server: None,
        }
    }
}

impl Observer {
    fn grpc_part(&self) -> Arc<GrpcPart> {
        let limit = self.max_label_sets();
        self.part(|| GrpcPart::new(limit))
    }
}

/// `pkg.Service/Method` from a gRPC request path (`/pkg.Service/Method`); `None` for paths
/// of any other shape.
pub(crate) fn method_of(path: &str) -> Option<&str> {
    let method = path.strip_prefix('/')?;
    let (service, name) = method.split_once('/')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    (valid(service) && valid(name)).then_some(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths() {
        assert_eq!(method_of("/echo.v1.Echo/Say"), Some("echo.v1.Echo/Say"));
        assert_eq!(method_of("/echo.v1.Echo/"), None);
        assert_eq!(method_of("/Say"), None);
        assert_eq!(method_of("/a/b/c"), None);
        assert_eq!(method_of("/wp-admin/x"), None);
    }
}
