//! The `/v1/stats` sections that capabilities fill: retries, caches, backend pools, gRPC.
//!
//! The schema of the whole document lives in this module and `snapshot.rs`, in one place
//! (and in `docs/stats-api.md`); each section is filled by the part of the capability it
//! describes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Retry accounting of one target (module `retry`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct RetryEntry {
    /// Logical requests that finished (each may have made several attempts).
    pub logical_requests: u64,
    /// Attempts made by those logical requests.
    pub attempts: u64,
    /// Average attempts per finished logical request; `null` before the first.
    pub attempts_avg: Option<f64>,
    /// Resends, in all.
    pub retries: u64,
    /// Resends per reason (`503`, `timeout`, `connection_refused`, …).
    pub retries_by_reason: BTreeMap<String, u64>,
    /// Logical requests that still failed after at least one retry.
    pub exhausted: u64,
    /// Switches from one backend to another, keyed `"from -> to"`.
    pub failovers: BTreeMap<String, u64>,
}

/// Results of one cache (module `cache`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// Served from the cache.
    pub hit: u64,
    /// Not in the cache; fetched.
    pub miss: u64,
    /// Served stale or revalidated.
    pub stale: u64,
    /// The cache was not consulted.
    pub bypass: u64,
    /// `hit / (hit + miss + stale)`; bypasses are not lookups. `null` before the first lookup.
    pub hit_ratio: Option<f64>,
}

/// One backend pool (module `pool`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct PoolEntry {
    /// The selection strategy the pool was registered with (`round_robin`, …).
    pub strategy: String,
    /// Backends currently healthy.
    pub healthy: u64,
    /// Backends currently unhealthy.
    pub unhealthy: u64,
    /// `100 × healthy / (healthy + unhealthy)`; `null` for an empty pool.
    pub health_percent: Option<f64>,
    /// Every backend of the pool.
    pub backends: BTreeMap<String, BackendEntry>,
}

/// One backend of a pool.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct BackendEntry {
    /// The last reported state.
    pub healthy: bool,
    /// Health checks recorded.
    pub checks: u64,
    /// Health checks that failed.
    pub failed_checks: u64,
    /// Duration of the last health check, in milliseconds.
    pub last_check_ms: Option<f64>,
}

/// Per side (`server`, `client`), one entry per method (`pkg.Service/Method` or `_OTHER`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GrpcStats {
    /// Calls served.
    pub server: BTreeMap<String, GrpcMethodEntry>,
    /// Calls made.
    pub client: BTreeMap<String, GrpcMethodEntry>,
}

/// The statistics of one gRPC method.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GrpcMethodEntry {
    /// Calls recorded.
    pub calls: u64,
    /// Calls that failed (server: the server-fault codes; client: every non-`OK` code).
    pub errors: u64,
    /// Calls whose stream was dropped before its end.
    pub cancelled: u64,
    /// Calls per second over the last minute.
    pub calls_per_second: f64,
    /// Share of completed calls that did not fail.
    pub success_rate: Option<f64>,
    /// Latency to the end of the stream.
    pub latency_ms: Option<super::LatencyMs>,
    /// Calls per gRPC status (`OK`, `NOT_FOUND`, …), codes seen only.
    pub status_codes: BTreeMap<&'static str, u64>,
}
