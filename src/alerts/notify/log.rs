//! The log channel: each notification as a `tracing` event.

use super::format::{summary, value_text};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::AlertEvent;

/// Logs each notification with `tracing` at `INFO` (target `tower_observe::alerts`): the
/// alert's name, status, severity, value, summary and fingerprint. Handy in development and
/// demos, and as an audit trail next to the other channels.
///
/// ```
/// use tower_observe::alerts::notify::{Channel, Log};
///
/// let channel: Channel = Log::new().into();
/// assert_eq!(channel.name(), "log");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub(crate) settings: Settings,
}

impl Log {
    /// A channel that logs.
    pub fn new() -> Self {
        Log::default()
    }

    settings_setters!();

    /// A log channel sends by itself: nothing to build.
    pub(crate) fn into_deliver(self, _ctx: &DeliverContext<'_>) -> Log {
        self
    }
}

impl Deliver for Log {
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let summary = summary(event);
        let value = value_text(event);
        let status = event.status.as_str();
        tracing::info!(
            target: "tower_observe::alerts",
            alert = %event.rule,
            status,
            severity = event.severity.as_str(),
            value = %value,
            fingerprint = %event.fingerprint,
            "alert {status}: {summary}"
        );
        Ok(())
    }
}
