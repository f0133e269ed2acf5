#![doc = include_str!("../../docs/process.md")]

mod export;
mod runtime;
mod sample;

pub use crate::stats::{ProcessStats, RuntimeStats};

use crate::sync::lock;
use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use export::Export;
use runtime::RuntimeWatch;
use sample::{OsReading, Reading, Sampled, State};

use crate::observer::background::{self, Background};
use crate::observer::{HealthInput, Part, Pending, RecordSink};
use crate::stats::StatsSnapshot;
use crate::{Observer, ObserverBuilder};

/// How often the background sampler reads the figures.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The process metrics of one observer; see the [module docs](self). Cheap to clone.
///
/// Got from [`Observer::process_metrics`] once turned on with
/// [`ObserverBuilder::process_metrics`].
#[derive(Clone)]
pub struct ProcessHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("runtime", &self.shared.runtime.is_some())
            .field("sampler", &self.sampler_running())
            .finish_non_exhaustive()
    }
}

struct Shared {
    export: Export,
    runtime: Option<RuntimeWatch>,
    state: Mutex<State>,
    /// The background sampler; dropping (or taking) it stops the thread at once.
    sampler: Mutex<Option<Background>>,
}

impl Shared {
    /// Reads every figure now, publishes it, and returns what the latest sample holds.
    ///
    /// The reads (a few `/proc` files) happen before the lock is taken; the lock covers only
    /// the arithmetic and the atomic stores.
    fn sample(&self) -> Sampled {
        let reading = Reading {
            at: Instant::now(),
            os: OsReading::read(),
            runtime: self.runtime.as_ref().map(RuntimeWatch::read),
        };
        let mut state = lock(&self.state);
        match state.update(reading) {
            Some(sampled) => {
                self.export.publish(&sampled);
                sampled
            }
            // A newer sample was stored meanwhile: it stands.
            None => state.latest().cloned().unwrap_or_default(),
        }
    }

    fn latest(&self) -> Option<Sampled> {
        lock(&self.state).latest().cloned()
    }
}

impl ProcessHandle {
    /// Reads every figure now (updating the metrics) and returns them. Rates are those of the
    /// latest window of at least one second, so a sample taken sooner than that after the
    /// previous one reports the previous window's rates.
    pub fn sample(&self) -> ProcessStats {
        self.shared.sample().stats()
    }

    /// The figures of the latest sample (taken at build time, then by every scrape of
    /// `/metrics` and every [`SAMPLE_INTERVAL`] by the background sampler).
    pub fn stats(&self) -> ProcessStats {
        match self.shared.latest() {
            Some(sampled) => sampled.stats(),
            None => self.sample(),
        }
    }

    /// Stops the background sampler (it also stops by itself when the observer is
    /// dropped). The figures are then read only by scrapes of `/metrics` and by
    /// [`sample`](Self::sample).
    pub fn stop_sampler(&self) {
        let sampler = lock(&self.shared.sampler).take();
        drop(sampler);
    }

    /// Whether the background sampler is running (not stopped, and it could be started).
    pub fn sampler_running(&self) -> bool {
        lock(&self.shared.sampler)
            .as_ref()
            .is_some_and(Background::is_running)
    }
}

/// Starts the sampler thread (see [`background`]): it samples every `every` while the
/// observer lives, until [`ProcessHandle::stop_sampler`].
fn start_sampler(observer: &Observer, shared: &Arc<Shared>, every: Duration) {
    let sampler = background::spawn(
        background::task!(
            "process",
            "cannot start the process metrics sampler; figures are read only at scrape time"
        ),
        observer,
        shared,
        every,
        |_, shared| {
            shared.sample();
        },
    );
    *lock(&shared.sampler) = Some(sampler);
}

/// Process metrics configured on the builder; started when the observer is built.
#[derive(Debug, Default)]
struct ProcessPending {
    enabled: bool,
    runtime: Option<tokio::runtime::Handle>,
    /// Time between two samples of the background sampler ([`SAMPLE_INTERVAL`] unless a
    /// test shortens it).
    interval: Option<Duration>,
}

