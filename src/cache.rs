//! Cache hit tracking: `cache_requests_total{cache, result}` and a hit ratio per cache in
//! `/v1/stats`.
//!
//! Results come from three places:
//!
//! - your own code, for in-app caches: `observer.cache("models").hit()`;
//! - a [`CacheStatus`] in the response extensions, set by the application or an inner
//!   caching layer;
//! - the response headers, for HTTP caches in front of an upstream or inside the service:
//!   RFC 9211 `Cache-Status`, then `X-Cache` (Varnish, Squid, CDNs), then `Age`.
//!
//! [`CacheResultsLayer`] classifies the responses of any HTTP service (server side, around a cached
//! route) and `ObserveClientLayer::cache` (module `client`) those of an upstream.
//! Cache names usually come from code; when they don't, they are capped like every label.
//!
//! ```
//! use tower_observe::{cache::CacheStatus, Observer};
//!
//! let observer = Observer::new();
//! let models = observer.cache("models");
//! models.hit();
//! models.record(CacheStatus::Miss);
//! assert_eq!(observer.stats().caches["models"].hit_ratio, Some(0.5));
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap};
use metrics::Counter;
use tower_layer::Layer;
use tower_service::Service;

use crate::names;
use crate::observer::family::Family;
use crate::observer::handles;
use crate::observer::{Observer, Part, RecorderSource};
use crate::stats::{CacheEntry, StatsSnapshot};

/// How a cache answered one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Not in the cache (or not usable); fetched from the origin.
    Miss,
    /// Served stale, or revalidated with the origin.
    Stale,
    /// The cache was not consulted (uncacheable method, `no-store`, bypass rules).
    Bypass,
}

impl CacheStatus {
    const ALL: [CacheStatus; 4] = [Self::Hit, Self::Miss, Self::Stale, Self::Bypass];

    /// The `result` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Bypass => "bypass",
        }
    }

    /// Classifies a response: a [`CacheStatus`] extension wins, then `Cache-Status`, then
    /// `X-Cache`, then `Age`; `None` when none of them says anything.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_observe::cache::CacheStatus;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cache-status", "ReverseProxy; hit, BrowserCache; fwd=uri-miss".parse().unwrap());
    /// assert_eq!(CacheStatus::classify(&headers, &http::Extensions::new()), Some(CacheStatus::Miss));
    /// ```
    pub fn classify(headers: &HeaderMap, extensions: &Extensions) -> Option<CacheStatus> {
        if let Some(status) = extensions.get::<CacheStatus>() {
            return Some(*status);
        }
        // Several header lines form one list; the last member is the cache nearest to us.
        let text = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .next_back()
        };
        if let Some(status) = text("cache-status").and_then(from_cache_status) {
            return Some(status);
        }
        if let Some(status) = text("x-cache").and_then(from_x_cache) {
            return Some(status);
        }
        let age = text("age")?.trim().parse::<u64>().ok()?;
        Some(if age > 0 { Self::Hit } else { Self::Miss })
    }
}

/// RFC 9211: a list of `cache-name; param; param=value` members, origin first, so the last
/// member is the cache closest to whoever reads the response.
fn from_cache_status(value: &str) -> Option<CacheStatus> {
    let member = value.rsplit(',').next()?.trim();
    let mut hit = false;
    let mut stale = false;
    let mut fwd: Option<&str> = None;
    for param in member.split(';').skip(1) {
        let (key, val) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (param.trim(), None),
        };
        match (key.to_ascii_lowercase().as_str(), val) {
            ("hit", _) => hit = true,
            ("fwd", Some(v)) => fwd = Some(v),
            // A negative freshness lifetime means a stale response was served.
            ("ttl", Some(v)) if v.starts_with('-') => stale = true,
            _ => {}
        }
    }
    if hit {
        return Some(if stale {
            CacheStatus::Stale
        } else {
            CacheStatus::Hit
        });
    }
    Some(match fwd?.to_ascii_lowercase().as_str() {
        "stale" => CacheStatus::Stale,
        "bypass" | "method" | "request" => CacheStatus::Bypass,
        _ => CacheStatus::Miss, // uri-miss, vary-miss, miss, partial, and future reasons
    })
}

