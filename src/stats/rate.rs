//! Requests per second over the last minute, from a ring of per-second counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Length of the window, in seconds.
pub(crate) const WINDOW_SECS: u64 = 60;
const RING: usize = 64;

/// Each slot packs `second << 32 | count`; a slot whose second is outside the window is stale.
#[derive(Debug)]
pub(crate) struct RateWindow {
    slots: [AtomicU64; RING],
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }
}

impl RateWindow {
    /// Counts one event in second `second` (seconds since the observer started).
    pub(crate) fn record(&self, second: u64) {
        let second = second & 0xFFFF_FFFF;
        let slot = &self.slots[(second as usize) % RING];
        let mut current = slot.load(Relaxed);
        loop {
            if current >> 32 == second {
                slot.fetch_add(1, Relaxed);
                return;
            }
            match slot.compare_exchange_weak(current, (second << 32) | 1, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Events per second over the last minute (or since start, if that is shorter).
    /// `elapsed` is the time since the observer started, in seconds.
    /// Empties the window.
    pub(crate) fn reset(&self) {
        for slot in &self.slots {
            slot.store(u64::MAX, Relaxed);
        }
    }

    /// Events in the last [`WINDOW_SECS`] seconds (including the current one).
    pub(crate) fn total(&self, elapsed: f64) -> u64 {
        let now = elapsed.max(0.0) as u64;
        let oldest = now.saturating_sub(WINDOW_SECS - 1);
        self.slots
            .iter()
            .map(|slot| slot.load(Relaxed))
            .filter(|v| *v != u64::MAX && (oldest..=now).contains(&(v >> 32)))
            .map(|v| v & 0xFFFF_FFFF)
            .sum()
    }

    pub(crate) fn per_second(&self, elapsed: f64) -> f64 {
        let now = elapsed.max(0.0) as u64;
        let oldest = now.saturating_sub(WINDOW_SECS - 1);
        let mut total = 0u64;
        for slot in &self.slots {
            let v = slot.load(Relaxed);
            let second = v >> 32;
            if v != u64::MAX && second >= oldest && second <= now {
                total += v & 0xFFFF_FFFF;
            }
        }
        // The window covers the current, partial second plus up to 59 whole ones.
        let span = (elapsed - oldest as f64).clamp(1e-3, WINDOW_SECS as f64);
        total as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_over_a_minute() {
        let w = RateWindow::default();
        for sec in 0..200u64 {
            for _ in 0..10 {
                w.record(sec);
            }
        }
        // At t = 199.5 s the window holds seconds 140..=199: 600 events over 59.5 s.
        let r = w.per_second(199.5);
        assert!((r - 600.0 / 59.5).abs() < 1e-9, "{r}");
    }

    #[test]
    fn goes_to_zero_when_idle() {
        let w = RateWindow::default();
        for _ in 0..100 {
            w.record(5);
        }
        assert_eq!(w.per_second(5.0 + 61.0), 0.0);
    }

    #[test]
    fn early_rate_uses_elapsed_time() {
        let w = RateWindow::default();
        for _ in 0..20 {
            w.record(1);
        }
        assert!((w.per_second(2.0) - 10.0).abs() < 1e-9);
    }
}
