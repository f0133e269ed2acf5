//! The `grpc` section of `/v1/stats`: per method, the usual figures and the status mix.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::{CellData, LatencyMs, Outcome, StatsCell};
use crate::grpc::Code;

/// Counters of one gRPC method on one side.
#[derive(Debug, Default)]
pub(crate) struct GrpcCell {
    cell: StatsCell,
    codes: [AtomicU64; 17],
}

impl GrpcCell {
    pub(crate) fn record(&self, nanos: u64, second: u64, code: Code, outcome: Outcome) {
        self.cell.record(nanos, second, None, outcome);
        self.codes[code as usize].fetch_add(1, Relaxed);
    }

    /// Calls and failed calls of the last minute.
    pub(crate) fn recent(&self, elapsed: f64) -> (u64, u64) {
        self.cell.recent(elapsed)
    }

    pub(crate) fn reset(&self) {
        self.cell.reset();
        for c in &self.codes {
            c.store(0, Relaxed);
        }
    }

    pub(crate) fn entry(&self, elapsed: f64) -> GrpcMethodEntry {
        let mut data = CellData::default();
        self.cell.read_into(&mut data, elapsed);
        let e = data.entry();
        GrpcMethodEntry {
            calls: e.requests,
            errors: e.errors,
            cancelled: e.aborted,
            calls_per_second: e.requests_per_second,
            success_rate: e.success_rate,
            latency_ms: e.latency_ms,
            status_codes: Code::ALL
                .iter()
                .zip(&self.codes)
                .map(|(code, n)| (code.as_str(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
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
    pub latency_ms: Option<LatencyMs>,
    /// Calls per gRPC status (`OK`, `NOT_FOUND`, …), codes seen only.
    pub status_codes: BTreeMap<&'static str, u64>,
}
