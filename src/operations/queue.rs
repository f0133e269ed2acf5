//! Queues of jobs and their workers: depth, enqueued / started / finished, wait and
//! processing time, and each worker's status from its heartbeats.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::Counter;
use pin_project_lite::pin_project;

use super::operation::{
    Classify, Operation, OperationGuard, OperationHandle, OperationOutcome, ResultClassifier,
};
use super::series::OperationSeries;
use crate::clock::Clock;
use crate::names;
use crate::observer::background::{self, Background};
use crate::observer::family::Family;
use crate::observer::handles::{self, GaugeHandle, HistogramHandle};
use crate::observer::{HealthInput, Observer, Part, RecorderSource, Status};
use crate::stats::sketch::{LatencySketch, SketchData};
use crate::stats::{LatencyMs, QueueEntry, StatsSnapshot, WorkerCounts};
use crate::sync::{lock, read, write};

/// The `messaging.system` of a queue that does not name one: a queue inside the process.
pub const IN_PROCESS: &str = "in_process";

/// How often the queues' depth closures and worker statuses are sampled into the gauges
/// (besides every scrape and every `/v1/stats`).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Most names listed in `stuck_workers` per queue.
const MAX_LISTED_STUCK: usize = 20;

/// What a queue is: its name (`messaging.destination.name`), the messaging system it lives
/// in, and when a worker counts as stuck. Turned into a [`QueueHandle`] by
/// [`Observer::queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    name: Box<str>,
    system: Box<str>,
    stuck_after: Duration,
}

impl Queue {
    /// A queue called `name`, in the process ([`IN_PROCESS`]); workers are stuck after
    /// 60 seconds of silence while busy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into().into(),
            system: IN_PROCESS.into(),
            stuck_after: Duration::from_secs(60),
        }
    }

    /// Sets `messaging.system` (`redis`, `rabbitmq`, `aws_sqs`, …).
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into().into();
        self
    }

    /// Sets how long a busy worker may go without a sign of life (starting a job, a
    /// heartbeat) before it is stuck; and a worker that sends heartbeats, how long it may be
    /// silent while idle.
    pub fn stuck_after(mut self, after: Duration) -> Self {
        self.stuck_after = after;
        self
    }
}

/// Where a queue's depth comes from.
const DEPTH_COUNTED: u8 = 0;
const DEPTH_SET: u8 = 1;
const DEPTH_SAMPLED: u8 = 2;

type DepthFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// One worker's state.
#[derive(Debug)]
struct WorkerState {
    name: Box<str>,
    busy: AtomicBool,
    /// The last sign of life (`now_nanos`): a job started or finished, a heartbeat.
    last_seen: AtomicU64,
    /// Set by the first heartbeat: from then on, silence while idle is suspicious too.
    heartbeats: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerStatus {
    Busy,
    Idle,
    Stuck,
}

impl WorkerState {
    fn status(&self, now: u64, stuck_after: u64) -> WorkerStatus {
        let silent = now.saturating_sub(self.last_seen.load(Relaxed)) > stuck_after;
        match (self.busy.load(Relaxed), silent) {
            (true, false) => WorkerStatus::Busy,
            (true, true) => WorkerStatus::Stuck,
            (false, true) if self.heartbeats.load(Relaxed) => WorkerStatus::Stuck,
            (false, _) => WorkerStatus::Idle,
        }
    }
}

/// One queue's handles and figures.
pub(crate) struct QueueState {
    name: Box<str>,
    system: Box<str>,
    stuck_after: u64,
    process: Arc<OperationSeries>,
    depth_gauge: GaugeHandle,
    depth_mode: AtomicU8,
    /// The depth last set or sampled (as `f64` bits), or, counted, enqueued minus started.
    depth_bits: AtomicU64,
    counted_depth: AtomicI64,
    depth_fn: RwLock<Option<DepthFn>>,
    enqueued_counter: Counter,
    wait_histogram: HistogramHandle,
    worker_gauges: [GaugeHandle; 3],
    enqueued: AtomicU64,
    started: AtomicU64,
    wait: LatencySketch,
    workers: Mutex<Vec<Arc<WorkerState>>>,
    overflow: Option<Counter>,
}

impl std::fmt::Debug for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueState")
            .field("name", &self.name)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl QueueState {
    fn new(
        source: &dyn RecorderSource,
        values: &[&str],
        overflow: Option<Counter>,
        stuck_after: Duration,
        process: Arc<OperationSeries>,
    ) -> Self {
        let (system, name) = (values[0], values[1]);
        let labels = [
            (names::MESSAGING_SYSTEM, system),
            (names::MESSAGING_DESTINATION_NAME, name),
        ];
        let key = |metric| handles::entry_key(metric, &labels, &overflow);
        let worker_gauge = |state| {
            let with_state = [labels[0], labels[1], ("state", state)];
            handles::gauge(
                source,
                &handles::entry_key(names::QUEUE_WORKERS, &with_state, &overflow),
            )
        };
        Self {
            name: name.into(),
            system: system.into(),
            stuck_after: u64::try_from(stuck_after.as_nanos()).unwrap_or(u64::MAX),
            process,
            depth_gauge: handles::gauge(source, &key(names::QUEUE_DEPTH)),
            depth_mode: AtomicU8::new(DEPTH_COUNTED),
            depth_bits: AtomicU64::new(0f64.to_bits()),
            counted_depth: AtomicI64::new(0),
            depth_fn: RwLock::new(None),
            enqueued_counter: handles::counter(source, &key(names::QUEUE_ENQUEUED)),
            wait_histogram: handles::histogram(source, &key(names::QUEUE_WAIT_DURATION)),
            worker_gauges: [
                worker_gauge("busy"),
                worker_gauge("idle"),
                worker_gauge("stuck"),
            ],
            enqueued: AtomicU64::new(0),
            started: AtomicU64::new(0),
            wait: LatencySketch::default(),
            workers: Mutex::new(Vec::new()),
            overflow,
        }
    }

    fn depth(&self) -> f64 {
        f64::from_bits(self.depth_bits.load(Relaxed))
    }

    fn set_depth(&self, depth: f64) {
        self.depth_bits.store(depth.to_bits(), Relaxed);
        self.depth_gauge.set(depth);
    }

    fn count_depth(&self, delta: i64) {
        let depth = self.counted_depth.fetch_add(delta, Relaxed) + delta;
        if self.depth_mode.load(Relaxed) == DEPTH_COUNTED {
            self.set_depth(depth.max(0) as f64);
        }
    }

    /// Samples the depth closure and the workers' statuses into the gauges.
    fn sample(&self, now: u64) -> (WorkerCounts, Vec<String>) {
        if self.depth_mode.load(Relaxed) == DEPTH_SAMPLED {
            let depth_fn = read(&self.depth_fn).clone();
            if let Some(f) = depth_fn {
                // A panicking closure leaves the last depth in place.
                if let Ok(depth) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f())) {
                    self.set_depth(depth as f64);
                }
            }
        }
        let mut counts = WorkerCounts::default();
        let mut stuck = Vec::new();
        for worker in lock(&self.workers).iter() {
            match worker.status(now, self.stuck_after) {
                WorkerStatus::Busy => counts.busy += 1,
                WorkerStatus::Idle => counts.idle += 1,
                WorkerStatus::Stuck => {
                    counts.stuck += 1;
                    if stuck.len() < MAX_LISTED_STUCK {
                        stuck.push(worker.name.to_string());
                    }
                }
            }
        }
        for (gauge, n) in self
            .worker_gauges
            .iter()
            .zip([counts.busy, counts.idle, counts.stuck])
        {
            gauge.set(n as f64);
        }
        (counts, stuck)
    }

    fn entry(&self, now: u64, elapsed: f64) -> QueueEntry {
        let (workers, stuck_workers) = self.sample(now);
        let process = self.process.entry(elapsed);
        let mut wait = SketchData::default();
        self.wait.read_into(&mut wait);
        QueueEntry {
            system: self.system.to_string(),
            depth: self.depth(),
            enqueued: self.enqueued.load(Relaxed),
            started: self.started.load(Relaxed),
            finished: process.calls - process.cancelled,
            failed: process.errors,
            cancelled: process.cancelled,
            wait_ms: wait
                .summary(&[0.5, 0.95, 0.99])
                .map(|s| LatencyMs::from_summary(&s)),
            processing_ms: process.latency_ms,
            workers,
            stuck_workers,
        }
    }
}

/// The queues of an observer; attached when the first queue handle is made.
#[derive(Debug)]
pub(crate) struct QueuesPart {
    queues: Family<QueueState>,
    sampler: OnceLock<Background>,
    clock: Clock,
}

