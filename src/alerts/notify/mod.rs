//! Notification channels: where firing and resolved alerts are sent.
//!
//! Each channel is a builder — [`Webhook`], [`Slack`], [`PagerDuty`], [`Email`],
//! [`Alertmanager`] or [`Log`] — turned into a [`Channel`] with `.into()`. The [`Notifier`]
//! runs one worker thread per channel, fed by a bounded queue: handing it an event never
//! blocks and never fails (a full queue drops the event and counts it). Each worker sends
//! with a connect and a total timeout, and retries transient failures (connection errors,
//! timeouts, HTTP 408, 429 and 5xx, SMTP 4xx) with exponential backoff and full jitter, a
//! bounded number of times.
//!
//! Every channel counts its notifications in `alert_notifications_total{channel, result}`
//! (`result` is `success`, `failure` — given up after the last attempt — or `dropped`) and
//! keeps a [`ChannelStatus`] (counts, last success, last error) for `GET /v1/alerts`.
//!
//! TLS uses the application's rustls crypto provider when it installed one (else the one the
//! feature `tls-aws-lc-rs` or `tls-ring` selects); every channel takes private roots with
//! `root_certificate_pem` / `root_certificate_pem_file` ([TLS](crate::alerts#tls)).
//!
//! Secrets — webhook URLs, routing keys, SMTP passwords, extra headers — never appear in
//! `Debug` output, logs, metrics or [`ChannelStatus`]: errors name their kind, the HTTP
//! status and only `scheme://host:port` of the target.
//!
//! ```
//! use std::time::Duration;
//! use tower_observe::alerts::notify::{Channel, Email, Slack, Webhook};
//!
//! let channels: Vec<Channel> = vec![
//!     Webhook::new("https://hooks.example.com/alerts")
//!         .header("Authorization", "Bearer s3cr3t")
//!         .into(),
//!     Slack::new("https://hooks.slack.com/services/T000/B000/XXXX")
//!         .name("ops-slack")
//!         .timeout(Duration::from_secs(5))
//!         .into(),
//!     Email::new("smtp.example.com")
//!         .from("alerts@example.com")
//!         .to("oncall@example.com")
//!         .into(),
//! ];
//! assert_eq!(channels[1].name(), "ops-slack");
//! // Secrets stay out of Debug output.
//! assert!(!format!("{channels:?}").contains("s3cr3t"));
//! ```

use std::time::{Duration, Instant};

use super::AlertEvent;

mod alertmanager;
mod email;
mod format;
mod http;
mod log;
mod pagerduty;
mod slack;
mod status;
mod webhook;
mod worker;

pub use alertmanager::{Alertmanager, DEFAULT_RESEND_INTERVAL};
pub use email::{Email, Tls};
pub use log::Log;
pub use pagerduty::{PagerDuty, PAGERDUTY_EVENTS_URL};
pub use slack::Slack;
pub use status::{ChannelStatus, LastError};
pub use webhook::Webhook;
pub use worker::Notifier;

/// Events a channel's queue holds before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Retries after the first attempt, by default (so at most 5 attempts).
pub const DEFAULT_RETRIES: u32 = 4;
/// Default total timeout of one attempt (connect, send, response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connect timeout of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default first backoff (the n-th retry waits a random time up to `base × 2ⁿ⁻¹`).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default longest backoff between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Delivery settings every channel has.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) queue_capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// The delivery setters every channel builder has (its `settings` field).
macro_rules! settings_setters {
    () => {
        /// Names the channel, for the `channel` label of `alert_notifications_total` and its
        /// status (default: its kind, e.g. `"slack"`; a name already taken gets a `-2`, `-3`, …
        /// suffix).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.settings.name = Some(name.into());
            self
        }

        /// The total time one attempt may take: connecting, sending and reading the response
        /// (default 10 s).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.timeout = timeout;
            self
        }

        /// The time connecting may take, within [`timeout`](Self::timeout) (default 5 s).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.connect_timeout = timeout;
            self
        }

        /// Retries after a failed first attempt (default 4, so at most 5 attempts). Only
        /// transient failures are retried: connection errors, timeouts, HTTP 408, 429 and
        /// 5xx, SMTP 4xx.
        pub fn retries(mut self, retries: u32) -> Self {
            self.settings.retries = retries;
            self
        }

        /// Exponential backoff with full jitter between attempts: the n-th retry waits a
        /// random time between zero and `min(max, base × 2ⁿ⁻¹)` (default 500 ms and 30 s).
        pub fn backoff(mut self, base: std::time::Duration, max: std::time::Duration) -> Self {
            self.settings.backoff_base = base;
            self.settings.backoff_max = max.max(base);
            self
        }

        /// Events waiting for this channel past which new ones are dropped (and counted as
        /// `dropped`); default 256, at least 1.
        pub fn queue_capacity(mut self, capacity: usize) -> Self {
            self.settings.queue_capacity = capacity.max(1);
            self
        }
    };
}
pub(crate) use settings_setters;

/// A notification channel, made from one of the channel builders with `.into()`.
///
/// ```
/// use tower_observe::alerts::notify::{Channel, Log};
///
/// let channel: Channel = Log::new().name("audit").into();
/// assert_eq!((channel.name(), channel.kind()), ("audit", "log"));
/// ```
#[derive(Debug, Clone)]
pub struct Channel {
    inner: ChannelKind,
}

