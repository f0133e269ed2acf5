//! The stable figures of a tokio runtime.
//!
//! Since tokio 1.39 these need no `--cfg tokio_unstable`: `num_workers`, `num_alive_tasks`,
//! `global_queue_depth` and, on targets with 64-bit atomics, `worker_total_busy_duration`.
//! Every read is an atomic load; none can fail.

use std::time::Duration;

use tokio::runtime::{Handle, RuntimeMetrics};

/// The runtime being watched.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeWatch {
    metrics: RuntimeMetrics,
}

/// One reading of a runtime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RuntimeReading {
    pub(crate) workers: usize,
    pub(crate) alive_tasks: usize,
    pub(crate) global_queue_depth: usize,
    /// Busy time summed over the workers since the runtime started (`None` where tokio does
    /// not measure it).
    pub(crate) busy: Option<Duration>,
}

impl RuntimeWatch {
    pub(crate) fn new(handle: &Handle) -> Self {
        Self {
            metrics: handle.metrics(),
        }
    }

    pub(crate) fn read(&self) -> RuntimeReading {
        let workers = self.metrics.num_workers();
        RuntimeReading {
            workers,
            alive_tasks: self.metrics.num_alive_tasks(),
            global_queue_depth: self.metrics.global_queue_depth(),
            busy: busy(&self.metrics, workers),
        }
    }
}

#[cfg(target_has_atomic = "64")]
fn busy(metrics: &RuntimeMetrics, workers: usize) -> Option<Duration> {
    // Indices below `num_workers()` are valid for the runtime's whole life.
    Some(
        (0..workers)
            .map(|worker| metrics.worker_total_busy_duration(worker))
            .fold(Duration::ZERO, Duration::saturating_add),
    )
}

#[cfg(not(target_has_atomic = "64"))]
fn busy(_: &RuntimeMetrics, _: usize) -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_multi_thread_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .build()
            .unwrap();
        let watch = RuntimeWatch::new(rt.handle());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let task = rt.spawn(async move {
            // Parked on a std channel: alive until the test lets it go.
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        });
        let reading = watch.read();
        assert_eq!(reading.workers, 3);
        assert!(reading.alive_tasks >= 1, "{reading:?}");
        #[cfg(target_has_atomic = "64")]
        assert!(reading.busy.is_some());
        let _ = tx.send(());
        rt.block_on(task).unwrap();
    }
}
