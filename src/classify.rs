//! What the client-side instrumentation (client metrics, retry accounting, caches) reads from
//! requests, responses and errors, for the client types it supports: `http::Request` /
//! `http::Response` (hyper, tonic channels, any tower HTTP client) and, with the `reqwest`
//! feature, `reqwest::Request` / `reqwest::Response`; and how an attempt's failure is
//! classified into a low-cardinality `error_type` (the values are in [`crate::names`]).

use std::error::Error as StdError;
use std::io;

use http::{Extensions, HeaderMap, Method};

use crate::names::{
    ERROR_CONNECT, ERROR_CONNECTION_REFUSED, ERROR_CONNECTION_RESET, ERROR_SERVICE, ERROR_TIMEOUT,
};

/// An outgoing request, as the client instrumentation reads it.
pub trait ClientRequest {
    /// The request method.
    fn method(&self) -> &Method;
    /// `url.scheme`, `server.address` and `server.port` (the scheme's default when the URL has
    /// none); `None` when the request has no absolute URL.
    fn server(&self) -> Option<(&str, &str, u16)>;
    /// The path, for the span's `url.full` (the query is left out: it often carries secrets).
    fn path(&self) -> &str;
    /// The headers, to inject the trace context into.
    fn headers_mut(&mut self) -> &mut HeaderMap;
    /// The request's extensions, when the type has them.
    fn extensions(&self) -> Option<&Extensions>;
    /// The request's extensions, when the type has them.
    fn extensions_mut(&mut self) -> Option<&mut Extensions>;
    /// The body size, when known before sending.
    fn body_size(&self) -> Option<u64>;
}

/// A response, as the client instrumentation reads it.
pub trait ClientResponse {
    /// The status code.
    fn status_code(&self) -> u16;
    /// The response headers (for cache classification).
    fn response_headers(&self) -> &HeaderMap;
    /// The response extensions (for a `cache::CacheStatus` set by an
    /// inner layer).
    fn response_extensions(&self) -> &Extensions;
    /// The body size, when the response announces it.
    fn body_size(&self) -> Option<u64>;
    /// The HTTP version the response came with (`network.protocol.version`), when known.
    fn protocol_version(&self) -> Option<http::Version> {
        None
    }
}

/// A client error, classified into a low-cardinality `error_type`.
///
/// Implemented for the error types of the clients tower-observe supports; implement it for
/// your own client's error to get the same classification.
pub trait ClientError {
    /// `timeout`, `connection_refused`, `connect`, `connection_reset`, or another short,
    /// fixed name; `_OTHER` when nothing more specific is known.
    fn error_type(&self) -> &'static str;
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

impl<B: http_body::Body> ClientRequest for http::Request<B> {
    fn method(&self) -> &Method {
        self.method()
    }

    fn server(&self) -> Option<(&str, &str, u16)> {
        let uri = self.uri();
        let host = uri.host()?;
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = uri.port_u16().unwrap_or_else(|| default_port(scheme));
        Some((
            scheme,
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
    }

    fn path(&self) -> &str {
        self.uri().path()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(self.extensions())
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        Some(self.extensions_mut())
    }

    fn body_size(&self) -> Option<u64> {
        self.body().size_hint().exact()
    }
}

impl<B: http_body::Body> ClientResponse for http::Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    fn response_headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn response_extensions(&self) -> &Extensions {
        self.extensions()
    }

    fn body_size(&self) -> Option<u64> {
        self.body().size_hint().exact()
    }

    fn protocol_version(&self) -> Option<http::Version> {
        Some(self.version())
    }
}

#[cfg(feature = "reqwest")]
impl ClientRequest for reqwest::Request {
    fn method(&self) -> &Method {
        self.method()
    }

