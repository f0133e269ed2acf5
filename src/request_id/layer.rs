use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use metrics::Counter;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{MakeRequestId, RequestHead, RequestId, DEFAULT_MAX_LEN, X_REQUEST_ID};
use crate::observer::{handles, Part};
use crate::{names, Observer};

/// Assigns a [`RequestId`] to every request; see the [module docs](super).
///
/// ```
/// use http::HeaderName;
/// use tower_observe::request_id::AssignRequestIdLayer;
///
/// let layer = AssignRequestIdLayer::new()
///     .header_name(HeaderName::from_static("x-correlation-id"))
///     .max_len(64);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AssignRequestIdLayer {
    pub(crate) header: HeaderName,
    max_len: usize,
    set_request_header: bool,
    /// Where rejected IDs are counted: an observer, or the global `metrics` recorder.
    rejected: Option<Rejected>,
    /// The application's generator; `None`: UUIDv7, without a virtual call.
    make: Option<Make>,
}

/// A [`MakeRequestId`], shared by the layer's clones.
#[derive(Clone)]
struct Make(Arc<dyn MakeRequestId>);

impl std::fmt::Debug for Make {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRequestId")
    }
}

/// Rejected IDs, counted in one observer.
#[derive(Debug, Clone)]
struct Rejected {
    observer: Observer,
    counter: Arc<RejectedCounter>,
}

/// The request-ID part of an observer: the counter of rejected IDs, registered on first use.
#[derive(Debug, Default)]
struct RejectedCounter(OnceLock<Counter>);

impl Part for RejectedCounter {}

impl Rejected {
    fn count(&self) {
        let observer = &self.observer;
        observer.guarded(|| {
            self.counter
                .0
                .get_or_init(|| {
                    handles::counter(
                        observer.source(),
                        &metrics::Key::from_name(names::REQUEST_ID_REJECTED),
                    )
                })
                .increment(1);
        });
    }
}

impl Default for AssignRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AssignRequestIdLayer {
    /// `x-request-id`, at most 128 characters; rejections are counted through the global
    /// `metrics` recorder (use [`Observer::request_id_layer`] to count them in an observer).
    pub fn new() -> Self {
        crate::clock::Clock::system().warm_up();
        Self {
            header: HeaderName::from_static(X_REQUEST_ID),
            max_len: DEFAULT_MAX_LEN,
            set_request_header: false,
            rejected: None,
            make: None,
        }
    }

    pub(crate) fn for_observer(observer: &Observer) -> Self {
        Self {
            rejected: Some(Rejected {
                counter: observer.part(RejectedCounter::default),
                observer: observer.clone(),
            }),
            ..Self::new()
        }
    }

