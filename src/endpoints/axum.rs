//! The endpoints as an axum router fragment.

use axum::extract::Request;
use axum::routing::{on, MethodFilter};
use axum::Router;

use super::{off_routes, probed, routes, METRICS_PATH, STATS_PATH};
use crate::observer::RouteMethod;
use crate::Observer;

impl Observer {
    /// An axum router fragment serving `GET /metrics`, `GET /v1/stats`, `GET /health`,
    /// `GET /health/live` and the routes of the capabilities the observer was built with
    /// (`GET /v1/stats/history` with history, `POST /v1/stats/reset` with a reset token);
    /// merge it into your app with `Router::merge`.
    ///
    /// ```
    /// use axum::Router;
    /// let observer = tower_observe::Observer::new();
    /// let app: Router = Router::new().merge(observer.router());
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.endpoints_router(false)
    }

    /// The router fragment; `whole_server`: it is the whole server (the admin listener), so
    /// the paths of capabilities that are off outside `/v1/` (`/dashboard`) answer too.
    pub(crate) fn endpoints_router<S: Clone + Send + Sync + 'static>(
        &self,
        whole_server: bool,
    ) -> Router<S> {
        let mut router = Router::new();
        let mut routes = routes(self, METRICS_PATH, STATS_PATH);
        routes.extend(off_routes(&routes, whole_server));
        let probe = crate::server::EndpointProbe::new(self, true);
        for route in probed(routes, &probe) {
            let filter = match route.method {
                RouteMethod::Get => MethodFilter::GET.or(MethodFilter::HEAD),
                RouteMethod::Post => MethodFilter::POST,
            };
            let handler = route.handler;
            router = router.route(
                &route.path,
                on(filter, move |req: Request| {
                    let (parts, _) = req.into_parts();
                    handler(parts)
                }),
            );
        }
        router
    }
}