    fn server(&self) -> Option<(&str, &str, u16)> {
        let url = self.url();
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        Some((
            url.scheme(),
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
    }

    fn path(&self) -> &str {
        self.url().path()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }

    fn extensions(&self) -> Option<&Extensions> {
        None
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        None
    }

    /// No body is a body of 0 bytes; a streamed body has no size known before sending.
    fn body_size(&self) -> Option<u64> {
        match self.body() {
            None => Some(0),
            Some(body) => body.as_bytes().map(|b| b.len() as u64),
        }
    }
}

#[cfg(feature = "reqwest")]
impl ClientResponse for reqwest::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    fn response_headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn response_extensions(&self) -> &Extensions {
        self.extensions()
    }

    fn body_size(&self) -> Option<u64> {
        self.content_length()
    }

    fn protocol_version(&self) -> Option<http::Version> {
        Some(self.version())
    }
}

/// Classifies by walking an error's source chain for I/O errors (and, where compiled in,
/// tower timeouts and reqwest errors).
pub fn classify_error_chain(error: &(dyn StdError + 'static)) -> &'static str {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(kind) = classify_io(io.kind()) {
                return kind;
            }
        }
        #[cfg(feature = "tower-retry")]
        if e.is::<tower::timeout::error::Elapsed>() {
            return ERROR_TIMEOUT;
        }
        #[cfg(feature = "reqwest")]
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return classify_reqwest(r);
        }
        // Its variants are `#[error(transparent)]`: their `source()` skips the wrapped error.
        #[cfg(feature = "reqwest-middleware")]
        if let Some(m) = e.downcast_ref::<reqwest_middleware::Error>() {
            return match m {
                reqwest_middleware::Error::Reqwest(r) => classify_reqwest(r),
                reqwest_middleware::Error::Middleware(inner) => {
                    classify_error_chain(inner.as_ref())
                }
            };
        }
        current = e.source();
    }
    ERROR_SERVICE
}

/// The class of the first classifiable I/O error in a source chain.
#[cfg(feature = "reqwest")]
fn io_class_in_chain(mut current: Option<&(dyn StdError + 'static)>) -> Option<&'static str> {
    while let Some(e) = current {
        if let Some(kind) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| classify_io(io.kind()))
        {
            return Some(kind);
        }
        current = e.source();
    }
    None
}

fn classify_io(kind: io::ErrorKind) -> Option<&'static str> {
    use io::ErrorKind::*;
    Some(match kind {
        TimedOut => ERROR_TIMEOUT,
        ConnectionRefused => ERROR_CONNECTION_REFUSED,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => ERROR_CONNECTION_RESET,
        NotConnected | AddrNotAvailable => ERROR_CONNECT,
        _ => return None,
    })
}

/// Every error type is classified by its source chain: I/O error kinds, reqwest's and
/// tower's timeouts. (A `Box<dyn Error>` is not an `Error` itself: a stack whose error is
/// `tower::BoxError` should map it, or have the instrumentation inside the boxing layer.)
impl<E: StdError + 'static> ClientError for E {
    fn error_type(&self) -> &'static str {
        classify_error_chain(self)
    }
}

#[cfg(feature = "reqwest")]
fn classify_reqwest(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return ERROR_TIMEOUT;
    }
    // The I/O error inside says more than `is_connect` (refused vs. DNS vs. reset).
    if let Some(kind) = io_class_in_chain(StdError::source(e)) {
        return kind;
    }
    if e.is_connect() {
        ERROR_CONNECT
    } else if e.is_redirect() {
        crate::names::ERROR_REDIRECT
    } else if e.is_body() || e.is_decode() {
        crate::names::ERROR_CLIENT_BODY
    } else if e.is_request() {
        crate::names::ERROR_REQUEST
    } else {
        ERROR_SERVICE
    }
}

/// A short label for a status that ended an attempt: `"503"`.
pub(crate) fn status_label(status: u16) -> String {
    itoa::Buffer::new().format(status).to_owned()
}

/// How an upstream is named in `/v1/stats` and in failover counts: `host:port`.
#[cfg(any(feature = "client", feature = "tower-retry"))]
pub(crate) fn upstream_label(address: &str, port: &str) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Which attempt of a logical request this is: 0 for the first, 1 for the first resend.
///
/// Put it in the extensions of an `http::Request` (the retry accounting's `tower::retry`
/// wrapper and `LogicalCall::resend_count` do) and the client instrumentation sets
/// `http.request.resend_count` on that attempt's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResendCount(pub u32);

/// Why an attempt is worth retrying (read by the retry accounting of `reqwest-middleware` and
/// `tower::retry`).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(any(feature = "reqwest-middleware", feature = "tower-retry")),
    allow(dead_code)
)]
pub(crate) enum Failure {
    /// 5xx, 429 or 408.
    Status(u16),
    Error(&'static str),
}

#[cfg_attr(
    not(any(feature = "reqwest-middleware", feature = "tower-retry")),
    allow(dead_code)
)]
impl Failure {
    /// A status worth retrying: 5xx, 429 (rate limited) and 408 (request timeout).
    pub(crate) fn of_status(status: u16) -> Option<Failure> {
        (status >= 500 || status == 429 || status == 408).then_some(Failure::Status(status))
    }

    /// Whether an attempt's result is worth retrying, and why: transport errors, 5xx, 429 and
    /// 408.
    pub(crate) fn of_result<Res: ClientResponse, E: ClientError>(
        result: &Result<Res, E>,
    ) -> Option<Failure> {
        match result {
            Ok(res) => Failure::of_status(res.status_code()),
            Err(e) => Some(Failure::Error(e.error_type())),
        }
    }

    /// The `reason` label.
    pub(crate) fn label(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Status(s) => status_label(s).into(),
            Failure::Error(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_through_the_chain() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "no");
        assert_eq!(refused.error_type(), ERROR_CONNECTION_REFUSED);
        let boxed: Box<dyn StdError + Send + Sync> =
            Box::new(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert_eq!(classify_error_chain(&*boxed), ERROR_TIMEOUT);
        let other: Box<dyn StdError + Send + Sync> = "weird".into();
        assert_eq!(classify_error_chain(&*other), "_OTHER");
    }

    #[test]
    fn http_request_server_parts() {
        let req = http::Request::get("https://[::1]/v1/x?q=secret")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(ClientRequest::server(&req), Some(("https", "::1", 443)));
        assert_eq!(ClientRequest::path(&req), "/v1/x");
        assert_eq!(ClientRequest::body_size(&req), Some(0));
    }
}
