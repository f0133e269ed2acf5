//! The tower form of the client instrumentation.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{ClientCall, ObserveClientLayer};
use crate::classify::{ClientError, ClientRequest, ClientResponse};

impl<S> Layer<S> for ObserveClientLayer {
    type Service = ObserveClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveClient {
            inner,
            layer: self.clone(),
        }
    }
}

/// An instrumented client service, made by [`ObserveClientLayer`].
#[derive(Debug, Clone)]
pub struct ObserveClient<S> {
    inner: S,
    layer: ObserveClientLayer,
}

impl<S> ObserveClient<S> {
    inner_service_accessors!();
}

impl<S, Req> Service<Req> for ObserveClient<S>
where
    S: Service<Req>,
    Req: ClientRequest,
    S::Response: ClientResponse,
    S::Error: ClientError,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let layer = &self.layer;
        let call = ClientCall::start(&layer.observer, &layer.part, &layer.options, &mut req, None);
        let inner = {
            let _entered = call.span.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(inner, call)
    }
}
