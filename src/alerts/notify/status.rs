//! What `GET /v1/alerts` shows of each channel.

use serde::Serialize;

/// The last failure of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// When it happened (RFC 3339).
    pub at: String,
    /// What happened, e.g. `HTTP 500 from https://hooks.slack.com:443` — never a secret.
    pub message: String,
}

/// What `GET /v1/alerts` shows of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    /// The channel's name (the `channel` label of `alert_notifications_total`).
    pub name: String,
    /// Its kind: `webhook`, `slack`, `pagerduty`, `email`, `alertmanager` or `log`.
    pub kind: &'static str,
    /// Notifications delivered.
    pub sent: u64,
    /// Notifications given up after the last attempt (or at once, for a permanent error).
    pub failed: u64,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
    /// Attempts past the first one, over all notifications.
    pub retries: u64,
    /// Notifications waiting in the queue.
    pub queued: u64,
    /// When a notification (or an Alertmanager re-send) last went through (RFC 3339).
    pub last_success: Option<String>,
    /// The last failed attempt.
    pub last_error: Option<LastError>,
}
