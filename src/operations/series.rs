//! The operations part: one series per operation (its metric handles, registered when the
//! user makes the handle, and its `/v1/stats` cell), and the one recording path of a
//! finished call.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::Counter;

use super::operation::{Kind, Operation};
use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, ExemplarIds, HistogramHandle};
use crate::observer::{Observer, OperationRecord, Part, RecorderSource};
use crate::stats::{OperationEntry, Outcome, StatsCell, StatsSnapshot};
use crate::sync::{read, write};

/// Most distinct error types per operation; past it an error is recorded as `_OTHER`.
const MAX_ERROR_TYPES: usize = 32;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Ok,
    Error(&'static str),
    Cancelled,
}

/// The handles one outcome records into.
#[derive(Debug)]
struct OutcomeHandles {
    duration: HistogramHandle,
    /// `function_calls_total{result}` (kind `function` only).
    calls: Option<Counter>,
}

/// One operation's label set: its handles and its statistics.
#[derive(Debug)]
pub(crate) struct OperationSeries {
    pub(crate) kind: Kind,
    pub(crate) system: Box<str>,
    pub(crate) name: Box<str>,
    /// Empty when not set.
    pub(crate) target: Box<str>,
    /// `otel.name` of the call's span: `{operation} {target}` or the function's name.
    pub(crate) span_name: Box<str>,
    ok: OutcomeHandles,
    /// Registered on the first cancellation.
    cancelled: OnceLock<OutcomeHandles>,
    /// Registered on an error type's first use (error types are `&'static str`: bounded by
    /// the code), at most [`MAX_ERROR_TYPES`].
    errors: RwLock<Vec<(&'static str, Arc<OutcomeHandles>)>>,
    cell: StatsCell,
    overflow: Option<Counter>,
}

impl OperationSeries {
    fn new(source: &dyn RecorderSource, values: &[&str], overflow: Option<Counter>) -> Self {
        let kind = Kind::from_label(values[0]);
        let (system, name, target) = (values[1], values[2], values[3]);
        let mut this = Self {
            kind,
            system: system.into(),
            name: name.into(),
            target: target.into(),
            span_name: match (kind, target.is_empty()) {
                (Kind::Function, _) | (_, true) => name.into(),
                _ => format!("{name} {target}").into(),
            },
            ok: OutcomeHandles {
                duration: HistogramHandle::noop(),
                calls: None,
            },
            cancelled: OnceLock::new(),
            errors: RwLock::new(Vec::new()),
            cell: StatsCell::default(),
            overflow,
        };
        this.ok = this.handles(source, Ended::Ok);
        this
    }

    /// Registers the handles of one outcome.
    fn handles(&self, source: &dyn RecorderSource, ended: Ended) -> OutcomeHandles {
        let (system, name, target) = (&*self.system, &*self.name, &*self.target);
        let error_type = match ended {
            Ended::Ok => None,
            Ended::Error(t) => Some(t),
            Ended::Cancelled => Some(names::ERROR_CANCELLED),
        };
        let key =
            |metric, labels: &[(&str, &str)]| handles::entry_key(metric, labels, &self.overflow);
        match self.kind {
            Kind::Function => {
                let labels = [(names::FUNCTION, name), (names::MODULE, system)];
                let result = match ended {
                    Ended::Ok => "ok",
                    Ended::Error(_) => "error",
                    Ended::Cancelled => "cancelled",
                };
                let with_result = [labels[0], labels[1], (names::RESULT, result)];
                OutcomeHandles {
                    duration: handles::histogram(
                        source,
                        &key(names::FUNCTION_CALLS_DURATION, &labels),
                    ),
                    calls: Some(handles::counter(
                        source,
                        &key(names::FUNCTION_CALLS, &with_result),
                    )),
                }
            }
            kind => {
                let (metric, system_label, name_label, target_label) = match kind {
                    Kind::Db => (
                        names::DB_CLIENT_OPERATION_DURATION,
                        names::DB_SYSTEM_NAME,
                        names::DB_OPERATION_NAME,
                        names::DB_COLLECTION_NAME,
                    ),
                    Kind::MessagingProcess => (
                        names::MESSAGING_PROCESS_DURATION,
                        names::MESSAGING_SYSTEM,
                        names::MESSAGING_OPERATION_NAME,
                        names::MESSAGING_DESTINATION_NAME,
                    ),
                    _ => (
                        names::MESSAGING_CLIENT_OPERATION_DURATION,
                        names::MESSAGING_SYSTEM,
                        names::MESSAGING_OPERATION_NAME,
                        names::MESSAGING_DESTINATION_NAME,
                    ),
                };
                let mut labels = vec![(system_label, system), (name_label, name)];
                if !target.is_empty() {
                    labels.push((target_label, target));
                }
                if let Some(error_type) = error_type {
                    labels.push((names::ERROR_TYPE, error_type));
                }
                OutcomeHandles {
                    duration: handles::histogram(source, &key(metric, &labels)),
                    calls: None,
                }
            }
        }
    }

