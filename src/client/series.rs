//! The client's part of the observer: upstreams and label sets of calls made through the
//! client instrumentation, and the one recording path of a finished call (metrics, the
//! `upstreams` section of `/v1/stats`, the record sinks).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use metrics::Counter;

use crate::classify::upstream_label;
use crate::labels::{protocol_version, HttpMethod, OTHER};
use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, ExemplarIds, GaugeHandle, HistogramHandle};
use crate::observer::{HttpClientRecord, Observer, Part};
use crate::stats::{CellMap, Outcome, StatsCell, StatsSnapshot};

/// One upstream (`url.scheme`, `server.address`, `server.port`, and the client's constant
/// labels).
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) scheme: Box<str>,
    /// `_OTHER` for the overflow upstream.
    pub(crate) address: Box<str>,
    /// Empty for the overflow upstream (a port is a number or nothing).
    pub(crate) port: Box<str>,
    /// The client's constant labels (`strategy`, …), values as recorded.
    labels: Box<[(Arc<str>, Box<str>)]>,
    /// `http_client_active_requests`, per method, registered when first used.
    active: [OnceLock<GaugeHandle>; HttpMethod::COUNT],
    /// Set for the overflow upstream: counts the calls that went there.
    overflow: Option<Counter>,
    stats: Arc<StatsCell>,
    /// The handles of the last successful call's (method, status): most calls to an
    /// upstream are the same kind, and this spares them the label-set lookup.
    last_ok: ArcSwapOption<LastOk>,
}

#[derive(Debug)]
struct LastOk {
    method: HttpMethod,
    status: u16,
    version: Option<http::Version>,
    handles: Arc<ClientHandles>,
}

/// A client's last upstream, by the values it was requested with (a client mostly calls one
/// upstream, and this spares it the upstream lookup).
#[derive(Debug, Default)]
pub(crate) struct UpstreamCache(ArcSwapOption<CachedUpstream>);

#[derive(Debug)]
struct CachedUpstream {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
    upstream: Arc<Upstream>,
}

impl Upstream {
    /// `host:port`, as upstreams are named in `/v1/stats` and failover counts.
    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    pub(crate) fn label(&self) -> String {
        upstream_label(&self.address, &self.port)
    }

    /// An upstream that records nowhere (the recorder panicked while registering it).
    fn detached(scheme: &str, address: &str, port: &str) -> Self {
        let active: [OnceLock<GaugeHandle>; HttpMethod::COUNT] = Default::default();
        for slot in &active {
            let _ = slot.set(GaugeHandle::noop());
        }
        Self {
            scheme: scheme.into(),
            address: address.into(),
            port: port.into(),
            labels: Box::default(),
            active,
            overflow: None,
            stats: Arc::default(),
            last_ok: ArcSwapOption::empty(),
        }
    }

    /// The active-requests gauge of calls with `method`, registered on first use.
    fn active(&self, observer: &Observer, method: HttpMethod) -> &GaugeHandle {
        self.active[method.index()].get_or_init(|| {
            let mut labels = vec![
                (names::HTTP_REQUEST_METHOD, method.as_str()),
                (names::SERVER_ADDRESS, &*self.address),
                (names::URL_SCHEME, &*self.scheme),
            ];
            if !self.port.is_empty() {
                labels.push((names::SERVER_PORT, &*self.port));
            }
            if self.overflow.is_some() {
                labels.push((names::OTEL_METRIC_OVERFLOW, "true"));
            }
            labels.extend(self.labels.iter().map(|(k, v)| (&**k, &**v)));
            handles::gauge(
                observer.source(),
                &handles::key(names::HTTP_CLIENT_ACTIVE_REQUESTS, &labels),
            )
        })
    }
}

#[derive(Debug)]
struct ClientHandles {
    duration: HistogramHandle,
    request_size: HistogramHandle,
    response_size: HistogramHandle,
    error_type: Option<Box<str>>,
    /// Set for an overflow label set: counts the recordings that went there.
    overflow: Option<Counter>,
}

/// The client's state in an observer; attached when the first client layer is made.
#[derive(Debug)]
pub(crate) struct ClientPart {
    upstreams: Family<Upstream>,
    series: Family<ClientHandles>,
    stats: CellMap<String>,
}

/// Upstream values: scheme, address, port, then the constant labels' names and values. Past
/// the limit the address and port fold; the scheme and constant labels (from code) are kept.
const UPSTREAM_KEPT: u64 = 0b001 | !0b111;

