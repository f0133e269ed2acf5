//! The tower layer: every call of a service (a database or queue client built as a
//! `Service`) timed as one call of an operation.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::operation::{OperationHandle, ResultClassifier};

/// Times every call of the service it wraps as one call of an operation: ok, failed (the
/// service's error, or what the classifier says) or cancelled (the response future dropped).
///
/// ```
/// use tower::{service_fn, Layer};
/// use tower_observe::operations::{ObserveOperationLayer, Operation};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let insert = observer.operation(Operation::db("postgresql", "insert_user").collection("users"));
/// let client = ObserveOperationLayer::new(insert)
///     .layer(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id) }));
/// # let _ = client;
/// ```
///
/// (Dependencies: `tower` with the `util` feature.)
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserveOperationLayer<C = ResultClassifier> {
    handle: OperationHandle,
    classify: C,
}

impl ObserveOperationLayer {
    /// Times calls into `handle`; an `Err` is a failure of the error's type.
    pub fn new(handle: OperationHandle) -> Self {
        Self {
            handle,
            classify: ResultClassifier,
        }
    }
}

impl<C> ObserveOperationLayer<C> {
    /// Classifies each call's `Result<Response, Error>` with `classify` instead
    /// ([`ok_if`](super::ok_if), [`error_if`](super::error_if), or a closure).
    pub fn classify<C2>(self, classify: C2) -> ObserveOperationLayer<C2> {
        ObserveOperationLayer {
            handle: self.handle,
            classify,
        }
    }
}

impl<S, C: Clone> Layer<S> for ObserveOperationLayer<C> {
    type Service = ObserveOperation<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveOperation {
            inner,
            handle: self.handle.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service made by [`ObserveOperationLayer`].
#[derive(Debug, Clone)]
pub struct ObserveOperation<S, C = ResultClassifier> {
    inner: S,
    handle: OperationHandle,
    classify: C,
}

impl<S, C> ObserveOperation<S, C> {
    inner_service_accessors!();
}

impl<S, C, Req> Service<Req> for ObserveOperation<S, C>
where
    S: Service<Req>,
    C: super::Classify<Result<S::Response, S::Error>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let guard = self.handle.start();
        let inner = {
            let _entered = guard.span().enter();
            self.inner.call(req)
        };
        future::ResponseFuture::new(inner, guard, self.classify.clone())
    }
}

/// Future types.
pub mod future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use pin_project_lite::pin_project;

    use crate::operations::{Classify, OperationGuard};

    pin_project! {
        /// The response future of [`ObserveOperation`](super::ObserveOperation): records the
        /// call when the inner future ends, or as cancelled when it is dropped first.
        #[derive(Debug)]
        pub struct ResponseFuture<F, C> {
            #[pin]
            inner: F,
            guard: Option<OperationGuard>,
            classify: C,
        }
    }

    impl<F, C> ResponseFuture<F, C> {
        pub(super) fn new(inner: F, guard: OperationGuard, classify: C) -> Self {
            Self {
                inner,
                guard: Some(guard),
                classify,
            }
        }
    }

    impl<F, C, T, E> Future for ResponseFuture<F, C>
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<Result<T, E>>,
    {
        type Output = Result<T, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let entered = this.guard.as_ref().map(|g| g.span().enter());
            let output = ready!(this.inner.poll(cx));
            drop(entered);
            if let Some(guard) = this.guard.take() {
                guard.finish(this.classify.classify(&output));
            }
            Poll::Ready(output)
        }
    }
}