/// `X-Cache`: `HIT`, `MISS`, `HIT from squid.example`, `TCP_MEM_HIT`, `RefreshHit from
/// cloudfront`, `STALE`, `BYPASS`, or a comma list (`MISS, HIT`) whose last entry is nearest.
fn from_x_cache(value: &str) -> Option<CacheStatus> {
    let last = value.rsplit(',').next()?.trim().to_ascii_lowercase();
    let word = last.split_whitespace().next()?;
    if word.contains("stale") || word.contains("refresh") || word.contains("revalidated") {
        Some(CacheStatus::Stale)
    } else if word.contains("bypass") || word.contains("pass") || word.contains("dynamic") {
        Some(CacheStatus::Bypass)
    } else if word.contains("miss") || word.contains("expired") {
        Some(CacheStatus::Miss)
    } else if word.contains("hit") {
        Some(CacheStatus::Hit)
    } else {
        None
    }
}

#[derive(Debug)]
pub(crate) struct CacheCounters {
    name: Box<str>,
    counters: [Counter; 4],
    counts: [AtomicU64; 4],
    /// Set for the overflow cache.
    overflow: Option<Counter>,
}

impl CacheCounters {
    pub(crate) fn new(source: &dyn RecorderSource, name: &str, overflow: Option<Counter>) -> Self {
        Self {
            name: name.into(),
            counters: CacheStatus::ALL.map(|s| {
                let labels = [("cache", name), ("result", s.as_str())];
                handles::counter(
                    source,
                    &handles::entry_key(names::CACHE_REQUESTS, &labels, &overflow),
                )
            }),
            counts: Default::default(),
            overflow,
        }
    }

    /// Zeroes the `/v1/stats` counts (not the metrics).
    pub(crate) fn reset(&self) {
        for c in &self.counts {
            c.store(0, Relaxed);
        }
    }

    pub(crate) fn entry(&self) -> CacheEntry {
        let [hit, miss, stale, bypass] = self.counts.each_ref().map(|c| c.load(Relaxed));
        let lookups = hit + miss + stale;
        CacheEntry {
            hit,
            miss,
            stale,
            bypass,
            hit_ratio: (lookups > 0).then(|| hit as f64 / lookups as f64),
        }
    }
}

/// The results of one cache; made by [`Observer::cache`]. Cheap to clone; keep it and call it
/// on the hot path (no lookup per call).
#[derive(Debug, Clone)]
pub struct CacheHandle {
    counters: Arc<CacheCounters>,
}

impl CacheHandle {
    pub(crate) fn new(counters: Arc<CacheCounters>) -> Self {
        Self { counters }
    }

    /// The cache's name, as it appears in labels.
    pub fn name(&self) -> &str {
        &self.counters.name
    }

    /// Counts one lookup.
    pub fn record(&self, status: CacheStatus) {
        let i = status as usize;
        self.counters.counters[i].increment(1);
        self.counters.counts[i].fetch_add(1, Relaxed);
        handles::count_overflow(&self.counters.overflow);
    }

    /// Counts a hit.
    pub fn hit(&self) {
        self.record(CacheStatus::Hit);
    }

    /// Counts a miss.
    pub fn miss(&self) {
        self.record(CacheStatus::Miss);
    }

    /// Counts a stale answer.
    pub fn stale(&self) {
        self.record(CacheStatus::Stale);
    }

    /// Counts a bypass.
    pub fn bypass(&self) {
        self.record(CacheStatus::Bypass);
    }
}

/// Classifies the responses of an HTTP service into a cache's results; see the
/// [module docs](self).
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_observe::{cache::CacheResultsLayer, Observer};
///
/// let observer = Observer::new();
/// let app: Router = Router::new()
///     .route("/models", get(|| async { ([("x-cache", "HIT")], "[]") }))
///     .layer(CacheResultsLayer::new(observer.cache("models")));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheResultsLayer {
    cache: CacheHandle,
}

impl CacheResultsLayer {
    /// Counts into `cache`.
    pub fn new(cache: CacheHandle) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for CacheResultsLayer {
    type Service = CacheResults<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheResults {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The service made by [`CacheResultsLayer`].
#[derive(Debug, Clone)]
pub struct CacheResults<S> {
    inner: S,
    cache: CacheHandle,
}

impl<S> CacheResults<S> {
    inner_service_accessors!();
}

impl<S, Req, B> Service<Req> for CacheResults<S>
where
    S: Service<Req, Response = http::Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        future::ResponseFuture::new(self.inner.call(req), self.cache.clone())
    }
}

/// Future types.
pub mod future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use pin_project_lite::pin_project;

    use super::{CacheHandle, CacheStatus};

    pin_project! {
        /// The response future of [`CacheResults`](super::CacheResults).
        #[derive(Debug)]
        pub struct ResponseFuture<F> {
            #[pin]
            inner: F,
            cache: Option<CacheHandle>,
        }
    }

