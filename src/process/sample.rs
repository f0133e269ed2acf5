//! Reading the process's figures, and turning successive readings into rates.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::runtime::RuntimeReading;
use crate::stats::{ProcessStats, RuntimeStats};

/// The shortest window a rate is computed over. The kernel counts CPU time in clock ticks
/// (10 ms on most Linux systems), so a shorter window would be mostly rounding; a sample
/// that comes sooner (a scrape right after the background sample) reports the previous
/// window's rates.
pub(crate) const MIN_WINDOW: Duration = Duration::from_secs(1);

/// One reading of the operating system's figures; `None` where a read failed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct OsReading {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_memory_bytes: Option<u64>,
    pub(crate) virtual_memory_bytes: Option<u64>,
    /// `None` when unlimited.
    pub(crate) virtual_memory_max_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    /// `None` when unlimited.
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<u64>,
    pub(crate) threads: Option<u64>,
    pub(crate) available_cores: Option<u64>,
}

impl OsReading {
    /// Reads the running process's figures now: `metrics_process::collector::collect` (procfs
    /// on Linux), and `std::thread::available_parallelism`. Never panics; a figure that
    /// cannot be read is `None`.
    pub(crate) fn read() -> Self {
        let m =
            catch_unwind(AssertUnwindSafe(metrics_process::collector::collect)).unwrap_or_default();
        // metrics-process reports an unlimited limit as 0: no limit is no figure.
        let limited = |v: Option<u64>| v.filter(|v| *v > 0);
        OsReading {
            cpu_seconds: m.cpu_seconds_total.filter(|v| v.is_finite() && *v >= 0.0),
            resident_memory_bytes: m.resident_memory_bytes,
            virtual_memory_bytes: m.virtual_memory_bytes,
            virtual_memory_max_bytes: limited(m.virtual_memory_max_bytes),
            open_fds: m.open_fds,
            max_fds: limited(m.max_fds),
            start_time_seconds: m.start_time_seconds.filter(|v| *v > 0),
            threads: m.threads,
            available_cores: std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u64),
        }
    }
}

/// One sample: the OS figures and the runtime's, read at `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) at: Instant,
    pub(crate) os: OsReading,
    pub(crate) runtime: Option<RuntimeReading>,
}

/// A counter's value at the start of the current window.
#[derive(Debug, Clone, Copy)]
struct Base {
    at: Instant,
    value: f64,
}

/// Rates over the latest window of at least [`MIN_WINDOW`], from a counter read at successive
/// samples.
#[derive(Debug, Default)]
struct Window {
    base: Option<Base>,
    /// Counter units per second over the latest closed window.
    rate: Option<f64>,
}

impl Window {
    /// Takes the counter's value `value` read at `at`; returns the rate of the latest closed
    /// window.
    fn update(&mut self, at: Instant, value: Option<f64>) -> Option<f64> {
        let Some(value) = value else {
            return self.rate;
        };
        match self.base {
            Some(base) if at.saturating_duration_since(base.at) >= MIN_WINDOW => {
                let seconds = at.saturating_duration_since(base.at).as_secs_f64();
                // A counter never goes back; if it did (another source), start over.
                if value >= base.value {
                    self.rate = Some((value - base.value) / seconds);
                }
                self.base = Some(Base { at, value });
            }
            Some(_) => {}
            None => self.base = Some(Base { at, value }),
        }
        self.rate
    }
}

/// What successive samples accumulate; updated under the sampler's lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    latest_at: Option<Instant>,
    cpu: Window,
    busy: Window,
    latest: Option<Sampled>,
}

/// The figures of the latest sample, as exported.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sampled {
    pub(crate) os: OsReading,
    pub(crate) cpu_cores_used: Option<f64>,
    pub(crate) cpu_utilization: Option<f64>,
    pub(crate) runtime: Option<RuntimeReading>,
    /// Busy seconds summed over workers, since the runtime started.
    pub(crate) busy_seconds: Option<f64>,
    pub(crate) busy_ratio: Option<f64>,
}

impl State {
    /// Takes a reading; returns the figures to export, or `None` when the reading is older
    /// than one already taken (two samplers raced; the newer one stands).
    pub(crate) fn update(&mut self, reading: Reading) -> Option<Sampled> {
        if self.latest_at.is_some_and(|latest| reading.at < latest) {
            return None;
        }
        self.latest_at = Some(reading.at);
        let os = reading.os;
        let cpu_cores_used = self.cpu.update(reading.at, os.cpu_seconds);
        let cpu_utilization = match (cpu_cores_used, os.available_cores) {
            (Some(used), Some(cores)) if cores > 0 => Some((used / cores as f64).clamp(0.0, 1.0)),
            _ => None,
        };
        let busy_seconds = reading
            .runtime
            .and_then(|r| r.busy)
            .map(|d| d.as_secs_f64());
        let busy_rate = self.busy.update(reading.at, busy_seconds);
        let busy_ratio = match (busy_rate, reading.runtime) {
            (Some(rate), Some(r)) if r.workers > 0 => {
                Some((rate / r.workers as f64).clamp(0.0, 1.0))
            }
            _ => None,
        };
        let sampled = Sampled {
            os,
            cpu_cores_used,
            cpu_utilization,
            runtime: reading.runtime,
            busy_seconds,
            busy_ratio,
        };
        self.latest = Some(sampled.clone());
        Some(sampled)
    }

    /// The figures of the latest sample.
    pub(crate) fn latest(&self) -> Option<&Sampled> {
        self.latest.as_ref()
    }

    /// When the latest sample was read.
    #[cfg(test)]
    pub(crate) fn latest_at(&self) -> Option<Instant> {
        self.latest_at
    }
}

