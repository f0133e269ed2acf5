//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::ClientCall;
use crate::classify::{ClientError, ClientResponse};

pin_project! {
    /// The response future of [`ObserveClient`](super::ObserveClient): records the call when the response headers
    /// (or an error) arrive, or as `cancelled` when dropped before.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<ClientCall>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, call: ClientCall) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, Res, E> Future for ResponseFuture<F>
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
