//! Whether the application's requests pass through the layer: the checks behind the
//! `layer_not_in_front` and `layer_outside_router` warnings.
//!
//! Nothing here runs on the request path. The layer already makes the request's trace
//! context current while the inner service runs; the observer's own endpoints look for it
//! when they answer (a thread-local read), and count the requests that reached them without
//! it. The rest is read from the route statistics the layer records anyway, when
//! `/v1/stats`, `/health` or an endpoint is served.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::series::ServerPart;
use crate::stats::Warning;
use crate::trace::TraceContext;
use crate::Observer;

/// How long the endpoints may be reached without the layer, with no application request
/// recorded, before it is a warning: long enough for a service on a separate admin port to
/// have had its first request, short enough to be seen on the first day.
pub(crate) const UNLAYERED_GRACE: Duration = Duration::from_secs(60);

/// What the endpoints and the layer's construction tell about the wiring.
#[derive(Debug, Default)]
pub(crate) struct Wiring {
    /// An `ObserveLayer` was made from this observer.
    pub(super) layer_made: AtomicBool,
    /// The axum router fragment was made (so the application routes with axum).
    axum_router: AtomicBool,
    /// Requests that reached an endpoint without passing through an observe layer.
    unlayered: AtomicU64,
    /// When the first of them arrived (`now_nanos() + 1`; 0: none yet).
    first_unlayered: AtomicU64,
}

/// What the observer's endpoints run before answering: notes whether the request came
/// through a layer, and logs a warning the first time one applies.
#[derive(Clone)]
pub(crate) struct EndpointProbe {
    observer: Observer,
    server: Arc<ServerPart>,
}

impl std::fmt::Debug for EndpointProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointProbe").finish_non_exhaustive()
    }
}

impl EndpointProbe {
    /// The probe of `observer`'s endpoints; `axum`: they are served by the axum router
    /// fragment.
    pub(crate) fn new(observer: &Observer, axum: bool) -> Self {
        let server = observer.part(ServerPart::default);
        if axum {
            server.wiring.axum_router.store(true, Relaxed);
        }
        Self {
            observer: observer.clone(),
            server,
        }
    }

    /// An endpoint is answering a request (on the thread that polls it).
    pub(crate) fn reached(&self) {
        if TraceContext::peek_current(|_| ()).is_none() {
            let wiring = &self.server.wiring;
            if wiring.unlayered.fetch_add(1, Relaxed) == 0 {
                let now = self.observer.now_nanos().saturating_add(1);
                let _ = wiring
                    .first_unlayered
                    .compare_exchange(0, now, Relaxed, Relaxed);
            }
        }
        // Logs what is new, once.
        self.observer.warnings();
    }
}

impl ServerPart {
    /// The wiring problems the route statistics and the endpoints show.
    pub(super) fn wiring_warnings(&self, observer: &Observer, out: &mut Vec<Warning>) {
        let wiring = &self.wiring;
        let (matched, unmatched_2xx) = self.stats.matched_and_unmatched_2xx();
        if wiring.axum_router.load(Relaxed) && unmatched_2xx > 0 && matched == 0 {
            out.push(Warning::new(
                "layer_outside_router",
                "every successful request is recorded with http_route=\"_UNMATCHED\": observer.layer() wraps the axum Router from outside (a tower::ServiceBuilder around the router, Router::fallback_service, or a layer added to the served service), where the matched route is not known yet. Add it to the router itself: Router::new().route(...).merge(observer.router()).layer(observer.layer()). See \"Layer order\" in the metrics docs.",
            ));
        }
        let first = wiring.first_unlayered.load(Relaxed);
        if wiring.layer_made.load(Relaxed)
            && first > 0
            && matched == 0
            && unmatched_2xx == 0
            && observer.now_nanos().saturating_sub(first - 1) >= UNLAYERED_GRACE.as_nanos() as u64
        {
            out.push(Warning::new(
                "layer_not_in_front",
                "the observer's endpoints are reached without passing through observer.layer(), and no application request has been recorded for a minute: the layer is not in front of the application's routes. With axum, call .layer(observer.layer()) last, after every .route(...) and .merge(observer.router()): Router::layer wraps only the routes added before it. With hyper, wrap the service you serve. (If the endpoints are on a separate listener and the service had no traffic yet, ignore this.) See \"Layer order\" in the metrics docs.",
            ));
        }
    }
}