#[derive(Debug, Clone)]
enum ChannelKind {
    Webhook(Webhook),
    Slack(Slack),
    PagerDuty(PagerDuty),
    Email(Email),
    Alertmanager(Alertmanager),
    Log(Log),
}

impl Channel {
    /// The channel's kind: `webhook`, `slack`, `pagerduty`, `email`, `alertmanager` or `log`.
    pub fn kind(&self) -> &'static str {
        match &self.inner {
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Slack(_) => "slack",
            ChannelKind::PagerDuty(_) => "pagerduty",
            ChannelKind::Email(_) => "email",
            ChannelKind::Alertmanager(_) => "alertmanager",
            ChannelKind::Log(_) => "log",
        }
    }

    /// The name it was given, or its kind.
    pub fn name(&self) -> &str {
        self.settings().name.as_deref().unwrap_or(self.kind())
    }

    /// Checks the channel's settings (URL scheme and host, tokens, SMTP host, port and
    /// addresses): the field that cannot be used, and why (never quoting a secret).
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        match &self.inner {
            ChannelKind::Webhook(c) => c.validate(),
            ChannelKind::Slack(c) => c.validate(),
            ChannelKind::PagerDuty(c) => c.validate(),
            ChannelKind::Email(c) => c.validate(),
            ChannelKind::Alertmanager(c) => c.validate(),
            ChannelKind::Log(_) => Ok(()),
        }
    }

    fn settings(&self) -> &Settings {
        match &self.inner {
            ChannelKind::Webhook(c) => &c.settings,
            ChannelKind::Slack(c) => &c.settings,
            ChannelKind::PagerDuty(c) => &c.settings,
            ChannelKind::Email(c) => &c.settings,
            ChannelKind::Alertmanager(c) => &c.settings,
            ChannelKind::Log(c) => &c.settings,
        }
    }

    /// The channel's sender.
    fn into_deliver(self, ctx: &DeliverContext<'_>) -> Box<dyn Deliver> {
        match self.inner {
            ChannelKind::Webhook(c) => Box::new(c.into_deliver(ctx)),
            ChannelKind::Slack(c) => Box::new(c.into_deliver(ctx)),
            ChannelKind::PagerDuty(c) => Box::new(c.into_deliver(ctx)),
            ChannelKind::Email(c) => Box::new(c.into_deliver(ctx)),
            ChannelKind::Alertmanager(c) => Box::new(c.into_deliver(ctx)),
            ChannelKind::Log(c) => Box::new(c.into_deliver(ctx)),
        }
    }
}

macro_rules! channel_from {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Channel {
            fn from(channel: $ty) -> Self {
                Channel { inner: ChannelKind::$ty(channel) }
            }
        }
    )*};
}
channel_from!(Webhook, Slack, PagerDuty, Email, Alertmanager, Log);

/// Checks [`Alerts::external_url`](crate::alerts::Alerts::external_url): an http or https
/// URL with a host.
pub(crate) fn check_external_url(url: &str) -> Result<(), String> {
    http::check_url(url)
}

/// Why one attempt failed: a message free of secrets, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendError {
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

impl SendError {
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retryable: true,
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What a channel's sender is made with besides its builder. Every channel takes the whole of
/// it, so a new need is one field here rather than one more argument list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliverContext<'a> {
    /// The channel's final name, deduplicated (the webhook's `receiver`).
    pub(crate) name: &'a str,
    /// The service's external URL (the webhook's `externalURL`, PagerDuty's `client_url`).
    pub(crate) external_url: Option<&'a str>,
}

/// One channel's way of sending, owned by its worker thread.
pub(crate) trait Deliver: Send {
    /// Called once per event, before its first attempt (the Alertmanager channel tracks
    /// firing alerts here).
    fn accept(&mut self, _event: &AlertEvent) {}

    /// One attempt at delivering `event`.
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError>;

    /// When periodic work (the Alertmanager channel's re-sends) is next due.
    fn next_resend(&self) -> Option<Instant> {
        None
    }

    /// Does the periodic work; `Ok(false)` when there was nothing to send.
    fn resend(&mut self) -> Result<bool, SendError> {
        Ok(false)
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use crate::alerts::{AlertEvent, EventStatus, FailedRequest, Severity};

    /// A sample event.
    pub(crate) fn event(status: EventStatus) -> AlertEvent {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "HighErrorRate".to_owned()),
            ("severity".to_owned(), "critical".to_owned()),
        ]);
        AlertEvent {
            rule: "HighErrorRate".into(),
            status,
            severity: Severity::Critical,
            fingerprint: crate::alerts::event::fingerprint(&labels),
            labels,
            annotations: BTreeMap::from([(
                "summary".to_owned(),
                "Errors <high> & rising".to_owned(),
            )]),
            starts_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            ends_at: (status == EventStatus::Resolved)
                .then(|| UNIX_EPOCH + Duration::from_secs(1_800_000_600)),
            value: if status == EventStatus::Resolved {
                0.031
            } else {
                0.1304
            },
            firing_value: (status == EventStatus::Resolved).then_some(0.1304),
            links: vec![(
                "History".into(),
                "http://svc/v1/stats/history?a=1&b=2".into(),
            )],
            generator_url: "http://svc/v1/alerts".into(),
            failed_requests: vec![FailedRequest {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: "00f067aa0ba902b7".into(),
                view_url: None,
            }],
        }
    }
}
