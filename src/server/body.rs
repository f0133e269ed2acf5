//! Body wrappers: count request bytes as the application reads them, and finish the
//! recording when the response body ends, fails or is dropped.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::in_flight::{Finish, InFlight};
use super::panic::Place;

pin_project! {
    /// Request body seen by the inner service: the original body, counting the bytes read.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        // `None` for bodies that were empty from the start: nothing to count, nothing to share.
        read: Option<Arc<AtomicU64>>,
    }
}

impl<B: Body> RequestBody<B> {
    pub(crate) fn wrap(inner: B) -> (Self, Option<Arc<AtomicU64>>) {
        let read = (!inner.is_end_stream()).then(Arc::default);
        let counter = read.clone();
        (Self { inner, read }, counter)
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(read)) = (&frame, this.read.as_ref()) {
            if let Some(data) = frame.data_ref() {
                read.fetch_add(data.remaining() as u64, Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Response body returned by the metrics layer. Recording happens when it ends or fails;
    /// dropped before that, the request's drop guard records it as aborted.
    pub struct ResponseBody<B> {
        // `None`: the empty body of the 500 answering a panic.
        #[pin]
        inner: Option<B>,
        in_flight: Option<InFlight>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(inner: B, mut in_flight: Option<InFlight>) -> Self {
        if inner.is_end_stream() {
            // Empty bodies (204, HEAD, `()`) are never polled: the response is complete now.
            if let Some(in_flight) = &mut in_flight {
                in_flight.finish(Finish::Complete);
            }
            in_flight = None;
        }
        Self {
            inner: Some(inner),
            in_flight,
        }
    }
}

impl<B> ResponseBody<B> {
    /// The empty body of the `500` answering a panic (the request is recorded already).
    pub(crate) fn panicked() -> Self {
        Self {
            inner: None,
            in_flight: None,
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = match this.in_flight.as_mut() {
            Some(in_flight) if in_flight.config.catch_panics => {
                match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_frame(cx))) {
                    Ok(poll) => ready!(poll),
                    Err(payload) => {
                        // The headers are out: record and log it, then let the server drop
                        // the connection, the only honest end of a response cut short.
                        super::panic::report(in_flight, &*payload, Place::Body);
                        if let Some(mut in_flight) = this.in_flight.take() {
                            in_flight.finish(Finish::Panic);
                        }
                        std::panic::resume_unwind(payload);
                    }
                }
            }
            _ => ready!(inner.as_mut().poll_frame(cx)),
        };
        match &frame {
            Some(Ok(frame)) => {
                if let Some(in_flight) = this.in_flight.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        in_flight.response_bytes += data.remaining() as u64;
                    }
                    // Servers stop polling a body that reports its end: it is complete now.
                    if inner.is_end_stream() {
                        in_flight.finish(Finish::Complete);
                        *this.in_flight = None;
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(mut in_flight) = this.in_flight.take() {
                    in_flight.finish(Finish::BodyError);
                }
            }
            None => {
                if let Some(mut in_flight) = this.in_flight.take() {
                    in_flight.finish(Finish::Complete);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