impl Sampled {
    /// The `/v1/stats` section.
    pub(crate) fn stats(&self) -> ProcessStats {
        let os = &self.os;
        ProcessStats {
            cpu_cores_used: self.cpu_cores_used,
            cpu_utilization: self.cpu_utilization,
            available_cores: os.available_cores,
            cpu_seconds_total: os.cpu_seconds,
            resident_memory_bytes: os.resident_memory_bytes,
            virtual_memory_bytes: os.virtual_memory_bytes,
            open_fds: os.open_fds,
            max_fds: os.max_fds,
            threads: os.threads,
            start_time: os.start_time_seconds.and_then(|s| {
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(s))
                    .map(|t: SystemTime| crate::time_fmt::rfc3339(t))
            }),
            runtime: self.runtime.map(|r| RuntimeStats {
                workers: r.workers as u64,
                alive_tasks: r.alive_tasks as u64,
                global_queue_depth: r.global_queue_depth as u64,
                busy_ratio: self.busy_ratio,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: Instant, cpu: Option<f64>, cores: u64) -> Reading {
        Reading {
            at,
            os: OsReading {
                cpu_seconds: cpu,
                available_cores: Some(cores),
                ..OsReading::default()
            },
            runtime: None,
        }
    }

    #[test]
    fn utilization_is_cpu_time_over_wall_time_and_cores() {
        let t0 = Instant::now();
        let mut state = State::default();
        let first = state.update(reading(t0, Some(10.0), 4)).unwrap();
        assert_eq!((first.cpu_cores_used, first.cpu_utilization), (None, None));
        // 3 CPU seconds in 2 wall seconds on 4 cores: 1.5 cores, 37.5 %.
        let t2 = t0 + Duration::from_secs(2);
        let s = state.update(reading(t2, Some(13.0), 4)).unwrap();
        assert_eq!(s.cpu_cores_used, Some(1.5));
        assert_eq!(s.cpu_utilization, Some(0.375));
        // A sample within a second of the window's start keeps the previous window's rates.
        let s = state
            .update(reading(t2 + Duration::from_millis(100), Some(13.05), 4))
            .unwrap();
        assert_eq!(s.cpu_cores_used, Some(1.5));
        // The next window starts at t2.
        let s = state
            .update(reading(t2 + Duration::from_secs(1), Some(13.25), 4))
            .unwrap();
        assert_eq!(s.cpu_cores_used, Some(0.25));
        assert_eq!(s.cpu_utilization, Some(0.0625));
    }

    #[test]
    fn utilization_is_clamped_and_failed_reads_are_left_out() {
        let t0 = Instant::now();
        let mut state = State::default();
        state.update(reading(t0, Some(0.0), 1));
        let s = state
            .update(reading(t0 + Duration::from_secs(1), Some(2.0), 1))
            .unwrap();
        assert_eq!(
            (s.cpu_cores_used, s.cpu_utilization),
            (Some(2.0), Some(1.0))
        );
        // A failed CPU read: no new window, the figure itself is absent.
        let s = state
            .update(reading(t0 + Duration::from_secs(3), None, 1))
            .unwrap();
        assert_eq!(s.os.cpu_seconds, None);
        assert_eq!(s.stats().cpu_seconds_total, None);
        // Without a CPU count there is no utilization, only cores used.
        let mut r = reading(t0 + Duration::from_secs(5), Some(4.0), 1);
        r.os.available_cores = None;
        let s = state.update(r).unwrap();
        assert_eq!((s.cpu_cores_used, s.cpu_utilization), (Some(0.5), None));
    }

    #[test]
    fn an_older_reading_than_the_latest_is_dropped() {
        let t0 = Instant::now();
        let mut state = State::default();
        state.update(reading(t0 + Duration::from_secs(1), Some(1.0), 1));
        assert!(state.update(reading(t0, Some(0.5), 1)).is_none());
        assert_eq!(state.latest().unwrap().os.cpu_seconds, Some(1.0));
    }

    #[test]
    fn busy_ratio_is_busy_time_over_wall_time_and_workers() {
        let t0 = Instant::now();
        let mut state = State::default();
        let rt = |busy_ms: u64| RuntimeReading {
            workers: 2,
            alive_tasks: 5,
            global_queue_depth: 1,
            busy: Some(Duration::from_millis(busy_ms)),
        };
        let mut r = reading(t0, Some(0.0), 2);
        r.runtime = Some(rt(1000));
        state.update(r);
        let mut r = reading(t0 + Duration::from_secs(2), Some(1.0), 2);
        r.runtime = Some(rt(2000));
        let s = state.update(r).unwrap();
        // 1 busy second in 2 wall seconds over 2 workers.
        assert_eq!(s.busy_ratio, Some(0.25));
        assert_eq!(s.busy_seconds, Some(2.0));
        let stats = s.stats();
        let runtime = stats.runtime.unwrap();
        assert_eq!((runtime.workers, runtime.alive_tasks), (2, 5));
        assert_eq!(runtime.busy_ratio, Some(0.25));
    }

    #[test]
    fn reads_this_process() {
        let os = OsReading::read();
        assert!(os.available_cores.is_some_and(|n| n >= 1));
        #[cfg(target_os = "linux")]
        {
            assert!(os.cpu_seconds.is_some());
            assert!(os.resident_memory_bytes.is_some_and(|b| b > 1 << 20));
            assert!(os.open_fds.is_some_and(|n| n >= 3));
            assert!(os.threads.is_some_and(|n| n >= 1));
            assert!(os.start_time_seconds.is_some());
        }
    }
}
