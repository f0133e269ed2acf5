//! Prometheus Alertmanager: `POST /api/v2/alerts`, re-sent while firing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::http::{
    agent, header_setter, post_json, root_setters, PrivateRoots, SecretHeader, Target,
};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::{AlertEvent, EventStatus};
use crate::time_fmt::rfc3339;

/// Default interval between two re-sends of a firing alert.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(30);
/// Most firing alerts an Alertmanager channel keeps re-sending.
const MAX_TRACKED: usize = 10_000;
/// Most alerts in one re-send request.
const BATCH: usize = 500;

/// Sends alerts to a Prometheus Alertmanager (API v2), which then groups, silences and routes
/// them like Prometheus's own.
///
/// A firing alert is posted at once and then **re-sent every
/// [`resend_interval`](Self::resend_interval)** (default 30 s) with `endsAt` four intervals
/// ahead, as Alertmanager expects of its clients: it never resolves the alert by itself while
/// the service keeps it firing, yet does resolve it should the service die. A resolved alert
/// is posted with its real `endsAt` and no longer re-sent. Up to 10 000 firing alerts are
/// tracked; past that, new ones are posted once.
///
/// ```
/// use std::time::Duration;
/// use tower_observe::alerts::notify::{Alertmanager, Channel};
///
/// let channel: Channel = Alertmanager::new("http://alertmanager:9093")
///     .resend_interval(Duration::from_secs(60))
///     .into();
/// assert_eq!(channel.kind(), "alertmanager");
/// ```
#[derive(Debug, Clone)]
pub struct Alertmanager {
    pub(crate) settings: Settings,
    target: Target,
    roots: PrivateRoots,
    headers: Vec<SecretHeader>,
    resend_interval: Duration,
}

impl Alertmanager {
    /// A channel posting to the Alertmanager at `base_url` (e.g. `http://alertmanager:9093`;
    /// `/api/v2/alerts` is appended).
    pub fn new(base_url: impl Into<String>) -> Self {
        let base: String = base_url.into();
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        Alertmanager {
            settings: Settings::default(),
            target: Target::new(url),
            roots: PrivateRoots::default(),
            headers: Vec::new(),
            resend_interval: DEFAULT_RESEND_INTERVAL,
        }
    }

    /// How often firing alerts are re-sent (default 30 s, at least 1 s); their `endsAt` is
    /// four intervals ahead.
    pub fn resend_interval(mut self, interval: Duration) -> Self {
        self.resend_interval = interval.max(Duration::from_secs(1));
        self
    }

    header_setter! {
        /// Adds a request header, e.g. `Authorization` for an Alertmanager behind a proxy (its
        /// value is kept secret).
    }

    root_setters!(
        "for `https://`, instead of Mozilla's roots (the channel talks to one server, whose root \
         is all it needs),"
    );

    settings_setters!();

    /// The field that cannot be used, and why.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        self.target.check().map_err(|e| ("base_url", e))?;
        super::http::check_headers(&self.headers).map_err(|e| ("header", e))?;
        super::http::check_tls(&self.target, &self.roots)
    }

    pub(crate) fn into_deliver(self, _ctx: &DeliverContext<'_>) -> AlertmanagerDeliver {
        AlertmanagerDeliver {
            agent: agent(&self.settings, &self.target, &self.roots),
            target: self.target,
            headers: self.headers,
            interval: self.resend_interval,
            firing: HashMap::new(),
            next_resend: None,
            full_warned: false,
        }
    }
}

/// What is re-sent of a firing alert.
#[derive(Debug, Clone)]
struct Firing {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: SystemTime,
    generator_url: String,
}

/// Alertmanager's `postableAlert`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Postable<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

pub(crate) struct AlertmanagerDeliver {
    agent: Result<ureq::Agent, SendError>,
    target: Target,
    headers: Vec<SecretHeader>,
    interval: Duration,
    firing: HashMap<String, Firing>,
    next_resend: Option<Instant>,
    full_warned: bool,
}

impl AlertmanagerDeliver {
    fn post(&self, alerts: &[Postable<'_>]) -> Result<(), SendError> {
        let body = serde_json::to_vec(alerts)
            .map_err(|_| SendError::permanent("could not encode the alerts"))?;
        post_json(&self.agent, &self.target, &self.headers, &body)
    }

    /// `endsAt` of a firing alert: four intervals from now.
    fn lease(&self) -> String {
        rfc3339(SystemTime::now() + self.interval.saturating_mul(4))
    }
}

impl Deliver for AlertmanagerDeliver {
    fn accept(&mut self, event: &AlertEvent) {
        match event.status {
            EventStatus::Firing => {
                if self.firing.len() >= MAX_TRACKED && !self.firing.contains_key(&event.fingerprint)
                {
                    if !self.full_warned {
                        self.full_warned = true;
                        tracing::warn!(
                            max = MAX_TRACKED,
                            "Alertmanager channel: too many firing alerts to re-send; new ones are sent once"
                        );
                    }
                    return;
                }
                self.firing.insert(
                    event.fingerprint.clone(),
                    Firing {
                        labels: event.labels.clone(),
                        annotations: event.annotations.clone(),
                        starts_at: event.starts_at,
                        generator_url: event.generator_url.clone(),
                    },
                );
                if self.next_resend.is_none() {
                    self.next_resend = Some(Instant::now() + self.interval);
                }
            }
            EventStatus::Resolved => {
                self.firing.remove(&event.fingerprint);
                if self.firing.is_empty() {
                    self.next_resend = None;
                    self.full_warned = false;
                }
            }
        }
    }

    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let ends_at = match event.status {
            EventStatus::Firing => self.lease(),
            EventStatus::Resolved => rfc3339(event.ends_at.unwrap_or_else(SystemTime::now)),
        };
        self.post(&[Postable {
            labels: &event.labels,
            annotations: &event.annotations,
            starts_at: rfc3339(event.starts_at),
            ends_at,
            generator_url: &event.generator_url,
        }])
    }

    fn next_resend(&self) -> Option<Instant> {
        self.next_resend
    }

    fn resend(&mut self) -> Result<bool, SendError> {
        if self.firing.is_empty() {
            self.next_resend = None;
            return Ok(false);
        }
        self.next_resend = Some(Instant::now() + self.interval);
        let ends_at = self.lease();
        let alerts: Vec<Postable<'_>> = self
            .firing
            .values()
            .map(|a| Postable {
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: rfc3339(a.starts_at),
                ends_at: ends_at.clone(),
                generator_url: &a.generator_url,
            })
            .collect();
        for batch in alerts.chunks(BATCH) {
            self.post(batch)?;
        }
        Ok(true)
    }
}
