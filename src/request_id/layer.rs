use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{RequestId, DEFAULT_MAX_LEN, X_REQUEST_ID};
use crate::Observer;

/// Assigns a [`RequestId`] to every request; see the [module docs](super).
///
/// ```
/// use http::HeaderName;
/// use tower_observe::request_id::RequestIdLayer;
///
/// let layer = RequestIdLayer::new()
///     .header_name(HeaderName::from_static("x-correlation-id"))
///     .max_len(64);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestIdLayer {
    header: HeaderName,
    max_len: usize,
    observer: Option<Observer>,
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdLayer {
    /// `x-request-id`, at most 128 characters; rejections are counted through the global
    /// `metrics` recorder (use [`Observer::request_id_layer`] to count them in an observer).
    pub fn new() -> Self {
        crate::clock::Clock::system().warm_up();
        Self {
            header: HeaderName::from_static(X_REQUEST_ID),
            max_len: DEFAULT_MAX_LEN,
            observer: None,
        }
    }

    pub(crate) fn for_observer(observer: Observer) -> Self {
        Self {
            observer: Some(observer),
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
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    layer: RequestIdLayer,
}

impl<S> RequestIdService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
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
        let layer = &self.layer;
        let id = match req.headers().get(&layer.header) {
            Some(value) => RequestId::from_header(value, layer.max_len).unwrap_or_else(|| {
                match &layer.observer {
                    Some(observer) => observer.request_id_rejected(),
                    None => metrics::counter!(crate::names::REQUEST_ID_REJECTED).increment(1),
                }
                RequestId::generate()
            }),
            None => RequestId::generate(),
        };
        let value = id.0.clone();
        req.headers_mut().insert(layer.header.clone(), value.clone());
        tracing::Span::current().record("request_id", id.as_str());
        req.extensions_mut().insert(id);
        ResponseFuture {
            inner: self.inner.call(req),
            header: Some((layer.header.clone(), value)),
        }
    }
}

pin_project! {
    /// Response future of [`RequestIdService`]: puts the ID on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        header: Option<(HeaderName, HeaderValue)>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((name, value)) = this.header.take() {
            // Always ours: the echoed ID must be the validated one the logs carry.
            response.headers_mut().insert(name, value);
        }
        Poll::Ready(Ok(response))
    }
}

impl Observer {
    /// A [`RequestIdLayer`] that counts rejected incoming IDs in this observer.
    pub fn request_id_layer(&self) -> RequestIdLayer {
        RequestIdLayer::for_observer(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
        let from_ext = req.extensions().get::<RequestId>().unwrap().to_string();
        let from_header = req.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(from_ext, from_header);
        Ok(Response::new(from_ext))
    }

    #[tokio::test]
    async fn keeps_valid_replaces_invalid_generates_missing() {
        let observer = Observer::new();
        let svc = observer.request_id_layer().layer(service_fn(echo));

        let req = Request::builder().header(X_REQUEST_ID, "abc-123").body(()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "abc-123");
        assert_eq!(res.body(), "abc-123");

        let req = Request::builder().header(X_REQUEST_ID, "a b\"c").body(()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let id = res.headers()[X_REQUEST_ID].to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(res.body(), id);

        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID].len(), 36);

        let text = observer.render_metrics().unwrap();
        assert!(text.contains("tower_observe_request_id_rejected_total 1\n"), "{text}");
    }
}
