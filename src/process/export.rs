//! Where the figures go: the observer's recorder.
//!
//! With the built-in [`Registry`](crate::registry::Registry) a metric is registered when its
//! figure is first read, so a figure that was never read is never on `/metrics` (not a
//! placeholder 0). The two CPU-time totals are float counters there, rendered
//! `# TYPE … counter` with their fractional seconds.
//!
//! With any other recorder (the `metrics` facade) handles can only be registered while the
//! observer is being built: the figures read then are registered, with the two ratios, which
//! read `NaN` until their first window closes (Prometheus' "no value"); the CPU-time totals
//! are facade counters set with `Counter::absolute` in whole seconds (the facade's counters
//! are integers; `metrics-process` does the same), so `rate()` over them is exact to a
//! second per window.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Key};

use super::sample::Sampled;
use crate::names;
use crate::observer::handles::{self, GaugeHandle};
use crate::observer::{RecorderBackend, RecorderSource};
use crate::registry::AtomicGauge;

/// The gauges, in [`GAUGES`] order.
#[derive(Debug, Clone, Copy)]
enum GaugeId {
    ResidentMemory,
    VirtualMemory,
    VirtualMemoryMax,
    OpenFds,
    MaxFds,
    StartTime,
    Threads,
    AvailableCores,
    CpuUtilization,
    TokioWorkers,
    TokioAliveTasks,
    TokioGlobalQueueDepth,
    TokioBusyRatio,
}

const GAUGES: [&str; 13] = [
    names::PROCESS_RESIDENT_MEMORY,
    names::PROCESS_VIRTUAL_MEMORY,
    names::PROCESS_VIRTUAL_MEMORY_MAX,
    names::PROCESS_OPEN_FDS,
    names::PROCESS_MAX_FDS,
    names::PROCESS_START_TIME,
    names::PROCESS_THREADS,
    names::PROCESS_CPU_AVAILABLE_CORES,
    names::PROCESS_CPU_UTILIZATION,
    names::TOKIO_WORKERS,
    names::TOKIO_ALIVE_TASKS,
    names::TOKIO_GLOBAL_QUEUE_DEPTH,
    names::TOKIO_BUSY_RATIO,
];

/// The float counters, in [`COUNTERS`] order.
#[derive(Debug, Clone, Copy)]
enum C {
    CpuSeconds,
    TokioBusySeconds,
}

const COUNTERS: [&str; 2] = [names::PROCESS_CPU_SECONDS, names::TOKIO_BUSY_DURATION];

/// A counter of float seconds.
#[derive(Debug)]
enum FloatCounter {
    /// The built-in registry's float counter cell.
    Builtin(Arc<AtomicGauge>),
    /// A facade counter, in whole units.
    Facade(Counter),
}

/// The process metrics' handles.
pub(crate) struct Export {
    /// The built-in registry, to register on first value; `None` with another recorder,
    /// whose handles were registered at build time.
    lazy: Option<RecorderBackend>,
    gauges: [OnceLock<GaugeHandle>; GAUGES.len()],
    counters: [OnceLock<FloatCounter>; COUNTERS.len()],
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("builtin", &self.lazy.is_some())
            .finish_non_exhaustive()
    }
}

impl Export {
    /// Handles registered in `registry` as figures are first read.
    pub(crate) fn lazy(registry: crate::registry::Registry) -> Self {
        Self {
            lazy: Some(RecorderBackend::Registry(registry)),
            ..Self::none()
        }
    }

    /// No handles: the figures go nowhere but `/v1/stats`.
    pub(crate) fn none() -> Self {
        Self {
            lazy: None,
            gauges: Default::default(),
            counters: Default::default(),
        }
    }

