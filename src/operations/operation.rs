//! What an operation is, the handle that times it, the guard of one call, and the
//! classifiers that tell an ok call from a failed one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::series::{Ended, OperationSeries, OperationsPart};
use crate::names;
use crate::observer::handles::ExemplarIds;
use crate::trace::TraceContext;
use crate::Observer;

/// Which convention an operation's metric and span follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `db.client.operation.duration`.
    Db = 0,
    /// `messaging.process.duration`.
    MessagingProcess = 1,
    /// `messaging.client.operation.duration`.
    MessagingClient = 2,
    /// autometrics' `function_calls_*`.
    Function = 3,
}

impl Kind {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Kind::Db => "db",
            Kind::MessagingProcess => "messaging_process",
            Kind::MessagingClient => "messaging_client",
            Kind::Function => "function",
        }
    }

    pub(crate) fn from_label(s: &str) -> Kind {
        match s {
            "db" => Kind::Db,
            "messaging_process" => Kind::MessagingProcess,
            "messaging_client" => Kind::MessagingClient,
            _ => Kind::Function,
        }
    }
}

/// What an operation is: its kind and names, from which its metric, labels and span
/// attributes follow. Made once, turned into an [`OperationHandle`] by
/// [`Observer::operation`].
///
/// | constructor | metric | labels |
/// |---|---|---|
/// | [`db`](Self::db) | `db_client_operation_duration_seconds` | `db_system_name`, `db_operation_name`, `db_collection_name`, `error_type` |
/// | [`process`](Self::process) | `messaging_process_duration_seconds` | `messaging_system`, `messaging_operation_name="process"`, `messaging_destination_name`, `error_type` |
/// | [`messaging`](Self::messaging) | `messaging_client_operation_duration_seconds` | `messaging_system`, `messaging_operation_name`, `messaging_destination_name`, `error_type` |
/// | [`function`](Self::function) | `function_calls_total`, `function_calls_duration_seconds` | `function`, `module`, `result` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub(crate) kind: Kind,
    pub(crate) system: Box<str>,
    pub(crate) name: Box<str>,
    pub(crate) target: Option<Box<str>>,
}

impl Operation {
    /// A database operation: `system` is `db.system.name` (`postgresql`, `mysql`, `redis`,
    /// `mongodb`, …), `operation` is `db.operation.name` (`SELECT`, `select_user`, …).
    pub fn db(system: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::new(Kind::Db, system.into(), operation.into())
    }

    /// Processing one message or job taken from `destination` (a queue or topic) of a
    /// messaging `system` (`kafka`, `rabbitmq`, `aws_sqs`, …):
    /// `messaging.process.duration`.
    pub fn process(system: impl Into<String>, destination: impl Into<String>) -> Self {
        Self::new(Kind::MessagingProcess, system.into(), "process".into()).destination(destination)
    }

    /// A call to a messaging `system`, such as `send`, `receive` or `ack`
    /// (`messaging.operation.name`): `messaging.client.operation.duration`. Set the queue or
    /// topic with [`destination`](Self::destination).
    pub fn messaging(system: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::new(Kind::MessagingClient, system.into(), operation.into())
    }

    /// A function, or a call to an external API that is not HTTP through the client
    /// instrumentation: autometrics' `function_calls_total` and
    /// `function_calls_duration_seconds`, labelled `module` and `function`.
    pub fn function(module: impl Into<String>, function: impl Into<String>) -> Self {
        Self::new(Kind::Function, module.into(), function.into())
    }

    /// Sets `db.collection.name` (a table, a collection).
    pub fn collection(mut self, collection: impl Into<String>) -> Self {
        self.target = Some(collection.into().into());
        self
    }

    /// Sets `messaging.destination.name` (a queue, a topic).
    pub fn destination(mut self, destination: impl Into<String>) -> Self {
        self.target = Some(destination.into().into());
        self
    }

    fn new(kind: Kind, system: String, name: String) -> Self {
        Self {
            kind,
            system: system.into(),
            name: name.into(),
            target: None,
        }
    }
}

/// How an operation's call ended, as a classifier sees it. A call dropped before it ended is
/// `cancelled`: no classifier is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationOutcome {
    /// The call succeeded.
    Ok,
    /// The call failed; the value is its `error.type` (a `&'static str`, so the values are
    /// bounded by the code).
    Error(&'static str),
}

impl OperationOutcome {
    /// `Ok` for `Ok(_)`; for `Err(_)`, `Error` with the error's type name (see
    /// [`error_type_of`]).
    pub fn of_result<T, E>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => OperationOutcome::Ok,
            Err(_) => OperationOutcome::Error(error_type_of::<E>()),
        }
    }
}

