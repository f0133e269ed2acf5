#![doc = include_str!("../docs/logs.md")]

use std::fmt;
use std::io::{self, Write};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

const SENSITIVE_FIELDS: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "proxy_authorization",
    "cookie",
    "set-cookie",
    "set_cookie",
    "x-api-key",
    "x_api_key",
    "password",
    "secret",
    "token",
    "api_key",
];

const SENSITIVE_PARAMS: [&str; 14] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "auth",
];

const URL_FIELDS: [&str; 4] = ["url.query", "url.full", "url.original", "http.request.uri"];

/// Which fields and query parameters are redacted.
#[derive(Debug, Clone)]
struct Redaction {
    fields: Vec<String>,
    params: Vec<String>,
}

impl Default for Redaction {
    fn default() -> Self {
        Self {
            fields: SENSITIVE_FIELDS.iter().map(|s| (*s).to_owned()).collect(),
            params: SENSITIVE_PARAMS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl Redaction {
    fn is_sensitive_field(&self, name: &str) -> bool {
        let last = name.rsplit('.').next().unwrap_or(name);
        self.fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case(last) || f.eq_ignore_ascii_case(name))
    }

    /// `value` with the values of sensitive query parameters replaced.
    fn redact_query(&self, value: &str) -> String {
        let (head, query) = match value.split_once('?') {
            Some((head, query)) => (Some(head), query),
            None => (None, value),
        };
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if self.params.iter().any(|p| p.eq_ignore_ascii_case(k)) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        let mut out = String::with_capacity(value.len());
        if let Some(head) = head {
            out.push_str(head);
            out.push('?');
        }
        out.push_str(&redacted.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }

    fn apply(&self, name: &str, value: Value) -> Value {
        if self.is_sensitive_field(name) {
            return Value::String(REDACTED.to_owned());
        }
        match value {
            Value::String(s) if URL_FIELDS.contains(&name) => Value::String(self.redact_query(&s)),
            other => other,
        }
    }
}

/// Writes ECS JSON lines; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct EcsJsonLayer<W = fn() -> io::Stdout> {
    service_name: String,
    writer: W,
    redaction: Redaction,
}

impl EcsJsonLayer {
    /// Lines to standard output, with `service.name` set to `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            writer: io::stdout,
            redaction: Redaction::default(),
        }
    }
}

impl<W> EcsJsonLayer<W> {
    /// Writes lines to `writer` instead (anything `tracing-subscriber`'s `fmt` accepts).
    pub fn with_writer<W2>(self, writer: W2) -> EcsJsonLayer<W2>
    where
        W2: for<'w> MakeWriter<'w>,
    {
        EcsJsonLayer {
            service_name: self.service_name,
            writer,
            redaction: self.redaction,
        }
    }

    /// Also redacts fields with this name (or last dotted segment), case-insensitively.
    pub fn redact_field(mut self, name: impl Into<String>) -> Self {
        self.redaction.fields.push(name.into());
        self
    }

    /// Also redacts the value of this query parameter in URL fields.
    pub fn redact_query_param(mut self, name: impl Into<String>) -> Self {
        self.redaction.params.push(name.into());
        self
    }
}

/// The fields a span was created or recorded with, already redacted and renamed.
#[derive(Debug, Default)]
struct SpanFields(Vec<(String, Value)>);

impl SpanFields {
    fn set(&mut self, name: String, value: Value) {
        // A server span is the ECS transaction: its ID is also `transaction.id`, which ECS
        // logging pairs with `trace.id` to tie log lines to traces.
        if name == "span.id" && self.get("labels.otel_kind") == Some("server") {
            self.set("transaction.id".to_owned(), value.clone());
        }
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
    }
}

/// The ECS name of a field the crate's spans and events carry (its own name for any other).
fn ecs_name(name: &str) -> &str {
    match name {
        "request_id" => "http.request.id",
        "trace_id" => "trace.id",
        "span_id" => "span.id",
        "network.protocol.version" => "http.version",
        // ECS keeps the method as received; the conventions' normalised one is `_OTHER` for
        // methods outside the known set, recorded with the original beside it.
        "http.request.method_original" => "http.request.method",
        "otel.status_code" => "event.outcome",
        "otel.name" => "labels.otel_name",
        "otel.kind" => "labels.otel_kind",
        "http.route" => "labels.http_route",
        "http.request.resend_count" => "labels.http_request_resend_count",
        "parent_span_id" => "labels.parent_span_id",
        "link.trace_id" => "labels.link_trace_id",
        "link.span_id" => "labels.link_span_id",
        "rpc.system.name" => "labels.rpc_system_name",
        "rpc.method" => "labels.rpc_method",
        "rpc.method_original" => "labels.rpc_method_original",
        "rpc.status_code" => "labels.rpc_status_code",
        // What `tracing-log` puts on events bridged from the `log` crate (`log.file` would
        // collide with ECS's `log.file.path`).
        "log.target" => "log.logger",
        "log.module_path" => "log.origin.function",
        "log.file" => "log.origin.file.name",
        "log.line" => "log.origin.file.line",
        other => other,
    }
}

