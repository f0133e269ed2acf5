#![doc = include_str!("../../docs/operations.md")]

mod layer;
mod operation;
mod queue;
mod series;

pub use crate::stats::{OperationEntry, QueueEntry, WorkerCounts};
pub use layer::{future, ObserveOperation, ObserveOperationLayer};
pub use operation::{
    error_if, error_type_of, ok_if, AlwaysOk, Classify, ErrorIf, OkIf, Operation, OperationFuture,
    OperationGuard, OperationHandle, OperationOutcome, ResultClassifier,
};
pub use queue::{Enqueued, JobFuture, JobGuard, Queue, QueueHandle, WorkerHandle, IN_PROCESS};