    impl<F> ResponseFuture<F> {
        pub(super) fn new(inner: F, cache: CacheHandle) -> Self {
            Self {
                inner,
                cache: Some(cache),
            }
        }
    }

    impl<F, B, E> Future for ResponseFuture<F>
    where
        F: Future<Output = Result<http::Response<B>, E>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let result = ready!(this.inner.poll(cx));
            if let (Ok(res), Some(cache)) = (&result, this.cache.take()) {
                if let Some(status) = CacheStatus::classify(res.headers(), res.extensions()) {
                    cache.record(status);
                }
            }
            Poll::Ready(result)
        }
    }
}

/// Most caches per observer; past it they share an `_OTHER` entry.
const MAX_CACHES: usize = 256;

/// The caches of an observer; attached by the first [`Observer::cache`].
#[derive(Debug)]
struct Caches(Family<CacheCounters>);

impl Default for Caches {
    fn default() -> Self {
        Self(Family::new(names::CACHE_REQUESTS, MAX_CACHES))
    }
}

impl Part for Caches {
    fn stats(&self, snapshot: &mut StatsSnapshot, _elapsed: f64) {
        snapshot.caches = self.0.by_name(CacheCounters::entry);
    }

    fn reset(&self) {
        for (_, cache) in self.0.entries() {
            cache.reset();
        }
    }
}

impl Observer {
    /// The results of the cache called `name`, registered on first use.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let models = observer.cache("models");
    /// models.miss();
    /// assert_eq!(observer.stats().caches["models"].miss, 1);
    /// ```
    pub fn cache(&self, name: &str) -> CacheHandle {
        let caches = self.part(Caches::default);
        CacheHandle::new(self.named(&caches.0, name, CacheCounters::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(name: &'static str, value: &'static str) -> Option<CacheStatus> {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        CacheStatus::classify(&h, &Extensions::new())
    }

    #[test]
    fn cache_status_header() {
        use CacheStatus::*;
        assert_eq!(classify("cache-status", "ExampleCache; hit"), Some(Hit));
        assert_eq!(
            classify("cache-status", "ExampleCache; hit; ttl=-30"),
            Some(Stale)
        );
        assert_eq!(
            classify("cache-status", "Origin; hit, CDN; fwd=uri-miss; stored"),
            Some(Miss)
        );
        assert_eq!(
            classify("cache-status", "CDN; fwd=stale; fwd-status=304"),
            Some(Stale)
        );
        assert_eq!(classify("cache-status", "CDN; fwd=bypass"), Some(Bypass));
        assert_eq!(classify("cache-status", "CDN; fwd=method"), Some(Bypass));
        assert_eq!(classify("cache-status", "CDN; detail=whatever"), None);
    }

    #[test]
    fn x_cache_header() {
        use CacheStatus::*;
        assert_eq!(classify("x-cache", "HIT"), Some(Hit));
        assert_eq!(classify("x-cache", "Hit from cloudfront"), Some(Hit));
        assert_eq!(classify("x-cache", "TCP_MEM_HIT from squid"), Some(Hit));
        assert_eq!(classify("x-cache", "MISS, HIT"), Some(Hit));
        assert_eq!(classify("x-cache", "HIT, MISS"), Some(Miss));
        assert_eq!(
            classify("x-cache", "RefreshHit from cloudfront"),
            Some(Stale)
        );
        assert_eq!(classify("x-cache", "BYPASS"), Some(Bypass));
        assert_eq!(classify("x-cache", "banana"), None);
    }

    #[test]
    fn arbitrary_header_values_never_panic() {
        let alphabet = b"abcHITMISxs;,=- \"0123456789fwdtl";
        for _ in 0..20_000 {
            let len = fastrand::usize(0..30);
            let text: String = (0..len)
                .map(|_| char::from(alphabet[fastrand::usize(..alphabet.len())]))
                .collect();
            let _ = from_cache_status(&text);
            let _ = from_x_cache(&text);
        }
    }

    #[test]
    fn age_and_extension() {
        assert_eq!(classify("age", "12"), Some(CacheStatus::Hit));
        assert_eq!(classify("age", "0"), Some(CacheStatus::Miss));
        assert_eq!(classify("age", "soon"), None);
        let mut ext = Extensions::new();
        ext.insert(CacheStatus::Bypass);
        let mut h = HeaderMap::new();
        h.insert("x-cache", "HIT".parse().unwrap());
        assert_eq!(CacheStatus::classify(&h, &ext), Some(CacheStatus::Bypass));
    }
}
