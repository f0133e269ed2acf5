#![doc = include_str!("../docs/health.md")]

use std::any::Any;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use http::StatusCode;
use serde::Serialize;

use crate::observer::{Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::{json, EndpointBody};
use crate::{Observer, ObserverBuilder};

/// Path of the readiness endpoint (error rate, dependency checks).
pub const HEALTH_PATH: &str = "/health";
/// Path of the liveness endpoint.
pub const LIVE_PATH: &str = "/health/live";

/// A dependency check: resolves to `Ok(())` when the dependency is usable. It must bound its
/// own duration (wrap it in a timeout): `/health` waits for every check.
pub type HealthCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Health settings; given to [`ObserverBuilder::health`].
#[derive(Clone)]
#[must_use]
pub struct HealthOptions {
    pub(crate) enabled: bool,
    pub(crate) yellow: f64,
    pub(crate) red: f64,
    pub(crate) min_requests: u64,
    pub(crate) checks: Vec<(String, HealthCheck)>,
}

impl fmt::Debug for HealthOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthOptions")
            .field("yellow", &self.yellow)
            .field("red", &self.red)
            .field("min_requests", &self.min_requests)
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthOptions {
    /// Yellow from a 5 % error rate, red above 10 %, judged from 10 requests a minute.
    pub fn new() -> Self {
        Self {
            enabled: true,
            yellow: 0.05,
            red: 0.10,
            min_requests: 10,
            checks: Vec::new(),
        }
    }

    /// No `/health` and `/health/live` routes (for an app that serves its own).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Error rates (0 to 1) at which health turns yellow (at or above `yellow`) and red
    /// (above `red`). Out-of-range or inverted values are clamped into order.
    pub fn thresholds(mut self, yellow: f64, red: f64) -> Self {
        let clamp = |v: f64| if v.is_nan() { 1.0 } else { v.clamp(0.0, 1.0) };
        self.yellow = clamp(yellow);
        self.red = clamp(red).max(self.yellow);
        self
    }

    /// Fewer requests than this in the last minute: too little traffic to judge, green.
    pub fn min_requests(mut self, n: u64) -> Self {
        self.min_requests = n;
        self
    }

    /// Adds a dependency check, run on every `GET /health`.
    pub fn check<F>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync + 'static,
    {
        self.checks.push((name.to_owned(), Arc::new(check)));
        self
    }
}

/// Health status, from best to worst (defined by the core, which every capability reports
/// its health to).
pub use crate::observer::Status;

/// The document `GET /health` serves.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Overall status.
    pub status: Status,
    /// Failed requests / requests over the last minute; `null` without requests.
    pub error_rate: Option<f64>,
    /// Requests in the last minute.
    pub requests_last_minute: u64,
    /// The yellow and red thresholds.
    pub thresholds: Thresholds,
    /// The service's version, if configured.
    pub version: Option<String>,
    /// When the observer started (RFC 3339, UTC).
    pub started_at: String,
    /// Seconds since.
    pub uptime_seconds: f64,
    /// One entry per dependency check.
    pub checks: std::collections::BTreeMap<String, CheckResult>,
    /// Every cause of the status, and notes that do not change it: the error rate against
    /// the threshold it crossed (`error rate 22.9% > red threshold 20% (…)`), each failed
    /// check, each firing alert that counts, and — without a colour change — the warnings of
    /// [`Observer::warnings`] and a history that is not durable.
    pub reasons: Vec<String>,
    /// What further capabilities report (`process`, `alerts`), by name.
    #[serde(flatten)]
    pub sections: std::collections::BTreeMap<&'static str, serde_json::Value>,
}

/// The thresholds in effect.
#[derive(Debug, Clone, Copy, Serialize)]
#[allow(missing_docs)]
pub struct Thresholds {
    pub yellow: f64,
    pub red: f64,
}

/// The outcome of one dependency check.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CheckResult {
    /// `green` or `red`.
    pub status: Status,
    /// How long the check took.
    pub latency_ms: f64,
    /// Why it failed.
    pub error: Option<String>,
}

impl HealthReport {
    /// The HTTP status a probe should get: 503 when red, else 200.
    pub fn http_status(&self) -> http::StatusCode {
        match self.status {
            Status::Red => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::OK,
        }
    }
}

