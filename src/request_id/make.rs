//! [`MakeRequestId`]: request IDs of the application's own making.

use http::{Extensions, HeaderMap, Method, Request, Uri};

use super::RequestId;

/// Makes the ID of a request that arrives without a valid one, in place of the default
/// UUIDv7 — tower-http's `MakeRequestId`, for this crate's layers. Set it with
/// [`AssignRequestIdLayer::make_request_id`](super::AssignRequestIdLayer::make_request_id) or
/// [`ObserveLayer::make_request_id`](crate::ObserveLayer::make_request_id).
///
/// An ID is a [`RequestId`], so it is valid by construction (1–128 safe characters, see
/// [`RequestId::parse`]); returning `None` falls back to a UUIDv7, so every request still
/// gets exactly one ID. A valid incoming ID is kept as always: the generator is asked only
/// for requests without one (or with a rejected one).
///
/// It runs on the request path, once per request: keep it cheap and never blocking. A
/// closure `Fn(&RequestHead<'_>) -> Option<RequestId>` is a generator too.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use tower_observe::request_id::{MakeRequestId, RequestHead};
/// use tower_observe::{Observer, RequestId};
///
/// /// `web-1-000001`, `web-1-000002`, …: IDs that name the instance.
/// struct Sequential {
///     instance: &'static str,
///     next: AtomicU64,
/// }
///
/// impl MakeRequestId for Sequential {
///     fn make_request_id(&self, _request: &RequestHead<'_>) -> Option<RequestId> {
///         let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
///         RequestId::parse(&format!("{}-{n:06}", self.instance), 128)
///     }
/// }
///
/// let observer = Observer::new();
/// let layer = observer.layer().make_request_id(Sequential {
///     instance: "web-1",
///     next: AtomicU64::new(0),
/// });
/// # let _ = layer;
/// ```
pub trait MakeRequestId: Send + Sync + 'static {
    /// The ID of `request`, or `None` for the default UUIDv7.
    fn make_request_id(&self, request: &RequestHead<'_>) -> Option<RequestId>;
}

impl<F> MakeRequestId for F
where
    F: Fn(&RequestHead<'_>) -> Option<RequestId> + Send + Sync + 'static,
{
    fn make_request_id(&self, request: &RequestHead<'_>) -> Option<RequestId> {
        self(request)
    }
}

/// What a [`MakeRequestId`] sees of a request: everything but its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    pub(super) fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request's method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request's URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request's extensions (what outer layers put there).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}