/// Label-set values: method, scheme, address, port, status, error type, protocol version,
/// then the constant labels. Past the limit only the address and port fold, so a failure
/// stays a failure and a status keeps its value.
const SERIES_KEPT: u64 = !0b1100;

impl ClientPart {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            upstreams: Family::keeping(names::HTTP_CLIENT_ACTIVE_REQUESTS, limit, UPSTREAM_KEPT),
            series: Family::keeping(names::HTTP_CLIENT_REQUEST_DURATION, limit, SERIES_KEPT),
            stats: CellMap::default(),
        }
    }
}

impl Part for ClientPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        snapshot.upstreams = self.stats.entries(elapsed);
    }

    fn reset(&self) {
        self.stats.reset();
    }
}

/// The inputs of one finished client call.
pub(crate) struct ClientCompletion<'a> {
    pub(crate) upstream: &'a Upstream,
    pub(crate) method: HttpMethod,
    pub(crate) status: Option<u16>,
    /// The response's HTTP version, when a response arrived.
    pub(crate) version: Option<http::Version>,
    /// Set on failure: the status code for 4xx/5xx (client conventions), else the error kind.
    pub(crate) error_type: Option<&'a str>,
    pub(crate) outcome: Outcome,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) request_bytes: Option<u64>,
    pub(crate) response_bytes: Option<u64>,
    pub(crate) resend_count: u32,
    pub(crate) exemplar: Option<ExemplarIds>,
}

impl ClientPart {
    /// The upstream of an outgoing call, with its in-flight gauge raised.
    pub(crate) fn call_started(
        &self,
        observer: &Observer,
        cache: &UpstreamCache,
        labels: &[(Arc<str>, Arc<str>)],
        method: HttpMethod,
        (scheme, address, port): (&str, &str, u16),
    ) -> Arc<Upstream> {
        let upstream = match &*cache.0.load() {
            Some(cached)
                if cached.port == port && *cached.host == *address && *cached.scheme == *scheme =>
            {
                cached.upstream.clone()
            }
            _ => self.upstream(observer, cache, labels, scheme, address, port),
        };
        observer.guarded(|| {
            upstream.active(observer, method).add(1.0);
            handles::count_overflow(&upstream.overflow);
        });
        upstream
    }

    fn upstream(
        &self,
        observer: &Observer,
        cache: &UpstreamCache,
        labels: &[(Arc<str>, Arc<str>)],
        scheme: &str,
        address: &str,
        port: u16,
    ) -> Arc<Upstream> {
        let upstream = self.register_upstream(observer, labels, scheme, address, port);
        cache.0.store(Some(Arc::new(CachedUpstream {
            scheme: scheme.into(),
            host: address.into(),
            port,
            upstream: upstream.clone(),
        })));
        upstream
    }

