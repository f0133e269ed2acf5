//! The observer's side of `/health` and `/v1/stats/reset`.

use super::Observer;
use crate::health::{constant_time_eq, run_checks, HealthReport, ResetAuth, Status, Thresholds};

impl Observer {
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
        let options = &self.inner.health;
        let snapshot_elapsed = self.elapsed_seconds();
        #[cfg_attr(not(feature = "tonic"), allow(unused_mut))]
        let (mut requests, mut failed) = self.inner.stats.recent(snapshot_elapsed);
        #[cfg(feature = "tonic")]
        {
            let (calls, failed_calls) = self.inner.grpc.recent_server(snapshot_elapsed);
            requests += calls;
            failed += failed_calls;
        }
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
        let checks = run_checks(&options.checks).await;
        if checks.iter().any(|(_, c)| c.status == Status::Red) {
            status = Status::Red;
        }
        HealthReport {
            status,
            error_rate,
            requests_last_minute: requests,
            thresholds: Thresholds {
                yellow: options.yellow,
                red: options.red,
            },
            version: self.inner.service_version.clone(),
            started_at: crate::time_fmt::rfc3339(self.inner.started_wall),
            uptime_seconds: snapshot_elapsed,
            checks: checks.into_iter().collect(),
        }
    }

    /// Clears the `/v1/stats` figures (routes, dimensions, upstreams, gRPC methods, retry and
    /// cache counts). Prometheus metrics are untouched: counters must stay monotonic.
    pub fn reset_stats(&self) {
        self.guarded(|| {
            self.inner.stats.reset();
            for (_, target) in self.inner.retry_targets.entries() {
                target.reset();
            }
            for (_, cache) in self.inner.caches.entries() {
                cache.reset();
            }
            #[cfg(feature = "tonic")]
            self.inner.grpc.reset();
        });
    }

    /// Checks an `Authorization` header against the configured reset token. `None` when no
    /// token is configured (the reset route does not exist).
    pub(crate) fn authorize_reset(&self, authorization: Option<&[u8]>) -> Option<ResetAuth> {
        let token = self.inner.reset_token.as_deref()?;
        let presented = authorization.and_then(|v| {
            let v = std::str::from_utf8(v).ok()?.trim();
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let auth = match presented {
            None => ResetAuth::Missing,
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => ResetAuth::Granted,
            Some(_) => ResetAuth::Invalid,
        };
        if auth != ResetAuth::Granted {
            let reason = if auth == ResetAuth::Missing {
                "missing"
            } else {
                "invalid"
            };
            self.with_source(|source| {
                crate::observer::family::counter(
                    source,
                    &crate::observer::family::key(
                        crate::names::STATS_RESET_REJECTED,
                        &[("reason", reason)],
                    ),
                )
                .increment(1);
            });
        }
        Some(auth)
    }
}
