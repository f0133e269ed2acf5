//! The one way a capability runs periodic work on a thread of its own.
//!
//! History's flusher, the process sampler, the alert engine and the dashboard's stream each
//! need a tick every so often, off the request path. They all start it with [`spawn`], which
//! gives every one of them the same guarantees:
//!
//! - **one named thread** per task, `tower-observe-<capability>`;
//! - **nothing kept alive**: the thread holds only a weak reference to the observer and to
//!   the capability's state, so dropping either ends it (at its next wake-up at the latest);
//! - **a stop handle**, [`Background`]: dropping it, or [`Background::stop`], wakes the thread
//!   at once (it waits on a condition variable, not in `thread::sleep`) and ends it. A
//!   capability keeps the handle in its own state, so the observer going away stops the
//!   thread promptly;
//! - **an early tick on demand**: a [`Waker`] from the handle makes the next tick run now
//!   rather than at its time (the log store's capture wakes its writer when records pile up
//!   faster than one interval's worth). A waker keeps nothing alive;
//! - **a panicking tick does not end the task**: each tick runs inside `catch_unwind`. The
//!   panic is counted in `tower_observe_background_panics_total{capability}` (registered
//!   through the observer's recorder like every metric, and readable crate-internally with
//!   [`Background::panics`]), the first one is logged at error level under the target
//!   `tower_observe::<capability>` with its message, and the next tick runs as scheduled;
//! - **a thread that cannot be spawned** is logged once, and the handle reports it is not
//!   running; the capability keeps working without it (history flushes on demand, process
//!   figures are read at scrape time, and so on).
//!
//! # Restart, not degrade
//!
//! After a panic the task is restarted (its next tick runs) rather than marked degraded and
//! stopped. The ticks are independent, idempotent pieces of work — write what is pending,
//! read `/proc`, evaluate the rules, publish a snapshot — over state that stays consistent
//! when one of them unwinds (the crate's locks ignore poisoning, and every tick starts from
//! what is stored, not from what the failed tick was doing). A panic that depends on the
//! input (one odd series, one unreadable figure) is likely not to recur, and stopping would
//! turn one bad tick into a permanent loss of history or alerting, which is worse than a
//! panic every tick: that one is visible on the counter, and costs one tick's work. Only the
//! first panic of a task is logged, so a tick that panics every time does not flood the logs.
//!
//! # Logging under the capability's target
//!
//! `tracing` targets are constants, so a capability describes its task with the [`task!`]
//! macro (its name, and what it means when the thread cannot start): the macro writes the
//! two log statements with the target `concat!("tower_observe::", name)`. The core names no
//! capability.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::{handles, Observer};
use crate::names;

/// Something a background task reports, for its capability to log under its own target.
#[derive(Debug)]
pub(crate) enum Trouble<'a> {
    /// The thread could not be spawned.
    Unstarted(&'a std::io::Error),
    /// A tick panicked (the first time), with the panic's message.
    Panicked(&'a str),
}

/// A capability's background task: its name (`history`, `process`, …) and how it logs.
/// Made with [`task!`].
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub(crate) capability: &'static str,
    pub(crate) log: fn(Trouble<'_>),
}

/// `task!("history", "what it means when the thread cannot start")`: a [`Task`] logging
/// under the target `tower_observe::history`.
#[allow(unused_macros)] // used by optional capabilities
macro_rules! task {
    ($capability:literal, $unstarted:literal) => {
        $crate::observer::background::Task {
            capability: $capability,
            log: |trouble| match trouble {
                $crate::observer::background::Trouble::Unstarted(e) => tracing::error!(
                    target: concat!("tower_observe::", $capability),
                    { "error.message" = %e },
                    $unstarted
                ),
                $crate::observer::background::Trouble::Panicked(message) => tracing::error!(
                    target: concat!("tower_observe::", $capability),
                    { "error.message" = %message },
                    concat!(
                        "the ",
                        $capability,
                        " background task panicked; it runs again next tick \
                         (further panics are only counted in \
                         tower_observe_background_panics_total)"
                    )
                ),
            },
        }
    };
}
#[allow(unused_imports)] // used by optional capabilities
pub(crate) use task;

/// What the thread and its handle share.
struct Shared {
    task: Task,
    running: AtomicBool,
    panics: AtomicU64,
    panic_counter: Counter,
    /// Makes the next tick panic (tests of the capabilities' recovery).
    #[cfg(test)]
    panic_next: AtomicBool,
}

impl Shared {
    /// Runs one tick, counting (and the first time logging) a panic instead of propagating it.
    fn run(&self, tick: impl FnOnce()) {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if self.panic_next.swap(false, Relaxed) {
                panic!("a test made the {} tick panic", self.task.capability);
            }
            tick();
        }));
        let Err(payload) = outcome else {
            return;
        };
        self.panic_counter.increment(1);
        if self.panics.fetch_add(1, Relaxed) == 0 {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            (self.task.log)(Trouble::Panicked(message));
        }
    }
}

