//! Delivery: a worker thread per channel behind a bounded queue, retrying with backoff — kept
//! apart from the channels' formats, as Alertmanager keeps its retry stage apart from them.

use std::collections::HashSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::{Channel, ChannelStatus, Deliver, DeliverContext, LastError, SendError, Settings};
use crate::alerts::AlertEvent;
use crate::observer::handles::{counter, key};
use crate::observer::Observer;
use crate::sync::lock;
use crate::{names, sync};

/// How long dropping the [`Notifier`] waits for its workers to finish what they hold.
const DROP_WAIT: Duration = Duration::from_secs(2);

/// The state a channel's worker shares with the [`Notifier`].
#[derive(Debug)]
struct Shared {
    name: String,
    kind: &'static str,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
    /// Set while events are being dropped, so only the first drop of a burst is logged.
    dropping: AtomicBool,
    last_success: Mutex<Option<SystemTime>>,
    last_error: Mutex<Option<(SystemTime, String)>>,
    success_total: metrics::Counter,
    failure_total: metrics::Counter,
    dropped_total: metrics::Counter,
}

impl Shared {
    fn succeeded(&self) {
        *lock(&self.last_success) = Some(SystemTime::now());
    }

    fn errored(&self, error: &SendError) {
        *lock(&self.last_error) = Some((SystemTime::now(), error.message.clone()));
    }

    fn status(&self) -> ChannelStatus {
        ChannelStatus {
            name: self.name.clone(),
            kind: self.kind,
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retries: self.retries.load(Relaxed),
            queued: self.queued.load(Relaxed),
            last_success: lock(&self.last_success).map(crate::time_fmt::rfc3339),
            last_error: lock(&self.last_error)
                .as_ref()
                .map(|(at, message)| LastError {
                    at: crate::time_fmt::rfc3339(*at),
                    message: message.clone(),
                }),
        }
    }
}

/// The stop signal of a worker: once set, backoff sleeps end, no retries are made, and the
/// worker leaves when its deadline passes.
#[derive(Debug, Default)]
struct Stop {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Stop {
    fn request(&self, deadline: Instant) {
        let mut current = lock(&self.deadline);
        *current = Some(current.map_or(deadline, |d| d.min(deadline)));
        self.wake.notify_all();
    }

    fn requested(&self) -> bool {
        lock(&self.deadline).is_some()
    }

    fn past_deadline(&self) -> bool {
        lock(&self.deadline).is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps for `duration`; `false` if stopping was requested meanwhile.
    fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        let mut stop = lock(&self.deadline);
        while stop.is_none() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            stop = match self.wake.wait_timeout(stop, end - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        false
    }
}

/// One channel as the notifier holds it.
#[derive(Debug)]
struct Worker {
    shared: Arc<Shared>,
    queue: RwLock<Option<SyncSender<Arc<AlertEvent>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<Stop>,
}

/// Sends alert events to the channels, each from its own worker thread.
///
/// The alert engine calls [`dispatch`](Self::dispatch) on every change of state; it can also be
/// used on its own. Dropping the notifier (or [`shutdown`](Self::shutdown)) stops the workers
/// after what they hold is sent, waiting a bounded time.
///
/// ```
/// use tower_observe::alerts::notify::{Log, Notifier};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let notifier = Notifier::new(vec![Log::new().into()], &observer, None);
/// assert_eq!(notifier.statuses()[0].name, "log");
/// ```
pub struct Notifier {
    workers: Vec<Worker>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "channels",
                &self
                    .workers
                    .iter()
                    .map(|w| (w.shared.name.as_str(), w.shared.kind))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Notifier {
    /// Starts one worker thread per channel and registers each channel's
    /// `alert_notifications_total` series with `observer`. `external_url`, the service's
    /// address as users reach it, goes into the webhook payload's `externalURL` and
    /// PagerDuty's `client_url`.
    pub fn new(
        channels: Vec<Channel>,
        observer: &Observer,
        external_url: Option<String>,
    ) -> Arc<Notifier> {
        let mut taken = HashSet::new();
        let workers = channels
            .into_iter()
            .map(|channel| {
                let base = channel.name().to_owned();
                let mut name = base.clone();
                let mut n = 1;
                while !taken.insert(name.clone()) {
                    n += 1;
                    name = format!("{base}-{n}");
                }
                start(channel, name, observer, external_url.as_deref())
            })
            .collect();
        Arc::new(Notifier { workers })
    }

    /// Queues `event` for every channel. Never blocks: a channel whose queue is full drops
    /// the event and counts it as `dropped`.
    pub fn dispatch(&self, event: &AlertEvent) {
        if self.workers.is_empty() {
            return;
        }
        let event = Arc::new(event.clone());
        for worker in &self.workers {
            let shared = &worker.shared;
            let queue = sync::read(&worker.queue);
            let sent = match queue.as_ref() {
                Some(queue) => {
                    // Count before sending so the worker never takes it below zero.
                    shared.queued.fetch_add(1, Relaxed);
                    match queue.try_send(Arc::clone(&event)) {
                        Ok(()) => true,
                        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                            shared.queued.fetch_sub(1, Relaxed);
                            false
                        }
                    }
                }
                None => false,
            };
            if sent {
                shared.dropping.store(false, Relaxed);
            } else {
                shared.dropped.fetch_add(1, Relaxed);
                shared.dropped_total.increment(1);
                if !shared.dropping.swap(true, Relaxed) {
                    tracing::warn!(
                        channel = %shared.name,
                        kind = shared.kind,
                        alert = %event.rule,
                        "alert notification dropped: the channel's queue is full or stopped"
                    );
                }
            }
        }
    }