impl Pending for ProcessPending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        if !self.enabled {
            return None;
        }
        let runtime = self
            .runtime
            .or_else(|| tokio::runtime::Handle::try_current().ok())
            .map(|handle| RuntimeWatch::new(&handle));
        let first = Reading {
            at: Instant::now(),
            os: OsReading::read(),
            runtime: runtime.as_ref().map(RuntimeWatch::read),
        };
        let mut state = State::default();
        let sampled = state.update(first);
        let export = match (observer.registry(), &sampled) {
            (Some(registry), _) => Some(Export::lazy(registry.clone())),
            (None, Some(sampled)) => {
                let mut export = None;
                observer.with_source(|source| export = Some(Export::eager(source, sampled)));
                export
            }
            (None, None) => None,
        };
        // A recorder that panicked while registering: the figures stay in `/v1/stats` only.
        let export = export.unwrap_or_else(Export::none);
        if let Some(sampled) = &sampled {
            export.publish(sampled);
        }
        let shared = Arc::new(Shared {
            export,
            runtime,
            state: Mutex::new(state),
            sampler: Mutex::new(None),
        });
        start_sampler(observer, &shared, self.interval.unwrap_or(SAMPLE_INTERVAL));
        let part = ProcessHandle { shared };
        observer.part(move || part);
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Part for ProcessHandle {
    fn stats(&self, snapshot: &mut StatsSnapshot, _elapsed: f64) {
        // The latest sample (at most one interval old): `/v1/stats` does not read `/proc`.
        snapshot.process = Some(ProcessHandle::stats(self));
    }

    fn health(&self, _elapsed: f64, input: &mut HealthInput) {
        let stats = ProcessHandle::stats(self);
        input.sections.insert(
            "process",
            serde_json::json!({
                "cpu_utilization": stats.cpu_utilization,
                "cpu_cores_used": stats.cpu_cores_used,
                "available_cores": stats.available_cores,
                "resident_memory_bytes": stats.resident_memory_bytes,
            }),
        );
    }

    fn refresh(&self) {
        self.shared.sample();
    }
}

impl ObserverBuilder {
    /// Exports the process's CPU, memory, file descriptors and threads (the Prometheus
    /// `process_*` family), its CPU utilization against the CPUs available to it, and the
    /// stable figures of a tokio runtime: the one given with
    /// [`tokio_runtime`](Self::tokio_runtime), else the runtime the observer is built in, if
    /// any (feature `process`; see [`crate::process`]).
    ///
    /// The figures are read when `/metrics` is scraped and every [`SAMPLE_INTERVAL`] by one
    /// background thread, and are in `/v1/stats` (`process`) and `/health`.
    ///
    /// ```
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::builder().process_metrics().build().unwrap();
    /// let text = observer.render_metrics().unwrap();
    /// # #[cfg(target_os = "linux")]
    /// assert!(text.contains("\nprocess_resident_memory_bytes "));
    ///
    /// let process = observer.process_metrics().unwrap().sample();
    /// assert!(process.available_cores >= Some(1));
    /// ```
    pub fn process_metrics(mut self) -> Self {
        self.pending::<ProcessPending>().enabled = true;
        self
    }

    /// The tokio runtime whose figures are exported (`tokio_*`); turns the process metrics
    /// on. Without it, the runtime the observer is built in is watched, if there is one.
    ///
    /// ```
    /// let runtime = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .build()
    ///     .unwrap();
    /// let observer = tower_observe::Observer::builder()
    ///     .tokio_runtime(runtime.handle().clone())
    ///     .build()
    ///     .unwrap();
    /// let stats = observer.process_metrics().unwrap().stats();
    /// assert_eq!(stats.runtime.unwrap().workers, 2);
    /// ```
    pub fn tokio_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        let pending = self.pending::<ProcessPending>();
        pending.enabled = true;
        pending.runtime = Some(handle);
        self
    }
}

