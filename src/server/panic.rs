//! Panics in the inner service: caught by the server layer, answered with a 500, recorded
//! with `error_type="panic"` and logged once with their message and (with
//! [`install_panic_hook`]) their stack trace.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;

use super::in_flight::InFlight;
use crate::names::ERROR_PANIC;
use crate::trace::Capped;

/// Longest `error.message` logged for a panic (its payload); longer payloads are cut and
/// marked with [`TRUNCATION_MARKER`](crate::trace::TRUNCATION_MARKER).
pub const MAX_LOGGED_PANIC_MESSAGE_LEN: usize = 4096;
/// Longest `error.stack_trace` logged for a panic.
pub const MAX_LOGGED_STACK_TRACE_LEN: usize = 32 * 1024;

/// When the hook installed by [`install_panic_hook`] captures a stack trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicBacktraces {
    /// As the standard library does: when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for
    /// it ([`Backtrace::capture`]).
    #[default]
    FromEnvironment,
    /// On every panic, whatever the environment says ([`Backtrace::force_capture`]): a panic
    /// is rare, and its stack trace is what the central logs need.
    Always,
}

/// Where the panic hook leaves what it saw, for the layer that catches the panic on the same
/// thread.
struct Stashed {
    backtrace: Backtrace,
    location: Option<String>,
}

thread_local! {
    static STASH: RefCell<Option<Stashed>> = const { RefCell::new(None) };
}

/// Installs a process panic hook that lets the server layer log a caught panic's stack trace
/// (`error.stack_trace`) and place: it captures them on the panicking thread, where they are
/// still known, and leaves them for the layer. It chains the hook installed before it (by
/// default the one printing to stderr), so nothing else changes.
///
/// A hook is process-wide, so this is opt-in: call it once at startup, after any hook of your
/// own. Without it, a caught panic is still answered, recorded and logged, with its message
/// but without a stack trace.
///
/// ```
/// use tower_observe::server::{install_panic_hook, PanicBacktraces};
///
/// install_panic_hook(PanicBacktraces::Always);
/// ```
pub fn install_panic_hook(backtraces: PanicBacktraces) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let backtrace = match backtraces {
            PanicBacktraces::FromEnvironment => Backtrace::capture(),
            PanicBacktraces::Always => Backtrace::force_capture(),
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        // A hook must not panic: `try_with` (the thread may be ending), `try_borrow_mut`.
        let _ = STASH.try_with(|stash| {
            if let Ok(mut stash) = stash.try_borrow_mut() {
                *stash = Some(Stashed {
                    backtrace,
                    location,
                });
            }
        });
        previous(info);
    }));
}

/// What the hook left for the panic being caught on this thread, if it ran.
fn take_stashed() -> Option<Stashed> {
    STASH
        .try_with(|stash| stash.try_borrow_mut().ok()?.take())
        .ok()
        .flatten()
}

/// The panic's message: its payload when it is a string.
fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

/// Where in the request the panic happened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    /// The inner service's `call`.
    Call,
    /// The inner service's response future.
    Future,
    /// The response body, after the headers were sent.
    Body,
}

impl Place {
    fn as_str(self) -> &'static str {
        match self {
            Place::Call => "call",
            Place::Future => "future",
            Place::Body => "body",
        }
    }
}

/// Logs the caught panic once, in the request's span with its context current (so the line
/// carries the request and trace IDs).
pub(crate) fn report(in_flight: &mut InFlight, payload: &(dyn Any + Send), place: Place) {
    in_flight.in_scope(|| log(payload, place));
}

/// Logs the caught panic once, in the current span and trace context.
pub(crate) fn log(payload: &(dyn Any + Send), place: Place) {
    let stashed = take_stashed();
    let stack_trace = stashed
        .as_ref()
        .filter(|s| s.backtrace.status() == BacktraceStatus::Captured)
        .map(|s| s.backtrace.to_string());
    let location = stashed.as_ref().and_then(|s| s.location.as_deref());
    let message = message(payload);
    {
        tracing::event!(
            target: "tower_observe::panic",
            tracing::Level::ERROR,
            {
                "error.type" = ERROR_PANIC,
                "error.message" = %Capped(message, MAX_LOGGED_PANIC_MESSAGE_LEN),
                "error.stack_trace" = stack_trace
                    .as_deref()
                    .map(|s| tracing::field::display(Capped(s, MAX_LOGGED_STACK_TRACE_LEN))),
            },
            "request handler panicked in its {} at {}",
            place.as_str(),
            location.unwrap_or("an unknown place (see install_panic_hook)"),
        );
    }
}

/// The gRPC server layer's panic catching (see [`CatchUnwind`]).
#[cfg(feature = "tonic")]
mod catch {
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use pin_project_lite::pin_project;

    use super::{log, Place};

    pin_project! {
        /// A future whose panics (and a panic in the `call` that should have made it) are caught
        /// and logged where they happen, in the current span and trace context: inside the gRPC
        /// server layer's future. Its output is `None` after a panic.
        pub struct CatchUnwind<F> {
            // `None`: the `call` that should have made it panicked (and was logged).
            #[pin]
            inner: Option<F>,
        }
    }

    impl<F> CatchUnwind<F> {
        /// Runs `call`, catching and logging a panic in it.
        pub(crate) fn call(call: impl FnOnce() -> F) -> Self {
            let inner = match catch_unwind(AssertUnwindSafe(call)) {
                Ok(future) => Some(future),
                Err(payload) => {
                    log(&*payload, Place::Call);
                    None
                }
            };
            Self { inner }
        }
    }

    impl<F> std::fmt::Debug for CatchUnwind<F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("CatchUnwind").finish_non_exhaustive()
        }
    }

    impl<F: Future> Future for CatchUnwind<F> {
        type Output = Option<F::Output>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.project();
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(poll) => poll.map(Some),
                Err(payload) => {
                    log(&*payload, Place::Future);
                    this.inner.set(None);
                    Poll::Ready(None)
                }
            }
        }
    }
}

#[cfg(feature = "tonic")]
pub use catch::CatchUnwind;
