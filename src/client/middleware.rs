//! The `reqwest-middleware` form of the client instrumentation and retry accounting.
//!
//! `reqwest-retry` runs every attempt of a logical request through the rest of the chain with
//! the same `Extensions`, so the instrumentation, placed after it, keeps an attempt log there:
//! each attempt after the first is a resend (counted, with the previous attempt's failure as
//! reason), and a change of upstream between attempts is a failover. Placed before it,
//! [`RetryAccountingMiddleware`] closes the log when the logical request ends (attempts,
//! exhaustion).

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};

use super::series::Upstream;
use super::{ClientCall, ObserveClientLayer};
use crate::classify::{ClientError, Failure};
use crate::retry::RetryHandle;
use crate::trace::TraceContext;

/// Instruments each attempt made through a `reqwest_middleware::ClientWithMiddleware`; made
/// by [`ObserveClientLayer::middleware`].
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let upstream = observer.retries("upstream");
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(upstream.reqwest_middleware()) // logical requests: attempts, exhaustion
///     .with(RetryTransientMiddleware::new_with_policy(
///         ExponentialBackoff::builder().build_with_max_retries(2),
///     ))
///     .with(observer.client_layer().target("upstream").middleware()) // every attempt
///     .build();
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct ClientMiddleware {
    layer: ObserveClientLayer,
}

impl ObserveClientLayer {
    /// This instrumentation as `reqwest-middleware` middleware (feature `reqwest-middleware`).
    pub fn middleware(self) -> ClientMiddleware {
        ClientMiddleware { layer: self }
    }
}

/// What the attempts of one logical request left in its `Extensions`.
#[derive(Debug, Clone, Default)]
struct AttemptLog {
    attempts: u32,
    last_failure: Option<Failure>,
    last_upstream: Option<Arc<Upstream>>,
    /// Set by [`RetryAccountingMiddleware`]; resends count there, else under the
    /// instrumentation's own target.
    tracker: Option<RetryHandle>,
    /// The trace the first attempt started, when it had none to continue: the resends
    /// continue it, so one logical request is one trace.
    root: Option<TraceContext>,
}

#[async_trait::async_trait]
impl Middleware for ClientMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let observer = &self.layer.observer;
        // Most calls succeed at the first attempt: the log is only created once one fails
        // (or by the accounting middleware), sparing every other call an allocation.
        let mut root = None;
        let (resend_count, previous) = match extensions.get_mut::<AttemptLog>() {
            None => (0, None),
            Some(log) => {
                root = log.root.clone();
                let resend_count = log.attempts;
                log.attempts = log.attempts.saturating_add(1);
                let previous = (resend_count > 0).then(|| {
                    let tracker = log
                        .tracker
                        .clone()
                        .unwrap_or_else(|| observer.retries(&self.layer.options.target));
                    let reason = log.last_failure.map(Failure::label);
                    tracker.count_retry(reason.as_deref().unwrap_or(crate::labels::OTHER));
                    (tracker, log.last_upstream.clone())
                });
                (resend_count, previous)
            }
        };
        let layer = &self.layer;
        if TraceContext::current().is_some() {
            root = None;
        }
        let call = TraceContext::with_current(&mut root, || {
            ClientCall::start(
                observer,
                &layer.part,
                &layer.options,
                &mut req,
                Some(resend_count),
            )
        });
        if let Some((tracker, Some(from))) = previous {
            if let Some(to) = &call.upstream {
                if !Arc::ptr_eq(&from, to) {
                    tracker.count_failover(&from.label(), &to.label());
                }
            }
        }
        let result =
            tracing::Instrument::instrument(next.run(req, extensions), call.span.clone()).await;
        let end = match &result {
            Ok(res) => call.finish_response(res),
            Err(e) => call.finish_error(e.error_type()),
        };
        let root = end.root.map(TraceContext::new);
        match extensions.get_mut::<AttemptLog>() {
            Some(log) => {
                log.last_failure = end.failure;
                log.last_upstream = end.upstream;
                if log.root.is_none() {
                    log.root = root;
                }
            }
            None if end.failure.is_some() => {
                extensions.insert(AttemptLog {
                    attempts: 1,
                    last_failure: end.failure,
                    last_upstream: end.upstream,
                    tracker: None,
                    root,
                });
            }
            None => {}
        }
        result
    }
}

/// Closes the books on each logical request; made by [`RetryHandle::reqwest_middleware`].
/// Put it before the retry middleware.
#[derive(Debug, Clone)]
pub struct RetryAccountingMiddleware {
    tracker: RetryHandle,
}

impl RetryHandle {
    /// Retry accounting as `reqwest-middleware` middleware, to put before `reqwest-retry`'s
    /// `RetryTransientMiddleware` (feature `reqwest-middleware`); see [`ClientMiddleware`].
    pub fn reqwest_middleware(&self) -> RetryAccountingMiddleware {
        RetryAccountingMiddleware {
            tracker: self.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for RetryAccountingMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        extensions.insert(AttemptLog {
            tracker: Some(self.tracker.clone()),
            ..AttemptLog::default()
        });
        let result = next.run(req, extensions).await;
        let attempts = extensions
            .remove::<AttemptLog>()
            .map_or(1, |log| log.attempts.max(1));
        self.tracker
            .finish(attempts, Failure::of_result(&result).is_some());
        result
    }
}