    fn register_upstream(
        &self,
        observer: &Observer,
        labels: &[(Arc<str>, Arc<str>)],
        scheme: &str,
        address: &str,
        port: u16,
    ) -> Arc<Upstream> {
        let mut port_buf = itoa::Buffer::new();
        let port = port_buf.format(port);
        let mut values: Vec<&str> = vec![scheme, address, port];
        for (k, v) in labels {
            values.push(k);
            values.push(v);
        }
        let mut upstream = None;
        observer.guarded(|| {
            let source = observer.source();
            upstream = Some(self.upstreams.get(source, &values, |v, overflow| {
                let (scheme, address) = (v[0], v[1]);
                // A port is a number: the overflow upstream has none rather than `_OTHER`.
                let port = if overflow.is_some() { "" } else { v[2] };
                // Label names come from the layer (validated there); values as recorded.
                let labels: Box<[(Arc<str>, Box<str>)]> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), Box::from(v[4 + 2 * i])))
                    .collect();
                let name = match overflow {
                    Some(_) => OTHER.to_owned(),
                    None => upstream_label(address, port),
                };
                Upstream {
                    scheme: scheme.into(),
                    address: address.into(),
                    port: port.into(),
                    active: Default::default(),
                    overflow,
                    stats: self.stats.cell(name.as_str()),
                    last_ok: ArcSwapOption::empty(),
                    labels,
                }
            }));
        });
        upstream.unwrap_or_else(|| Arc::new(Upstream::detached(scheme, address, port)))
    }

    /// The one recording path for a finished client call.
    pub(crate) fn record(&self, observer: &Observer, c: &ClientCompletion<'_>) {
        observer.guarded(|| self.record_unguarded(observer, c));
    }

    fn record_unguarded(&self, observer: &Observer, c: &ClientCompletion<'_>) {
        let u = c.upstream;
        u.active(observer, c.method).add(-1.0);
        let cached = match (c.status, c.error_type) {
            (Some(status), None) => u
                .last_ok
                .load()
                .as_ref()
                .filter(|l| l.method == c.method && l.status == status && l.version == c.version)
                .map(|l| l.handles.clone()),
            _ => None,
        };
        let handles = match cached {
            Some(handles) => handles,
            None => {
                let handles = self.handles(observer, u, c);
                if let (Some(status), None) = (c.status, c.error_type) {
                    u.last_ok.store(Some(Arc::new(LastOk {
                        method: c.method,
                        status,
                        version: c.version,
                        handles: handles.clone(),
                    })));
                }
                handles
            }
        };
        handles::count_overflow(&handles.overflow);
        let nanos = c.end.saturating_sub(c.start);
        let duration = Duration::from_nanos(nanos);
        observer.record_duration(&handles.duration, duration, c.end, c.exemplar);
        if let Some(bytes) = c.request_bytes {
            handles.request_size.record(bytes as f64);
        }
        if let Some(bytes) = c.response_bytes {
            handles.response_size.record(bytes as f64);
        }
        u.stats
            .record(nanos, observer.second_of(c.end), c.status, c.outcome);
        let sinks = observer.sinks();
        if !sinks.is_empty() {
            let record = HttpClientRecord {
                method: c.method.as_str(),
                scheme: &u.scheme,
                server_address: &u.address,
                server_port: &u.port,
                status: c.status,
                error_type: handles.error_type.as_deref(),
                resend_count: c.resend_count,
                duration,
                end: observer.wall_at(c.end),
                request_body_bytes: c.request_bytes,
                response_body_bytes: c.response_bytes,
            };
            for sink in sinks {
                sink.record_http_client(&record);
            }
        }
    }

    /// The handles of a call's label set, registered on first use.
    fn handles(
        &self,
        observer: &Observer,
        u: &Upstream,
        c: &ClientCompletion<'_>,
    ) -> Arc<ClientHandles> {
        let source = observer.source();
        let mut status_buf = itoa::Buffer::new();
        let status = c.status.map_or("", |s| status_buf.format(s));
        let error = c.error_type.unwrap_or("");
        let version = c.version.map_or("", protocol_version);
        let mut values: Vec<&str> = vec![
            c.method.as_str(),
            &u.scheme,
            &u.address,
            &u.port,
            status,
            error,
            version,
        ];
        for (k, v) in u.labels.iter() {
            values.push(k);
            values.push(v);
        }
        self.series.get(source, &values, |v, overflow| {
            let mut labels = vec![
                (names::HTTP_REQUEST_METHOD, v[0]),
                (names::URL_SCHEME, v[1]),
                (names::SERVER_ADDRESS, v[2]),
            ];
            // A port is a number: an overflow series has none rather than `_OTHER`.
            if overflow.is_none() && !v[3].is_empty() {
                labels.push((names::SERVER_PORT, v[3]));
            }
            if !v[4].is_empty() {
                labels.push((names::HTTP_RESPONSE_STATUS_CODE, v[4]));
            }
            if !v[5].is_empty() {
                labels.push((names::ERROR_TYPE, v[5]));
            }
            if !v[6].is_empty() {
                labels.push((names::NETWORK_PROTOCOL_VERSION, v[6]));
            }
            if overflow.is_some() {
                labels.push((names::OTEL_METRIC_OVERFLOW, "true"));
            }
            labels.extend(
                u.labels
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (&**k, v[8 + 2 * i])),
            );
            let h = |name| handles::histogram(source, &handles::key(name, &labels));
            ClientHandles {
                duration: h(names::HTTP_CLIENT_REQUEST_DURATION),
                request_size: h(names::HTTP_CLIENT_REQUEST_BODY_SIZE),
                response_size: h(names::HTTP_CLIENT_RESPONSE_BODY_SIZE),
                error_type: (!v[5].is_empty()).then(|| v[5].into()),
                overflow,
            }
        })
    }
}
