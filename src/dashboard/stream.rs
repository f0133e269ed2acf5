//! `GET /v1/stats/stream`: the statistics as Server-Sent Events.
//!
//! One thread per observer takes one snapshot per tick, and only while a client listens; every
//! open stream sends that same snapshot, so a hundred open dashboards cost what one does.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::response::EndpointBody;
use crate::sync::lock;

/// How long a client waits before reconnecting (the stream's `retry:`), in milliseconds.
const RETRY_MS: u64 = 2000;

/// The latest snapshot, shared by every open stream.
#[derive(Default)]
struct Latest {
    /// Sequence number of `event` (0: none yet).
    seq: u64,
    /// The whole event: `id:`, `event:`, `data:` lines.
    event: Bytes,
    taken: Option<Instant>,
    /// Bumped every keep-alive interval.
    keep_alive: u64,
    closed: bool,
    wakers: Vec<Waker>,
}

/// The snapshots of one observer and the streams waiting for them.
pub(crate) struct Hub {
    /// Distinguishes this process's event IDs from a previous one's (ms since the epoch at
    /// start): a client reconnecting to a restarted service gets the current figures at once.
    epoch: u64,
    tick: Duration,
    latest: Mutex<Latest>,
    listeners: AtomicUsize,
}

impl Hub {
    /// A hub publishing every `tick`; its thread is started by the dashboard (see
    /// [`Hub::tick`]).
    pub(crate) fn new(epoch: u64, tick: Duration) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            tick,
            latest: Mutex::new(Latest::default()),
            listeners: AtomicUsize::new(0),
        })
    }

    /// One tick of the hub's thread: a keep-alive when `keep_alive` has passed since
    /// `last_keep_alive`, and a snapshot when a client listens.
    pub(crate) fn tick(
        &self,
        observer: &crate::Observer,
        last_keep_alive: &mut Instant,
        keep_alive: Duration,
    ) {
        if last_keep_alive.elapsed() >= keep_alive {
            *last_keep_alive = Instant::now();
            lock(&self.latest).keep_alive += 1;
        }
        if self.listeners.load(Relaxed) > 0 {
            self.publish(observer);
        }
    }

    /// Takes a snapshot of `observer` and wakes every stream.
    pub(crate) fn publish(&self, observer: &crate::Observer) {
        let data = match serde_json::to_string(&observer.stats()) {
            Ok(data) => data,
            Err(_) => return,
        };
        let mut latest = lock(&self.latest);
        latest.seq += 1;
        latest.event = Bytes::from(format!(
            "id: {}.{}\nevent: stats\ndata: {data}\n\n",
            self.epoch, latest.seq
        ));
        latest.taken = Some(Instant::now());
        for waker in latest.wakers.drain(..) {
            waker.wake();
        }
    }

    fn wake_all(&self) {
        for waker in lock(&self.latest).wakers.drain(..) {
            waker.wake();
        }
    }

    /// Ends every open stream (the observer is gone).
    pub(crate) fn close(&self) {
        lock(&self.latest).closed = true;
        self.wake_all();
    }

    /// The sequence number of the latest snapshot.
    #[cfg(test)]
    pub(crate) fn seq(&self) -> u64 {
        lock(&self.latest).seq
    }

    /// Whether the latest snapshot is recent enough to send a new client.
    fn fresh(&self) -> bool {
        lock(&self.latest)
            .taken
            .is_some_and(|t| t.elapsed() < self.tick * 2)
    }
}

/// The response to `GET /v1/stats/stream`. `last_event_id` is the client's `Last-Event-ID`.
pub(crate) fn response(
    hub: &Arc<Hub>,
    observer: &crate::Observer,
    last_event_id: Option<&HeaderValue>,
) -> Response<EndpointBody> {
    if !hub.fresh() {
        // The first client after a quiet spell gets figures at once, not a tick later.
        hub.publish(observer);
    }
    // A client that saw this process's event `n` resumes after it; any other ID (a previous
    // process, garbage) gets the current snapshot.
    let resume_after = last_event_id
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once('.'))
        .filter(|(epoch, _)| epoch.parse::<u64>().ok() == Some(hub.epoch))
        .and_then(|(_, seq)| seq.parse::<u64>().ok())
        .filter(|seq| *seq <= lock(&hub.latest).seq)
        .unwrap_or(0);
    hub.listeners.fetch_add(1, Relaxed);
    let keep_alive = lock(&hub.latest).keep_alive;
    let stream = EventStream {
        hub: hub.clone(),
        sent: resume_after,
        keep_alive,
        greeted: false,
    };
    let mut res = Response::new(stream.boxed());
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies (nginx) must not buffer a live stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res.extensions_mut().insert(crate::server::LiveStream);
    res
}

/// One client's stream.
struct EventStream {
    hub: Arc<Hub>,
    /// Sequence number of the last event sent.
    sent: u64,
    keep_alive: u64,
    greeted: bool,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.hub.listeners.fetch_sub(1, Relaxed);
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.greeted {
            self.greeted = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
                "retry: {RETRY_MS}\n\n"
            ))))));
        }
        let hub = self.hub.clone();
        let mut latest = lock(&hub.latest);
        if latest.seq > self.sent {
            self.sent = latest.seq;
            return Poll::Ready(Some(Ok(Frame::data(latest.event.clone()))));
        }
        if latest.keep_alive != self.keep_alive {
            self.keep_alive = latest.keep_alive;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b": keep-alive\n\n",
            )))));
        }
        if latest.closed {
            return Poll::Ready(None);
        }
        if !latest.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            latest.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
