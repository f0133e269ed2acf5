//! The gRPC side of the recording path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::Unit;

use super::family::{self, Family};
use super::series::{HistogramHandle, RecorderSource};
use super::Observer;
use crate::grpc::{Code, Side};
use crate::names;
use crate::stats::{GrpcCell, Outcome};
use crate::trace::SpanIds;

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
    pub(crate) exemplar: Option<SpanIds>,
}

#[derive(Debug)]
struct GrpcHandles {
    duration: HistogramHandle,
    /// Counted on the server only (a client's request body is the channel's type).
    requests: Option<HistogramHandle>,
    responses: HistogramHandle,
}

#[derive(Debug)]
pub(crate) struct GrpcSeries {
    server: Family<GrpcHandles>,
    client: Family<GrpcHandles>,
    server_cells: Family<GrpcCell>,
    client_cells: Family<GrpcCell>,
    described: OnceLock<()>,
}

impl GrpcSeries {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            server: Family::new(names::RPC_SERVER_CALL_DURATION, limit),
            client: Family::new(names::RPC_CLIENT_CALL_DURATION, limit),
            server_cells: Family::new("grpc_stats_server", limit),
            client_cells: Family::new("grpc_stats_client", limit),
            described: OnceLock::new(),
        }
    }

    /// Calls served and failed in the last minute (for `/health`).
    pub(crate) fn recent_server(&self, elapsed: f64) -> (u64, u64) {
        self.server_cells
            .entries()
            .iter()
            .fold((0, 0), |(all, failed), (_, cell)| {
                let (a, f) = cell.recent(elapsed);
                (all + a, failed + f)
            })
    }

    pub(crate) fn reset(&self) {
        for family in [&self.server_cells, &self.client_cells] {
            for (_, cell) in family.entries() {
                cell.reset();
            }
        }
    }

    pub(crate) fn cells(&self, side: Side) -> Vec<(String, Arc<GrpcCell>)> {
        let family = match side {
            Side::Server => &self.server_cells,
            Side::Client => &self.client_cells,
        };
        family
            .entries()
            .into_iter()
            .map(|(k, v)| (k.concat(), v))
            .collect()
    }
}

fn describe(source: &dyn RecorderSource) {
    family::describe(source, |r| {
        for (name, help) in [
            (
                names::RPC_SERVER_CALL_DURATION,
                "Duration of gRPC calls served, to the end of the response stream.",
            ),
            (
                names::RPC_CLIENT_CALL_DURATION,
                "Duration of gRPC calls made, to the end of the response stream.",
            ),
        ] {
            r.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
        }
        for (name, help) in [
            (
                names::RPC_SERVER_REQUESTS_PER_RPC,
                "Request messages per gRPC call served.",
            ),
            (
                names::RPC_SERVER_RESPONSES_PER_RPC,
                "Response messages per gRPC call served.",
            ),
            (
                names::RPC_CLIENT_RESPONSES_PER_RPC,
                "Response messages per gRPC call made.",
            ),
        ] {
            r.describe_histogram(name.into(), None, help.into());
        }
    });
}

impl Observer {
    /// The one recording path for a finished gRPC call.
    pub(crate) fn record_grpc(&self, c: &GrpcCompletion<'_>) {
        self.guarded(|| self.record_grpc_unguarded(c));
    }

    fn record_grpc_unguarded(&self, c: &GrpcCompletion<'_>) {
        let inner = &*self.inner;
        let source: &dyn RecorderSource = &inner.backend;
        let grpc = &inner.grpc;
        grpc.described.get_or_init(|| describe(source));
        let (family, cells, names) = match c.side {
            Side::Server => (
                &grpc.server,
                &grpc.server_cells,
                [
                    names::RPC_SERVER_CALL_DURATION,
                    names::RPC_SERVER_RESPONSES_PER_RPC,
                ],
            ),
            Side::Client => (
                &grpc.client,
                &grpc.client_cells,
                [
                    names::RPC_CLIENT_CALL_DURATION,
                    names::RPC_CLIENT_RESPONSES_PER_RPC,
                ],
            ),
        };
        let code = c.code.as_str();
        let error = if c.error { code } else { "" };
        let handles = family.get(source, &[c.method, code, error], |v| {
            let mut labels = vec![
                (names::RPC_SYSTEM_NAME, "grpc"),
                (names::RPC_METHOD, v[0]),
                (names::RPC_STATUS_CODE, v[1]),
            ];
            if !v[2].is_empty() {
                labels.push((names::ERROR_TYPE, v[2]));
            }
            let h = |name| family::histogram(source, &family::key(name, &labels));
            GrpcHandles {
                duration: h(names[0]),
                requests: (c.side == Side::Server).then(|| h(names::RPC_SERVER_REQUESTS_PER_RPC)),
                responses: h(names[1]),
            }
        });
        let nanos = c.end.saturating_sub(c.start);
        let duration = Duration::from_nanos(nanos);
        inner.record_duration(&handles.duration, duration, c.end, c.exemplar);
        if let (Some(h), Some(requests)) = (&handles.requests, c.requests) {
            h.record(requests as f64);
        }
        handles.responses.record(c.responses as f64);
        let second = c.end.saturating_sub(inner.started) / 1_000_000_000;
        cells
            .get(source, &[c.method], |_| GrpcCell::default())
            .record(nanos, second, c.code, c.outcome);
    }
}
