//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use super::body::GrpcResponseBody;
use super::call::GrpcCall;
use super::service::wrap;
use super::Code;

pin_project! {
    /// The response future of [`GrpcServer`](super::GrpcServer). Dropped before the handler
    /// answered (the client cancelled or its deadline passed, and the server dropped the
    /// call), the call is recorded as `CANCELLED`, or `DEADLINE_EXCEEDED` once the deadline
    /// the client sent has passed.
    pub struct GrpcServerFuture<F> {
        #[pin]
        inner: F,
        call: Option<GrpcCall>,
        echo: Option<(HeaderName, HeaderValue)>,
    }

    impl<F> PinnedDrop for GrpcServerFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.dropped(0);
            }
        }
    }
}

impl<F> std::fmt::Debug for GrpcServerFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServerFuture").finish_non_exhaustive()
    }
}

impl<F> GrpcServerFuture<F> {
    pub(super) fn new(inner: F, call: GrpcCall, echo: Option<(HeaderName, HeaderValue)>) -> Self {
        Self {
            inner,
            call: Some(call),
            echo,
        }
    }
}

impl<F, RB, E> Future for GrpcServerFuture<F>
where
    F: Future<Output = Option<Result<Response<RB>, E>>>,
    RB: http_body::Body,
{
    type Output = Result<Response<GrpcResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(result) = ready!(this.inner.poll(cx)) else {
            // The handler panicked (logged where it was caught): a trailers-only INTERNAL.
            let mut res = Response::new(GrpcResponseBody::panicked());
            let headers = res.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from_static("13"));
            headers.insert("grpc-message", HeaderValue::from_static("panic"));
            if let Some((name, value)) = this.echo.take() {
                headers.insert(name, value);
            }
            if let Some(call) = this.call.take() {
                call.finish(Code::Internal, 0, false);
            }
            return Poll::Ready(Ok(res));
        };
        let Some(call) = this.call.take() else {
            // Polled after completion: a contract violation by the caller; answer, never panic.
            return Poll::Ready(result.map(|res| res.map(|b| GrpcResponseBody::new_unrecorded(b))));
        };
        Poll::Ready(match result {
            Ok(mut res) => {
                if let Some((name, value)) = this.echo.take() {
                    res.headers_mut().entry(name).or_insert(value);
                }
                Ok(wrap(call, res))
            }
            Err(e) => {
                call.finish(Code::Unknown, 0, false);
                Err(e)
            }
        })
    }
}

pin_project! {
    /// The response future of [`GrpcClient`](super::GrpcClient). Dropped before the response (the caller gave
    /// up), the call is recorded as `CANCELLED`.
    pub struct GrpcClientFuture<F> {
        #[pin]
        inner: F,
        call: Option<GrpcCall>,
    }

    impl<F> PinnedDrop for GrpcClientFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.dropped(0);
            }
        }
    }
}

impl<F> std::fmt::Debug for GrpcClientFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcClientFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for GrpcClientFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: http_body::Body,
{
    type Output = Result<Response<GrpcResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            ready!(this.inner.poll(cx))
        };
        let Some(call) = this.call.take() else {
            return Poll::Ready(result.map(|res| res.map(GrpcResponseBody::new_unrecorded)));
        };
        Poll::Ready(match result {
            Ok(res) => Ok(wrap(call, res)),
            Err(e) => {
                // No response: the transport failed (what tonic reports as UNAVAILABLE), or
                // the deadline passed.
                call.failed();
                Err(e)
            }
        })
    }
}

impl<F> GrpcClientFuture<F> {
    pub(super) fn new(inner: F, call: GrpcCall) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}
