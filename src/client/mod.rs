// The examples in docs/client.md use features beyond `client` (and no hidden lines to gate
// them): the page is always rendered, and run as doctests when those features are on.
#![cfg_attr(
    any(
        not(doctest),
        all(feature = "reqwest-middleware", feature = "tower-retry", feature = "pool")
    ),
    doc = include_str!("../../docs/client.md")
)]

mod call;
pub mod future;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod series;
mod service;

use std::sync::Arc;

use http::HeaderName;

#[cfg(feature = "reqwest-middleware")]
pub use middleware::{ClientMiddleware, RetryAccountingMiddleware};
pub use service::ObserveClient;

pub(crate) use call::ClientCall;
use series::{ClientPart, UpstreamCache};

#[cfg(feature = "cache")]
use crate::cache::CacheHandle;
use crate::labels::{check_label_name, LabelError};
use crate::names;
use crate::Observer;

/// Instruments an HTTP client; see the [module docs](self). Made by
/// [`Observer::client_layer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserveClientLayer {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<ClientPart>,
    pub(crate) options: Arc<ClientOptions>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) target: Arc<str>,
    propagate: bool,
    request_id_header: HeaderName,
    #[cfg(feature = "cache")]
    cache: Option<CacheHandle>,
    /// Constant labels on every client metric of this layer.
    labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// Shared by the clones of one layer (and reset when a setting changes).
    upstream_cache: Arc<UpstreamCache>,
}

impl ObserveClientLayer {
    pub(crate) fn new(observer: &Observer) -> Self {
        let limit = observer.max_label_sets();
        Self {
            observer: observer.clone(),
            part: observer.part(|| ClientPart::new(limit)),
            options: Arc::new(ClientOptions {
                target: Arc::from("default"),
                propagate: true,
                request_id_header: HeaderName::from_static(crate::request_id::X_REQUEST_ID),
                #[cfg(feature = "cache")]
                cache: None,
                labels: Arc::from(Vec::new()),
                upstream_cache: Arc::default(),
            }),
        }
    }

    fn options_mut(&mut self) -> &mut ClientOptions {
        let options = Arc::make_mut(&mut self.options);
        // The cached upstream belongs to the settings it was made with.
        options.upstream_cache = Arc::default();
        options
    }

    /// Adds a constant label to every client metric of this layer, for comparing clients:
    /// `strategy="round_robin"` against `strategy="least_latency"`, or `upstream="billing"`.
    /// The name must be a valid label name that is not one of the client labels.
    ///
    /// ```
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::new();
    /// let layer = observer.client_layer().label("strategy", "round_robin").unwrap();
    /// assert!(observer.client_layer().label("server_port", "1").is_err());
    /// # let _ = layer;
    /// ```
    pub fn label(mut self, name: &str, value: &str) -> Result<Self, LabelError> {
        check_label_name(name, names::HTTP_CLIENT_LABELS)?;
        let options = self.options_mut();
        let mut labels: Vec<(Arc<str>, Arc<str>)> = options
            .labels
            .iter()
            .filter(|(k, _)| **k != *name)
            .cloned()
            .collect();
        labels.push((Arc::from(name), Arc::from(value)));
        options.labels = labels.into();
        Ok(self)
    }

    /// The retry target resends through this client are counted under (default `"default"`;
    /// see [`crate::retry`]).
    pub fn target(mut self, name: &str) -> Self {
        self.options_mut().target = Arc::from(name);
        self
    }

    /// Whether to send `traceparent`, `tracestate`, `baggage` and the request ID upstream
    /// (default `true`). Turn it off for third-party APIs that should not see your trace IDs.
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.options_mut().propagate = propagate;
        self
    }

    /// The header that carries the request ID upstream (default `x-request-id`).
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.options_mut().request_id_header = header;
        self
    }

    /// Classifies every response into `cache` as hit, miss, stale or bypass, from a
    /// [`CacheStatus`](crate::cache::CacheStatus) extension or the `Cache-Status`, `X-Cache` and `Age` headers (see
    /// [`crate::cache`]). Responses that say nothing about caching are not counted.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub fn cache(mut self, cache: CacheHandle) -> Self {
        self.options_mut().cache = Some(cache);
        self
    }
}

impl Observer {
    /// Instrumentation for an HTTP client (tower layer, or `reqwest-middleware` middleware);
    /// see [`crate::client`].
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::new();
    /// // Any tower HTTP client; here one that answers 204 to everything.
    /// let client = ServiceBuilder::new()
    ///     .layer(observer.client_layer().propagate(false))
    ///     .service(tower::service_fn(|_req: http::Request<String>| async {
    ///         Ok::<_, std::io::Error>(http::Response::builder().status(204).body(String::new()).unwrap())
    ///     }));
    /// # let _ = client;
    /// ```
    pub fn client_layer(&self) -> ObserveClientLayer {
        ObserveClientLayer::new(self)
    }
}
