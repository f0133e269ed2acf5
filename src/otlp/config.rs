//! What the code sets, else what the `OTEL_*` variables say, else the defaults — resolved once,
//! at `build`, through a lookup (the process environment, or a map in tests).

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::OtlpError;

/// Reads one variable; `None` when unset. An empty value counts as unset, as the
/// specification asks.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(super) fn get(env: Lookup<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub(super) fn invalid(variable: &str, reason: impl Into<String>) -> OtlpError {
    OtlpError::InvalidVariable {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

/// The signal an exporter sends: its path on a collector and its variables' infix.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Logs => "v1/logs",
            Signal::Metrics => "v1/metrics",
        }
    }

    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_{what}`.
    fn var(self, what: &str) -> String {
        let signal = match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
            Signal::Metrics => "METRICS",
        };
        format!("OTEL_EXPORTER_OTLP_{signal}_{what}")
    }
}

/// The export settings the code gave.
#[derive(Clone, Default)]
pub(super) struct ExportCode {
    pub(super) endpoint: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) timeout: Option<Duration>,
    pub(super) root_certificates_pem: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ExportCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: their names only.
        f.debug_struct("ExportCode")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("root_certificates", &self.root_certificates_pem.len())
            .finish()
    }
}

/// The export settings in force.
pub(super) struct Export {
    pub(super) url: String,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) timeout: Duration,
    /// DER certificates to trust instead of Mozilla's roots; empty for those.
    pub(super) roots: Vec<Vec<u8>>,
}

/// The default collector, as the specification gives it for OTLP/HTTP.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// Checks `url` is an `http://` or `https://` URL with a host; returns it without a trailing
/// slash.
fn check_url<'u>(url: &'u str, variable: Option<&str>) -> Result<&'u str, OtlpError> {
    let trimmed = url.trim_end_matches('/');
    let ok = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    match (ok, variable) {
        (true, _) => Ok(trimmed),
        (false, Some(variable)) => Err(invalid(
            variable,
            format!("{url:?} is not an http:// or https:// URL"),
        )),
        (false, None) => Err(OtlpError::InvalidEndpoint(url.to_owned())),
    }
}

fn has_path(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
}

/// The endpoint: the code's (its base URL, the signal's path added unless it has a path), the
/// signal's variable (as is), the generic variable (the signal's path added), the default.
fn endpoint(signal: Signal, code: Option<&str>, env: Lookup<'_>) -> Result<String, OtlpError> {
    if let Some(url) = code {
        let url = check_url(url, None)?;
        return Ok(if has_path(url) {
            url.to_owned()
        } else {
            format!("{url}/{}", signal.path())
        });
    }
    let specific = signal.var("ENDPOINT");
    if let Some(url) = get(env, &specific) {
        check_url(&url, Some(&specific))?;
        return Ok(url);
    }
    let generic = "OTEL_EXPORTER_OTLP_ENDPOINT";
    let base = match get(env, generic) {
        Some(url) => check_url(&url, Some(generic))?.to_owned(),
        None => DEFAULT_ENDPOINT.to_owned(),
    };
    Ok(format!("{base}/{}", signal.path()))
}

/// Whether an endpoint variable is set for `signal` (which `from_env` asks).
pub(super) fn endpoint_configured(signal: Signal, env: Lookup<'_>) -> bool {
    get(env, &signal.var("ENDPOINT")).is_some() || get(env, "OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
}

/// Decodes `%XX` escapes (the W3C baggage format the `*_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` values use).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `key=value,key=value` with percent-encoded values. `secret` keeps values out of errors.
fn pairs(variable: &str, value: &str, secret: bool) -> Result<Vec<(String, String)>, OtlpError> {
    let mut out = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let shown = if secret {
            format!("item {}", i + 1)
        } else {
            format!("{item:?}")
        };
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| invalid(variable, format!("{shown} is not key=value")))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(invalid(variable, format!("{shown} has an empty key")));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| invalid(variable, format!("{shown} has a malformed %-escape")))?;
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

/// Milliseconds (the specification's unit for every timeout and delay).
pub(super) fn millis(env: Lookup<'_>, variable: &str) -> Result<Option<Duration>, OtlpError> {
    get(env, variable)
        .map(|v| {
            v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                invalid(
                    variable,
                    format!("{v:?} is not a whole number of milliseconds"),
                )
            })
        })
        .transpose()
}

fn count(env: Lookup<'_>, variable: &str) -> Result<Option<usize>, OtlpError> {
    get(env, variable)
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(variable, format!("{v:?} is not a positive whole number")))
        })
        .transpose()
}

