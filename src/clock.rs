//! Where the layers read the time: the system clock, or a manual one for tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
            Some(m) => f.debug_tuple("Clock::Manual").field(&m.elapsed()).finish(),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The current instant.
    #[inline]
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.now(),
        }
    }

    /// The current wall-clock time.
    pub fn wall(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.shared.wall_base + m.elapsed(),
        }
    }
}

#[derive(Debug)]
struct ManualShared {
    base: Instant,
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
/// let observer = Observer::builder().clock(clock.clone()).build();
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
                base: Instant::now(),
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

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.shared.offset_nanos.load(Relaxed))
    }

    fn now(&self) -> Instant {
        self.shared.base + self.elapsed()
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Self {
            manual: Some(manual),
        }
    }
}
