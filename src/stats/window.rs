//! Latency, requests and errors over recent windows (the last minute, the last five minutes),
//! from a ring of per-step sketches merged on read.
//!
//! Time is cut into steps of [`STEP_SECONDS`] (counted from the observer's start). Each step
//! has a slot of the ring: a [`LatencySketch`] and two counters. A recording lands in the slot
//! of its step; the first recording of a new step empties the slot it reuses (which last held
//! the step a whole ring earlier, outside every window). A window of `W` seconds reads the
//! slots of its last `W / STEP_SECONDS` steps, the current partial one included, and merges
//! them: sketches merge by adding buckets, so a window's percentiles keep the sketch's error
//! bound ([`RELATIVE_ERROR`](super::sketch::RELATIVE_ERROR)). A window therefore covers
//! between `W − STEP_SECONDS` and `W` seconds; its rate divides by the time it covers.
//!
//! Memory: a slot is allocated the first time a request lands in its step (one pointer per
//! slot before), and holds what one sketch holds (about 1 KB plus 512 bytes per octave of
//! latencies seen), so at steady traffic a cell's ring costs [`RING`] sketches.
//!
//! A recording racing with the turn of a step onto its slot may be lost (at most the few
//! recordings in flight at that instant): the cost of keeping the hot path to atomic
//! additions, like the since-start figures' reset.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use super::sketch::{LatencySketch, SketchData};
use super::Outcome;

/// The windows' granularity, in seconds.
pub const STEP_SECONDS: u64 = 10;

/// The windows reported, by name and length in seconds.
pub(crate) const WINDOWS: [(&str, u64); 2] = [("1m", 60), ("5m", 300)];

/// Slots of the ring: the steps of the longest window.
pub(crate) const RING: usize = (300 / STEP_SECONDS) as usize;

#[derive(Debug, Default)]
struct Slot {
    /// The step this slot holds, plus one (0: none yet).
    step: AtomicU64,
    latency: LatencySketch,
    errors: AtomicU64,
    aborted: AtomicU64,
}

impl Slot {
    fn clear(&self) {
        self.latency.reset();
        self.errors.store(0, Relaxed);
        self.aborted.store(0, Relaxed);
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct WindowRing {
    slots: [OnceLock<Box<Slot>>; RING],
}

impl Default for WindowRing {
    fn default() -> Self {
        Self {
            slots: [const { OnceLock::new() }; RING],
        }
    }
}

/// What one window holds, read from one or more rings.
#[derive(Debug, Default)]
pub(crate) struct WindowData {
    pub(crate) latency: SketchData,
    pub(crate) errors: u64,
    pub(crate) aborted: u64,
}

impl WindowData {
    pub(crate) fn merge(&mut self, other: &WindowData) {
        self.latency.merge(&other.latency);
        self.errors += other.errors;
        self.aborted += other.aborted;
    }
}

impl WindowRing {
    /// Counts one request that ended in `second` (seconds since the observer started).
    #[inline]
    pub(crate) fn record(&self, nanos: u64, second: u64, outcome: Outcome) {
        let step = second / STEP_SECONDS + 1;
        let slot = self.slots[(step % RING as u64) as usize].get_or_init(Box::default);
        let held = slot.step.load(Relaxed);
        if held != step {
            if held > step {
                // A late recording whose slot already holds a newer step: too old to count.
                return;
            }
            if slot
                .step
                .compare_exchange(held, step, Relaxed, Relaxed)
                .is_ok()
            {
                slot.clear();
            }
        }
        match outcome {
            Outcome::Success => slot.latency.record(nanos),
            Outcome::Failure => {
                slot.latency.record(nanos);
                slot.errors.fetch_add(1, Relaxed);
            }
            Outcome::Aborted => {
                slot.aborted.fetch_add(1, Relaxed);
            }
        }
    }

    /// Adds the last `seconds` (a multiple of [`STEP_SECONDS`], at most the ring's span) as of
    /// `elapsed` seconds since the start to `data`.
    pub(crate) fn read_into(&self, elapsed: f64, seconds: u64, data: &mut WindowData) {
        let current = elapsed.max(0.0) as u64 / STEP_SECONDS + 1;
        let steps = (seconds / STEP_SECONDS).clamp(1, RING as u64);
        let oldest = current.saturating_sub(steps - 1);
        for slot in self.slots.iter().filter_map(OnceLock::get) {
            let step = slot.step.load(Relaxed);
            if (oldest..=current).contains(&step) {
                slot.latency.read_into(&mut data.latency);
                data.errors += slot.errors.load(Relaxed);
                data.aborted += slot.aborted.load(Relaxed);
            }
        }
    }

    /// Empties every slot.
    pub(crate) fn reset(&self) {
        for slot in self.slots.iter().filter_map(OnceLock::get) {
            slot.step.store(0, Relaxed);
            slot.clear();
        }
    }
}

/// The seconds a window of `seconds` covers as of `elapsed`: its full steps and the elapsed
/// part of the current one, or the time since the start while that is shorter.
pub(crate) fn covered_seconds(elapsed: f64, seconds: u64) -> f64 {
    let elapsed = elapsed.max(0.0);
    let steps = (seconds / STEP_SECONDS).clamp(1, RING as u64);
    let in_current = elapsed % STEP_SECONDS as f64;
    let covered = (steps - 1) as f64 * STEP_SECONDS as f64 + in_current;
    covered.min(elapsed).max(1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(ring: &WindowRing, elapsed: f64, seconds: u64) -> u64 {
        let mut data = WindowData::default();
        ring.read_into(elapsed, seconds, &mut data);
        data.latency.count() + data.aborted
    }

    #[test]
    fn windows_hold_their_steps_only() {
        let ring = WindowRing::default();
        // One request a second for ten minutes.
        for second in 0..600 {
            ring.record(1_000_000, second, Outcome::Success);
        }
        let now = 599.5;
        // The current step (590..599) and the five before: 60 requests.
        assert_eq!(count(&ring, now, 60), 60);
        assert_eq!(count(&ring, now, 300), 300);
        // Nothing recorded for a while: the windows empty.
        assert_eq!(count(&ring, 700.0, 60), 0);
        assert_eq!(count(&ring, 700.0, 300), 190);
        assert_eq!(count(&ring, 1000.0, 300), 0);
    }

    #[test]
    fn a_reused_slot_is_emptied_and_late_recordings_are_dropped() {
        let ring = WindowRing::default();
        ring.record(1_000, 5, Outcome::Failure);
        // A whole ring later, the same slot.
        ring.record(2_000, 5 + RING as u64 * STEP_SECONDS, Outcome::Success);
        ring.record(3_000, 5, Outcome::Success); // late: dropped
        let mut data = WindowData::default();
        ring.read_into((5 + RING as u64 * STEP_SECONDS) as f64, 60, &mut data);
        assert_eq!((data.latency.count(), data.errors), (1, 0));
    }

    #[test]
    fn covered_seconds_grows_to_the_window() {
        assert_eq!(covered_seconds(3.0, 60), 3.0);
        assert_eq!(covered_seconds(65.0, 60), 55.0);
        assert_eq!(covered_seconds(1000.0, 300), 290.0);
        assert_eq!(covered_seconds(1009.0, 300), 299.0);
    }
}
