//! Alerting: rules evaluated in process, with firing and resolved notifications.
//!
//! (Module documentation: `docs/alerts.md`, written when the engine lands.)

mod event;
pub mod notify;

pub use event::{AlertEvent, EventStatus, FailedRequest, Severity};
