//! Backend pool health: which backends (upstreams, proxies, model servers) are usable, as the
//! application's own health checks or circuit breakers report them.
//!
//! Gauges `backend_pool_members{pool, strategy, state}` (healthy / unhealthy) and
//! `backend_pool_health_ratio{pool, strategy}` (0 to 1), a histogram
//! `backend_health_check_duration_seconds{pool, strategy, result}`, and a `pools` section in
//! `/v1/stats` with every backend's state. The selection strategy (`round_robin`,
//! `least_latency`, …) is a label, so pools run with different strategies can be compared.
//! Per-backend request, error and latency figures come from the client instrumentation
//! (`upstreams` in `/v1/stats`).
//!
//! ```
//! use std::time::Duration;
//! use tower_observe::Observer;
//!
//! let observer = Observer::new();
//! let pool = observer.backend_pool("llm", "round_robin");
//! pool.set_healthy("10.0.0.1:8000", true);
//! pool.health_check("10.0.0.2:8000", Duration::from_millis(3), false);
//! assert_eq!(pool.health_percent(), Some(50.0));
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::Counter;

use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, GaugeHandle, HistogramHandle};
use crate::observer::{Observer, Part, RecorderSource};
use crate::stats::{BackendEntry, PoolEntry, StatsSnapshot};

/// Most backends one pool tracks; reports about further backends are ignored and counted in
/// `tower_observe_cardinality_overflow_total{metric="backend_pool_members"}`.
pub const MAX_BACKENDS_PER_POOL: usize = 1024;

#[derive(Debug, Default)]
struct BackendState {
    healthy: bool,
    checks: u64,
    failed_checks: u64,
    last_check: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct PoolState {
    name: Box<str>,
    strategy: Box<str>,
    backends: Mutex<BTreeMap<Box<str>, BackendState>>,
    healthy_gauge: GaugeHandle,
    unhealthy_gauge: GaugeHandle,
    ratio_gauge: GaugeHandle,
    check_ok: HistogramHandle,
    check_failed: HistogramHandle,
    /// Reports about backends past the per-pool limit.
    backends_overflow: OnceLock<Counter>,
    /// Set for the overflow pool (past the limit of pools).
    overflow: Option<Counter>,
}

impl PoolState {
    pub(crate) fn new(
        source: &dyn RecorderSource,
        name: &str,
        strategy: &str,
        overflow: Option<Counter>,
    ) -> Self {
        let labels = [("pool", name), ("strategy", strategy)];
        let members = |state: &str| {
            handles::gauge(
                source,
                &handles::entry_key(
                    names::BACKEND_POOL_MEMBERS,
                    &[labels[0], labels[1], ("state", state)],
                    &overflow,
                ),
            )
        };
        let check = |result: &str| {
            handles::histogram(
                source,
                &handles::entry_key(
                    names::BACKEND_HEALTH_CHECK_DURATION,
                    &[labels[0], labels[1], ("result", result)],
                    &overflow,
                ),
            )
        };
        Self {
            name: name.into(),
            strategy: strategy.into(),
            backends: Mutex::new(BTreeMap::new()),
            healthy_gauge: members("healthy"),
            unhealthy_gauge: members("unhealthy"),
            ratio_gauge: handles::gauge(
                source,
                &handles::entry_key(names::BACKEND_POOL_HEALTH_RATIO, &labels, &overflow),
            ),
            check_ok: check("ok"),
            check_failed: check("failed"),
            backends_overflow: OnceLock::new(),
            overflow,
        }
    }

    fn update(
        &self,
        source: &dyn RecorderSource,
        backend: &str,
        f: impl FnOnce(&mut BackendState),
    ) {
        handles::count_overflow(&self.overflow);
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if !backends.contains_key(backend) && backends.len() >= MAX_BACKENDS_PER_POOL {
            drop(backends);
            self.backends_overflow
                .get_or_init(|| handles::overflow_counter(source, names::BACKEND_POOL_MEMBERS))
                .increment(1);
            return;
        }
        let name = crate::labels::sanitize_label_value(backend);
        f(backends.entry(Box::from(&*name)).or_default());
        self.publish(&backends);
    }

    /// Sets the gauges from the backends' states (called with the lock held, so concurrent
    /// reports cannot publish out of order).
    fn publish(&self, backends: &BTreeMap<Box<str>, BackendState>) {
        let healthy = backends.values().filter(|b| b.healthy).count();
        let total = backends.len();
        self.healthy_gauge.set(healthy as f64);
        self.unhealthy_gauge.set((total - healthy) as f64);
        self.ratio_gauge.set(healthy as f64 / total.max(1) as f64);
    }

