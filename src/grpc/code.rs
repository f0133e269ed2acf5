//! gRPC status codes, as the `rpc_status_code` label spells them.

/// A gRPC status code.
///
/// ```
/// use tower_observe::grpc::Code;
/// assert_eq!(Code::from_header(b"5").as_str(), "NOT_FOUND");
/// assert_eq!(Code::from_header(b"99"), Code::Unknown);
/// assert_eq!(Code::from_http_status(503), Code::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, by number.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The canonical name: `OK`, `NOT_FOUND`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// Parses a `grpc-status` value; anything but a known number is `UNKNOWN` (as the gRPC
    /// spec says a client must treat it).
    pub fn from_header(value: &[u8]) -> Code {
        let n = match value {
            [d] if d.is_ascii_digit() => d - b'0',
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => (a - b'0') * 10 + (b - b'0'),
            _ => return Code::Unknown,
        };
        Code::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(Code::Unknown)
    }

    /// The code a client infers from a non-200 HTTP status (gRPC's HTTP-to-gRPC mapping).
    pub fn from_http_status(status: u16) -> Code {
        match status {
            200 => Code::Unknown, // 200 without a grpc-status is a broken response
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// Whether the code is a server-side error in the OpenTelemetry RPC conventions (the
    /// server's fault, not the caller's): `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`,
    /// `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`.
    pub const fn is_server_error(self) -> bool {
        matches!(
            self,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        for code in Code::ALL {
            let text = (code as u8).to_string();
            assert_eq!(Code::from_header(text.as_bytes()), code);
        }
        for bad in [&b""[..], b"17", b"-1", b"1 ", b"abc", b"007"] {
            assert_eq!(Code::from_header(bad), Code::Unknown, "{bad:?}");
        }
    }
}
