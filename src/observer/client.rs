//! The client side of the recording path: upstream calls made through the client
//! instrumentation, recorded once each into the `http_client_*` metrics, the `/v1/stats`
//! upstream breakdown and the record sinks.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use metrics::Unit;

use super::family::{self, Family};
use super::series::{GaugeHandle, HistogramHandle, RecorderSource};
use super::{HttpClientRecord, Observer};
use crate::labels::HttpMethod;
use crate::names;
use crate::stats::{Outcome, StatsCell};
use crate::trace::SpanIds;

/// One upstream endpoint (`url.scheme`, `server.address`, `server.port`).
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) scheme: Box<str>,
    pub(crate) address: Box<str>,
    pub(crate) port: Box<str>,
    /// The client's constant labels (`strategy`, …), values as recorded.
    labels: Box<[(Arc<str>, Box<str>)]>,
    active: GaugeHandle,
    stats: Arc<StatsCell>,
    /// The handles of the last successful call's (method, status): most calls to an
    /// upstream are the same kind, and this spares them the label-set lookup.
    last_ok: ArcSwapOption<LastOk>,
}

#[derive(Debug)]
struct LastOk {
    method: HttpMethod,
    status: u16,
    handles: Arc<ClientHandles>,
}

/// A client's last endpoint, by the values it was requested with (a client mostly calls one
/// upstream, and this spares it the endpoint lookup).
#[derive(Debug, Default)]
pub(crate) struct EndpointCache(ArcSwapOption<CachedEndpoint>);

#[derive(Debug)]
struct CachedEndpoint {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
    endpoint: Arc<Endpoint>,
}

impl Endpoint {
    /// `host:port`, as upstreams are named in `/v1/stats` and failover counts.
    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    pub(crate) fn label(&self) -> String {
        upstream_label(&self.address, &self.port)
    }
}

#[derive(Debug)]
struct ClientHandles {
    duration: HistogramHandle,
    request_size: HistogramHandle,
    response_size: HistogramHandle,
    error_type: Option<Box<str>>,
}

#[derive(Debug)]
pub(crate) struct ClientSeries {
    endpoints: Family<Endpoint>,
    series: Family<ClientHandles>,
    described: OnceLock<()>,
}

impl ClientSeries {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            endpoints: Family::new(names::HTTP_CLIENT_ACTIVE_REQUESTS, limit),
            series: Family::new(names::HTTP_CLIENT_REQUEST_DURATION, limit),
            described: OnceLock::new(),
        }
    }
}

/// The inputs of one finished client call.
pub(crate) struct ClientCompletion<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) method: HttpMethod,
    pub(crate) status: Option<u16>,
    /// Set on failure: the status code for 4xx/5xx (client conventions), else the error kind.
    pub(crate) error_type: Option<&'a str>,
    pub(crate) outcome: Outcome,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) request_bytes: Option<u64>,
    pub(crate) response_bytes: Option<u64>,
    pub(crate) resend_count: u32,
    pub(crate) exemplar: Option<SpanIds>,
}

fn describe(source: &dyn RecorderSource) {
    family::describe(source, |r| {
        r.describe_histogram(
            names::HTTP_CLIENT_REQUEST_DURATION.into(),
            Some(Unit::Seconds),
            "Duration of HTTP client requests, from sending to the response headers.".into(),
        );
        r.describe_histogram(
            names::HTTP_CLIENT_REQUEST_BODY_SIZE.into(),
            Some(Unit::Bytes),
            "Size of HTTP client request bodies, when known before sending.".into(),
        );
        r.describe_histogram(
            names::HTTP_CLIENT_RESPONSE_BODY_SIZE.into(),
            Some(Unit::Bytes),
            "Size of HTTP client response bodies, as announced by Content-Length.".into(),
        );
        r.describe_gauge(
            names::HTTP_CLIENT_ACTIVE_REQUESTS.into(),
            None,
            "Number of HTTP client requests waiting for their response.".into(),
        );
    });
}

impl Observer {
    /// The endpoint of an outgoing call, with its in-flight gauge raised.
    pub(crate) fn client_started(
        &self,
        cache: &EndpointCache,
        labels: &[(Arc<str>, Arc<str>)],
        scheme: &str,
        address: &str,
        port: u16,
    ) -> Arc<Endpoint> {
        if let Some(cached) = &*cache.0.load() {
            if cached.port == port && *cached.host == *address && *cached.scheme == *scheme {
                let endpoint = cached.endpoint.clone();
                self.guarded(|| endpoint.active.add(1.0));
                return endpoint;
            }
        }
        let endpoint = self.client_endpoint(labels, scheme, address, port);
        cache.0.store(Some(Arc::new(CachedEndpoint {
            scheme: scheme.into(),
            host: address.into(),
            port,
            endpoint: endpoint.clone(),
        })));
        endpoint
    }

