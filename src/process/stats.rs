//! The `process` section of `/v1/stats` (also [`ProcessMetrics::stats`](super::ProcessMetrics::stats)).

use serde::Serialize;

/// The process's CPU, memory, file descriptors and threads, and the watched tokio runtime, as
/// of the latest sample (at most one sample interval old). A figure that could not be read
/// is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// CPUs in use: CPU seconds per wall second over the latest window of at least one
    /// second (Prometheus' `rate(process_cpu_seconds_total[…])`); `null` until a window has
    /// closed.
    pub cpu_cores_used: Option<f64>,
    /// `cpu_cores_used / available_cores`, 0 to 1 (OpenTelemetry's `process.cpu.utilization`);
    /// `null` until a window has closed.
    pub cpu_utilization: Option<f64>,
    /// CPUs available to the process: `std::thread::available_parallelism` (affinity and a
    /// cgroup CPU quota applied).
    pub available_cores: Option<u64>,
    /// CPU time, user and system, since the process started, in seconds.
    pub cpu_seconds_total: Option<f64>,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors; `null` when unlimited.
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// When the process started (RFC 3339, UTC; whole seconds).
    pub start_time: Option<String>,
    /// The watched tokio runtime; `null` when none is watched.
    pub runtime: Option<RuntimeStats>,
}

/// The stable figures of a tokio runtime (no `--cfg tokio_unstable` needed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Worker threads (1 for a current-thread runtime).
    pub workers: u64,
    /// Tasks spawned and not yet finished.
    pub alive_tasks: u64,
    /// Tasks waiting in the global (injection) queue.
    pub global_queue_depth: u64,
    /// Busy time over wall time × workers over the latest window of at least one second, 0
    /// to 1; `null` until a window has closed (or where tokio does not measure busy time:
    /// targets without 64-bit atomics).
    pub busy_ratio: Option<f64>,
}