impl QueuesPart {
    fn new(limit: usize, clock: Clock) -> Self {
        Self {
            queues: Family::keeping(names::QUEUE_DEPTH, limit, 0b01),
            sampler: OnceLock::new(),
            clock,
        }
    }

    fn sample_all(&self, now: u64) {
        for (_, queue) in self.queues.entries() {
            queue.sample(now);
        }
    }
}

impl Part for QueuesPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        let now = self.now();
        snapshot.queues = self
            .queues
            .entries()
            .into_iter()
            .map(|(_, q)| (q.name.to_string(), q.entry(now, elapsed)))
            .collect();
    }

    fn reset(&self) {
        for (_, q) in self.queues.entries() {
            q.enqueued.store(0, Relaxed);
            q.started.store(0, Relaxed);
            q.wait.reset();
        }
    }

    /// Stuck workers make the service yellow.
    fn health(&self, _elapsed: f64, input: &mut HealthInput) {
        let now = self.now();
        for (_, q) in self.queues.entries() {
            let (counts, names) = q.sample(now);
            if counts.stuck > 0 {
                input.degraded.push((
                    Status::Yellow,
                    format!(
                        "queue {}: {} stuck worker(s): {}",
                        q.name,
                        counts.stuck,
                        names.join(", ")
                    ),
                ));
            }
        }
    }

    fn refresh(&self) {
        self.sample_all(self.now());
    }
}

impl QueuesPart {
    /// The observer's clock reading.
    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }
}

impl Observer {
    /// The handle of the queue `queue` (see [`operations`](crate::operations)). Its name
    /// passes the cardinality guard: past the observer's limit, new names record into
    /// `_OTHER`. Asking twice for the same queue gives the same figures (and the first
    /// handle's `stuck_after`).
    pub fn queue(&self, queue: Queue) -> QueueHandle {
        let part = self.part(|| QueuesPart::new(self.max_label_sets(), self.clock().clone()));
        let process = self.operation(Operation::process(&*queue.system, &*queue.name));
        let values = [&*queue.system, &*queue.name];
        let mut state = None;
        self.with_source(|source| {
            state = Some(part.queues.get(source, &values, |v, overflow| {
                QueueState::new(
                    source,
                    v,
                    overflow,
                    queue.stuck_after,
                    process.inner.series.clone(),
                )
            }));
        });
        let state = state.unwrap_or_else(|| {
            Arc::new(QueueState::new(
                &crate::observer::NoRecorder,
                &values,
                None,
                queue.stuck_after,
                process.inner.series.clone(),
            ))
        });
        part.sampler.get_or_init(|| {
            background::spawn(
                background::task!(
                    "operations",
                    "cannot start the queue sampler; queue depths and worker statuses are sampled at scrape time only"
                ),
                self,
                &part,
                SAMPLE_EVERY,
                |observer, part: &QueuesPart| part.sample_all(observer.now_nanos()),
            )
        });
        QueueHandle {
            observer: self.clone(),
            state,
            process,
        }
    }
}

/// A job put into a queue: when, so that its wait can be measured when it starts. Carry it
/// with the job (it is 8 bytes, `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    at: u64,
}

/// One queue: counts jobs in and out, measures their wait and processing, and keeps its
/// workers' statuses. Made by [`Observer::queue`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueHandle {
    observer: Observer,
    state: Arc<QueueState>,
    process: OperationHandle,
}

impl QueueHandle {
    /// The queue's name, as it appears in labels (`_OTHER` past the cardinality limit).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Records a job put into the queue; keep the returned value with the job.
    pub fn enqueued(&self) -> Enqueued {
        let s = &*self.state;
        self.observer.guarded(|| {
            s.enqueued_counter.increment(1);
            handles::count_overflow(&s.overflow);
            s.enqueued.fetch_add(1, Relaxed);
            s.count_depth(1);
        });
        Enqueued {
            at: self.observer.now_nanos(),
        }
    }

    /// Sets the depth (jobs waiting), for a queue whose length the application knows. From
    /// then on the depth is what was last set.
    pub fn set_depth(&self, depth: u64) {
        self.state.depth_mode.store(DEPTH_SET, Relaxed);
        self.state.set_depth(depth as f64);
    }