/// What ends a task's wait before its next tick is due: its handle going away, or a
/// [`Waker`].
#[derive(Default)]
struct Signal {
    flags: Mutex<Flags>,
    changed: Condvar,
    /// A wake is on its way or not yet taken (so that waking is one atomic swap while one
    /// is pending).
    wake_pending: AtomicBool,
}

#[derive(Default)]
struct Flags {
    stop: bool,
    wake: bool,
}

impl Signal {
    fn set(&self, f: impl FnOnce(&mut Flags)) {
        f(&mut crate::sync::lock(&self.flags));
        self.changed.notify_all();
    }

    /// Waits until the next tick is due (`every` from now) or a wake comes: `false` for a
    /// tick, `true` when the task is to stop.
    fn wait(&self, every: Duration) -> bool {
        let due = Instant::now() + every;
        let mut flags = crate::sync::lock(&self.flags);
        loop {
            if flags.stop {
                return true;
            }
            if flags.wake {
                flags.wake = false;
                self.wake_pending.store(false, Relaxed);
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return false;
            }
            flags = match self.changed.wait_timeout(flags, due - now) {
                Ok((flags, _)) => flags,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Makes a background task tick now (see the [module docs](self)); cheap to clone. Waking a
/// task that is already due to tick, or that has ended, does nothing.
#[derive(Clone)]
pub(crate) struct Waker(Arc<Signal>);

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker").finish_non_exhaustive()
    }
}

impl Waker {
    pub(crate) fn wake(&self) {
        if !self.0.wake_pending.swap(true, Relaxed) {
            self.0.set(|f| f.wake = true);
        }
    }
}

/// Marks the task stopped however its thread ends.
struct Exit(Arc<Shared>);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.running.store(false, Relaxed);
    }
}

/// The handle of a background task: dropping it (or [`stop`](Self::stop)) ends the thread
/// promptly. It never waits for the thread.
pub(crate) struct Background {
    shared: Arc<Shared>,
    signal: Arc<Signal>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.signal.set(|f| f.stop = true);
    }
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("capability", &self.shared.task.capability)
            .field("running", &self.is_running())
            .field("panics", &self.panics())
            .finish()
    }
}

impl Background {
    /// Ends the thread (at once when it is waiting for its next tick, else after the tick).
    pub(crate) fn stop(self) {
        drop(self);
    }

    /// A handle that makes the task tick now.
    #[allow(dead_code)] // used by optional capabilities
    pub(crate) fn waker(&self) -> Waker {
        Waker(self.signal.clone())
    }

    /// Whether the thread was started and has not ended.
    pub(crate) fn is_running(&self) -> bool {
        self.shared.running.load(Relaxed)
    }