/// The first of the signal's variable and the generic one that is set, with its name.
fn either(env: Lookup<'_>, signal: Signal, what: &str) -> Option<(String, String)> {
    let specific = signal.var(what);
    if let Some(v) = get(env, &specific) {
        return Some((specific, v));
    }
    let generic = format!("OTEL_EXPORTER_OTLP_{what}");
    get(env, &generic).map(|v| (generic, v))
}

/// The export settings: code, else the variables, else the defaults.
pub(super) fn export(
    signal: Signal,
    code: &ExportCode,
    env: Lookup<'_>,
) -> Result<Export, OtlpError> {
    if let Some((variable, protocol)) = either(env, signal, "PROTOCOL") {
        if protocol != "http/protobuf" {
            return Err(invalid(
                &variable,
                format!(
                    "protocol {protocol:?} is not supported: tower-observe exports OTLP/HTTP \
                     with protobuf (\"http/protobuf\"); point it at the collector's HTTP port \
                     (4318) instead of gRPC"
                ),
            ));
        }
    }
    let url = endpoint(signal, code.endpoint.as_deref(), env)?;

    // Headers: the generic variable, then the signal's over it, then the code's over both.
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut merge = |more: Vec<(String, String)>| {
        for (k, v) in more {
            headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
    };
    for variable in [
        "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
        signal.var("HEADERS"),
    ] {
        if let Some(value) = get(env, &variable) {
            merge(pairs(&variable, &value, true)?);
        }
    }
    merge(code.headers.clone());
    let headers = headers
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let name = HeaderName::try_from(k.as_str());
            let value = HeaderValue::try_from(v.as_str());
            match (name, value) {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    Ok((name, value))
                }
                _ => Err(invalid(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    format!("header {} ({k:?}) is not a valid HTTP header", i + 1),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let timeout = match code.timeout {
        Some(t) => t,
        None => match either(env, signal, "TIMEOUT") {
            Some((variable, _)) => millis(env, &variable)?.unwrap_or_default(),
            None => Duration::from_secs(10),
        },
    };

    let mut pems = code.root_certificates_pem.clone();
    if pems.is_empty() {
        if let Some((variable, path)) = either(env, signal, "CERTIFICATE") {
            let pem = std::fs::read(&path)
                .map_err(|e| invalid(&variable, format!("cannot read {path:?}: {e}")))?;
            pems.push(pem);
            return finish(url, headers, timeout, &pems, Some(&variable));
        }
    }
    finish(url, headers, timeout, &pems, None)
}

fn finish(
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    pems: &[Vec<u8>],
    variable: Option<&str>,
) -> Result<Export, OtlpError> {
    let mut roots = Vec::new();
    for pem in pems {
        let certificates = crate::tls::pem_certificates(pem)
            .map_err(|reason| certificate_error(variable, reason))?;
        roots.extend(certificates);
    }
    Ok(Export {
        url,
        headers,
        timeout,
        roots,
    })
}

fn certificate_error(variable: Option<&str>, reason: String) -> OtlpError {
    match variable {
        Some(variable) => invalid(variable, reason),
        None => OtlpError::Certificate(reason),
    }
}

/// The resource: `service.name` from the code, else `OTEL_SERVICE_NAME`, else
/// `OTEL_RESOURCE_ATTRIBUTES`, else `fallback_name`, else `unknown_service`; the other
/// attributes from `OTEL_RESOURCE_ATTRIBUTES`, the code's over them.
pub(super) fn resource(
    service_name: Option<&str>,
    fallback_name: Option<&str>,
    attributes: &[(String, String)],
    env: Lookup<'_>,
) -> Result<Resource, OtlpError> {
    let variable = "OTEL_RESOURCE_ATTRIBUTES";
    let mut all = match get(env, variable) {
        Some(value) => pairs(variable, &value, false)?,
        None => Vec::new(),
    };
    for (k, v) in attributes {
        all.retain(|(old, _)| old != k);
        all.push((k.clone(), v.clone()));
    }
    let from_attributes = all
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.clone());
    let name = service_name
        .map(str::to_owned)
        .or_else(|| get(env, "OTEL_SERVICE_NAME"))
        .or(from_attributes)
        .or_else(|| fallback_name.map(str::to_owned))
        .unwrap_or_else(|| "unknown_service".to_owned());
    Ok(Resource::builder_empty()
        .with_attributes(
            all.into_iter()
                .filter(|(k, _)| k != "service.name")
                .map(|(k, v)| KeyValue::new(k, v)),
        )
        .with_attributes([
            KeyValue::new("service.name", name),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ])
        .build())
}

/// The batch processor's settings for a signal (`BSP` for spans, `BLRP` for logs).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct BatchCode {
    pub(super) max_queue_size: Option<usize>,
    pub(super) max_export_batch_size: Option<usize>,
    pub(super) schedule_delay: Option<Duration>,
}

/// The batch settings in force: `(queue, batch, delay)`.
pub(super) fn batch(
    prefix: &str,
    code: BatchCode,
    default_delay: Duration,
    env: Lookup<'_>,
) -> Result<(usize, usize, Duration), OtlpError> {
    let queue = match code.max_queue_size {
        Some(n) => n,
        None => count(env, &format!("OTEL_{prefix}_MAX_QUEUE_SIZE"))?.unwrap_or(2048),
    };
    let batch = match code.max_export_batch_size {
        Some(n) => n,
        None => count(env, &format!("OTEL_{prefix}_MAX_EXPORT_BATCH_SIZE"))?.unwrap_or(512),
    };
    let delay = match code.schedule_delay {
        Some(d) => d,
        None => millis(env, &format!("OTEL_{prefix}_SCHEDULE_DELAY"))?.unwrap_or(default_delay),
    };
    // Checked for its form; the SDK's exports are bounded by the exporter's own timeout.
    millis(env, &format!("OTEL_{prefix}_EXPORT_TIMEOUT"))?;
    Ok((queue.max(1), batch.clamp(1, queue.max(1)), delay))
}

/// The sampler: the code's, else `OTEL_TRACES_SAMPLER` (and `_ARG`), else parent-based
/// always-on.
pub(super) fn sampler(
    code: Option<opentelemetry_sdk::trace::Sampler>,
    env: Lookup<'_>,
) -> Result<opentelemetry_sdk::trace::Sampler, OtlpError> {
    use opentelemetry_sdk::trace::Sampler;
    if let Some(sampler) = code {
        return Ok(sampler);
    }
    let variable = "OTEL_TRACES_SAMPLER";
    let arg_variable = "OTEL_TRACES_SAMPLER_ARG";
    let ratio = || -> Result<f64, OtlpError> {
        match get(env, arg_variable) {
            None => Ok(1.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| invalid(arg_variable, format!("{v:?} is not a ratio in [0, 1]"))),
        }
    };
    let Some(name) = get(env, variable) else {
        return Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    };
    Ok(match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => {
            return Err(invalid(
                variable,
                format!(
                    "{other:?} is not one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                ),
            ))
        }
    })
}

/// The setters every OTLP builder shares (its `export`, `service_name` and
/// `resource_attributes` fields), documented for its signal: `$signal` is the variables'
/// infix (`TRACES`), `$path` what is added to a base URL (`/v1/traces`).
macro_rules! export_setters {
    ($signal:literal, $path:literal) => {
        #[doc = concat!("The collector's base URL (`", $path, "` is added unless the URL has a path); over")]
        #[doc = concat!("`OTEL_EXPORTER_OTLP_", $signal, "_ENDPOINT` (used as is) and `OTEL_EXPORTER_OTLP_ENDPOINT`.")]
        pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
            self.export.endpoint = Some(endpoint.into());
            self
        }

        /// The resource's `service.name`; over `OTEL_SERVICE_NAME`.
        pub fn service_name(mut self, service_name: impl Into<String>) -> Self {
            self.service_name = Some(service_name.into());
            self
        }

        /// A resource attribute; over the same key in `OTEL_RESOURCE_ATTRIBUTES`.
        pub fn resource_attribute(
            mut self,
            key: impl Into<String>,
            value: impl Into<String>,
        ) -> Self {
            self.resource_attributes.push((key.into(), value.into()));
            self
        }

        /// A header sent with every export (e.g. an API key); over the same header in
        #[doc = concat!("`OTEL_EXPORTER_OTLP_(", $signal, "_)HEADERS`. Header values are never logged nor shown.")]
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.export.headers.push((name.into(), value.into()));
            self
        }

        /// Trusts this PEM root certificate (or bundle) for `https://` instead of Mozilla's
        #[doc = concat!("roots (a private CA); over `OTEL_EXPORTER_OTLP_(", $signal, "_)CERTIFICATE`.")]
        pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.export.root_certificates_pem.push(pem.into());
            self
        }
    };
}
pub(super) use export_setters;
