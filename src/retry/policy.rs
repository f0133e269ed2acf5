//! Counting the decisions of any `tower::retry::Policy`.

use tower::retry::Policy;

use super::RetryHandle;
use crate::classify::{ClientError, ClientRequest, ClientResponse, Failure, ResendCount};

/// A `tower::retry::Policy` whose decisions are counted; made by [`RetryHandle::policy`].
///
/// Each time the wrapped policy decides to retry, the resend is counted with the reason the
/// attempt failed; when the request's authority changed in between (your policy pointed it at
/// another backend), the failover is counted; the next attempt's `http::Request` gets a
/// [`ResendCount`]. When the policy stops, the logical request's attempts are recorded, and
/// if the last attempt still failed after a retry, it counts as exhausted.
///
/// `tower::retry` only consults the policy for requests it could clone
/// ([`Policy::clone_request`] returned `Some`); requests that cannot be retried are not
/// counted as logical requests.
///
/// ```
/// use std::future::{ready, Ready};
/// use tower::retry::{Policy, RetryLayer};
/// use tower_observe::Observer;
///
/// #[derive(Clone)]
/// struct Attempts(usize);
///
/// impl<B: Clone, Res, E> Policy<http::Request<B>, Res, E> for Attempts {
///     type Future = Ready<()>;
///     fn retry(&mut self, _: &mut http::Request<B>, r: &mut Result<Res, E>) -> Option<Ready<()>> {
///         (r.is_err() && self.0 > 0).then(|| { self.0 -= 1; ready(()) })
///     }
///     fn clone_request(&mut self, req: &http::Request<B>) -> Option<http::Request<B>> {
///         let mut clone = http::Request::new(req.body().clone());
///         *clone.method_mut() = req.method().clone();
///         *clone.uri_mut() = req.uri().clone();
///         *clone.headers_mut() = req.headers().clone();
///         Some(clone)
///     }
/// }
///
/// let observer = Observer::new();
/// let retry = RetryLayer::new(observer.retries("upstream").policy(Attempts(2)));
/// # let _ = retry;
/// ```
#[derive(Debug, Clone)]
pub struct CountRetries<P> {
    inner: P,
    tracker: RetryHandle,
    /// Resends made by this logical request (`tower::retry` clones the policy per request).
    resends: u32,
}

impl RetryHandle {
    /// Wraps a `tower::retry` policy so its decisions are counted (feature `tower-retry`).
    pub fn policy<P>(&self, policy: P) -> CountRetries<P> {
        CountRetries {
            inner: policy,
            tracker: self.clone(),
            resends: 0,
        }
    }
}

impl<P> CountRetries<P> {
    /// The wrapped policy.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }
}

fn backend<R: ClientRequest>(req: &R) -> Option<String> {
    req.server().map(|(_, host, port)| {
        crate::classify::upstream_label(host, itoa::Buffer::new().format(port))
    })
}

impl<P, Req, Res, E> Policy<Req, Res, E> for CountRetries<P>
where
    P: Policy<Req, Res, E>,
    Req: ClientRequest,
    Res: ClientResponse,
    E: ClientError,
{
    type Future = P::Future;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        let reason = Failure::of_result(result).map(|f| f.label());
        let from = backend(req);
        match self.inner.retry(req, result) {
            Some(wait) => {
                self.resends = self.resends.saturating_add(1);
                self.tracker
                    .count_retry(reason.as_deref().unwrap_or(crate::labels::OTHER));
                let to = backend(req);
                if let (Some(from), Some(to)) = (&from, &to) {
                    if from != to {
                        self.tracker.count_failover(from, to);
                    }
                }
                if let Some(ext) = req.extensions_mut() {
                    ext.insert(ResendCount(self.resends));
                }
                Some(wait)
            }
            None => {
                self.tracker
                    .finish(self.resends.saturating_add(1), reason.is_some());
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        let mut clone = self.inner.clone_request(req)?;
        if let (Some(from), Some(to)) = (req.extensions(), clone.extensions_mut()) {
            if let Some(count) = from.get::<ResendCount>() {
                to.insert(*count);
            }
        }
        Some(clone)
    }
}