/// The `error.type` of an error of type `E`: its type's path without generic arguments
/// (`std::io::error::Error`, `sqlx_core::error::Error`), as OpenTelemetry asks for an
/// exception's fully qualified type. Bounded by the code, never by the input.
pub fn error_type_of<E>() -> &'static str {
    let name = std::any::type_name::<E>();
    name.split('<').next().unwrap_or(name)
}

/// Tells an ok call from a failed one by its output. Closures `Fn(&T) -> OperationOutcome`
/// are classifiers.
pub trait Classify<T: ?Sized> {
    /// The outcome of a call that produced `output`.
    fn classify(&self, output: &T) -> OperationOutcome;
}

impl<T: ?Sized, F: Fn(&T) -> OperationOutcome> Classify<T> for F {
    fn classify(&self, output: &T) -> OperationOutcome {
        self(output)
    }
}

/// The default classifier of `Result`s: `Err` is an error whose `error.type` is the error's
/// type name.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultClassifier;

impl<T, E> Classify<Result<T, E>> for ResultClassifier {
    fn classify(&self, output: &Result<T, E>) -> OperationOutcome {
        OperationOutcome::of_result(output)
    }
}

/// Every output is ok (for futures whose output is not a `Result`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysOk;

impl<T: ?Sized> Classify<T> for AlwaysOk {
    fn classify(&self, _: &T) -> OperationOutcome {
        OperationOutcome::Ok
    }
}

/// autometrics' `ok_if`: a `Result` is ok when the predicate says so, else an error (of the
/// error's type, or `_OTHER` for an `Ok` value the predicate refused).
///
/// ```
/// use tower_observe::operations::{ok_if, Classify, OperationOutcome};
///
/// // A missing row is an answer, not a failure.
/// let found_or_missing = ok_if(|r: &Result<Option<u32>, std::io::Error>| r.is_ok());
/// assert_eq!(found_or_missing.classify(&Ok(None)), OperationOutcome::Ok);
/// ```
pub fn ok_if<T, E, F: Fn(&Result<T, E>) -> bool>(predicate: F) -> OkIf<F> {
    OkIf(predicate)
}

/// autometrics' `error_if`: a `Result` is an error when the predicate says so.
///
/// ```
/// use tower_observe::operations::{error_if, Classify, OperationOutcome};
///
/// // An empty answer counts as a failure.
/// let non_empty = error_if(|r: &Result<Vec<u8>, std::io::Error>| r.as_ref().map_or(true, Vec::is_empty));
/// assert!(matches!(non_empty.classify(&Ok(vec![])), OperationOutcome::Error(_)));
/// ```
pub fn error_if<T, E, F: Fn(&Result<T, E>) -> bool>(predicate: F) -> ErrorIf<F> {
    ErrorIf(predicate)
}

/// The classifier made by [`ok_if`].
#[derive(Debug, Clone, Copy)]
pub struct OkIf<F>(F);

/// The classifier made by [`error_if`].
#[derive(Debug, Clone, Copy)]
pub struct ErrorIf<F>(F);

fn failed<T, E>(result: &Result<T, E>) -> OperationOutcome {
    OperationOutcome::Error(match result {
        Ok(_) => names::ERROR_SERVICE,
        Err(_) => error_type_of::<E>(),
    })
}

impl<T, E, F: Fn(&Result<T, E>) -> bool> Classify<Result<T, E>> for OkIf<F> {
    fn classify(&self, output: &Result<T, E>) -> OperationOutcome {
        if (self.0)(output) {
            OperationOutcome::Ok
        } else {
            failed(output)
        }
    }
}

impl<T, E, F: Fn(&Result<T, E>) -> bool> Classify<Result<T, E>> for ErrorIf<F> {
    fn classify(&self, output: &Result<T, E>) -> OperationOutcome {
        if (self.0)(output) {
            failed(output)
        } else {
            OperationOutcome::Ok
        }
    }
}

/// One operation, ready to time calls: its metric handles were registered when it was made,
/// so a call does no lookup and no allocation. Made by [`Observer::operation`]; cheap to
/// clone; keep it (in your repository struct, a `static`, a layer).
#[derive(Debug, Clone)]
pub struct OperationHandle {
    /// One `Arc`, so that a call's guard costs one reference count, not two.
    pub(crate) inner: Arc<HandleInner>,
}

#[derive(Debug)]
pub(crate) struct HandleInner {
    pub(crate) observer: Observer,
    pub(crate) series: Arc<OperationSeries>,
}

impl Observer {
    /// The handle that times the calls of `operation` (see [`operations`](crate::operations)).
    /// Its label values pass the cardinality guard: past the observer's limit
    /// (`max_label_sets_per_metric`) new names record into `_OTHER`.
    pub fn operation(&self, operation: Operation) -> OperationHandle {
        let part = self.part(|| OperationsPart::new(self.max_label_sets()));
        OperationHandle {
            inner: Arc::new(HandleInner {
                series: part.series(self, &operation),
                observer: self.clone(),
            }),
        }
    }
}

