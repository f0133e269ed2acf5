//! Body wrappers: count request bytes as the application reads them, and finish the
//! recording when the response body ends, fails or is dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::future::{Finish, Recording};

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
    /// Response body returned by the metrics layer. Recording happens when it ends, fails or
    /// is dropped, whichever comes first.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        recording: Option<Recording>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Ends and failures were recorded when they were polled; anything still
            // pending here was cut off: the client went away mid-body.
            if let Some(recording) = this.recording.take() {
                recording.finish(Finish::Aborted);
            }
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(inner: B, recording: Option<Recording>) -> Self {
        if inner.is_end_stream() {
            // Empty bodies (204, HEAD, `()`) are never polled: the response is complete now.
            if let Some(recording) = recording {
                recording.finish(Finish::Complete);
            }
            return Self {
                inner,
                recording: None,
            };
        }
        Self { inner, recording }
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
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(recording) = this.recording.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        recording.response_bytes += data.remaining() as u64;
                    }
                }
                // Servers stop polling a body that reports its end: it is complete now.
                if this.inner.is_end_stream() {
                    if let Some(recording) = this.recording.take() {
                        recording.finish(Finish::Complete);
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(recording) = this.recording.take() {
                    recording.finish(Finish::BodyError);
                }
            }
            None => {
                if let Some(recording) = this.recording.take() {
                    recording.finish(Finish::Complete);
                }
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