    /// The handles of an error type, registered on its first use.
    fn error_handles(&self, observer: &Observer, error_type: &'static str) -> Arc<OutcomeHandles> {
        let find = |list: &[(&'static str, Arc<OutcomeHandles>)], t: &str| {
            list.iter()
                .find(|(known, _)| std::ptr::eq(*known, t) || *known == t)
                .map(|(_, h)| h.clone())
        };
        if let Some(h) = find(&read(&self.errors), error_type) {
            return h;
        }
        let mut list = write(&self.errors);
        let error_type = if list.len() >= MAX_ERROR_TYPES {
            names::ERROR_SERVICE
        } else {
            error_type
        };
        if let Some(h) = find(&list, error_type) {
            return h;
        }
        let h = Arc::new(self.handles(observer.source(), Ended::Error(error_type)));
        list.push((error_type, h.clone()));
        h
    }

    /// The one recording path of a finished call.
    pub(crate) fn record(
        &self,
        observer: &Observer,
        start: u64,
        ended: Ended,
        exemplar: Option<ExemplarIds>,
    ) {
        observer.guarded(|| {
            let end = observer.now_nanos();
            let nanos = end.saturating_sub(start);
            let duration = Duration::from_nanos(nanos);
            let error;
            let handles = match ended {
                Ended::Ok => &self.ok,
                Ended::Cancelled => self
                    .cancelled
                    .get_or_init(|| self.handles(observer.source(), Ended::Cancelled)),
                Ended::Error(t) => {
                    error = self.error_handles(observer, t);
                    &*error
                }
            };
            observer.record_duration(&handles.duration, duration, end, exemplar);
            if let Some(calls) = &handles.calls {
                calls.increment(1);
            }
            handles::count_overflow(&self.overflow);
            let outcome = match ended {
                Ended::Ok => Outcome::Success,
                Ended::Error(_) => Outcome::Failure,
                Ended::Cancelled => Outcome::Aborted,
            };
            self.cell
                .record(nanos, observer.second_of(end), None, outcome);
            let sinks = observer.sinks();
            if !sinks.is_empty() {
                let record = OperationRecord {
                    kind: self.kind.as_str(),
                    system: &self.system,
                    name: &self.name,
                    target: &self.target,
                    error_type: match ended {
                        Ended::Ok => None,
                        Ended::Error(t) => Some(t),
                        Ended::Cancelled => Some(names::ERROR_CANCELLED),
                    },
                    cancelled: ended == Ended::Cancelled,
                    duration,
                    end: observer.wall_at(end),
                };
                for sink in sinks {
                    sink.record_operation(&record);
                }
            }
        });
    }

    /// Latency of completed calls, failures, cancellations, … for `/v1/stats`.
    pub(crate) fn entry(&self, elapsed: f64) -> OperationEntry {
        let e = self.cell.entry(elapsed);
        let completed = e.requests - e.aborted;
        OperationEntry {
            kind: self.kind.as_str(),
            system: self.system.to_string(),
            name: self.name.to_string(),
            target: (!self.target.is_empty()).then(|| self.target.to_string()),
            calls: e.requests,
            errors: e.errors,
            cancelled: e.aborted,
            error_rate: (completed > 0).then(|| e.errors as f64 / completed as f64),
            calls_per_second: e.requests_per_second,
            latency_ms: e.latency_ms,
        }
    }
}

/// Label values: kind, system, name, target. Past the limit the kind and the system keep
/// their values (they come from the code); the name and the target fold into `_OTHER`.
const KEPT: u64 = 0b0011;

/// The operations of an observer; attached when the first operation handle is made.
#[derive(Debug)]
pub(crate) struct OperationsPart {
    families: [Family<OperationSeries>; 4],
}

impl OperationsPart {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            families: [
                Family::keeping(names::DB_CLIENT_OPERATION_DURATION, limit, KEPT),
                Family::keeping(names::MESSAGING_PROCESS_DURATION, limit, KEPT),
                Family::keeping(names::MESSAGING_CLIENT_OPERATION_DURATION, limit, KEPT),
                Family::keeping(names::FUNCTION_CALLS, limit, KEPT),
            ],
        }
    }

    /// The series of `operation`, registered on first use (a detached one that records
    /// nowhere should the recorder panic).
    pub(crate) fn series(
        &self,
        observer: &Observer,
        operation: &Operation,
    ) -> Arc<OperationSeries> {
        let values = [
            operation.kind.as_str(),
            &*operation.system,
            &*operation.name,
            operation.target.as_deref().unwrap_or(""),
        ];
        let family = &self.families[operation.kind as usize];
        let mut series = None;
        observer.with_source(|source| {
            series = Some(family.get(source, &values, |v, overflow| {
                OperationSeries::new(source, v, overflow)
            }));
        });
        series.unwrap_or_else(|| {
            Arc::new(OperationSeries::new(
                &crate::observer::NoRecorder,
                &values,
                None,
            ))
        })
    }
}

impl Part for OperationsPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        snapshot.operations = self
            .families
            .iter()
            .flat_map(|f| f.entries())
            .map(|(_, series)| series.entry(elapsed))
            .collect();
    }

    fn reset(&self) {
        for family in &self.families {
            for (_, series) in family.entries() {
                series.cell.reset();
            }
        }
    }
}
