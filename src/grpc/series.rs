//! The gRPC part of the observer: handles and per-method statistics of calls served and made,
//! and the one recording path of a finished call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;

use super::{Code, Side};
use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, ExemplarIds, HistogramHandle};
use crate::observer::{HealthInput, Observer, Part};
use crate::stats::{GrpcMethodEntry, Outcome, StatsCell, StatsSnapshot};

/// The inputs of one finished gRPC call.
pub(crate) struct GrpcCompletion<'a> {
    pub(crate) side: Side,
    /// `pkg.Service/Method` or `_OTHER`.
    pub(crate) method: &'a str,
    pub(crate) code: Code,
    pub(crate) error: bool,
    pub(crate) outcome: Outcome,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Request messages, when counted (server side).
    pub(crate) requests: Option<u64>,
    pub(crate) responses: u64,
    /// `server.address` and `server.port` (client side, when known).
    pub(crate) server: Option<(&'a str, &'a str)>,
    pub(crate) exemplar: Option<ExemplarIds>,
}

#[derive(Debug)]
struct GrpcHandles {
    duration: HistogramHandle,
    /// Counted on the server only (a client's request body is the channel's type).
    requests: Option<HistogramHandle>,
    responses: HistogramHandle,
    /// Set for an overflow label set: counts the recordings that went there.
    overflow: Option<Counter>,
}

/// Label-set values: method, status code, error type, server address, server port. Past the
/// limit only the method folds (the address and port come from the code that made the
/// channel).
const KEPT: u64 = 0b11110;

/// Counters of one gRPC method on one side: the usual figures and the status mix.
#[derive(Debug, Default)]
struct GrpcCell {
    cell: StatsCell,
    codes: [AtomicU64; 17],
}

impl GrpcCell {
    fn record(&self, nanos: u64, second: u64, code: Code, outcome: Outcome) {
        self.cell.record(nanos, second, None, outcome);
        self.codes[code as usize].fetch_add(1, Relaxed);
    }

    fn reset(&self) {
        self.cell.reset();
        for c in &self.codes {
            c.store(0, Relaxed);
        }
    }

    fn entry(&self, elapsed: f64) -> GrpcMethodEntry {
        let e = self.cell.entry(elapsed);
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

/// The gRPC state of an observer; attached when the first gRPC layer is made.
#[derive(Debug)]
pub(crate) struct GrpcPart {
    server: Family<GrpcHandles>,
    client: Family<GrpcHandles>,
    server_cells: Family<GrpcCell>,
    client_cells: Family<GrpcCell>,
}

impl GrpcPart {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            server: Family::keeping(names::RPC_SERVER_CALL_DURATION, limit, KEPT),
            client: Family::keeping(names::RPC_CLIENT_CALL_DURATION, limit, KEPT),
            server_cells: Family::new("grpc_stats_server", limit),
            client_cells: Family::new("grpc_stats_client", limit),
        }
    }

    fn cells(&self, side: Side) -> &Family<GrpcCell> {
        match side {
            Side::Server => &self.server_cells,
            Side::Client => &self.client_cells,
        }
    }

    fn entries(&self, side: Side, elapsed: f64) -> BTreeMap<String, GrpcMethodEntry> {
        self.cells(side)
            .entries()
            .into_iter()
            .map(|(k, v)| (k.concat(), v.entry(elapsed)))
            .collect()
    }
}

impl Part for GrpcPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        snapshot.grpc.server = self.entries(Side::Server, elapsed);
        snapshot.grpc.client = self.entries(Side::Client, elapsed);
    }

    fn reset(&self) {
        for side in [Side::Server, Side::Client] {
            for (_, cell) in self.cells(side).entries() {
                cell.reset();
            }
        }
    }

    /// Calls served (not made) count as the service's traffic.
    fn health(&self, elapsed: f64, input: &mut HealthInput) {
        for (_, cell) in self.server_cells.entries() {
            input.traffic(cell.cell.recent(elapsed));
        }
    }
}

impl GrpcPart {
    /// The one recording path for a finished gRPC call.
    pub(crate) fn record(&self, observer: &Observer, c: &GrpcCompletion<'_>) {
        observer.guarded(|| self.record_unguarded(observer, c));
    }

    fn record_unguarded(&self, observer: &Observer, c: &GrpcCompletion<'_>) {
        let source = observer.source();
        let (family, names) = match c.side {
            Side::Server => (
                &self.server,
                [
                    names::RPC_SERVER_CALL_DURATION,
                    names::RPC_SERVER_RESPONSES_PER_RPC,
                ],
            ),
            Side::Client => (
                &self.client,
                [
                    names::RPC_CLIENT_CALL_DURATION,
                    names::RPC_CLIENT_RESPONSES_PER_RPC,
                ],
            ),
        };
        let code = c.code.as_str();
        let error = if c.error { code } else { "" };
        let (address, port) = c.server.unwrap_or(("", ""));
        let values = [c.method, code, error, address, port];
        let handles: Arc<GrpcHandles> = family.get(source, &values, |v, overflow| {
            let mut labels = vec![
                (names::RPC_SYSTEM_NAME, "grpc"),
                (names::RPC_METHOD, v[0]),
                (names::RPC_STATUS_CODE, v[1]),
            ];
            if !v[2].is_empty() {
                labels.push((names::ERROR_TYPE, v[2]));
            }
            if !v[3].is_empty() {
                labels.push((names::SERVER_ADDRESS, v[3]));
            }
            if !v[4].is_empty() {
                labels.push((names::SERVER_PORT, v[4]));
            }
            let h =
                |name| handles::histogram(source, &handles::entry_key(name, &labels, &overflow));
            GrpcHandles {
                duration: h(names[0]),
                requests: (c.side == Side::Server).then(|| h(names::RPC_SERVER_REQUESTS_PER_RPC)),
                responses: h(names[1]),
                overflow,
            }
        });
        handles::count_overflow(&handles.overflow);
        let nanos = c.end.saturating_sub(c.start);
        observer.record_duration(
            &handles.duration,
            Duration::from_nanos(nanos),
            c.end,
            c.exemplar,
        );
        if let (Some(h), Some(requests)) = (&handles.requests, c.requests) {
            h.record(requests as f64);
        }
        handles.responses.record(c.responses as f64);
        self.cells(c.side)
            .get(source, &[c.method], |_, _| GrpcCell::default())
            .record(nanos, observer.second_of(c.end), c.code, c.outcome);
    }
}