    /// Each channel's counts, last success and last error, in the order given.
    pub fn statuses(&self) -> Vec<ChannelStatus> {
        self.workers.iter().map(|w| w.shared.status()).collect()
    }

    /// Stops the workers: no more events are accepted, queued ones get one attempt each
    /// until `timeout` passes, retries stop. Waits up to `timeout` for the threads to end and
    /// returns whether they all did (a worker still inside an attempt ends when the attempt's
    /// own timeout does).
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for worker in &self.workers {
            worker.stop.request(deadline);
            // Dropping the sender lets the worker see the end of the queue.
            sync::write(&worker.queue).take();
        }
        let mut all = true;
        for worker in &self.workers {
            let Some(thread) = lock(&worker.thread).take() else {
                continue;
            };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                all = false;
            }
        }
        all
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.shutdown(DROP_WAIT);
    }
}

fn start(
    channel: Channel,
    name: String,
    observer: &Observer,
    external_url: Option<&str>,
) -> Worker {
    let kind = channel.kind();
    let settings = channel.settings().clone();
    let (mut success_total, mut failure_total, mut dropped_total) = (
        metrics::Counter::noop(),
        metrics::Counter::noop(),
        metrics::Counter::noop(),
    );
    observer.with_source(|source| {
        let series = |result| {
            counter(
                source,
                &key(
                    names::ALERT_NOTIFICATIONS,
                    &[("channel", name.as_str()), ("result", result)],
                ),
            )
        };
        success_total = series("success");
        failure_total = series("failure");
        dropped_total = series("dropped");
    });
    let shared = Arc::new(Shared {
        name,
        kind,
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        dropping: AtomicBool::new(false),
        last_success: Mutex::new(None),
        last_error: Mutex::new(None),
        success_total,
        failure_total,
        dropped_total,
    });
    let stop = Arc::new(Stop::default());
    let (tx, rx) = mpsc::sync_channel(settings.queue_capacity);
    let deliver = channel.into_deliver(&DeliverContext {
        name: &shared.name,
        external_url,
    });
    let spawned = std::thread::Builder::new()
        .name(format!("tower-observe-alerts-{kind}"))
        .spawn({
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            move || run(deliver, rx, &shared, &stop, &settings)
        });
    let (queue, thread) = match spawned {
        Ok(thread) => (Some(tx), Some(thread)),
        Err(error) => {
            let error = SendError::permanent(format!(
                "could not start the worker thread: {}",
                error.kind()
            ));
            tracing::error!(channel = %shared.name, kind, error = %error.message, "alert channel disabled");
            shared.errored(&error);
            (None, None)
        }
    };
    Worker {
        shared,
        queue: RwLock::new(queue),
        thread: Mutex::new(thread),
        stop,
    }
}