/// A value as its ECS field takes it: labels are strings, `event.outcome` is
/// `success`/`failure`.
fn ecs_value(name: &str, value: Value) -> Value {
    if name == "event.outcome" {
        return Value::String(
            match value.as_str() {
                Some("ERROR") => "failure",
                Some("OK") => "success",
                _ => "unknown",
            }
            .to_owned(),
        );
    }
    if name.starts_with("labels.") {
        return match value {
            Value::String(s) => Value::String(s),
            other => Value::String(other.to_string()),
        };
    }
    value
}

/// Collects fields into `(ecs name, redacted value)` pairs.
struct Collect<'a> {
    redaction: &'a Redaction,
    out: &'a mut dyn FnMut(String, Value),
}

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = ecs_name(field.name());
        let value = ecs_value(name, self.redaction.apply(name, value));
        (self.out)(name.to_owned(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for EcsJsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut Collect {
            redaction: &self.redaction,
            out: &mut |k, v| fields.set(k, v),
        });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Collect {
                redaction: &self.redaction,
                out: &mut |k, v| fields.set(k, v),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "@timestamp".into(),
            Value::String(crate::time_fmt::rfc3339(SystemTime::now())),
        );
        line.insert(
            "log.level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("log.logger".into(), Value::String(meta.target().to_owned()));
        line.insert(
            "service.name".into(),
            Value::String(self.service_name.clone()),
        );
        line.insert("ecs.version".into(), Value::String(ECS_VERSION.to_owned()));
        // Outer spans first, so an inner span's value of the same field wins.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut Collect {
            redaction: &self.redaction,
            out: &mut |k, v| {
                line.insert(k, v);
            },
        });
        let mut buf = match serde_json::to_vec(&line) {
            Ok(buf) => buf,
            Err(_) => return,
        };
        buf.push(b'\n');
        // A failing log sink must not take the application down: drop the line.
        let _ = self.writer.make_writer_for(meta).write_all(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(capture: &Capture) -> Vec<Value> {
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
            .collect()
    }

    fn with_layer(f: impl FnOnce()) -> (Vec<Value>, String) {
        let capture = Capture::default();
        let layer = EcsJsonLayer::new("shop").with_writer(capture.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        let raw = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        (lines(&capture), raw)
    }

    #[test]
    fn lines_carry_ecs_fields_and_the_request_ids() {
        let (lines, _) = with_layer(|| {
            let request = tracing::info_span!(
                "request",
                request_id = "req-1",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = tracing::field::Empty,
            );
            request.record("span_id", "00f067aa0ba902b7");
            let _r = request.enter();
            let inner = tracing::debug_span!("db", db.system = "postgresql");
            let _i = inner.enter();
            tracing::warn!(rows = 3, "slow query");
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["message"], "slow query");
        assert_eq!(l["log.level"], "warn");
        assert_eq!(l["service.name"], "shop");
        assert_eq!(l["ecs.version"], ECS_VERSION);
        assert_eq!(l["http.request.id"], "req-1");
        assert_eq!(l["trace.id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(l["span.id"], "00f067aa0ba902b7");
        assert_eq!(l["db.system"], "postgresql");
        assert_eq!(l["rows"], 3);
        assert!(l["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn sensitive_fields_and_query_parameters_never_reach_the_output() {
        let (lines, raw) = with_layer(|| {
            let span = tracing::info_span!(
                "request",
                http.request.header.authorization = "Bearer s3cr3t-bearer",
                url.full = "https://shop.test/pay?order=7&access_token=s3cr3t-token#top",
            );
            let _e = span.enter();
            tracing::info!(
                cookie = "session=s3cr3t-cookie",
                x_api_key = "s3cr3t-key",
                url.query = "page=2&API_KEY=s3cr3t-param&sort=asc",
                "request served"
            );
        });
        assert!(!raw.contains("s3cr3t"), "a secret leaked: {raw}");
        let l = &lines[0];
        assert_eq!(l["http.request.header.authorization"], REDACTED);
        assert_eq!(l["cookie"], REDACTED);
        assert_eq!(l["x_api_key"], REDACTED);
        assert_eq!(
            l["url.full"],
            format!("https://shop.test/pay?order=7&access_token={REDACTED}#top")
        );
        assert_eq!(
            l["url.query"],
            format!("page=2&API_KEY={REDACTED}&sort=asc")
        );
    }

    #[test]
    fn custom_redactions() {
        let capture = Capture::default();
        let layer = EcsJsonLayer::new("shop")
            .with_writer(capture.clone())
            .redact_field("card_number")
            .redact_query_param("session");
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!(
                card_number = "4111111111111111",
                url.query = "session=abc&x=1",
                "paid"
            );
        });
        let l = &lines(&capture)[0];
        assert_eq!(l["card_number"], REDACTED);
        assert_eq!(l["url.query"], format!("session={REDACTED}&x=1"));
    }
}
