//! OTLP log export: [`OtlpLogs`] builds the logger provider, [`OtlpLogLayer`] turns `tracing`
//! events into its log records, redacted as the ECS layer redacts, with the trace context and
//! request ID of the request they were logged in.

use std::fmt;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger, LoggerProvider, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLoggerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::config::{self, BatchCode, ExportCode, Lookup, Signal};
use super::{client, Counting, OtlpError, OtlpStats};
use crate::logs::redact::{Redaction, REDACTED};

/// Configures OTLP log export; see the [module docs](super). What is not set here comes from
/// the `OTEL_*` variables (`OTEL_EXPORTER_OTLP_LOGS_*`, `OTEL_EXPORTER_OTLP_*`, `OTEL_BLRP_*`),
/// read when [`build`](Self::build) runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct OtlpLogs {
    export: ExportCode,
    service_name: Option<String>,
    fallback_service_name: Option<String>,
    resource_attributes: Vec<(String, String)>,
    batch: BatchCode,
}

impl OtlpLogs {
    /// Exports to the collector at `endpoint` (its base URL; `/v1/logs` is added unless the
    /// URL already has a path), as service `service_name`. Both win over the variables.
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self::unset().endpoint(endpoint).service_name(service_name)
    }

    /// Configured by the `OTEL_*` variables alone, when `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`None` otherwise). `service_name` applies only when
    /// neither `OTEL_SERVICE_NAME` nor a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is set.
    pub fn from_env(service_name: impl Into<String>) -> Option<Self> {
        config::endpoint_configured(Signal::Logs, &config::process_env).then(|| {
            let mut logs = Self::unset();
            logs.fallback_service_name = Some(service_name.into());
            logs
        })
    }

    pub(super) fn unset() -> Self {
        Self {
            export: ExportCode::default(),
            service_name: None,
            fallback_service_name: None,
            resource_attributes: Vec::new(),
            batch: BatchCode::default(),
        }
    }

    super::config::export_setters!("LOGS", "/v1/logs");

    /// At most this many records wait for export; more are dropped. Over
    /// `OTEL_BLRP_MAX_QUEUE_SIZE` (default 2048).
    pub fn max_queue_size(mut self, records: usize) -> Self {
        self.batch.max_queue_size = Some(records.max(1));
        self
    }

    /// At most this many records in one export; over `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`
    /// (default 512).
    pub fn max_export_batch_size(mut self, records: usize) -> Self {
        self.batch.max_export_batch_size = Some(records.max(1));
        self
    }

    /// How often the queue is exported; over `OTEL_BLRP_SCHEDULE_DELAY` (default 1 s).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.batch.schedule_delay = Some(interval);
        self
    }

    /// How long one export may take; over `OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.export.timeout = Some(timeout);
        self
    }

    /// Builds the logger provider (and starts its export thread). Feed it with
    /// [`OtlpLogLayer::new`].
    pub fn build(self) -> Result<(SdkLoggerProvider, OtlpStats), OtlpError> {
        self.build_with(&config::process_env)
    }

    pub(super) fn build_with(
        self,
        env: Lookup<'_>,
    ) -> Result<(SdkLoggerProvider, OtlpStats), OtlpError> {
        let (export, resource, (queue, batch, delay)) = self.resolve(env)?;
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_http_client(client::UreqClient::new(
                &export.url,
                &export.roots,
                export.timeout,
                export.headers,
            )?)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(export.url)
            .with_timeout(export.timeout)
            .build()
            .map_err(|e| OtlpError::Exporter(e.to_string()))?;
        let stats = OtlpStats::default();
        let counting = Counting {
            inner: exporter,
            stats: stats.clone(),
        };
        let processor = BatchLogProcessor::builder(counting)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(queue)
                    .with_max_export_batch_size(batch)
                    .with_scheduled_delay(delay)
                    .build(),
            )
            .build();
        let provider = SdkLoggerProvider::builder()
            .with_log_processor(processor)
            .with_resource(resource)
            .build();
        Ok((provider, stats))
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn resolve(
        &self,
        env: Lookup<'_>,
    ) -> Result<(config::Export, Resource, (usize, usize, Duration)), OtlpError> {
        Ok((
            config::export(Signal::Logs, &self.export, env)?,
            config::resource(
                self.service_name.as_deref(),
                self.fallback_service_name.as_deref(),
                &self.resource_attributes,
                env,
            )?,
            config::batch("BLRP", self.batch, Duration::from_secs(1), env)?,
        ))
    }
}

