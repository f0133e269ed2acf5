//! Responses of the observer's endpoints: one body type, JSON and plain-text helpers.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// The body of every endpoint response: boxed, so an endpoint can stream (a live feed) as
/// easily as it answers with one buffer.
pub type EndpointBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A response whose body is `body`, of type `content_type`, never cached.
pub(crate) fn with_type(body: Bytes, content_type: &'static str) -> Response<EndpointBody> {
    let mut res = Response::new(Full::new(body).boxed());
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `value` as JSON (a 500 with the reason if it cannot be encoded).
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Response<EndpointBody> {
    match serde_json::to_vec(value) {
        Ok(body) => with_type(Bytes::from(body), "application/json"),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not encode the response: {e}"),
        ),
    }
}

/// A one-line plain-text answer.
pub(crate) fn plain(status: StatusCode, message: &str) -> Response<EndpointBody> {
    let mut res = with_type(
        Bytes::from(format!("{message}\n")),
        "text/plain; charset=utf-8",
    );
    *res.status_mut() = status;
    res
}

/// 405 with the methods the path takes.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<EndpointBody> {
    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

pub(crate) fn not_found() -> Response<EndpointBody> {
    plain(StatusCode::NOT_FOUND, "not found")
}
