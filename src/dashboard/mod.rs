//! A live dashboard at `GET /dashboard`, fed by a Server-Sent Events stream of the
//! statistics at `GET /v1/stats/stream`.
//!
// The examples in docs/dashboard.md use axum (and no hidden lines to gate it): the page is
// always rendered, and run as doctests when the `axum` feature is on.
#![cfg_attr(any(not(doctest), feature = "axum"), doc = include_str!("../../docs/dashboard.md"))]

mod notable;
mod stream;

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::access::{refusal, AccessToken};
use crate::observer::background::{self, Background};
use crate::observer::{Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::EndpointBody;
use crate::{names, Observer, ObserverBuilder};

/// Path of the dashboard page.
pub const DASHBOARD_PATH: &str = "/dashboard";
/// Path of the live statistics stream (Server-Sent Events).
pub const STREAM_PATH: &str = "/v1/stats/stream";
/// Path of the recent notable requests (the slowest and the latest failures of the last five
/// minutes, JSON, newest first), behind the dashboard's token.
pub const RECENT_REQUESTS_PATH: &str = "/v1/requests";

/// Dashboard settings; given to [`ObserverBuilder::dashboard`].
///
/// ```
/// use std::time::Duration;
/// use tower_observe::dashboard::DashboardOptions;
///
/// let options = DashboardOptions::new()
///     .token(std::env::var("DASHBOARD_TOKEN").unwrap_or_default())
///     .tick(Duration::from_secs(2));
/// # let _ = options;
/// ```
#[derive(Clone)]
#[must_use]
pub struct DashboardOptions {
    token: Option<String>,
    tick: Duration,
    keep_alive: Duration,
}

// Never prints the token.
impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tick", &self.tick)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl Default for DashboardOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DashboardOptions {
    /// No token, a snapshot every second, a keep-alive comment every 15 seconds.
    pub fn new() -> Self {
        Self {
            token: None,
            tick: Duration::from_secs(1),
            keep_alive: Duration::from_secs(15),
        }
    }

    /// Requires this token for the page and the stream: `Authorization: Bearer <token>`, or
    /// `?token=<token>` (a browser opens `/dashboard?token=…`; the page passes it on to the
    /// stream). An empty token is ignored. Compared in constant time; refusals are counted in
    /// `tower_observe_dashboard_rejected_total{reason}`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Time between two snapshots of the stream (100 ms to 60 s; default 1 s).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.clamp(Duration::from_millis(100), Duration::from_secs(60));
        self
    }
}

impl ObserverBuilder {
    /// Serves the live dashboard at `GET /dashboard` (with its assets under
    /// `/dashboard/assets/`) and the statistics stream at `GET /v1/stats/stream`.
    ///
    /// ```
    /// use tower_observe::{dashboard::DashboardOptions, Observer};
    ///
    /// let observer = Observer::builder()
    ///     .dashboard(DashboardOptions::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = observer;
    /// ```
    pub fn dashboard(mut self, options: DashboardOptions) -> Self {
        self.pending::<DashboardPending>().0 = Some(options);
        self
    }
}

#[derive(Default)]
struct DashboardPending(Option<DashboardOptions>);

impl Pending for DashboardPending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        let options = self.0?;
        let epoch = observer
            .started_wall()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let hub = stream::Hub::new(epoch, options.tick);
        let keep_alive = options.keep_alive;
        let mut last_keep_alive = Instant::now();
        let publisher = background::spawn(
            background::task!(
                "dashboard",
                "cannot start the stats stream; streams get one snapshot and keep-alives only"
            ),
            observer,
            &hub,
            options.tick,
            move |observer, hub| hub.tick(observer, &mut last_keep_alive, keep_alive),
        );
        let notable = Arc::new(notable::NotableRequests::default());
        let sink = notable.clone();
        observer.part(move || DashboardPart {
            token: options
                .token
                .map(|t| AccessToken::new(t, names::DASHBOARD_REJECTED)),
            hub,
            publisher,
            notable,
        });
        Some(sink)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The dashboard capability: its token and its stream.
struct DashboardPart {
    token: Option<AccessToken>,
    hub: Arc<stream::Hub>,
    /// The thread publishing the snapshots; it ends with the part.
    #[allow(dead_code)] // kept for its `Drop`; read by the tests
    publisher: Background,
    /// The slowest and the failed requests of the last minutes, for the console's table.
    notable: Arc<notable::NotableRequests>,
}

impl Drop for DashboardPart {
    /// The observer is gone: the open streams end.
    fn drop(&mut self) {
        self.hub.close();
    }
}

impl DashboardPart {
    fn refused(
        &self,
        observer: &Observer,
        parts: &http::request::Parts,
    ) -> Option<Response<EndpointBody>> {
        let token = self.token.as_ref()?;
        refusal(token.check(observer, parts, true))
    }
}