/// A worker's loop: events from the queue, and the channel's periodic re-sends.
fn run(
    mut deliver: Box<dyn Deliver>,
    queue: mpsc::Receiver<Arc<AlertEvent>>,
    shared: &Shared,
    stop: &Stop,
    settings: &Settings,
) {
    let mut rng = Jitter::new();
    loop {
        let next = match deliver.next_resend() {
            Some(at) if !stop.requested() => {
                let wait = at.saturating_duration_since(Instant::now());
                queue.recv_timeout(wait)
            }
            _ => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(event) => {
                shared.queued.fetch_sub(1, Relaxed);
                deliver_with_retries(deliver.as_mut(), &event, shared, stop, settings, &mut rng);
            }
            Err(RecvTimeoutError::Timeout) => match guard(|| deliver.resend()) {
                Ok(true) => shared.succeeded(),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(
                        channel = %shared.name,
                        kind = shared.kind,
                        error = %error.message,
                        "alert re-send failed"
                    );
                    shared.errored(&error);
                }
            },
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if stop.past_deadline() {
            return;
        }
    }
}

/// Runs `f`, turning a panic into a permanent error.
fn guard<T>(f: impl FnOnce() -> Result<T, SendError>) -> Result<T, SendError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(SendError::permanent(
            "internal error (the channel panicked)",
        ))
    })
}

fn deliver_with_retries(
    deliver: &mut dyn Deliver,
    event: &AlertEvent,
    shared: &Shared,
    stop: &Stop,
    settings: &Settings,
    rng: &mut Jitter,
) {
    let _ = guard(|| {
        deliver.accept(event);
        Ok(())
    });
    let mut attempt: u32 = 0;
    loop {
        match guard(|| deliver.send(event)) {
            Ok(()) => {
                shared.sent.fetch_add(1, Relaxed);
                shared.success_total.increment(1);
                shared.succeeded();
                tracing::debug!(
                    channel = %shared.name,
                    kind = shared.kind,
                    alert = %event.rule,
                    status = event.status.as_str(),
                    attempts = attempt + 1,
                    "alert notification sent"
                );
                return;
            }
            Err(error) => {
                shared.errored(&error);
                let give_up = !error.retryable || attempt >= settings.retries || stop.requested();
                if !give_up {
                    let delay = rng.backoff(attempt, settings.backoff_base, settings.backoff_max);
                    tracing::debug!(
                        channel = %shared.name,
                        kind = shared.kind,
                        error = %error.message,
                        retry_in_ms = delay.as_millis() as u64,
                        "alert notification attempt failed"
                    );
                    if stop.sleep(delay) {
                        attempt += 1;
                        shared.retries.fetch_add(1, Relaxed);
                        continue;
                    }
                }
                shared.failed.fetch_add(1, Relaxed);
                shared.failure_total.increment(1);
                tracing::warn!(
                    channel = %shared.name,
                    kind = shared.kind,
                    alert = %event.rule,
                    status = event.status.as_str(),
                    attempts = attempt + 1,
                    error = %error.message,
                    "alert notification failed"
                );
                return;
            }
        }
    }
}

/// A small xorshift generator for backoff jitter, seeded from the standard library's random
/// hasher keys.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Jitter(hasher.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Full jitter: a random delay in `[0, min(max, base × 2^attempt)]`.
    fn backoff(&mut self, attempt: u32, base: Duration, max: Duration) -> Duration {
        let cap = base.saturating_mul(1u32 << attempt.min(20)).min(max);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next() % (nanos + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Log;
    use super::*;

    #[test]
    fn notify_backoff_is_bounded_full_jitter() {
        let mut rng = Jitter::new();
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut seen_small = false;
        for attempt in 0..30 {
            let d = rng.backoff(attempt, base, max);
            let cap = base.saturating_mul(1u32 << attempt.min(20)).min(max);
            assert!(d <= cap, "{d:?} > {cap:?}");
            seen_small |= d < cap / 2;
        }
        assert!(seen_small);
        assert_eq!(
            rng.backoff(3, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn notify_stop_interrupts_sleep() {
        let stop = Arc::new(Stop::default());
        let other = Arc::clone(&stop);
        let t = std::thread::spawn(move || other.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        stop.request(Instant::now());
        assert!(!t.join().unwrap_or(true));
        assert!(stop.past_deadline());
    }

    #[test]
    fn notify_duplicate_names_get_suffixes() {
        let observer = Observer::new();
        let notifier = Notifier::new(
            vec![
                Log::new().into(),
                Log::new().into(),
                Log::new().name("log").into(),
            ],
            &observer,
            None,
        );
        let names: Vec<_> = notifier.statuses().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["log", "log-2", "log-3"]);
        assert!(notifier.shutdown(Duration::from_secs(1)));
    }
}