    /// Samples the depth from `depth` at every scrape, every `/v1/stats` and every 5 seconds
    /// (for a queue in Redis, a channel's `len()`, …). It must be quick and must not block.
    pub fn depth_from(&self, depth: impl Fn() -> u64 + Send + Sync + 'static) {
        *write(&self.state.depth_fn) = Some(Arc::new(depth));
        self.state.depth_mode.store(DEPTH_SAMPLED, Relaxed);
        self.state.sample(self.observer.now_nanos());
    }

    /// Starts processing a job (without worker tracking): records its wait and opens the
    /// processing call (`messaging.process.duration`).
    pub fn start(&self, job: Enqueued) -> JobGuard {
        self.start_job(job, None)
    }

    /// Processes a job with `future`: wait and processing time, ok / failed (the `Err`'s
    /// type) / cancelled (the future dropped).
    pub fn process<F, T, E>(&self, job: Enqueued, future: F) -> JobFuture<F, ResultClassifier>
    where
        F: Future<Output = Result<T, E>>,
    {
        JobFuture::new(future, self.start(job), ResultClassifier)
    }

    /// A worker taking jobs from this queue, called `name` (names come from the code: they
    /// are not labels, only listed when stuck). The worker counts while the handle lives.
    pub fn worker(&self, name: impl Into<String>) -> WorkerHandle {
        let state = Arc::new(WorkerState {
            name: name.into().into(),
            busy: AtomicBool::new(false),
            last_seen: AtomicU64::new(self.observer.now_nanos()),
            heartbeats: AtomicBool::new(false),
        });
        lock(&self.state.workers).push(state.clone());
        WorkerHandle {
            queue: self.clone(),
            state,
        }
    }

    fn start_job(&self, job: Enqueued, worker: Option<Arc<WorkerState>>) -> JobGuard {
        let now = self.observer.now_nanos();
        let s = &*self.state;
        let wait = now.saturating_sub(job.at);
        self.observer.guarded(|| {
            s.started.fetch_add(1, Relaxed);
            s.count_depth(-1);
            s.wait.record(wait);
            self.observer
                .record_duration(&s.wait_histogram, Duration::from_nanos(wait), now, None);
        });
        if let Some(worker) = &worker {
            worker.busy.store(true, Relaxed);
            worker.last_seen.store(now, Relaxed);
        }
        JobGuard {
            operation: Some(self.process.start()),
            worker,
            observer: self.observer.clone(),
        }
    }
}

/// A worker of a queue: busy while it processes a job, idle otherwise, stuck when busy (or,
/// once it sends heartbeats, silent) longer than the queue's threshold. Dropping the handle
/// (the worker ended) removes it.
#[derive(Debug)]
pub struct WorkerHandle {
    queue: QueueHandle,
    state: Arc<WorkerState>,
}

impl WorkerHandle {
    /// A sign of life: call it from long jobs, and from the worker's loop while it waits,
    /// to tell a slow job from a hung worker. After the first heartbeat, a worker silent
    /// longer than the threshold is stuck even when idle.
    pub fn heartbeat(&self) {
        self.state.heartbeats.store(true, Relaxed);
        self.state
            .last_seen
            .store(self.queue.observer.now_nanos(), Relaxed);
    }

    /// Starts processing a job on this worker (busy until the guard ends).
    pub fn start(&self, job: Enqueued) -> JobGuard {
        self.queue.start_job(job, Some(self.state.clone()))
    }

    /// Processes a job on this worker with `future`.
    pub fn process<F, T, E>(&self, job: Enqueued, future: F) -> JobFuture<F, ResultClassifier>
    where
        F: Future<Output = Result<T, E>>,
    {
        JobFuture::new(future, self.start(job), ResultClassifier)
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        lock(&self.queue.state.workers).retain(|w| !Arc::ptr_eq(w, &self.state));
    }
}

/// The processing of one job; records once: when finished, or, dropped unfinished, as
/// `cancelled`. Its worker (if any) is idle again when it ends.
#[derive(Debug)]
#[must_use = "a guard dropped at once records a cancelled job"]
pub struct JobGuard {
    operation: Option<OperationGuard>,
    worker: Option<Arc<WorkerState>>,
    observer: Observer,
}

