//! How a capability plugs into the core without the core naming it.
//!
//! A capability (the HTTP server's series, the client's upstreams, retry targets, caches,
//! pools, gRPC methods, health, history, …) keeps its state in a [`Part`]: a value attached to
//! an observer once, keyed by its type, the way `http::Extensions` keys values. The core asks
//! every attached part, without knowing what it is, for its `/v1/stats` sections, to reset
//! them, for its input to `/health`, and for the routes it serves.
//!
//! Parts are attached at two moments:
//!
//! - **when a layer or handle is built** ([`Observer::part`]): the layer keeps the `Arc` it
//!   got, so the request path never looks a part up;
//! - **when the observer is built** ([`ObserverBuilder::attach`](super::ObserverBuilder)):
//!   for parts configured on the builder. Only these may serve routes or subscribe to
//!   records, because the router fragment and the record path read those lists once,
//!   without a lock.

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use http::Response;

use super::Observer;
use crate::response::EndpointBody;
use crate::stats::{StatsSnapshot, Warning};
use crate::sync::{read, write};

/// The state of one capability, attached to an observer.
pub(crate) trait Part: Any + Send + Sync {
    /// Fills this part's sections of `/v1/stats`. `elapsed`: seconds since the observer started.
    fn stats(&self, _snapshot: &mut StatsSnapshot, _elapsed: f64) {}

    /// Zeroes this part's `/v1/stats` figures (never its Prometheus metrics).
    fn reset(&self) {}

    /// Adds what this part knows about the service's health.
    fn health(&self, _elapsed: f64, _input: &mut HealthInput) {}

    /// Brings this part's gauges and counters up to date just before `/metrics` is rendered
    /// (figures read from outside the recording path, such as the process's CPU time). It
    /// must be quick and must not fail: a figure it cannot read is left out.
    fn refresh(&self) {}

    /// The wiring or configuration problems this part sees now (a layer requests do not pass
    /// through, a store that is not durable, …). Asked when `/v1/stats`, `/health` or an
    /// endpoint is served, and once when the observer is built; must be quick.
    fn warnings(&self, _observer: &Observer, _out: &mut Vec<Warning>) {}

    /// The endpoints this part serves (asked once, when a router or endpoints service is made).
    fn routes(&self, _observer: &Observer) -> Vec<Route> {
        Vec::new()
    }
}

/// Health status, from best to worst: the colour of `/health`, and what a part asks for
/// when it reports itself degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Serving normally.
    Green,
    /// Error rate above the yellow threshold.
    Yellow,
    /// Error rate above the red threshold, or a dependency check failed.
    Red,
}

/// What the parts report to `/health`.
#[derive(Debug, Default, Clone)]
pub(crate) struct HealthInput {
    /// Requests (or calls) served in the last minute.
    pub(crate) requests: u64,
    /// Of which failed.
    pub(crate) failed: u64,
    /// Statuses parts ask for beyond the error rate (a firing critical alert: red), each with
    /// the reason shown in the report; a reason that does not change the colour (a history
    /// kept in memory, a warning) comes with `Status::Green`.
    pub(crate) degraded: Vec<(Status, String)>,
    /// Further sections of the report (`process`, `alerts`, …), by name.
    pub(crate) sections: std::collections::BTreeMap<&'static str, serde_json::Value>,
}

impl HealthInput {
    /// Counts served traffic of the last minute.
    pub(crate) fn traffic(&mut self, (requests, failed): (u64, u64)) {
        self.requests += requests;
        self.failed += failed;
    }
}

/// The future of a route's answer.
pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Response<EndpointBody>> + Send>>;

/// Answers one request to a route (its body is never read: the observer's endpoints take
/// their input from the method, the URI and the headers).
pub(crate) type RouteHandler = Arc<dyn Fn(http::request::Parts) -> RouteFuture + Send + Sync>;

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteMethod {
    /// `GET` and `HEAD`.
    Get,
    /// `POST`.
    Post,
}

impl RouteMethod {
    pub(crate) fn allows(self, method: &http::Method) -> bool {
        match self {
            RouteMethod::Get => method == http::Method::GET || method == http::Method::HEAD,
            RouteMethod::Post => method == http::Method::POST,
        }
    }

    /// The `Allow` header of a 405.
    pub(crate) fn allow_header(self) -> &'static str {
        match self {
            RouteMethod::Get => "GET, HEAD",
            RouteMethod::Post => "POST",
        }
    }
}

/// One endpoint a part serves.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) path: String,
    pub(crate) method: RouteMethod,
    pub(crate) handler: RouteHandler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("path", &self.path)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// A route answered by `handler`.
    pub(crate) fn new<F, Fut>(path: impl Into<String>, method: RouteMethod, handler: F) -> Self
    where
        F: Fn(http::request::Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<EndpointBody>> + Send + 'static,
    {
        Self {
            path: path.into(),
            method,
            handler: Arc::new(move |parts| Box::pin(handler(parts))),
        }
    }
}

struct Entry {
    type_id: TypeId,
    any: Arc<dyn Any + Send + Sync>,
    part: Arc<dyn Part>,
}

/// The parts of one observer, in the order they were attached.
#[derive(Default)]
pub(crate) struct Parts(RwLock<Vec<Entry>>);

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} part(s)", read(&self.0).len())
    }
}

impl Parts {
    /// The part of type `T`, if attached.
    pub(crate) fn get<T: Part>(&self) -> Option<Arc<T>> {
        let entries = read(&self.0);
        let entry = entries.iter().find(|e| e.type_id == TypeId::of::<T>())?;
        entry.any.clone().downcast::<T>().ok()
    }

    /// The part of type `T`, made by `make` and attached if there is none yet.
    ///
    /// `make` runs without the lock held (it may register metrics, or attach parts of its
    /// own); if two threads race, the first to attach wins and both get its part.
    pub(crate) fn get_or_attach<T: Part>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(part) = self.get::<T>() {
            return part;
        }
        let made = Arc::new(make());
        let mut entries = write(&self.0);
        if let Some(entry) = entries.iter().find(|e| e.type_id == TypeId::of::<T>()) {
            if let Ok(existing) = entry.any.clone().downcast::<T>() {
                return existing;
            }
        }
        entries.push(Entry {
            type_id: TypeId::of::<T>(),
            any: made.clone(),
            part: made.clone(),
        });
        made
    }

    /// Every part, in attachment order (a snapshot: the lock is not held while they run).
    pub(crate) fn all(&self) -> Vec<Arc<dyn Part>> {
        read(&self.0).iter().map(|e| e.part.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[derive(Default)]
    struct Counts(AtomicU64);

    impl Part for Counts {
        fn reset(&self) {
            self.0.store(0, Relaxed);
        }
    }

    #[test]
    fn a_part_is_attached_once_and_found_by_type() {
        let parts = Parts::default();
        assert!(parts.get::<Counts>().is_none());
        let a = parts.get_or_attach(Counts::default);
        a.0.store(7, Relaxed);
        let b = parts.get_or_attach::<Counts>(|| unreachable!("already attached"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(parts.all().len(), 1);
        for part in parts.all() {
            part.reset();
        }
        assert_eq!(a.0.load(Relaxed), 0);
    }
}
