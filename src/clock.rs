//! Where the layers read the time: the system clock, or a manual one for tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The time source of an [`Observer`](crate::Observer).
///
/// The system clock is the default. A [`ManualClock`] makes durations exact in tests: a
/// handler that advances it by 30 ms produces a recorded latency of exactly 30 ms.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<ManualClock>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(m) => f
                .debug_tuple("Clock::Manual")
                .field(&Duration::from_nanos(m.elapsed_nanos()))
                .finish(),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// Monotonic nanoseconds since an arbitrary, process-wide origin.
    ///
    /// The system clock reads the CPU's invariant TSC through `quanta` (about 10 ns here,
    /// against 30–50 ns for `std::time::Instant::now` on a virtual machine), falling back to
    /// the OS monotonic clock where the TSC cannot be trusted.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.manual {
            None => system_nanos(),
            Some(m) => m.elapsed_nanos(),
        }
    }

    /// Whether this is the system clock (its readings are `system_nanos` readings).
    pub(crate) fn is_system(&self) -> bool {
        self.manual.is_none()
    }

    /// Calibrates the TSC clock now (under a millisecond, once per process) rather than on
    /// the first request.
    pub(crate) fn warm_up(&self) {
        let _ = system_nanos();
    }

    /// The current wall-clock time.
    pub fn wall(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.shared.wall_base + Duration::from_nanos(m.elapsed_nanos()),
        }
    }
}

/// Nanoseconds since the process-wide origin, from the TSC clock.
#[inline]
pub(crate) fn system_nanos() -> u64 {
    static ORIGIN: OnceLock<quanta::Instant> = OnceLock::new();
    let now = quanta::Instant::now();
    let origin = *ORIGIN.get_or_init(|| now);
    u64::try_from(now.duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct ManualShared {
    wall_base: SystemTime,
    offset_nanos: AtomicU64,
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tower_observe::{clock::ManualClock, Observer};
///
/// let clock = ManualClock::new();
/// let observer = Observer::builder().clock(clock.clone()).build().unwrap();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(observer.stats().uptime_seconds, 90.0);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    shared: Arc<ManualShared>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current time.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(ManualShared {
                wall_base: SystemTime::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.shared.offset_nanos.fetch_add(nanos, Relaxed);
    }

    fn elapsed_nanos(&self) -> u64 {
        self.shared.offset_nanos.load(Relaxed)
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Self {
            manual: Some(manual),
        }
    }
}
