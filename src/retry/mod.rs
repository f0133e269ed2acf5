//! Retry and failover accounting.
//!
//! A *logical request* is what the caller asked for; each try at it is an *attempt*. For every
//! target (a name you choose: `"payments"`, `"llm"`), tower-observe counts
//!
//! - `client_retries_total{target, reason}`: resends, by why the previous attempt failed
//!   (`503`, `429`, `timeout`, `connection_refused`, …);
//! - `client_retry_exhausted_total{target}`: logical requests that still failed after at least
//!   one retry;
//! - `client_request_attempts{target}`: a histogram of attempts per logical request;
//! - `client_failovers_total{target, from, to}`: switches from one backend to another;
//!
//! and shows the same figures under `retries` in `/v1/stats`. Client spans of resends carry
//! `http.request.resend_count`.
//!
//! Three ways in, for the retry tools people already use:
//!
//! - `tower::retry`: wrap your `Policy` with `RetryHandle::policy` (feature `tower-retry`);
//! - `reqwest-retry`: put `RetryHandle::reqwest_middleware` before `RetryTransientMiddleware`
//!   and the client instrumentation after it (feature `reqwest-middleware`);
//! - a loop of your own: [`RetryHandle::call`] gives a [`LogicalCall`] to report to.
//!
//! ```
//! use tower_observe::Observer;
//!
//! let observer = Observer::new();
//! let payments = observer.retries("payments");
//! let mut call = payments.call();
//! // first attempt fails with a 503 on backend a …
//! call.retry("503");
//! call.failover("a:443", "b:443");
//! // … the resend to b succeeds
//! call.succeeded();
//! let stats = observer.stats();
//! assert_eq!(stats.retries["payments"].retries, 1);
//! ```

#[cfg(feature = "tower-retry")]
mod policy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use metrics::Counter;

use crate::classify::ResendCount;
use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, HistogramHandle};
use crate::observer::{Observer, Part, RecorderSource};
use crate::stats::{RetryEntry, StatsSnapshot};
#[cfg(feature = "tower-retry")]
pub use policy::CountRetries;

/// Most distinct reasons and failover pairs kept per target; past it they count as `_OTHER`.
const MAX_REASONS: usize = 64;

/// Most retry targets per observer; past it they share an `_OTHER` entry.
const MAX_TARGETS: usize = 256;

/// The retry targets of an observer; attached by the first [`Observer::retries`].
#[derive(Debug)]
struct RetryTargets(Family<RetryTarget>);

impl Default for RetryTargets {
    fn default() -> Self {
        Self(Family::new(names::CLIENT_REQUEST_ATTEMPTS, MAX_TARGETS))
    }
}

impl Part for RetryTargets {
    fn stats(&self, snapshot: &mut StatsSnapshot, _elapsed: f64) {
        snapshot.retries = self.0.by_name(RetryTarget::entry);
    }

    fn reset(&self) {
        for (_, target) in self.0.entries() {
            target.reset();
        }
    }
}

impl Observer {
    /// Retry and failover accounting for `target`; see [`crate::retry`].
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let mut call = observer.retries("search").call();
    /// call.retry("timeout");
    /// call.failed(); // still failing after a retry: exhausted
    /// assert_eq!(observer.stats().retries["search"].exhausted, 1);
    /// ```
    pub fn retries(&self, target: &str) -> RetryHandle {
        let targets = self.part(RetryTargets::default);
        let entry = self.named(&targets.0, target, RetryTarget::new);
        RetryHandle::new(self.clone(), entry)
    }
}

#[derive(Debug)]
struct Counted {
    counter: Counter,
    count: AtomicU64,
    /// Set for a family's overflow entry.
    overflow: Option<Counter>,
}

impl Counted {
    fn new(
        source: &dyn RecorderSource,
        name: &'static str,
        labels: &[(&str, &str)],
        overflow: Option<Counter>,
    ) -> Self {
        Self {
            counter: handles::counter(source, &handles::entry_key(name, labels, &overflow)),
            count: AtomicU64::new(0),
            overflow,
        }
    }

    fn increment(&self) {
        self.counter.increment(1);
        self.count.fetch_add(1, Relaxed);
        handles::count_overflow(&self.overflow);
    }
}

/// The metrics and counts of one target.
#[derive(Debug)]
pub(crate) struct RetryTarget {
    name: Arc<str>,
    reasons: Family<Counted>,
    failovers: Family<Counted>,
    exhausted: Counted,
    attempts_histogram: HistogramHandle,
    logical: AtomicU64,
    attempts: AtomicU64,
    /// Set for the overflow target.
    overflow: Option<Counter>,
}

impl RetryTarget {
    pub(crate) fn new(source: &dyn RecorderSource, name: &str, overflow: Option<Counter>) -> Self {
        let target = [("target", name)];
        Self {
            name: name.into(),
            reasons: Family::new(names::CLIENT_RETRIES, MAX_REASONS),
            failovers: Family::new(names::CLIENT_FAILOVERS, MAX_REASONS),
            // The target's recordings are counted once, in `finish`.
            exhausted: Counted {
                counter: handles::counter(
                    source,
                    &handles::entry_key(names::CLIENT_RETRY_EXHAUSTED, &target, &overflow),
                ),
                count: AtomicU64::new(0),
                overflow: None,
            },
            attempts_histogram: handles::histogram(
                source,
                &handles::entry_key(names::CLIENT_REQUEST_ATTEMPTS, &target, &overflow),
            ),
            logical: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            overflow,
        }
    }

