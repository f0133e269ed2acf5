//! Request IDs: accept a valid incoming `x-request-id`, otherwise generate one, and put it
//! everywhere it is needed.
//!
//! [`AssignRequestIdLayer`] gives every request exactly one [`RequestId`]:
//!
//! - an incoming ID is kept only if it is 1–128 characters (configurable) from
//!   `A–Z a–z 0–9 - _ . : / + =`. Anything else (too long, CR/LF, quotes, non-ASCII…) is
//!   never echoed; it is replaced by a fresh ID and counted in
//!   `tower_observe_request_id_rejected_total`, so a client cannot forge log lines or
//!   smuggle megabytes through the header;
//! - a fresh ID is a [UUIDv7](https://www.rfc-editor.org/rfc/rfc9562#section-5.7): unique
//!   (74 random bits per millisecond), sortable by creation time, and the format log
//!   pipelines, databases and tracing back ends already understand (ULIDs sort the same
//!   way but are a convention, not a standard, and are rarely parsed natively). A
//!   [`MakeRequestId`] of your own (a counter, a ULID, an ID naming the instance) replaces
//!   it, as tower-http's `MakeRequestId` does for its layer;
//! - the ID is written into the request headers (so proxies and inner layers see the same
//!   value), the request extensions (extract it with `RequestId` in an axum handler), the
//!   response headers, and the `request_id` field of the current `tracing` span when that
//!   span declares one (`request_id = tracing::field::Empty`).
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() {
//! use axum::{routing::get, Router};
//! use tower_observe::request_id::{RequestId, AssignRequestIdLayer};
//!
//! async fn handler(id: RequestId) -> String {
//!     format!("your request is {id}")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(AssignRequestIdLayer::new());
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```

pub mod future;
mod generate;
mod layer;
mod make;

use std::fmt;

use http::HeaderValue;

pub use generate::new_uuid_v7;
pub(crate) use generate::random_u64;
pub use layer::{AssignRequestId, AssignRequestIdLayer};
pub use make::{MakeRequestId, RequestHead};

/// Default header carrying the request ID.
pub const X_REQUEST_ID: &str = "x-request-id";

/// Default longest incoming ID accepted.
pub const DEFAULT_MAX_LEN: usize = 128;

/// The ID of one request, as assigned by [`AssignRequestIdLayer`].
///
/// Always a valid header value made of the safe characters only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A fresh UUIDv7 request ID.
    pub fn generate() -> Self {
        Self::generate_at(crate::clock::system_nanos())
    }

    /// [`generate`](Self::generate) with a system-clock reading the caller already has.
    pub(crate) fn generate_at(now_nanos: u64) -> Self {
        let text = generate::uuid_v7_at(now_nanos);
        let value = HeaderValue::from_maybe_shared(arena_bytes(&text))
            .or_else(|_| HeaderValue::from_bytes(&text));
        Self(value.unwrap_or_else(|_| HeaderValue::from_static("0")))
    }

    /// Accepts `value` as an ID if it is 1..=`max_len` safe characters.
    ///
    /// ```
    /// use tower_observe::request_id::RequestId;
    /// assert!(RequestId::parse("abc-123", 128).is_some());
    /// assert!(RequestId::parse("evil\r\nSet-Cookie: x", 128).is_none());
    /// assert!(RequestId::parse("", 128).is_none());
    /// ```
    pub fn parse(value: &str, max_len: usize) -> Option<Self> {
        is_valid(value.as_bytes(), max_len)
            .then(|| HeaderValue::from_str(value).ok().map(Self))
            .flatten()
    }

    pub(crate) fn from_header(value: &HeaderValue, max_len: usize) -> Option<Self> {
        is_valid(value.as_bytes(), max_len).then(|| Self(value.clone()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only safe ASCII ever gets in (see `is_valid` and `generate`).
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The ID as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

thread_local! {
    static ARENA: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// A copy of `text` carved out of a per-thread 2 KiB block: one allocation per 64 IDs
/// instead of one per ID. A block is freed when the last ID cut from it is dropped.
fn arena_bytes(text: &[u8]) -> bytes::Bytes {
    ARENA
        .try_with(|arena| {
            let mut arena = arena.try_borrow_mut().ok()?;
            if arena.capacity() - arena.len() < text.len() {
                *arena = bytes::BytesMut::with_capacity(text.len() * 64);
            }
            arena.extend_from_slice(text);
            Some(arena.split().freeze())
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| bytes::Bytes::copy_from_slice(text))
}

const fn safe_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=');
        i += 1;
    }
    t
}

static SAFE: [bool; 256] = safe_table();

fn is_valid(bytes: &[u8], max_len: usize) -> bool {
    !bytes.is_empty() && bytes.len() <= max_len && bytes.iter().all(|b| SAFE[*b as usize])
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::request::Parts;
    use std::convert::Infallible;

    use super::RequestId;

    /// Rejection when a handler asks for a [`RequestId`] but no [`AssignRequestIdLayer`](super::AssignRequestIdLayer)
    /// runs in front of it: a server bug, answered with 500.
    #[derive(Debug)]
    pub struct MissingRequestId;

    impl IntoResponse for MissingRequestId {
        fn into_response(self) -> Response {
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "RequestId extractor used without AssignRequestIdLayer",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for RequestId {
        type Rejection = MissingRequestId;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<RequestId>()
                .cloned()
                .ok_or(MissingRequestId)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestId {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<RequestId>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingRequestId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        assert!(is_valid(b"AZaz09-_.:/+=", 128));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a\rb",
            b"a\nb",
            b"a;b",
            b"a,b",
            b"\xc3\xa9",
            b"a\0b",
        ] {
            assert!(!is_valid(bad, 128), "{bad:?}");
        }
        assert!(is_valid(&[b'a'; 128], 128));
        assert!(!is_valid(&[b'a'; 129], 128));
        assert!(!is_valid(b"", 128));
    }

    #[test]
    fn generated_ids_are_valid() {
        let id = RequestId::generate();
        assert_eq!(id.as_str().len(), 36);
        assert!(RequestId::parse(id.as_str(), 128).is_some());
    }
}