#[cfg(test)]
impl ObserverBuilder {
    /// Process metrics sampled in the background every `every` instead of
    /// [`SAMPLE_INTERVAL`].
    pub(crate) fn process_sample_interval(mut self, every: Duration) -> Self {
        let pending = self.pending::<ProcessPending>();
        pending.enabled = true;
        pending.interval = Some(every);
        self
    }
}

impl Observer {
    /// The process metrics, when turned on with [`ObserverBuilder::process_metrics`].
    pub fn process_metrics(&self) -> Option<ProcessHandle> {
        self.attached::<ProcessHandle>()
            .map(|p| ProcessHandle::clone(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::background::wait_for;

    #[test]
    fn off_unless_asked_for() {
        let observer = Observer::new();
        assert!(observer.process_metrics().is_none());
        assert!(observer.stats().process.is_none());
        let json = serde_json::to_value(observer.stats()).unwrap();
        assert!(json.get("process").is_none());
    }

    #[test]
    fn stats_health_and_sampler() {
        let observer = Observer::builder().process_metrics().build().unwrap();
        let process = observer.process_metrics().unwrap();
        assert!(process.sampler_running());
        let stats = observer.stats().process.unwrap();
        assert!(stats.available_cores >= Some(1));
        // Built outside a runtime: none is watched.
        assert!(stats.runtime.is_none());
        let input = observer.health_input();
        let section = &input.sections["process"];
        assert!(section.get("cpu_utilization").is_some());
        assert!(section.get("resident_memory_bytes").is_some());

        // The sampler holds only a weak reference: dropping every strong one ends it (once
        // a tick in progress, which holds one for its duration, is over).
        let weak = Arc::downgrade(&process.shared);
        process.stop_sampler();
        assert!(!process.sampler_running());
        drop((observer, process));
        wait_for("the last reference to go", || weak.upgrade().is_none());
    }

    #[test]
    fn the_sampler_thread_ends_with_the_observer() {
        let observer = Observer::builder().process_metrics().build().unwrap();
        let weak = Arc::downgrade(&observer.process_metrics().unwrap().shared);
        drop(observer);
        wait_for("only the observer held it", || weak.upgrade().is_none());
    }

    #[test]
    fn the_sampler_survives_a_panicking_sample() {
        let observer = Observer::builder()
            .process_sample_interval(Duration::from_millis(20))
            .build()
            .unwrap();
        let process = observer.process_metrics().unwrap();
        let sampler = || lock(&process.shared.sampler);
        let latest_at = || lock(&process.shared.state).latest_at();
        assert!(process.sampler_running());
        sampler().as_ref().unwrap().panic_next_tick();
        wait_for("the panic", || {
            sampler().as_ref().is_some_and(|s| s.panics() == 1)
        });
        // Still sampling: the latest sample is renewed, by the sampler alone.
        let before = latest_at();
        wait_for("a sample after the panic", || latest_at() > before);
        assert!(process.sampler_running());
        assert_eq!(
            crate::observer::background::panics_on_metrics(&observer, "process"),
            Some(1.0)
        );
    }

    #[test]
    fn a_foreign_recorder_gets_the_figures_read_at_build_time() {
        let registry = crate::registry::Registry::new();
        let observer = Observer::builder()
            .recorder(registry.clone())
            .process_metrics()
            .build()
            .unwrap();
        observer.process_metrics().unwrap().sample();
        let text = registry.render();
        assert!(
            text.contains("# TYPE process_cpu_utilization_ratio gauge"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        {
            // Through the facade, CPU seconds are a u64 counter in whole seconds.
            assert!(
                text.contains("# TYPE process_cpu_seconds_total counter"),
                "{text}"
            );
            assert!(text.contains("\nprocess_open_fds "), "{text}");
        }
    }
}
