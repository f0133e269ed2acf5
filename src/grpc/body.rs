//! Body wrappers: gRPC messages counted as they pass, the status read from the trailers, and
//! the call recorded exactly once — at the end of the response stream, on a stream error, or
//! as `CANCELLED` when the stream is dropped before its end.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::call::GrpcCall;
use super::Code;

/// Counts length-prefixed gRPC messages (1 flag byte, 4 length bytes, the message) across
/// data frames of any size.
#[derive(Debug, Default)]
pub(crate) struct MessageCounter {
    /// Bytes of the current message's prefix seen so far (0–4), when not inside a message.
    prefix_seen: u8,
    prefix: [u8; 4],
    /// Bytes of the current message still to come.
    body_left: u64,
    pub(crate) messages: u64,
}

impl MessageCounter {
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(data.len() as u64);
                self.body_left -= skip;
                data = &data[skip as usize..];
                continue;
            }
            // The compression flag (byte 0) does not matter; bytes 1–4 are the length.
            if self.prefix_seen > 0 {
                self.prefix[usize::from(self.prefix_seen - 1)] = data[0];
            }
            self.prefix_seen += 1;
            data = &data[1..];
            if self.prefix_seen == 5 {
                self.prefix_seen = 0;
                self.messages += 1;
                self.body_left = u64::from(u32::from_be_bytes(self.prefix));
            }
        }
    }

    fn feed_buf(&mut self, buf: &impl Buf) {
        // A `Buf` frame is normally one contiguous chunk (`Bytes`); count what it shows.
        self.feed(buf.chunk());
    }
}

pin_project! {
    /// A request body whose gRPC messages are counted (server side).
    #[derive(Debug)]
    pub struct GrpcRequestBody<B> {
        #[pin]
        inner: B,
        counter: MessageCounter,
        shared: Arc<AtomicU64>,
    }
}

impl<B> GrpcRequestBody<B> {
    pub(crate) fn new(inner: B, shared: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            counter: MessageCounter::default(),
            shared,
        }
    }
}

impl<B: Body> Body for GrpcRequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                let before = this.counter.messages;
                this.counter.feed_buf(data);
                this.shared
                    .fetch_add(this.counter.messages - before, Relaxed);
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
    /// A gRPC response body: counts the messages, reads `grpc-status` from the trailers and
    /// records the call when the stream ends (or is dropped).
    pub struct GrpcResponseBody<B> {
        // `None`: the empty body of the INTERNAL answering a panic.
        #[pin]
        inner: Option<B>,
        counter: MessageCounter,
        call: Option<GrpcCall>,
    }

    impl<B> PinnedDrop for GrpcResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(call) = this.call.take() {
                call.dropped(this.counter.messages);
            }
        }
    }
}

/// A trailers-only response (the status in the headers, an empty body) is complete as soon
/// as it is sent: servers never poll its body, so it is recorded here, at the headers.
pub(crate) fn complete_at_headers<B: Body>(body: &B, call: &GrpcCall) -> bool {
    call.header_status.is_some() && body.is_end_stream()
}

impl<B> std::fmt::Debug for GrpcResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcResponseBody")
            .field("messages", &self.counter.messages)
            .finish_non_exhaustive()
    }
}

impl<B> GrpcResponseBody<B> {
    pub(crate) fn new(inner: B, call: GrpcCall) -> Self {
        Self {
            inner: Some(inner),
            counter: MessageCounter::default(),
            call: Some(call),
        }
    }

    /// A body that records nothing (a future polled again after it completed).
    pub(crate) fn new_unrecorded(inner: B) -> Self {
        Self {
            inner: Some(inner),
            counter: MessageCounter::default(),
            call: None,
        }
    }

    /// The empty body of a trailers-only INTERNAL answering a panic (recorded already).
    pub(crate) fn panicked() -> Self {
        Self {
            inner: None,
            counter: MessageCounter::default(),
            call: None,
        }
    }
}

fn status_of(trailers: &HeaderMap) -> Option<Code> {
    trailers
        .get("grpc-status")
        .map(|v| Code::from_header(v.as_bytes()))
}

impl<B: Body> Body for GrpcResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.feed_buf(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(call) = this.call.take() {
                        // A stream that ends without a status is UNKNOWN (gRPC spec).
                        let code = status_of(trailers).unwrap_or(Code::Unknown);
                        call.finish(code, this.counter.messages, false);
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(call) = this.call.take() {
                    call.finish(Code::Unknown, this.counter.messages, false);
                }
            }
            None => {
                if let Some(call) = this.call.take() {
                    let code = call.header_status.unwrap_or(Code::Unknown);
                    call.finish(code, this.counter.messages, false);
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

/// `grpc-status` of a trailers-only response (status in the headers, no body).
pub(crate) fn header_status(headers: &HeaderMap) -> Option<Code> {
    status_of(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(0);
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    #[test]
    fn counts_messages_split_anywhere() {
        let bytes = framed(&[b"hello", b"", b"a longer message", &[7u8; 300]]);
        for chunk in [1, 2, 3, 5, 7, 64, bytes.len()] {
            let mut c = MessageCounter::default();
            for part in bytes.chunks(chunk) {
                c.feed(part);
            }
            assert_eq!(c.messages, 4, "chunk size {chunk}");
            assert_eq!((c.prefix_seen, c.body_left), (0, 0));
        }
    }
}
