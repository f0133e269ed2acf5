//! `GET /health` (readiness, with the recent error rate and your dependency checks),
//! `GET /health/live` (liveness) and `POST /v1/stats/reset`.
//!
//! Health is green below the yellow threshold of the last minute's error rate (default 5 %),
//! yellow up to the red threshold (default 10 %), red above; with fewer than
//! [`HealthOptions::min_requests`] requests in the window it is green (too little traffic to
//! judge). A failed dependency check makes it red. Red answers 503, so a Kubernetes readiness
//! probe takes the pod out of rotation; green and yellow answer 200. Liveness answers 200
//! whenever the process can answer at all: it never depends on traffic or dependencies.
//!
//! ```
//! use tower_observe::{health::HealthOptions, Observer};
//!
//! let observer = Observer::builder()
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .health(
//!         HealthOptions::new()
//!             .thresholds(0.02, 0.05)
//!             .check("database", || Box::pin(async { Ok(()) })),
//!     )
//!     .reset_token("s3cret")
//!     .build()
//!     .unwrap();
//! # let _ = observer;
//! ```

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use serde::Serialize;

/// A dependency check: resolves to `Ok(())` when the dependency is usable. It must bound its
/// own duration (wrap it in a timeout): `/health` waits for every check.
pub type HealthCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Health settings; given to [`ObserverBuilder::health`](crate::ObserverBuilder::health).
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

/// Health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Serving normally.
    Green,
    /// Error rate above the yellow threshold.
    Yellow,
    /// Error rate above the red threshold, or a dependency check failed.
    Red,
}

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

/// The verdict on a reset request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetAuth {
    Granted,
    /// No bearer token: 401.
    Missing,
    /// A wrong token: 403.
    Invalid,
}

/// Compares without leaking, through timing, how much of the token matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn thresholds_are_clamped_into_order() {
        let o = HealthOptions::new().thresholds(0.2, 0.1);
        assert_eq!((o.yellow, o.red), (0.2, 0.2));
        let o = HealthOptions::new().thresholds(-1.0, f64::NAN);
        assert_eq!((o.yellow, o.red), (0.0, 1.0));
    }
}
