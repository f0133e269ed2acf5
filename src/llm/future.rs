//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::{LlmResponseBody, Tracker};
use super::series::LlmCompletion;
use super::{LlmLabels, LlmLayer, LlmUsage};
use crate::names;
use crate::stats::Outcome;

/// What a request said before its response: when it started, and its labels.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) layer: Arc<LlmLayer>,
    pub(crate) start: u64,
    pub(crate) labels: Option<LlmLabels>,
}

impl Pending {
    /// Records a request that got no response: the inner service failed, or the future was
    /// dropped (`cancelled`).
    fn unanswered(self, error: &'static str, outcome: Outcome) {
        let layer = &*self.layer;
        let settings = &layer.settings;
        let series = layer.part.series(
            &layer.observer,
            settings.side,
            settings.labels(None, self.labels.as_ref()),
        );
        let completion = LlmCompletion {
            error: Some(error),
            outcome,
            start: self.start,
            end: layer.observer.now_nanos(),
            first_token: None,
            tpot_tokens: None,
            input: None,
            output: None,
            token_usage: settings.token_usage,
        };
        layer
            .part
            .record(&layer.observer, settings.side, &series, &completion);
    }
}

pin_project! {
    /// The response future of [`Llm`](super::Llm). Dropped before the response (the client
    /// went away, or the caller gave up), the request is recorded as `cancelled`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.unanswered(names::ERROR_CANCELLED, Outcome::Aborted);
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Pending) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: http_body::Body,
{
    type Output = Result<Response<LlmResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(pending) = this.pending.take() else {
            // Polled after completion: a contract violation by the caller; answer, never panic.
            return Poll::Ready(result.map(|res| res.map(LlmResponseBody::untracked)));
        };
        Poll::Ready(match result {
            Ok(res) => {
                let layer = &*pending.layer;
                let settings = &layer.settings;
                let labels =
                    settings.labels(res.extensions().get::<LlmLabels>(), pending.labels.as_ref());
                let series = layer.part.series(&layer.observer, settings.side, labels);
                let tracker = Tracker::new(
                    layer.observer.clone(),
                    layer.part.clone(),
                    series,
                    settings.side,
                    pending.start,
                    res.status(),
                    res.headers(),
                    res.extensions().get::<LlmUsage>().copied(),
                    settings,
                );
                Ok(res.map(|body| LlmResponseBody::new(body, tracker)))
            }
            Err(e) => {
                pending.unanswered(names::ERROR_SERVICE, Outcome::Failure);
                Err(e)
            }
        })
    }
}