impl OperationHandle {
    /// The operation's name as it appears in labels (`_OTHER` past the cardinality limit).
    pub fn name(&self) -> &str {
        &self.inner.series.name
    }

    /// Starts one call: the clock starts and its span opens (a child of the current span, so
    /// the request's trace and request ID flow into it). Finish it with
    /// [`OperationGuard::finish`], [`ok`](OperationGuard::ok) or
    /// [`error`](OperationGuard::error); dropped unfinished, it records `cancelled`.
    pub fn start(&self) -> OperationGuard {
        let s = &*self.inner.series;
        let db = s.kind == Kind::Db;
        let messaging = matches!(s.kind, Kind::MessagingProcess | Kind::MessagingClient);
        let function = s.kind == Kind::Function;
        let target = (!s.target.is_empty()).then_some(&*s.target);
        let span = tracing::info_span!(
            target: "tower_observe::operation",
            "operation",
            otel.name = &*s.span_name,
            otel.kind = if s.kind == Kind::MessagingProcess { "consumer" } else { "client" },
            db.system.name = db.then_some(&*s.system),
            db.operation.name = db.then_some(&*s.name),
            db.collection.name = if db { target } else { None },
            messaging.system = messaging.then_some(&*s.system),
            messaging.operation.name = messaging.then_some(&*s.name),
            messaging.destination.name = if messaging { target } else { None },
            code.function.name = function.then_some(&*s.name),
            code.namespace = function.then_some(&*s.system),
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let exemplar = TraceContext::peek_current(|ctx| {
            if !span.is_disabled() {
                if let Some(id) = &ctx.request_id {
                    span.record("request_id", id.as_str());
                }
                span.record("trace_id", crate::hex::id16(&ctx.span.trace_id).as_str());
            }
            ctx.span.exemplar()
        })
        .flatten();
        OperationGuard {
            handle: self.clone(),
            start: self.inner.observer.now_nanos(),
            span,
            exemplar,
            done: false,
        }
    }

    /// Times `future`, whose output is a `Result`: `Err` is an error of the error's type
    /// (see [`ResultClassifier`]); dropped before it ends, the call is `cancelled`. The
    /// future runs inside the call's span.
    pub fn run<F, T, E>(&self, future: F) -> OperationFuture<F, ResultClassifier>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.run_with(future, ResultClassifier)
    }

    /// Times `future`, whatever its output; every completed call is ok.
    pub fn time<F: Future>(&self, future: F) -> OperationFuture<F, AlwaysOk> {
        self.run_with(future, AlwaysOk)
    }

    /// Times `future`, classifying its output with `classify` ([`ok_if`], [`error_if`], or a
    /// closure returning an [`OperationOutcome`]).
    pub fn run_with<F, C>(&self, future: F, classify: C) -> OperationFuture<F, C>
    where
        F: Future,
        C: Classify<F::Output>,
    {
        OperationFuture {
            inner: future,
            guard: Some(self.start()),
            classify,
        }
    }
}

/// One call being timed; records exactly once: when finished, or, dropped unfinished, as
/// `cancelled`.
#[derive(Debug)]
#[must_use = "a guard dropped at once records a cancelled call"]
pub struct OperationGuard {
    handle: OperationHandle,
    start: u64,
    span: tracing::Span,
    exemplar: Option<ExemplarIds>,
    done: bool,
}

impl OperationGuard {
    /// The call's span, to enter around the work or to instrument a future with.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the call as `outcome`.
    pub fn finish(mut self, outcome: OperationOutcome) {
        self.record(match outcome {
            OperationOutcome::Ok => Ended::Ok,
            OperationOutcome::Error(t) => Ended::Error(t),
        });
    }

    /// Records the call as ok.
    pub fn ok(self) {
        self.finish(OperationOutcome::Ok);
    }

    /// Records the call as failed, with `error_type` as its `error.type`.
    pub fn error(self, error_type: &'static str) {
        self.finish(OperationOutcome::Error(error_type));
    }

    /// Records the call from a `Result` (see [`ResultClassifier`]).
    pub fn finish_result<T, E>(self, result: &Result<T, E>) {
        self.finish(OperationOutcome::of_result(result));
    }

    fn record(&mut self, ended: Ended) {
        self.done = true;
        match ended {
            Ended::Ok => {}
            Ended::Error(t) => {
                self.span.record("error.type", t);
                self.span.record("otel.status_code", "ERROR");
            }
            Ended::Cancelled => {
                self.span.record("error.type", names::ERROR_CANCELLED);
            }
        }
        let inner = &*self.handle.inner;
        inner
            .series
            .record(&inner.observer, self.start, ended, self.exemplar);
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        if !self.done {
            self.record(Ended::Cancelled);
        }
    }
}

