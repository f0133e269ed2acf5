//! The response body wrapper: reads the stream as it passes (never changing a byte), notes the
//! first content token, and records the request exactly once — at the end of the body, on a
//! body error, or as `cancelled` when the body is dropped before its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::{header, HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::series::{LlmCompletion, LlmPart, LlmSeries};
use super::sse::{read_event, Reported, SseReader};
use super::{LlmUsage, Side, UsageSource};
use crate::names;
use crate::stats::Outcome;
use crate::Observer;

/// How the body is read.
#[derive(Debug)]
enum Mode {
    /// `text/event-stream`: events read as they pass.
    Sse(SseReader),
    /// A JSON completion: copied up to the cap, read at the end.
    Json {
        copy: Vec<u8>,
        cap: usize,
        over: bool,
    },
    /// Anything else: timed only.
    Other,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Complete,
    BodyError,
    Dropped,
}

/// One request being recorded: what is known from the headers, and what the body said.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<LlmPart>,
    pub(crate) series: Arc<LlmSeries>,
    pub(crate) side: Side,
    pub(crate) start: u64,
    pub(crate) status: StatusCode,
    /// The status counts as a failure on this side.
    pub(crate) failed_status: bool,
    pub(crate) usage: Option<LlmUsage>,
    pub(crate) token_usage: bool,
    mode: Mode,
    first_token: Option<u64>,
}

impl Tracker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        observer: Observer,
        part: Arc<LlmPart>,
        series: Arc<LlmSeries>,
        side: Side,
        start: u64,
        status: StatusCode,
        headers: &HeaderMap,
        usage: Option<LlmUsage>,
        settings: &super::Settings,
    ) -> Self {
        let failed_status = match side {
            Side::Server => status.is_server_error(),
            Side::Client => status.is_client_error() || status.is_server_error(),
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let mode = if essence.eq_ignore_ascii_case("text/event-stream") {
            Mode::Sse(SseReader::default())
        } else if essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json") {
            Mode::Json {
                copy: Vec::new(),
                cap: settings.max_json_body,
                over: false,
            }
        } else {
            Mode::Other
        };
        Self {
            observer,
            part,
            series,
            side,
            start,
            status,
            failed_status,
            usage,
            token_usage: settings.token_usage,
            mode,
            first_token: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        match &mut self.mode {
            Mode::Sse(reader) => {
                if reader.feed(bytes) > 0 && self.first_token.is_none() {
                    self.first_token = Some(self.observer.now_nanos());
                }
            }
            Mode::Json { copy, cap, over } => {
                if !*over {
                    if copy.len() + bytes.len() <= *cap {
                        copy.extend_from_slice(bytes);
                    } else {
                        *over = true;
                        *copy = Vec::new();
                    }
                }
            }
            Mode::Other => {}
        }
    }

    /// Records the request (once: the tracker is consumed).
    pub(crate) fn finish(mut self, end: End) {
        let now = self.observer.now_nanos();
        let (reported, content_events, stream_error) = match &mut self.mode {
            Mode::Sse(reader) => {
                if reader.end() > 0 && self.first_token.is_none() {
                    self.first_token = Some(now);
                }
                (reader.usage, Some(reader.content_events), reader.error)
            }
            Mode::Json { copy, over, .. } if !*over && end == End::Complete => {
                match read_event(copy) {
                    Some(facts) => (facts.usage, None, facts.error),
                    None => (Reported::default(), None, false),
                }
            }
            _ => (Reported::default(), None, false),
        };
        let (error, outcome) = match end {
            End::Dropped => (Some(names::ERROR_CANCELLED), Outcome::Aborted),
            End::BodyError => (Some(names::ERROR_BODY), Outcome::Failure),
            End::Complete if self.failed_status => (Some(self.status.as_str()), Outcome::Failure),
            End::Complete if stream_error => (Some(names::ERROR_STREAM), Outcome::Failure),
            End::Complete => (None, Outcome::Success),
        };
        let (input, output) = match self.usage {
            Some(u) => (Some((u.input, u.source)), Some((u.output, u.source))),
            None => (
                reported.input.map(|n| (n, UsageSource::Provider)),
                reported
                    .output
                    .map(|n| (n, UsageSource::Provider))
                    .or_else(|| {
                        content_events
                            .filter(|n| *n > 0)
                            .map(|n| (n, UsageSource::Estimated))
                    }),
            ),
        };
        let ok_status = self.status.is_success();
        let completion = LlmCompletion {
            error,
            outcome,
            start: self.start,
            end: now,
            first_token: self.first_token.filter(|_| ok_status),
            tpot_tokens: (outcome == Outcome::Success)
                .then_some(output.map(|(n, _)| n))
                .flatten(),
            input,
            output,
            token_usage: self.token_usage,
        };
        self.part
            .record(&self.observer, self.side, &self.series, &completion);
    }
}

pin_project! {
    /// A response body whose GenAI figures are read as it passes: the first content token
    /// of an event stream, the `usage` object (the stream's last, or a JSON completion's),
    /// and the end. The bytes are passed on untouched.
    pub struct LlmResponseBody<B> {
        #[pin]
        inner: B,
        tracker: Option<Tracker>,
    }

    impl<B> PinnedDrop for LlmResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(tracker) = this.project().tracker.take() {
                tracker.finish(End::Dropped);
            }
        }
    }
}

impl<B> std::fmt::Debug for LlmResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmResponseBody")
            .field("recording", &self.tracker.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> LlmResponseBody<B> {
    pub(crate) fn new(inner: B, tracker: Tracker) -> Self {
        // An empty body is complete as soon as it is sent: servers may never poll it.
        if inner.is_end_stream() {
            tracker.finish(End::Complete);
            return Self::untracked(inner);
        }
        Self {
            inner,
            tracker: Some(tracker),
        }
    }
}

impl<B> LlmResponseBody<B> {
    /// A body that records nothing.
    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner,
            tracker: None,
        }
    }
}

impl<B: Body> Body for LlmResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(tracker) = this.tracker.as_mut() else {
            return Poll::Ready(frame);
        };
        let end = match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    // A `Buf` frame is normally one contiguous chunk (`Bytes`): read what it
                    // shows.
                    tracker.feed(data.chunk());
                }
                this.inner.is_end_stream().then_some(End::Complete)
            }
            Some(Err(_)) => Some(End::BodyError),
            None => Some(End::Complete),
        };
        if let Some(end) = end {
            if let Some(tracker) = this.tracker.take() {
                tracker.finish(end);
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