    /// Handles registered now, through `source`, for the figures of `first` (and the ratios
    /// that will follow from them).
    pub(crate) fn eager(source: &dyn RecorderSource, first: &Sampled) -> Self {
        let export = Self::none();
        let os = &first.os;
        let mut present = vec![
            (GaugeId::ResidentMemory, os.resident_memory_bytes.is_some()),
            (GaugeId::VirtualMemory, os.virtual_memory_bytes.is_some()),
            (
                GaugeId::VirtualMemoryMax,
                os.virtual_memory_max_bytes.is_some(),
            ),
            (GaugeId::OpenFds, os.open_fds.is_some()),
            (GaugeId::MaxFds, os.max_fds.is_some()),
            (GaugeId::StartTime, os.start_time_seconds.is_some()),
            (GaugeId::Threads, os.threads.is_some()),
            (GaugeId::AvailableCores, os.available_cores.is_some()),
            (
                GaugeId::CpuUtilization,
                os.cpu_seconds.is_some() && os.available_cores.is_some(),
            ),
        ];
        if first.runtime.is_some() {
            present.extend([
                (GaugeId::TokioWorkers, true),
                (GaugeId::TokioAliveTasks, true),
                (GaugeId::TokioGlobalQueueDepth, true),
                (GaugeId::TokioBusyRatio, first.busy_seconds.is_some()),
            ]);
        }
        for (g, read) in present {
            if read {
                let handle = handles::gauge(source, &Key::from_name(GAUGES[g as usize]));
                set_gauge(&handle, f64::NAN);
                let _ = export.gauges[g as usize].set(handle);
            }
        }
        for (c, read) in [
            (C::CpuSeconds, os.cpu_seconds.is_some()),
            (C::TokioBusySeconds, first.busy_seconds.is_some()),
        ] {
            if read {
                let counter = handles::counter(source, &Key::from_name(COUNTERS[c as usize]));
                let _ = export.counters[c as usize].set(FloatCounter::Facade(counter));
            }
        }
        export
    }

    /// Sets every figure of `sampled` (a figure that was not read is left as it was).
    pub(crate) fn publish(&self, sampled: &Sampled) {
        let os = &sampled.os;
        let gauges = [
            (
                GaugeId::ResidentMemory,
                os.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                GaugeId::VirtualMemory,
                os.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                GaugeId::VirtualMemoryMax,
                os.virtual_memory_max_bytes.map(|v| v as f64),
            ),
            (GaugeId::OpenFds, os.open_fds.map(|v| v as f64)),
            (GaugeId::MaxFds, os.max_fds.map(|v| v as f64)),
            (GaugeId::StartTime, os.start_time_seconds.map(|v| v as f64)),
            (GaugeId::Threads, os.threads.map(|v| v as f64)),
            (
                GaugeId::AvailableCores,
                os.available_cores.map(|v| v as f64),
            ),
            (GaugeId::CpuUtilization, sampled.cpu_utilization),
            (
                GaugeId::TokioWorkers,
                sampled.runtime.map(|r| r.workers as f64),
            ),
            (
                GaugeId::TokioAliveTasks,
                sampled.runtime.map(|r| r.alive_tasks as f64),
            ),
            (
                GaugeId::TokioGlobalQueueDepth,
                sampled.runtime.map(|r| r.global_queue_depth as f64),
            ),
            (GaugeId::TokioBusyRatio, sampled.busy_ratio),
        ];
        for (g, value) in gauges {
            // Registered (with the built-in registry) only once there is a value.
            if let Some(value) = value {
                if let Some(handle) = self.gauge(g) {
                    set_gauge(handle, value);
                }
            }
        }
        for (c, value) in [
            (C::CpuSeconds, os.cpu_seconds),
            (C::TokioBusySeconds, sampled.busy_seconds),
        ] {
            let Some(value) = value else { continue };
            if let Some(counter) = self.counter(c) {
                match counter {
                    FloatCounter::Builtin(cell) => cell.fetch_max(value),
                    // Whole seconds, rounded down: the total never runs ahead of the truth.
                    FloatCounter::Facade(counter) => counter.absolute(value as u64),
                }
            }
        }
    }

    fn gauge(&self, g: GaugeId) -> Option<&GaugeHandle> {
        let slot = &self.gauges[g as usize];
        if let Some(handle) = slot.get() {
            return Some(handle);
        }
        let source = self.lazy.as_ref()?;
        Some(slot.get_or_init(|| handles::gauge(source, &Key::from_name(GAUGES[g as usize]))))
    }

    fn counter(&self, c: C) -> Option<&FloatCounter> {
        let slot = &self.counters[c as usize];
        if let Some(counter) = slot.get() {
            return Some(counter);
        }
        let registry = self.lazy.as_ref()?.registry()?;
        let name = COUNTERS[c as usize];
        let cell = registry.float_counter_storage(&Key::from_name(name))?;
        if let Some(spec) = names::spec_of(name) {
            metrics::Recorder::describe_counter(
                registry,
                spec.name.into(),
                spec.unit,
                spec.help.into(),
            );
        }
        Some(slot.get_or_init(|| FloatCounter::Builtin(cell)))
    }
}

fn set_gauge(handle: &GaugeHandle, value: f64) {
    match handle {
        GaugeHandle::Builtin(g) => metrics::GaugeFn::set(&**g, value),
        GaugeHandle::Facade(g) => g.set(value),
    }
}