pin_project! {
    /// A future timed as one call of an operation; made by [`OperationHandle::run`],
    /// [`time`](OperationHandle::time) and [`run_with`](OperationHandle::run_with).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct OperationFuture<F, C> {
        #[pin]
        inner: F,
        guard: Option<OperationGuard>,
        classify: C,
    }
}

impl<F, C> Future for OperationFuture<F, C>
where
    F: Future,
    C: Classify<F::Output>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.guard.as_ref().map(|g| g.span.enter());
        let output = std::task::ready!(this.inner.poll(cx));
        drop(_entered);
        if let Some(guard) = this.guard.take() {
            guard.finish(this.classify.classify(&output));
        }
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom;

    #[test]
    fn error_types_are_type_paths_without_generics() {
        assert_eq!(error_type_of::<std::io::Error>(), "std::io::error::Error");
        assert_eq!(error_type_of::<Vec<Boom>>(), "alloc::vec::Vec");
        assert!(error_type_of::<Boom>().ends_with("::Boom"));
        assert_eq!(
            OperationOutcome::of_result(&Err::<(), _>(Boom)),
            OperationOutcome::Error(error_type_of::<Boom>())
        );
        assert_eq!(
            OperationOutcome::of_result(&Ok::<_, Boom>(1)),
            OperationOutcome::Ok
        );
    }

    #[test]
    fn ok_if_and_error_if_follow_autometrics() {
        let missing_is_fine = ok_if(|r: &Result<Option<u8>, Boom>| !matches!(r, Ok(Some(0))));
        assert_eq!(missing_is_fine.classify(&Ok(None)), OperationOutcome::Ok);
        // A refused `Ok` is an error of no known type.
        assert_eq!(
            missing_is_fine.classify(&Ok(Some(0))),
            OperationOutcome::Error(names::ERROR_SERVICE)
        );
        let empty_fails =
            error_if(|r: &Result<Vec<u8>, Boom>| r.as_ref().map_or(true, Vec::is_empty));
        assert_eq!(empty_fails.classify(&Ok(vec![1])), OperationOutcome::Ok);
        assert_eq!(
            empty_fails.classify(&Err(Boom)),
            OperationOutcome::Error(error_type_of::<Boom>())
        );
        assert_eq!(AlwaysOk.classify(&Err::<(), _>(Boom)), OperationOutcome::Ok);
    }

    #[test]
    fn a_guard_records_exactly_once() {
        let observer = Observer::new();
        let op = observer.operation(Operation::function("m", "f"));
        op.start().ok();
        op.start().error("x");
        drop(op.start());
        let text = observer.render_metrics().unwrap();
        let count = |result: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("function_calls_total{")
                        && l.contains(&format!("result=\"{result}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count("ok").as_deref(), Some("1"));
        assert_eq!(count("error").as_deref(), Some("1"));
        assert_eq!(count("cancelled").as_deref(), Some("1"));
    }

    #[test]
    fn a_panicking_classifier_is_the_callers_panic_but_records_cancelled() {
        let observer = Observer::new();
        let op = observer.operation(Operation::db("sqlite", "select"));
        let fut = op.run_with(std::future::ready(1), |_: &i32| -> OperationOutcome {
            panic!("classifier bug")
        });
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut fut = std::pin::pin!(fut);
            let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
            let _ = fut.as_mut().poll(&mut Context::from_waker(&waker));
        }));
        assert!(polled.is_err());
        // The guard was taken out before classifying: dropped during the unwind, it recorded
        // the call once, as cancelled.
        let op = &observer.stats().operations[0];
        assert_eq!((op.calls, op.cancelled), (1, 1));
    }

    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    #[test]
    fn too_many_error_types_fold_into_other() {
        let observer = Observer::new();
        let op = observer.operation(Operation::db("sqlite", "select"));
        const TYPES: [&str; 40] = [
            "e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10", "e11", "e12", "e13",
            "e14", "e15", "e16", "e17", "e18", "e19", "e20", "e21", "e22", "e23", "e24", "e25",
            "e26", "e27", "e28", "e29", "e30", "e31", "e32", "e33", "e34", "e35", "e36", "e37",
            "e38", "e39",
        ];
        for t in TYPES {
            op.start().error(t);
        }
        let text = observer.render_metrics().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("db_client_operation_duration_seconds_count{"))
            .count();
        assert_eq!(series, 34, "the ok series, 32 error types and _OTHER");
        assert!(text.contains("error_type=\"_OTHER\"} 8"), "{text}");
    }
}
