//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`AssignRequestId`](super::AssignRequestId): puts the ID on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        header: Option<(HeaderName, HeaderValue)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, name: HeaderName, value: HeaderValue) -> Self {
        Self {
            inner,
            header: Some((name, value)),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((name, value)) = this.header.take() {
            // Always ours: the echoed ID must be the validated one the logs carry.
            response.headers_mut().insert(name, value);
        }
        Poll::Ready(Ok(response))
    }
}