impl JobGuard {
    /// The processing span, to enter around the work.
    pub fn span(&self) -> &tracing::Span {
        static NONE: tracing::Span = tracing::Span::none();
        // Always set until the guard ends.
        self.operation.as_ref().map_or(&NONE, |op| op.span())
    }

    /// Records the job as `outcome`.
    pub fn finish(mut self, outcome: OperationOutcome) {
        if let Some(op) = self.operation.take() {
            op.finish(outcome);
        }
    }

    /// Records the job as done.
    pub fn ok(self) {
        self.finish(OperationOutcome::Ok);
    }

    /// Records the job as failed, with `error_type` as its `error.type`.
    pub fn error(self, error_type: &'static str) {
        self.finish(OperationOutcome::Error(error_type));
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        // An unfinished operation guard records `cancelled` as it drops, after this.
        if let Some(worker) = &self.worker {
            worker.busy.store(false, Relaxed);
            worker.last_seen.store(self.observer.now_nanos(), Relaxed);
        }
    }
}

pin_project! {
    /// A job processed by a future; made by [`QueueHandle::process`] and
    /// [`WorkerHandle::process`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct JobFuture<F, C> {
        #[pin]
        inner: F,
        guard: Option<JobGuard>,
        classify: C,
    }
}

impl<F, C> JobFuture<F, C> {
    fn new(inner: F, guard: JobGuard, classify: C) -> Self {
        Self {
            inner,
            guard: Some(guard),
            classify,
        }
    }
}

impl<F, C> Future for JobFuture<F, C>
where
    F: Future,
    C: Classify<F::Output>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.guard.as_ref().map(|g| g.span().enter());
        let output = std::task::ready!(this.inner.poll(cx));
        drop(entered);
        if let Some(guard) = this.guard.take() {
            guard.finish(this.classify.classify(&output));
        }
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(busy: bool, last_seen: u64, heartbeats: bool) -> WorkerState {
        WorkerState {
            name: "w".into(),
            busy: AtomicBool::new(busy),
            last_seen: AtomicU64::new(last_seen),
            heartbeats: AtomicBool::new(heartbeats),
        }
    }

    #[test]
    fn worker_status_from_the_last_sign_of_life() {
        let after = 10;
        // Busy: stuck once silent longer than the threshold (not at it).
        assert_eq!(
            worker(true, 100, false).status(110, after),
            WorkerStatus::Busy
        );
        assert_eq!(
            worker(true, 100, false).status(111, after),
            WorkerStatus::Stuck
        );
        // Idle: waiting is normal, unless the worker promised heartbeats.
        assert_eq!(
            worker(false, 0, false).status(1_000, after),
            WorkerStatus::Idle
        );
        assert_eq!(
            worker(false, 0, true).status(1_000, after),
            WorkerStatus::Stuck
        );
        assert_eq!(
            worker(false, 995, true).status(1_000, after),
            WorkerStatus::Idle
        );
        // A reading from before the last sign of life (clock races) is not silence.
        assert_eq!(
            worker(true, 100, true).status(50, after),
            WorkerStatus::Busy
        );
    }

    #[test]
    fn a_panicking_depth_closure_keeps_the_last_depth() {
        let observer = Observer::new();
        let q = observer.queue(Queue::new("q"));
        q.set_depth(5);
        q.depth_from(|| panic!("depth source bug"));
        assert_eq!(observer.stats().queues["q"].depth, 5.0);
        assert!(observer.render_metrics().unwrap().contains(
            "queue_depth{messaging_system=\"in_process\",messaging_destination_name=\"q\"} 5"
        ));
    }

    #[test]
    fn the_same_queue_twice_shares_its_figures_and_workers_leave_when_dropped() {
        let observer = Observer::new();
        let a = observer.queue(Queue::new("jobs"));
        let b = observer.queue(Queue::new("jobs"));
        a.enqueued();
        b.enqueued();
        let w = a.worker("w1");
        let _w2 = b.worker("w2");
        assert_eq!(observer.stats().queues["jobs"].enqueued, 2);
        assert_eq!(observer.stats().queues["jobs"].depth, 2.0);
        assert_eq!(observer.stats().queues["jobs"].workers.idle, 2);
        drop(w);
        assert_eq!(observer.stats().queues["jobs"].workers.idle, 1);
        observer.reset_stats();
        let q = &observer.stats().queues["jobs"];
        assert_eq!((q.enqueued, q.started), (0, 0));
    }
}