    /// Ticks that panicked so far.
    pub(crate) fn panics(&self) -> u64 {
        self.shared.panics.load(Relaxed)
    }

    /// Makes the next tick panic, once.
    #[cfg(test)]
    pub(crate) fn panic_next_tick(&self) {
        self.shared.panic_next.store(true, Relaxed);
    }
}

/// Starts `task`'s thread: it runs `tick` with the observer and `state` at once, then every
/// `every`, for as long as the observer, `state` and the returned handle all live.
///
/// `tick` runs on the task's thread, with no lock of the caller held; a panic in it is
/// counted and logged (see the [module docs](self)) and the next tick runs as scheduled.
pub(crate) fn spawn<T, F>(
    task: Task,
    observer: &Observer,
    state: &Arc<T>,
    every: Duration,
    mut tick: F,
) -> Background
where
    T: Send + Sync + 'static,
    F: FnMut(&Observer, &T) + Send + 'static,
{
    let mut panic_counter = Counter::noop();
    observer.with_source(|source| {
        panic_counter = handles::counter(
            source,
            &handles::key(names::BACKGROUND_PANICS, &[("capability", task.capability)]),
        );
    });
    let shared = Arc::new(Shared {
        task,
        running: AtomicBool::new(true),
        panics: AtomicU64::new(0),
        panic_counter,
        #[cfg(test)]
        panic_next: AtomicBool::new(false),
    });
    let signal = Arc::new(Signal::default());
    let signals = signal.clone();
    let weak_observer = Arc::downgrade(&observer.inner);
    let weak_state: Weak<T> = Arc::downgrade(state);
    let exit = Exit(shared.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("tower-observe-{}", task.capability))
        .spawn(move || {
            let exit = exit;
            loop {
                {
                    let (Some(inner), Some(state)) =
                        (weak_observer.upgrade(), weak_state.upgrade())
                    else {
                        return;
                    };
                    let observer = Observer { inner };
                    exit.0.run(|| tick(&observer, &state));
                    // The observer and the state may end here, with this thread's references.
                }
                if signals.wait(every) {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        shared.running.store(false, Relaxed);
        (task.log)(Trouble::Unstarted(&e));
    }
    Background { shared, signal }
}

/// Waits (up to 10 s) until `done()`, for the tests of the capabilities' threads.
#[cfg(test)]
pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `tower_observe_background_panics_total{capability}` as `/metrics` shows it.
#[cfg(test)]
pub(crate) fn panics_on_metrics(observer: &Observer, capability: &str) -> Option<f64> {
    let text = observer.render_metrics()?;
    let prefix = format!(
        "{}{{capability=\"{capability}\"}} ",
        names::BACKGROUND_PANICS
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TASK: Task = task!("test", "cannot start the test task");

    fn counting(observer: &Observer) -> (Arc<AtomicU64>, Background) {
        let ticks = Arc::new(AtomicU64::new(0));
        let background = spawn(TASK, observer, &ticks, Duration::from_millis(10), |_, t| {
            t.fetch_add(1, Relaxed);
        });
        (ticks, background)
    }

    #[test]
    fn ticks_until_the_observer_is_dropped() {
        let observer = Observer::new();
        let (ticks, background) = counting(&observer);
        assert!(background.is_running());
        wait_for("three ticks", || ticks.load(Relaxed) >= 3);
        drop(observer);
        wait_for("the thread to end", || !background.is_running());
        let after = ticks.load(Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticks.load(Relaxed), after, "no tick after the end");
    }

    #[test]
    fn ends_with_its_state_or_its_handle() {
        let observer = Observer::new();
        let (ticks, background) = counting(&observer);
        drop(ticks);
        wait_for("the thread to end with its state", || {
            !background.is_running()
        });

        let (_ticks, background) = counting(&observer);
        let shared = background.shared.clone();
        let stopped = Instant::now();
        background.stop();
        wait_for("the thread to end with its handle", || {
            !shared.running.load(Relaxed)
        });
        assert!(stopped.elapsed() < Duration::from_secs(1), "promptly");

        // A long interval: the stop wakes the thread rather than waiting for the next tick.
        let ticks = Arc::new(AtomicU64::new(0));
        let background = spawn(
            TASK,
            &observer,
            &ticks,
            Duration::from_secs(3600),
            |_, _| {},
        );
        let shared = background.shared.clone();
        drop(background);
        wait_for("the sleeping thread to end", || {
            !shared.running.load(Relaxed)
        });
    }

    #[test]
    fn a_waker_makes_the_next_tick_run_now_and_keeps_nothing_alive() {
        let observer = Observer::new();
        let ticks = Arc::new(AtomicU64::new(0));
        let background = spawn(
            TASK,
            &observer,
            &ticks,
            Duration::from_secs(3600),
            |_, ticks| {
                ticks.fetch_add(1, Relaxed);
            },
        );
        wait_for("the first tick", || ticks.load(Relaxed) == 1);
        let waker = background.waker();
        for expected in 2..=4 {
            waker.wake();
            wait_for("a woken tick", || ticks.load(Relaxed) == expected);
        }
        let shared = background.shared.clone();
        drop(background);
        wait_for("the thread to end with a waker alive", || {
            !shared.running.load(Relaxed)
        });
        // Waking an ended task does nothing.
        waker.wake();
    }

    #[test]
    fn a_panicking_tick_is_counted_and_the_next_one_runs() {
        let observer = Observer::new();
        let (ticks, background) = counting(&observer);
        wait_for("a tick", || ticks.load(Relaxed) >= 1);
        background.panic_next_tick();
        wait_for("the panic", || background.panics() == 1);
        let after = ticks.load(Relaxed);
        wait_for("ticks after the panic", || ticks.load(Relaxed) >= after + 2);
        assert!(background.is_running());
        assert_eq!(panics_on_metrics(&observer, "test"), Some(1.0));
        let text = observer.render_metrics().unwrap();
        assert!(
            text.contains("# TYPE tower_observe_background_panics_total counter"),
            "{text}"
        );
    }

    #[test]
    fn only_the_first_panic_is_logged_under_the_capability_target() {
        #[derive(Clone, Default)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                crate::sync::lock(&self.0).extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        // A task of its own: its log statements are not reached by the other tests' threads
        // (which run with no subscriber) and their cached interest.
        const LOGGED: Task = task!("logged", "cannot start the logged task");
        let shared = Shared {
            task: LOGGED,
            running: AtomicBool::new(true),
            panics: AtomicU64::new(0),
            panic_counter: Counter::noop(),
            panic_next: AtomicBool::new(false),
        };
        tracing::subscriber::with_default(subscriber, || {
            shared.run(|| panic!("boom {}", 1));
            shared.run(|| panic!("boom again"));
            shared.run(|| {});
        });
        assert_eq!(shared.panics.load(Relaxed), 2);
        let logs = String::from_utf8(crate::sync::lock(&buffer.0).clone()).unwrap();
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("ERROR"), "{logs}");
        assert!(logs.contains("tower_observe::logged"), "{logs}");
        assert!(logs.contains("boom 1"), "{logs}");
        assert!(
            logs.contains("the logged background task panicked"),
            "{logs}"
        );
    }

    #[test]
    fn the_thread_is_named_after_the_capability() {
        let observer = Observer::new();
        let name = Arc::new(std::sync::Mutex::new(None));
        let background = spawn(TASK, &observer, &name, Duration::from_secs(3600), |_, n| {
            *crate::sync::lock(n) = std::thread::current().name().map(str::to_owned);
        });
        wait_for("the first tick", || crate::sync::lock(&name).is_some());
        assert_eq!(
            crate::sync::lock(&name).as_deref(),
            Some("tower-observe-test")
        );
        drop(background);
    }
}
