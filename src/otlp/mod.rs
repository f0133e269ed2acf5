//! Exporting request spans and log events over OTLP (feature `otlp`).
//!
//! [`OtlpTraces`] builds an OpenTelemetry `SdkTracerProvider`, and [`OtlpLogs`] an
//! `SdkLoggerProvider` with the [`OtlpLogLayer`] that feeds it, both sending to a collector
//! with OTLP over HTTP (protobuf), `http://` or `https://` (rustls, Mozilla's roots or a private
//! root CA). Spans and log records wait in bounded queues and are exported in batches from a
//! background thread, so a slow or absent collector never delays a request: when a queue is
//! full new items are dropped, and a failed export drops its batch (counted in
//! [`OtlpStats`]). Export resumes on its own when the collector comes back.
//!
//! Settings come from the code, else from the `OTEL_*` variables of the OpenTelemetry
//! specification, else from the defaults; a malformed variable is an
//! [`OtlpError::InvalidVariable`] naming it. See `docs/tracing.md` for the table.
//!
//! The application installs the providers; the library never does:
//!
//! ```no_run
//! use tower_observe::opentelemetry::trace::TracerProvider as _;
//! use tower_observe::otlp::OtlpTraces;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let (provider, stats) = OtlpTraces::new("http://127.0.0.1:4318", "checkout").build()?;
//! let subscriber = tracing_subscriber::registry().with(
//!     tower_observe::tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout")),
//! );
//! tracing::subscriber::set_global_default(subscriber)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;

mod client;
mod config;
mod convert;
mod logs;
mod metrics;
mod redact;

use config::{BatchCode, ExportCode, Lookup, Signal};
pub use logs::{OtlpLogLayer, OtlpLogs};
pub use metrics::{OtlpMetrics, OtlpMetricsHandle, Temporality};
pub use redact::RedactSpans;

/// The environment variable naming the collector's base URL.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Why an exporter could not be built.
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    InvalidEndpoint(String),
    /// An `OTEL_*` variable has a value that cannot be used (the reason never repeats a
    /// header's value).
    InvalidVariable {
        /// The variable's name.
        variable: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A root certificate given in code is not PEM.
    Certificate(String),
    /// The endpoint is `https://` and there is no rustls crypto provider: none installed by
    /// the application and neither feature `tls-aws-lc-rs` nor `tls-ring` on.
    Tls(String),
    /// The OTLP exporter refused its configuration.
    Exporter(String),
    /// The observer records into another recorder: it has no registry whose metrics
    /// [`Observer::export_metrics`](crate::Observer::export_metrics) could export.
    NoRegistry,
}

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::InvalidEndpoint(e) => {
                write!(f, "OTLP endpoint {e:?} is not an http:// or https:// URL")
            }
            OtlpError::InvalidVariable { variable, reason } => {
                write!(f, "environment variable {variable}: {reason}")
            }
            OtlpError::Certificate(e) => write!(f, "OTLP root certificate: {e}"),
            OtlpError::Tls(e) => write!(f, "OTLP over https://: {e}"),
            OtlpError::Exporter(e) => write!(f, "could not build the OTLP exporter: {e}"),
            OtlpError::NoRegistry => write!(
                f,
                "the observer records into another recorder: there is no registry to export \
                 over OTLP"
            ),
        }
    }
}

impl std::error::Error for OtlpError {}

debug_as_display!(OtlpError);

/// Spans (or log records) exported and dropped so far.
#[derive(Debug, Clone, Default)]
pub struct OtlpStats {
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl OtlpStats {
    /// Spans (or log records) the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Relaxed)
    }

    /// Spans (or log records) dropped because their export failed (collector down, timeout,
    /// rejection).
    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }
}

/// Configures OTLP span export; see the [module docs](self). What is not set here comes from
/// the `OTEL_*` variables, read when [`build`](Self::build) runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct OtlpTraces {
    export: ExportCode,
    service_name: Option<String>,
    fallback_service_name: Option<String>,
    resource_attributes: Vec<(String, String)>,
    batch: BatchCode,
    sampler: Option<Sampler>,
    redaction: crate::logs::redact::Redaction,
}

