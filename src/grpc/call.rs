//! One gRPC call being measured, from the request to the end of the response stream.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::series::{GrpcCompletion, GrpcPart};
use super::{Code, Side};
use crate::labels::OTHER;
use crate::stats::Outcome;
use crate::trace::SpanIds;
use crate::Observer;

#[derive(Debug)]
pub(crate) struct GrpcCall {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<GrpcPart>,
    pub(crate) side: Side,
    /// `pkg.Service/Method` as requested, or `None` when the path is not a gRPC method.
    pub(crate) method: Option<Box<str>>,
    /// Whether the method's service is one the server declared (always true when it declared
    /// none, and on the client side).
    pub(crate) known_service: bool,
    pub(crate) start: u64,
    /// The status of a trailers-only response, or the one inferred from a non-200 HTTP status.
    pub(crate) header_status: Option<Code>,
    /// Request messages read by the handler (server side).
    pub(crate) requests: Option<Arc<AtomicU64>>,
    pub(crate) span: tracing::Span,
    pub(crate) ids: Option<SpanIds>,
    /// When the deadline the client sent (`grpc-timeout`) passes, as a `now_nanos` reading.
    pub(crate) deadline: Option<u64>,
    /// `server.address` and `server.port` (client side).
    pub(crate) server: Option<Arc<(Box<str>, Box<str>)>>,
}

/// The deadline of a call that started at `start`, from its `grpc-timeout` header: up to 8
/// digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC HTTP/2 protocol defines it.
pub(crate) fn deadline(headers: &http::HeaderMap, start: u64) -> Option<u64> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let nanos_per_unit: u64 = match unit {
        b"H" => 3_600_000_000_000,
        b"M" => 60_000_000_000,
        b"S" => 1_000_000_000,
        b"m" => 1_000_000,
        b"u" => 1_000,
        b"n" => 1,
        _ => return None,
    };
    Some(start.saturating_add(amount.saturating_mul(nanos_per_unit)))
}

impl GrpcCall {
    /// The `rpc_method` label: the method, or `_OTHER` when it is not a method this server
    /// serves (an undeclared service, or `UNIMPLEMENTED` on the server side).
    fn method_label(&self, code: Code) -> &str {
        match &self.method {
            Some(m)
                if self.known_service
                    && !(self.side == Side::Server && code == Code::Unimplemented) =>
            {
                m
            }
            _ => OTHER,
        }
    }

    /// The call was dropped before its end (the client cancelled, its deadline passed, or the
    /// caller gave up): `DEADLINE_EXCEEDED` when the deadline the client sent has passed, else
    /// `CANCELLED`.
    pub(crate) fn dropped(self, responses: u64) {
        let code = if self.deadline_passed() {
            Code::DeadlineExceeded
        } else {
            Code::Cancelled
        };
        self.finish(code, responses, true);
    }

    /// The call failed without a response (client side: the transport failed, or the deadline
    /// passed).
    pub(crate) fn failed(self) {
        let code = if self.deadline_passed() {
            Code::DeadlineExceeded
        } else {
            Code::Unavailable
        };
        self.finish(code, 0, false);
    }

    fn deadline_passed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| self.observer.now_nanos() >= deadline)
    }

    /// Records the call. `dropped`: the stream was dropped before its end.
    pub(crate) fn finish(self, code: Code, responses: u64, dropped: bool) {
        let error = match self.side {
            Side::Server => code.is_server_error(),
            Side::Client => code != Code::Ok,
        };
        let outcome = if dropped {
            Outcome::Aborted
        } else if error {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let method = self.method_label(code);
        let span = &self.span;
        if method == OTHER {
            span.record("otel.name", "grpc");
            span.record("rpc.method", OTHER);
            if let Some(original) = &self.method {
                span.record("rpc.method_original", &**original);
            }
        }
        span.record("rpc.status_code", code.as_str());
        if error {
            span.record("error.type", code.as_str());
            span.record("otel.status_code", "ERROR");
        }
        let end = self.observer.now_nanos();
        self.part.record(
            &self.observer,
            &GrpcCompletion {
                side: self.side,
                method,
                code,
                error,
                outcome,
                start: self.start,
                end,
                requests: self.requests.as_ref().map(|r| r.load(Relaxed)),
                responses,
                server: self.server.as_deref().map(|(a, p)| (&**a, &**p)),
                exemplar: self.ids.and_then(SpanIds::exemplar),
            },
        );
    }
}
