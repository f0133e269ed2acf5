//! Where the layers read the time: the system clock, or a manual one for tests.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
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
        self.wall_at(self.now_nanos())
    }

    /// The wall-clock time of a [`now_nanos`](Self::now_nanos) reading.
    ///
    /// The system clock maps monotonic readings to wall time through an anchor, a pair of
    /// readings of both clocks, taken again whenever it is over a second old: the wall time
    /// follows the system clock (NTP corrections, steps) within a second and never drifts
    /// with the monotonic clock's rate. A step backwards of the system clock therefore shows
    /// as wall times going back, and history records the requests of those minutes into the
    /// buckets they name, merged with what is there (nothing is lost or counted twice).
    pub(crate) fn wall_at(&self, nanos: u64) -> SystemTime {
        match &self.manual {
            None => system_wall_at(nanos),
            Some(m) => m.wall_at(nanos),
        }
    }
}

/// How old the system clock's anchor may get before it is taken again.
const REANCHOR_AFTER_NANOS: u64 = 1_000_000_000;

/// A reading of the wall clock and of [`system_nanos`] taken together.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    wall: SystemTime,
    mono: u64,
}

fn system_wall_at(nanos: u64) -> SystemTime {
    static ANCHOR: OnceLock<arc_swap::ArcSwap<Anchor>> = OnceLock::new();
    let take = || Anchor {
        wall: SystemTime::now(),
        mono: system_nanos(),
    };
    let cell = ANCHOR.get_or_init(|| arc_swap::ArcSwap::from_pointee(take()));
    let mut anchor = **cell.load();
    if nanos.abs_diff(anchor.mono) > REANCHOR_AFTER_NANOS {
        anchor = take();
        cell.store(std::sync::Arc::new(anchor));
    }
    if nanos >= anchor.mono {
        anchor.wall + Duration::from_nanos(nanos - anchor.mono)
    } else {
        anchor
            .wall
            .checked_sub(Duration::from_nanos(anchor.mono - nanos))
            .unwrap_or(anchor.wall)
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
    /// Steps of the wall clock alone (an NTP step), in nanoseconds, either way.
    wall_step_nanos: AtomicI64,
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
                wall_step_nanos: AtomicI64::new(0),
            }),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.shared.offset_nanos.fetch_add(nanos, Relaxed);
    }

    /// Steps the wall clock forward by `by`, as NTP or an operator may, without moving the
    /// monotonic time (durations are not affected).
    pub fn step_wall_forward(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.shared.wall_step_nanos.fetch_add(nanos, Relaxed);
    }

    /// Steps the wall clock back by `by`, without moving the monotonic time.
    pub fn step_wall_back(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.shared.wall_step_nanos.fetch_sub(nanos, Relaxed);
    }

    fn elapsed_nanos(&self) -> u64 {
        self.shared.offset_nanos.load(Relaxed)
    }

    fn wall_at(&self, nanos: u64) -> SystemTime {
        let step = self.shared.wall_step_nanos.load(Relaxed);
        let at = self.shared.wall_base + Duration::from_nanos(nanos);
        if step >= 0 {
            at + Duration::from_nanos(step.unsigned_abs())
        } else {
            at.checked_sub(Duration::from_nanos(step.unsigned_abs()))
                .unwrap_or(at)
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Self {
            manual: Some(manual),
        }
    }
}