    pub(crate) fn entry(&self) -> PoolEntry {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let healthy = backends.values().filter(|b| b.healthy).count() as u64;
        let total = backends.len() as u64;
        PoolEntry {
            strategy: self.strategy.to_string(),
            healthy,
            unhealthy: total - healthy,
            health_percent: (total > 0).then(|| 100.0 * healthy as f64 / total as f64),
            backends: backends
                .iter()
                .map(|(k, b)| {
                    (
                        k.to_string(),
                        BackendEntry {
                            healthy: b.healthy,
                            checks: b.checks,
                            failed_checks: b.failed_checks,
                            last_check_ms: b.last_check.map(|d| d.as_secs_f64() * 1e3),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Most pools per observer; past it they share an `_OTHER` entry.
const MAX_POOLS: usize = 256;

/// The pools of an observer; attached by the first [`Observer::backend_pool`].
#[derive(Debug)]
struct Pools(Family<PoolState>);

impl Default for Pools {
    fn default() -> Self {
        Self(Family::new(names::BACKEND_POOL_HEALTH_RATIO, MAX_POOLS))
    }
}

impl Part for Pools {
    fn stats(&self, snapshot: &mut StatsSnapshot, _elapsed: f64) {
        snapshot.pools = self.0.by_name(PoolState::entry);
    }
}

impl Observer {
    /// The pool of backends called `name`, selected with `strategy` (`round_robin`,
    /// `least_latency`, `random`, …); see [`crate::pool`]. The strategy is fixed by the first
    /// call for a name.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let pool = observer.backend_pool("llm", "round_robin");
    /// pool.set_healthy("10.0.0.1:8000", true);
    /// assert_eq!(observer.stats().pools["llm"].healthy, 1);
    /// ```
    pub fn backend_pool(&self, name: &str, strategy: &str) -> PoolHandle {
        let pools = self.part(Pools::default);
        let entry = self.named(&pools.0, name, |source, name, overflow| {
            PoolState::new(source, name, strategy, overflow)
        });
        PoolHandle::new(self.clone(), entry)
    }
}

/// A pool of backends whose health the application reports; made by
/// [`Observer::backend_pool`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    observer: Observer,
    state: Arc<PoolState>,
}

impl PoolHandle {
    pub(crate) fn new(observer: Observer, state: Arc<PoolState>) -> Self {
        Self { observer, state }
    }

    /// The pool's name, as it appears in labels.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Reports `backend` as healthy or not (adding it to the pool on first report).
    pub fn set_healthy(&self, backend: &str, healthy: bool) {
        let state = &self.state;
        self.observer.with_source(|source| {
            state.update(source, backend, |b| b.healthy = healthy);
        });
    }

    /// Records a health check of `backend` that took `duration` and passed or not; the
    /// backend's state follows the result.
    pub fn health_check(&self, backend: &str, duration: Duration, passed: bool) {
        let state = &self.state;
        self.observer.with_source(|source| {
            let histogram = if passed {
                &state.check_ok
            } else {
                &state.check_failed
            };
            histogram.record(duration.as_secs_f64());
            state.update(source, backend, |b| {
                b.healthy = passed;
                b.checks += 1;
                b.failed_checks += u64::from(!passed);
                b.last_check = Some(duration);
            });
        });
    }

    /// Removes `backend` from the pool (it was decommissioned, not failed).
    pub fn remove(&self, backend: &str) {
        let state = &self.state;
        let mut backends = state.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.remove(&*crate::labels::sanitize_label_value(backend));
        state.publish(&backends);
    }

    /// `100 × healthy / backends`; `None` while the pool is empty.
    pub fn health_percent(&self) -> Option<f64> {
        let backends = self
            .state
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let healthy = backends.values().filter(|b| b.healthy).count();
        (!backends.is_empty()).then(|| 100.0 * healthy as f64 / backends.len() as f64)
    }

    /// Whether `backend` was last reported healthy (`None` if never reported).
    pub fn is_healthy(&self, backend: &str) -> Option<bool> {
        let backends = self
            .state
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        backends
            .get(&*crate::labels::sanitize_label_value(backend))
            .map(|b| b.healthy)
    }
}
