//! The service made by [`LlmLayer`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::body::LlmResponseBody;
use super::future::{Pending, ResponseFuture};
use super::{LlmLabels, LlmLayer};

impl<S> Layer<S> for LlmLayer {
    type Service = Llm<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Llm {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`LlmLayer`]: records each request's GenAI figures.
#[derive(Debug, Clone)]
pub struct Llm<S> {
    inner: S,
    layer: Arc<LlmLayer>,
}

impl<S> Llm<S> {
    inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for Llm<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
{
    type Response = Response<LlmResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = self.layer.observer.now_nanos();
        let labels = req.extensions().get::<LlmLabels>().cloned();
        let pending = Pending {
            layer: self.layer.clone(),
            start,
            labels,
        };
        ResponseFuture::new(self.inner.call(req), pending)
    }
}