    pub(crate) fn retry(&self, source: &dyn RecorderSource, reason: &str) {
        let name = &*self.name;
        self.reasons
            .get(source, &[reason], |v, overflow| {
                let labels = [("target", name), ("reason", v[0])];
                Counted::new(source, names::CLIENT_RETRIES, &labels, overflow)
            })
            .increment();
    }

    pub(crate) fn failover(&self, source: &dyn RecorderSource, from: &str, to: &str) {
        let name = &*self.name;
        self.failovers
            .get(source, &[from, to], |v, overflow| {
                let labels = [("target", name), ("from", v[0]), ("to", v[1])];
                Counted::new(source, names::CLIENT_FAILOVERS, &labels, overflow)
            })
            .increment();
    }

    pub(crate) fn finish(&self, attempts: u32, failed: bool) {
        handles::count_overflow(&self.overflow);
        let attempts = attempts.max(1);
        self.logical.fetch_add(1, Relaxed);
        self.attempts.fetch_add(u64::from(attempts), Relaxed);
        self.attempts_histogram.record(f64::from(attempts));
        if failed && attempts > 1 {
            self.exhausted.increment();
        }
    }

    /// Zeroes the `/v1/stats` counts (not the metrics).
    pub(crate) fn reset(&self) {
        self.logical.store(0, Relaxed);
        self.attempts.store(0, Relaxed);
        self.exhausted.count.store(0, Relaxed);
        for (_, c) in self.reasons.entries() {
            c.count.store(0, Relaxed);
        }
        for (_, c) in self.failovers.entries() {
            c.count.store(0, Relaxed);
        }
    }

    pub(crate) fn entry(&self) -> RetryEntry {
        let logical = self.logical.load(Relaxed);
        let attempts = self.attempts.load(Relaxed);
        let retries_by_reason: BTreeMap<String, u64> = self
            .reasons
            .entries()
            .into_iter()
            .map(|(k, v)| (k.join(""), v.count.load(Relaxed)))
            .collect();
        RetryEntry {
            logical_requests: logical,
            attempts,
            attempts_avg: (logical > 0).then(|| attempts as f64 / logical as f64),
            retries: retries_by_reason.values().sum(),
            retries_by_reason,
            exhausted: self.exhausted.count.load(Relaxed),
            failovers: self
                .failovers
                .entries()
                .into_iter()
                .map(|(k, v)| (k.join(" -> "), v.count.load(Relaxed)))
                .collect(),
        }
    }
}

/// Retry accounting for one target; made by [`Observer::retries`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RetryHandle {
    observer: Observer,
    target: Arc<RetryTarget>,
}

impl RetryHandle {
    pub(crate) fn new(observer: Observer, target: Arc<RetryTarget>) -> Self {
        Self { observer, target }
    }

    /// The target name, as it appears in labels (`_OTHER` past the cardinality limit).
    pub fn target(&self) -> &str {
        &self.target.name
    }

    /// Starts accounting for one logical request of a hand-written retry loop.
    pub fn call(&self) -> LogicalCall {
        LogicalCall {
            tracker: self.clone(),
            attempts: 1,
            finished: false,
        }
    }

    pub(crate) fn count_retry(&self, reason: &str) {
        let target = &self.target;
        self.observer
            .with_source(|source| target.retry(source, reason));
    }

    pub(crate) fn count_failover(&self, from: &str, to: &str) {
        let target = &self.target;
        self.observer
            .with_source(|source| target.failover(source, from, to));
    }

    pub(crate) fn finish(&self, attempts: u32, failed: bool) {
        let target = &self.target;
        self.observer.guarded(|| target.finish(attempts, failed));
    }
}

/// One logical request of a hand-written retry loop; see [`RetryHandle::call`].
///
/// Report each resend with [`retry`](Self::retry) (and a change of backend with
/// [`failover`](Self::failover)), then end with [`succeeded`](Self::succeeded) or
/// [`failed`](Self::failed). Dropped without either (the caller gave up), its attempts are
/// recorded but it does not count as exhausted.
#[derive(Debug)]
#[must_use = "finish the call with succeeded() or failed()"]
pub struct LogicalCall {
    tracker: RetryHandle,
    attempts: u32,
    finished: bool,
}

impl LogicalCall {
    /// The attempt about to be made, for the request's extensions.
    pub fn resend_count(&self) -> ResendCount {
        ResendCount(self.attempts - 1)
    }

    /// Attempts so far, counting the one in progress.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counts a resend because the previous attempt failed with `reason` (a status code such
    /// as `"503"`, or an error kind such as `"timeout"`; see
    /// [`ClientError`](crate::classify::ClientError) to classify errors).
    pub fn retry(&mut self, reason: &str) {
        self.attempts = self.attempts.saturating_add(1);
        self.tracker.count_retry(reason);
    }

    /// Counts a switch from backend `from` to backend `to`.
    pub fn failover(&mut self, from: &str, to: &str) {
        self.tracker.count_failover(from, to);
    }

    /// The logical request succeeded.
    pub fn succeeded(mut self) {
        self.finished = true;
        self.tracker.finish(self.attempts, false);
    }

    /// The logical request failed for good; counted as exhausted if it was retried.
    pub fn failed(mut self) {
        self.finished = true;
        self.tracker.finish(self.attempts, true);
    }
}

impl Drop for LogicalCall {
    fn drop(&mut self) {
        if !self.finished {
            self.tracker.finish(self.attempts, false);
        }
    }
}