/// Runs every check concurrently and waits for all.
pub(crate) async fn run_checks(checks: &[(String, HealthCheck)]) -> Vec<(String, CheckResult)> {
    type Running = (
        String,
        Instant,
        Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
    );
    let mut running: Vec<Running> = checks
        .iter()
        .map(|(name, check)| (name.clone(), Instant::now(), check()))
        .collect();
    let mut done: Vec<(String, CheckResult)> = Vec::new();
    poll_fn(|cx| {
        let mut i = 0;
        while i < running.len() {
            if let Poll::Ready(result) = running[i].2.as_mut().poll(cx) {
                let (name, started, _) = running.swap_remove(i);
                done.push((
                    name,
                    CheckResult {
                        status: if result.is_ok() {
                            Status::Green
                        } else {
                            Status::Red
                        },
                        latency_ms: started.elapsed().as_secs_f64() * 1e3,
                        error: result.err(),
                    },
                ));
            } else {
                i += 1;
            }
        }
        if running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    done
}

/// The health settings of an observer: attached when it is built (with the defaults, if the
/// builder set none), serving `/health` and `/health/live`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthPart {
    options: HealthOptions,
    version: Option<String>,
}

impl Pending for HealthPart {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        observer.part(move || *self);
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Part for HealthPart {
    fn routes(&self, observer: &Observer) -> Vec<Route> {
        if !self.options.enabled {
            return Vec::new();
        }
        let health = observer.clone();
        vec![
            Route::new(HEALTH_PATH, RouteMethod::Get, move |_| {
                let observer = health.clone();
                async move { health_response(&observer).await }
            }),
            Route::new(LIVE_PATH, RouteMethod::Get, |_| async {
                json(&serde_json::json!({ "status": "alive" }))
            }),
        ]
    }
}

/// `GET /health`: the report, 503 when red.
async fn health_response(observer: &Observer) -> http::Response<EndpointBody> {
    let report = observer.health().await;
    let mut res = json(&report);
    if res.status() == StatusCode::OK {
        *res.status_mut() = report.http_status();
    }
    res
}

impl ObserverBuilder {
    /// Health thresholds and dependency checks for `GET /health`.
    pub fn health(mut self, options: HealthOptions) -> Self {
        self.pending::<HealthPart>().options = options;
        self
    }

    /// The service's version, reported by `GET /health` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.pending::<HealthPart>().version = Some(version.into());
        self
    }
}

impl Observer {
    /// The health settings (the defaults when the builder set none).
    pub(crate) fn health_part(&self) -> Arc<HealthPart> {
        self.part(HealthPart::default)
    }

    /// The health report, as `GET /health` serves it (runs the dependency checks).
    ///
    /// ```
    /// # async fn demo() {
    /// let observer = tower_observe::Observer::new();
    /// let report = observer.health().await;
    /// assert_eq!(report.status, tower_observe::health::Status::Green); // no traffic yet
    /// assert_eq!(report.http_status(), 200);
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo());
    /// ```
    pub async fn health(&self) -> HealthReport {
        let part = self.health_part();
        let options = &part.options;
        let uptime = self.elapsed_seconds();
        let input = self.health_input();
        let (requests, failed) = (input.requests, input.failed);
        let error_rate = (requests > 0).then(|| failed as f64 / requests as f64);
        let mut status = match error_rate {
            Some(rate) if requests >= options.min_requests => {
                if rate > options.red {
                    Status::Red
                } else if rate >= options.yellow {
                    Status::Yellow
                } else {
                    Status::Green
                }
            }
            _ => Status::Green,
        };
        let mut reasons = Vec::new();
        if let (Some(rate), true) = (error_rate, status != Status::Green) {
            reasons.push(match status {
                Status::Red => format!(
                    "error rate {} > red threshold {} ({failed} of {requests} requests in the last minute)",
                    percent(rate),
                    percent(options.red)
                ),
                _ => format!(
                    "error rate {} ≥ yellow threshold {} ({failed} of {requests} requests in the last minute)",
                    percent(rate),
                    percent(options.yellow)
                ),
            });
        }
        let checks = run_checks(&options.checks).await;
        for (name, check) in &checks {
            if check.status == Status::Red {
                status = Status::Red;
                reasons.push(format!(
                    "check {name:?} failed: {}",
                    check.error.as_deref().unwrap_or("no reason given")
                ));
            }
        }
        for (asked, reason) in input.degraded {
            status = status.max(asked);
            reasons.push(reason);
        }
        HealthReport {
            status,
            error_rate,
            requests_last_minute: requests,
            thresholds: Thresholds {
                yellow: options.yellow,
                red: options.red,
            },
            version: part.version.clone(),
            started_at: crate::time_fmt::rfc3339(self.started_wall()),
            uptime_seconds: uptime,
            checks: checks.into_iter().collect(),
            reasons,
            sections: input.sections,
        }
    }
}

/// `0.229` → `22.9%`, `0.2` → `20%`.
fn percent(ratio: f64) -> String {
    let p = (ratio * 1000.0).round() / 10.0;
    format!("{p}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_well() {
        assert_eq!(percent(0.229), "22.9%");
        assert_eq!(percent(0.2), "20%");
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(1.0 / 3.0), "33.3%");
    }

    #[test]
    fn thresholds_are_clamped_into_order() {
        let o = HealthOptions::new().thresholds(0.2, 0.1);
        assert_eq!((o.yellow, o.red), (0.2, 0.2));
        let o = HealthOptions::new().thresholds(-1.0, f64::NAN);
        assert_eq!((o.yellow, o.red), (0.0, 1.0));
    }
}