impl Part for DashboardPart {
    fn routes(&self, observer: &Observer) -> Vec<Route> {
        let page = observer.clone();
        let live = observer.clone();
        let recent = observer.clone();
        let mut routes = vec![
            Route::new(DASHBOARD_PATH, RouteMethod::Get, move |parts| {
                let response = match page.attached::<DashboardPart>() {
                    Some(part) => part
                        .refused(&page, &parts)
                        .unwrap_or_else(|| asset_response(&parts, page_asset())),
                    None => crate::response::not_found(),
                };
                async move { response }
            }),
            Route::new(STREAM_PATH, RouteMethod::Get, move |parts| {
                let response = match live.attached::<DashboardPart>() {
                    Some(part) => part.refused(&live, &parts).unwrap_or_else(|| {
                        stream::response(&part.hub, &live, parts.headers.get("last-event-id"))
                    }),
                    None => crate::response::not_found(),
                };
                async move { response }
            }),
            Route::new(RECENT_REQUESTS_PATH, RouteMethod::Get, move |parts| {
                let response = match recent.attached::<DashboardPart>() {
                    Some(part) => part.refused(&recent, &parts).unwrap_or_else(|| {
                        crate::response::json(
                            &part.notable.list(recent.wall_at(recent.now_nanos())),
                        )
                    }),
                    None => crate::response::not_found(),
                };
                async move { response }
            }),
        ];
        // The assets are code, not data: served without the token, cached for good.
        for asset in assets() {
            routes.push(Route::new(
                format!("{DASHBOARD_PATH}/assets/{}", asset.name),
                RouteMethod::Get,
                move |parts| {
                    let response = asset_response(&parts, asset);
                    async move { response }
                },
            ));
        }
        routes
    }
}

/// Whether `observer` serves the dashboard (for links to it, such as the alerts').
#[allow(dead_code)] // used by optional capabilities
pub(crate) fn is_served(observer: &Observer) -> bool {
    observer.attached::<DashboardPart>().is_some()
}

/// A file of the page, with its strong validator.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
    /// `immutable` for the versioned assets, revalidated for the page.
    cache_control: &'static str,
}

const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uplot.min.css"),
    ),
];

/// FNV-1a, 64 bits: a content hash for validators and cache-busting.
fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn asset(
    name: &'static str,
    content_type: &'static str,
    body: Bytes,
    cache_control: &'static str,
) -> Asset {
    let etag = HeaderValue::from_str(&format!("\"{:016x}\"", content_hash(&body)))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    Asset {
        name,
        content_type,
        body,
        etag,
        cache_control,
    }
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, content_type, body)| {
                asset(
                    name,
                    content_type,
                    Bytes::from_static(body),
                    "public, max-age=31536000, immutable",
                )
            })
            .collect()
    })
}

/// The page, its asset URLs carrying the assets' combined hash (`?v=`), so a new version of
/// the crate is never served stale assets.
fn page_asset() -> &'static Asset {
    static PAGE: OnceLock<Asset> = OnceLock::new();
    PAGE.get_or_init(|| {
        let version = assets()
            .iter()
            .fold(0u64, |v, a| v.rotate_left(7) ^ content_hash(&a.body));
        let html =
            include_str!("assets/index.html").replace("{{VERSION}}", &format!("{version:016x}"));
        asset(
            DASHBOARD_PATH,
            "text/html; charset=utf-8",
            Bytes::from(html),
            "no-cache",
        )
    })
}

/// An asset, or 304 when the client's copy is current.
fn asset_response(parts: &http::request::Parts, asset: &Asset) -> Response<EndpointBody> {
    let current = parts
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == asset.etag || tag.trim() == "*");
    let (status, body) = if current {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, asset.body.clone())
    };
    let mut res = Response::new(Full::new(body).boxed());
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(asset.cache_control),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == DASHBOARD_PATH {
        // Nothing but this origin's own files and data: no inline script, no third party.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_survives_a_panicking_tick() {
        use crate::observer::background::{panics_on_metrics, wait_for};
        let observer = Observer::builder()
            .dashboard(DashboardOptions::new().tick(Duration::from_millis(100)))
            .build()
            .unwrap();
        let part = observer.attached::<DashboardPart>().unwrap();
        // A listener: the thread publishes only while someone listens.
        let stream = stream::response(&part.hub, &observer, None);
        part.publisher.panic_next_tick();
        wait_for("the panic", || part.publisher.panics() == 1);
        let before = part.hub.seq();
        wait_for("snapshots after the panic", || part.hub.seq() >= before + 2);
        assert!(part.publisher.is_running());
        assert_eq!(panics_on_metrics(&observer, "dashboard"), Some(1.0));
        drop(stream);
    }

    #[test]
    fn the_streams_end_with_the_observer() {
        use http_body::Body;
        let observer = Observer::builder()
            .dashboard(DashboardOptions::new().tick(Duration::from_millis(100)))
            .build()
            .unwrap();
        let part = observer.attached::<DashboardPart>().unwrap();
        let hub = part.hub.clone();
        let mut stream = stream::response(&hub, &observer, None).into_body();
        drop((part, observer));
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut frames = 0;
        // The greeting and the snapshots, then the end (once a tick in progress, which holds
        // the observer for its duration, is over).
        crate::observer::background::wait_for("the end of the stream", || loop {
            match std::pin::Pin::new(&mut stream).poll_frame(&mut cx) {
                std::task::Poll::Ready(Some(_)) => frames += 1,
                std::task::Poll::Ready(None) => return true,
                std::task::Poll::Pending => return false,
            }
        });
        assert!(frames >= 2, "the greeting and a snapshot: {frames}");
    }

    #[test]
    fn assets_have_strong_validators_and_the_page_names_their_version() {
        let page = page_asset();
        assert!(!String::from_utf8_lossy(&page.body).contains("{{VERSION}}"));
        for a in assets() {
            assert!(a.etag.to_str().unwrap().starts_with('"'));
            assert!(!a.body.is_empty(), "{}", a.name);
        }
        let (parts, ()) = http::Request::get("/dashboard")
            .header(header::IF_NONE_MATCH, page.etag.clone())
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            asset_response(&parts, page).status(),
            StatusCode::NOT_MODIFIED
        );
    }
}