    /// The header read from requests and written to requests and responses.
    pub fn header_name(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The longest incoming ID accepted (at least 1).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// Also writes a generated ID into the request's headers, for inner code that reads the
    /// header rather than the [`RequestId`] extension (for example a proxy that forwards
    /// headers verbatim). Off by default: it costs a header-map insert per request, and the
    /// extension is the reliable source. A rejected incoming ID is always overwritten.
    pub fn set_request_header(mut self, enabled: bool) -> Self {
        self.set_request_header = enabled;
        self
    }

    /// Makes the IDs of requests that arrive without a valid one with `make` instead of
    /// UUIDv7 (see [`MakeRequestId`]; tower-http's `MakeRequestId`).
    pub fn make_request_id(mut self, make: impl MakeRequestId) -> Self {
        self.make = Some(Make(Arc::new(make)));
        self
    }

    /// Gives `req` its ID and returns the value to echo on the response.
    pub(crate) fn assign<B>(&self, req: &mut Request<B>) -> HeaderValue {
        self.assign_at(req, None).into_header_value()
    }

    /// [`assign`](Self::assign), reusing a system-clock reading the caller already took.
    pub(crate) fn assign_at<B>(&self, req: &mut Request<B>, now: Option<u64>) -> RequestId {
        let generate = |req: &Request<B>| {
            if let Some(Make(make)) = &self.make {
                if let Some(id) = make.make_request_id(&RequestHead::of(req)) {
                    return id;
                }
            }
            match now {
                Some(now) => RequestId::generate_at(now),
                None => RequestId::generate(),
            }
        };
        let (id, write_header) = match req.headers().get(&self.header) {
            Some(value) => match RequestId::from_header(value, self.max_len) {
                Some(id) => (id, false),
                None => {
                    match &self.rejected {
                        Some(rejected) => rejected.count(),
                        None => metrics::counter!(names::REQUEST_ID_REJECTED).increment(1),
                    }
                    (generate(req), true)
                }
            },
            None => (generate(req), self.set_request_header),
        };
        if write_header {
            req.headers_mut().insert(self.header.clone(), id.0.clone());
        }
        // No subscriber was ever installed: there is no span to record into.
        if tracing::dispatcher::has_been_set() {
            tracing::Span::current().record("request_id", id.as_str());
        }
        req.extensions_mut().insert(id.clone());
        id
    }
}

impl<S> Layer<S> for AssignRequestIdLayer {
    type Service = AssignRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AssignRequestId {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`AssignRequestIdLayer`].
#[derive(Debug, Clone)]
pub struct AssignRequestId<S> {
    inner: S,
    // Shared: axum clones the service for every request.
    layer: Arc<AssignRequestIdLayer>,
}

impl<S> AssignRequestId<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AssignRequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let value = self.layer.assign(&mut req);
        ResponseFuture::new(self.inner.call(req), self.layer.header.clone(), value)
    }
}

impl Observer {
    /// A [`AssignRequestIdLayer`] that counts rejected incoming IDs in this observer.
    pub fn request_id_layer(&self) -> AssignRequestIdLayer {
        AssignRequestIdLayer::for_observer(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
        let from_ext = req.extensions().get::<RequestId>().unwrap().to_string();
        if let Some(header) = req.headers().get(X_REQUEST_ID) {
            assert_eq!(
                from_ext,
                header.to_str().unwrap(),
                "a header, if any, holds the ID"
            );
        }
        Ok(Response::new(from_ext))
    }

    #[tokio::test]
    async fn keeps_valid_replaces_invalid_generates_missing() {
        let observer = Observer::new();
        let svc = observer.request_id_layer().layer(service_fn(echo));

        let req = Request::builder()
            .header(X_REQUEST_ID, "abc-123")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "abc-123");
        assert_eq!(res.body(), "abc-123");

        let req = Request::builder()
            .header(X_REQUEST_ID, "a b\"c")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let id = res.headers()[X_REQUEST_ID].to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(res.body(), id);

        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID].len(), 36);

        let with_header = AssignRequestIdLayer::new()
            .set_request_header(true)
            .layer(service_fn(|req: Request<()>| async move {
                let id = req.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
                Ok::<_, Infallible>(Response::new(id))
            }));
        let res = with_header.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], res.body().as_str());

        let text = observer.render_metrics().unwrap();
        assert!(
            text.contains("tower_observe_request_id_rejected_total 1\n"),
            "{text}"
        );
    }

    #[test]
    fn records_the_id_on_the_current_span() {
        use std::sync::Mutex;
        use tracing::field::{Field, Visit};
        use tracing_subscriber::layer::{Context, SubscriberExt};

        struct Capture(Arc<Mutex<Vec<String>>>);
        struct Visitor<'a>(&'a Mutex<Vec<String>>);
        impl Visit for Visitor<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "request_id" {
                    self.0.lock().unwrap().push(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_record(
                &self,
                _: &tracing::span::Id,
                values: &tracing::span::Record<'_>,
                _: Context<'_, S>,
            ) {
                values.record(&mut Visitor(&self.0));
            }
        }

        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = tracing::field::Empty);
            let _entered = span.enter();
            let mut req = Request::new(());
            req.headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_static("abc-1"));
            AssignRequestIdLayer::new().assign(&mut req);
        });
        assert_eq!(*seen.lock().unwrap(), ["abc-1"]);
    }
}