impl OtlpTraces {
    /// Exports to the collector at `endpoint` (its base URL, e.g. `http://127.0.0.1:4318`;
    /// `/v1/traces` is added unless the URL already has a path), as service `service_name`.
    /// Both win over the variables.
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self::unset().endpoint(endpoint).service_name(service_name)
    }

    /// Configured by the `OTEL_*` variables alone, when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`None` otherwise). `service_name` applies only when
    /// neither `OTEL_SERVICE_NAME` nor a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is set.
    pub fn from_env(service_name: impl Into<String>) -> Option<Self> {
        config::endpoint_configured(Signal::Traces, &config::process_env).then(|| {
            let mut traces = Self::unset();
            traces.fallback_service_name = Some(service_name.into());
            traces
        })
    }

    fn unset() -> Self {
        Self {
            export: ExportCode::default(),
            service_name: None,
            fallback_service_name: None,
            resource_attributes: Vec::new(),
            batch: BatchCode::default(),
            sampler: None,
            redaction: crate::logs::redact::Redaction::default(),
        }
    }

    config::export_setters!("TRACES", "/v1/traces");

    /// Also redacts span and span-event attributes with this name (or last dotted segment),
    /// case-insensitively: exported spans go through [`RedactSpans`], with the JSON log
    /// layer's list by default.
    pub fn redact_field(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_field(name.into());
        self
    }

    /// Also redacts the value of this query parameter in URL attributes of exported spans.
    pub fn redact_query_param(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_param(name.into());
        self
    }

    /// The sampler; over `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default:
    /// parent-based always-on).
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// At most this many spans wait for export; more are dropped. Over
    /// `OTEL_BSP_MAX_QUEUE_SIZE` (default 2048).
    pub fn max_queue_size(mut self, spans: usize) -> Self {
        self.batch.max_queue_size = Some(spans.max(1));
        self
    }

    /// At most this many spans in one export; over `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (default
    /// 512).
    pub fn max_export_batch_size(mut self, spans: usize) -> Self {
        self.batch.max_export_batch_size = Some(spans.max(1));
        self
    }

    /// How often the queue is exported; over `OTEL_BSP_SCHEDULE_DELAY` (default 5 s).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.batch.schedule_delay = Some(interval);
        self
    }

    /// How long one export may take; over `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` (default
    /// 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.export.timeout = Some(timeout);
        self
    }

    /// Builds the provider (and starts its export thread), reading the `OTEL_*` variables for
    /// what the code did not set.
    pub fn build(self) -> Result<(SdkTracerProvider, OtlpStats), OtlpError> {
        self.build_with(&config::process_env)
    }

    fn build_with(self, env: Lookup<'_>) -> Result<(SdkTracerProvider, OtlpStats), OtlpError> {
        let settings = Settings::resolve(&self, env)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(settings.client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.url)
            .with_timeout(settings.timeout)
            .build()
            .map_err(|e| OtlpError::Exporter(e.to_string()))?;
        let stats = OtlpStats::default();
        let counting = Counting {
            inner: exporter,
            stats: stats.clone(),
        };
        let (queue, batch, delay) = settings.batch;
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_max_export_batch_size(batch)
            .with_scheduled_delay(delay)
            .build();
        let processor = BatchSpanProcessor::builder(counting)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(RedactSpans::with_redaction(processor, self.redaction))
            .with_sampler(settings.sampler)
            .with_resource(settings.resource)
            .build();
        Ok((provider, stats))
    }
}

/// Everything `build` needs, resolved (kept apart so tests can check it without a provider).
struct Settings {
    url: String,
    timeout: Duration,
    client: client::UreqClient,
    resource: Resource,
    batch: (usize, usize, Duration),
    sampler: Sampler,
}

impl Settings {
    fn resolve(traces: &OtlpTraces, env: Lookup<'_>) -> Result<Self, OtlpError> {
        let export = config::export(Signal::Traces, &traces.export, env)?;
        Ok(Self {
            client: client::UreqClient::new(
                &export.url,
                &export.roots,
                export.timeout,
                export.headers,
            )?,
            url: export.url,
            timeout: export.timeout,
            resource: config::resource(
                traces.service_name.as_deref(),
                traces.fallback_service_name.as_deref(),
                &traces.resource_attributes,
                env,
            )?,
            batch: config::batch("BSP", traces.batch, Duration::from_secs(5), env)?,
            sampler: config::sampler(traces.sampler.clone(), env)?,
        })
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

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
