//! Shared by the benchmarks: a layer that does nothing but wrap both bodies, as any
//! end-of-body measuring layer must. What axum charges for that alone is the floor of every
//! metrics layer that measures to the end of the body.

use http::Request;

/// A layer that does nothing but wrap both bodies, like any end-of-body measuring layer
/// must: what axum's per-layer boxing costs by itself, for reference.
#[derive(Clone)]
pub(crate) struct BodyPassThroughLayer;

impl<S> tower::Layer<S> for BodyPassThroughLayer {
    type Service = BodyPassThrough<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyPassThrough(inner)
    }
}

#[derive(Clone)]
pub(crate) struct BodyPassThrough<S>(S);

impl<S, B, R> tower::Service<Request<B>> for BodyPassThrough<S>
where
    S: tower::Service<Request<Wrapped<B>>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: 'static,
{
    type Response = http::Response<Wrapped<R>>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let fut = self.0.call(req.map(Wrapped));
        Box::pin(async move { Ok(fut.await?.map(Wrapped)) })
    }
}

pub(crate) struct Wrapped<B>(B);

impl<B: http_body::Body + Unpin> http_body::Body for Wrapped<B> {
    type Data = B::Data;
    type Error = B::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