impl<E: LogExporter> LogExporter for Counting<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self
                .stats
                .exported
                .fetch_add(records, std::sync::atomic::Ordering::Relaxed),
            Err(_) => self
                .stats
                .failed
                .fetch_add(records, std::sync::atomic::Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A `tracing-subscriber` layer that emits every event as an OpenTelemetry log record: the
/// message as its body, the other fields as attributes after the same redaction as
/// [`EcsJsonLayer`](crate::logs::EcsJsonLayer) (a redacted value never leaves the process),
/// and the trace context it was logged in — the current OpenTelemetry span's, else the request's
/// own IDs — with the request's `http.request.id`.
#[must_use]
pub struct OtlpLogLayer<L> {
    logger: L,
    redaction: Redaction,
}

impl<L> fmt::Debug for OtlpLogLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpLogLayer")
            .field("redaction", &self.redaction)
            .finish_non_exhaustive()
    }
}

impl<L: Logger> OtlpLogLayer<L> {
    /// Emits through a logger of `provider` (an [`SdkLoggerProvider`] from [`OtlpLogs`], or any
    /// other).
    pub fn new<P>(provider: &P) -> Self
    where
        P: LoggerProvider<Logger = L>,
    {
        Self {
            logger: provider.logger("tower-observe"),
            redaction: Redaction::default(),
        }
    }

    /// Also redacts fields with this name (or last dotted segment), case-insensitively.
    pub fn redact_field(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_field(name.into());
        self
    }

    /// Also redacts the value of this query parameter in URL fields.
    pub fn redact_query_param(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_param(name.into());
        self
    }
}

fn severity(level: &tracing::Level) -> (Severity, &'static str) {
    match *level {
        tracing::Level::TRACE => (Severity::Trace, "TRACE"),
        tracing::Level::DEBUG => (Severity::Debug, "DEBUG"),
        tracing::Level::INFO => (Severity::Info, "INFO"),
        tracing::Level::WARN => (Severity::Warn, "WARN"),
        tracing::Level::ERROR => (Severity::Error, "ERROR"),
    }
}

/// Puts an event's fields on a record, redacted.
struct Fields<'a, R> {
    record: &'a mut R,
    redaction: &'a Redaction,
}

impl<R: opentelemetry::logs::LogRecord> Fields<'_, R> {
    fn put(&mut self, field: &Field, value: AnyValue) {
        let name = field.name();
        if name == "message" {
            self.record.set_body(value);
        } else if self.redaction.is_sensitive_field(name) {
            self.record.add_attribute(name, REDACTED);
        } else {
            self.record.add_attribute(name, value);
        }
    }

    fn put_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if name != "message"
            && !self.redaction.is_sensitive_field(name)
            && Redaction::is_url_field(name)
        {
            let redacted = self.redaction.redact_query(value).into_owned();
            self.record.add_attribute(name, redacted);
        } else {
            self.put(field, AnyValue::from(value.to_owned()));
        }
    }
}

impl<R: opentelemetry::logs::LogRecord> Visit for Fields<'_, R> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_str(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AnyValue::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.put(field, AnyValue::Int(v)),
            Err(_) => self.put(field, AnyValue::from(value.to_string())),
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, AnyValue::Double(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, AnyValue::Boolean(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put_str(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put_str(field, &format!("{value:?}"));
    }
}

impl<S, L> Layer<S> for OtlpLogLayer<L>
where
    S: Subscriber,
    L: Logger + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let (number, text) = severity(meta.level());
        if !self.logger.event_enabled(number, meta.target(), None) {
            return;
        }
        let mut record = self.logger.create_log_record();
        let now = SystemTime::now();
        record.set_timestamp(now);
        record.set_observed_timestamp(now);
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_target(meta.target());
        event.record(&mut Fields {
            record: &mut record,
            redaction: &self.redaction,
        });
        // The innermost OpenTelemetry span, when one is current (a span of the request, or of
        // the application); else the request's own IDs.
        let otel = opentelemetry::Context::map_current(|cx| {
            use opentelemetry::trace::TraceContextExt as _;
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid()
                .then(|| (sc.trace_id(), sc.span_id(), sc.trace_flags()))
        });
        if let Some((trace_id, span_id, flags)) = otel {
            record.set_trace_context(trace_id, span_id, Some(flags));
        }
        crate::trace::TraceContext::peek_current(|ctx| {
            if otel.is_none() {
                record.set_trace_context(
                    TraceId::from_bytes(ctx.span.trace_id),
                    SpanId::from_bytes(ctx.span.span_id),
                    Some(if ctx.span.sampled {
                        TraceFlags::SAMPLED
                    } else {
                        TraceFlags::default()
                    }),
                );
            }
            if let Some(id) = &ctx.request_id {
                record.add_attribute("http.request.id", id.as_str().to_owned());
            }
        });
        self.logger.emit(record);
    }
}