    fn client_endpoint(
        &self,
        labels: &[(Arc<str>, Arc<str>)],
        scheme: &str,
        address: &str,
        port: u16,
    ) -> Arc<Endpoint> {
        let inner = &*self.inner;
        let source: &dyn RecorderSource = &inner.backend;
        let client = &inner.client;
        client.described.get_or_init(|| describe(source));
        let mut port_buf = itoa::Buffer::new();
        let port = port_buf.format(port);
        let mut endpoint = None;
        let mut values: Vec<&str> = vec![scheme, address, port];
        for (k, v) in labels {
            values.push(k);
            values.push(v);
        }
        self.guarded(|| {
            let e = client.endpoints.get(source, &values, |v| {
                let (scheme, address, port) = (v[0], v[1], v[2]);
                // Label names come from the layer (validated there); values as recorded.
                let labels: Box<[(Arc<str>, Box<str>)]> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), Box::from(v[4 + 2 * i])))
                    .collect();
                let mut gauge_labels = vec![
                    (names::SERVER_ADDRESS, address),
                    (names::SERVER_PORT, port),
                    (names::URL_SCHEME, scheme),
                ];
                gauge_labels.extend(labels.iter().map(|(k, v)| (&**k, &**v)));
                Endpoint {
                    scheme: scheme.into(),
                    address: address.into(),
                    port: port.into(),
                    active: family::gauge(
                        source,
                        &family::key(names::HTTP_CLIENT_ACTIVE_REQUESTS, &gauge_labels),
                    ),
                    stats: inner.stats.upstream_cell(&upstream_label(address, port)),
                    last_ok: ArcSwapOption::empty(),
                    labels,
                }
            });
            e.active.add(1.0);
            endpoint = Some(e);
        });
        endpoint.unwrap_or_else(|| {
            Arc::new(Endpoint {
                scheme: scheme.into(),
                address: address.into(),
                port: port.into(),
                labels: Box::default(),
                active: GaugeHandle::Facade(metrics::Gauge::noop()),
                stats: Arc::default(),
                last_ok: ArcSwapOption::empty(),
            })
        })
    }

    /// The one recording path for a finished client call.
    pub(crate) fn record_client(&self, c: &ClientCompletion<'_>) {
        self.guarded(|| self.record_client_unguarded(c));
    }

    fn record_client_unguarded(&self, c: &ClientCompletion<'_>) {
        let inner = &*self.inner;
        let e = c.endpoint;
        e.active.add(-1.0);
        let cached = match (c.status, c.error_type) {
            (Some(status), None) => e
                .last_ok
                .load()
                .as_ref()
                .filter(|l| l.method == c.method && l.status == status)
                .map(|l| l.handles.clone()),
            _ => None,
        };
        let handles = match cached {
            Some(handles) => handles,
            None => {
                let handles = self.client_handles(e, c);
                if let (Some(status), None) = (c.status, c.error_type) {
                    e.last_ok.store(Some(Arc::new(LastOk {
                        method: c.method,
                        status,
                        handles: handles.clone(),
                    })));
                }
                handles
            }
        };
        let nanos = c.end.saturating_sub(c.start);
        let duration = Duration::from_nanos(nanos);
        let end_wall = inner.wall_at(c.end);
        inner.record_duration(&handles.duration, duration, c.end, c.exemplar);
        if let Some(bytes) = c.request_bytes {
            handles.request_size.record(bytes as f64);
        }
        if let Some(bytes) = c.response_bytes {
            handles.response_size.record(bytes as f64);
        }
        let second = c.end.saturating_sub(inner.started) / 1_000_000_000;
        e.stats.record(nanos, second, c.status, c.outcome);
        if !inner.sinks.0.is_empty() {
            let record = HttpClientRecord {
                method: c.method.as_str(),
                scheme: &e.scheme,
                server_address: &e.address,
                server_port: &e.port,
                status: c.status,
                error_type: handles.error_type.as_deref(),
                resend_count: c.resend_count,
                duration,
                end: end_wall,
                request_body_bytes: c.request_bytes,
                response_body_bytes: c.response_bytes,
            };
            for sink in inner.sinks.0.iter() {
                sink.record_http_client(&record);
            }
        }
    }
}

impl Observer {
    /// The handles of a call's label set, registered on first use.
    fn client_handles(&self, e: &Endpoint, c: &ClientCompletion<'_>) -> Arc<ClientHandles> {
        let inner = &*self.inner;
        let source: &dyn RecorderSource = &inner.backend;
        let mut status_buf = itoa::Buffer::new();
        let status = c.status.map_or("", |s| status_buf.format(s));
        let error = c.error_type.unwrap_or("");
        let mut values: Vec<&str> = vec![
            c.method.as_str(),
            &e.scheme,
            &e.address,
            &e.port,
            status,
            error,
        ];
        for (k, v) in e.labels.iter() {
            values.push(k);
            values.push(v);
        }
        inner.client.series.get(source, &values, |v| {
            let mut labels = vec![
                (names::HTTP_REQUEST_METHOD, v[0]),
                (names::URL_SCHEME, v[1]),
                (names::SERVER_ADDRESS, v[2]),
                (names::SERVER_PORT, v[3]),
            ];
            if !v[4].is_empty() {
                labels.push((names::HTTP_RESPONSE_STATUS_CODE, v[4]));
            }
            if !v[5].is_empty() {
                labels.push((names::ERROR_TYPE, v[5]));
            }
            labels.extend(
                e.labels
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (&**k, v[7 + 2 * i])),
            );
            let h = |name| family::histogram(source, &family::key(name, &labels));
            ClientHandles {
                duration: h(names::HTTP_CLIENT_REQUEST_DURATION),
                request_size: h(names::HTTP_CLIENT_REQUEST_BODY_SIZE),
                response_size: h(names::HTTP_CLIENT_RESPONSE_BODY_SIZE),
                error_type: (!v[5].is_empty()).then(|| v[5].into()),
            }
        })
    }
}

/// How an upstream is named in `/v1/stats` and in failover counts: `host:port`.
pub(crate) fn upstream_label(address: &str, port: &str) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}
