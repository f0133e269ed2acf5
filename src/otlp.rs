//! Exporting request spans over OTLP (feature `otlp`).
//!
//! [`OtlpTraces`] builds an OpenTelemetry `SdkTracerProvider` that sends spans to a collector
//! with OTLP over HTTP (protobuf). Spans wait in a bounded queue and are exported in batches
//! from a background thread, so a slow or absent collector never delays a request: when the
//! queue is full new spans are dropped, and a failed export drops its batch (counted in
//! [`OtlpStats`]). Export resumes on its own when the collector comes back.
//!
//! The application installs the provider; the library never does:
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tower_observe::otlp::OtlpTraces;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let (provider, stats) = OtlpTraces::new("http://127.0.0.1:4318", "checkout").build()?;
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout")));
//! tracing::subscriber::set_global_default(subscriber)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;

/// The environment variable naming the collector's base URL.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Why an exporter could not be built.
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    InvalidEndpoint(String),
    /// The OTLP exporter refused its configuration.
    Exporter(String),
}

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::InvalidEndpoint(e) => {
                write!(f, "OTLP endpoint {e:?} is not an http:// or https:// URL")
            }
            OtlpError::Exporter(e) => write!(f, "could not build the OTLP exporter: {e}"),
        }
    }
}

impl std::error::Error for OtlpError {}

debug_as_display!(OtlpError);

/// Spans exported and dropped so far.
#[derive(Debug, Clone, Default)]
pub struct OtlpStats {
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl OtlpStats {
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Relaxed)
    }

    /// Spans dropped because their export failed (collector down, timeout, rejection).
    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }
}

/// Configures OTLP span export; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct OtlpTraces {
    endpoint: String,
    service_name: String,
    max_queue_size: usize,
    max_batch_size: usize,
    export_interval: Duration,
    timeout: Duration,
}

impl OtlpTraces {
    /// Exports to the collector at `endpoint` (its base URL, e.g. `http://127.0.0.1:4318`;
    /// `/v1/traces` is added unless the URL already has a path), as service `service_name`.
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            service_name: service_name.into(),
            max_queue_size: 2048,
            max_batch_size: 512,
            export_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }

    /// [`new`](Self::new) with the endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT`, if set.
    pub fn from_env(service_name: impl Into<String>) -> Option<Self> {
        let endpoint = std::env::var(ENDPOINT_ENV).ok()?;
        (!endpoint.trim().is_empty()).then(|| Self::new(endpoint.trim(), service_name))
    }

    /// At most this many spans wait for export (default 2048); more are dropped.
    pub fn max_queue_size(mut self, spans: usize) -> Self {
        self.max_queue_size = spans.max(1);
        self
    }

    /// How often the queue is exported (default 5 s).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// How long one export may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn traces_url(&self) -> Result<String, OtlpError> {
        let url = self.endpoint.trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| OtlpError::InvalidEndpoint(self.endpoint.clone()))?;
        Ok(if rest.contains('/') {
            url.to_owned()
        } else {
            format!("{url}/v1/traces")
        })
    }

    /// Builds the provider (and starts its export thread).
    pub fn build(self) -> Result<(SdkTracerProvider, OtlpStats), OtlpError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(self.traces_url()?)
            .with_timeout(self.timeout)
            .build()
            .map_err(|e| OtlpError::Exporter(e.to_string()))?;
        let stats = OtlpStats::default();
        let counting = Counting {
            inner: exporter,
            stats: stats.clone(),
        };
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_max_export_batch_size(self.max_batch_size.min(self.max_queue_size))
            .with_scheduled_delay(self.export_interval)
            .build();
        let processor = BatchSpanProcessor::builder(counting)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service_name)
                    .build(),
            )
            .build();
        Ok((provider, stats))
    }
}

/// Counts what the wrapped exporter exports and drops.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    stats: OtlpStats,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.stats.exported.fetch_add(spans, Relaxed),
            Err(_) => self.stats.failed.fetch_add(spans, Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let url = |e: &str| OtlpTraces::new(e, "s").traces_url();
        assert_eq!(
            url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            url("https://c.example/custom/path").unwrap(),
            "https://c.example/custom/path"
        );
        assert!(matches!(
            url("collector:4318"),
            Err(OtlpError::InvalidEndpoint(_))
        ));
        assert!(matches!(url("http://"), Err(OtlpError::InvalidEndpoint(_))));
    }
}
