//! The tower form of the client instrumentation.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientCall, ClientLayer};
use crate::classify::{ClientError, ClientRequest, ClientResponse};

impl<S> Layer<S> for ClientLayer {
    type Service = ObserveClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveClient {
            inner,
            layer: self.clone(),
        }
    }
}

/// An instrumented client service, made by [`ClientLayer`].
#[derive(Debug, Clone)]
pub struct ObserveClient<S> {
    inner: S,
    layer: ClientLayer,
}

impl<S> ObserveClient<S> {
    /// The wrapped client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
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
    type Future = ClientFuture<S::Future>;

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
        ClientFuture {
            inner,
            call: Some(call),
        }
    }
}

pin_project! {
    /// The response future of [`ObserveClient`]: records the call when the response headers
    /// (or an error) arrive, or as `cancelled` when dropped before.
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        call: Option<ClientCall>,
    }
}

impl<F> std::fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFuture").finish_non_exhaustive()
    }
}

impl<F, Res, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Res, E>>,
    Res: ClientResponse,
    E: ClientError,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            ready!(this.inner.poll(cx))
        };
        if let Some(call) = this.call.take() {
            match &result {
                Ok(res) => {
                    call.finish_response(res);
                }
                Err(e) => {
                    call.finish_error(e.error_type());
                }
            }
        }
        Poll::Ready(result)
    }
}
