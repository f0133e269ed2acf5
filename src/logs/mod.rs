#![doc = include_str!("../../docs/logs.md")]

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::Arc;

use crate::hex;
use std::time::SystemTime;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub(crate) mod redact;
pub(crate) mod render;

use redact::Redaction;
pub use redact::REDACTED;
use render::{write_key, write_str, Callsites, FieldSpec, Fields, SpanFields};

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Writes ECS JSON lines; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct EcsJsonLayer<W = fn() -> io::Stdout> {
    service_name: String,
    writer: W,
    redaction: Redaction,
    /// How each callsite's fields are written, worked out once per callsite for this
    /// redaction.
    callsites: Arc<Callsites>,
}

impl EcsJsonLayer {
    /// Lines to standard output, with `service.name` set to `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            writer: io::stdout,
            redaction: Redaction::default(),
            callsites: Arc::default(),
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
            callsites: self.callsites,
        }
    }

    /// Also redacts fields with this name (or last dotted segment), case-insensitively.
    pub fn redact_field(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_field(name.into());
        self.callsites = Arc::default();
        self
    }

    /// Also redacts the value of this query parameter in URL fields.
    pub fn redact_query_param(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_param(name.into());
        self.callsites = Arc::default();
        self
    }
}

/// A line being written: its bytes and the names it already has (an event's own fields win
/// over its spans', an inner span's over an outer one's).
#[derive(Default)]
struct Line {
    json: Vec<u8>,
    names: Vec<&'static str>,
    /// One bit per name in `names`, by a cheap hash, so most names are known to be new
    /// without a look at the list.
    seen: u64,
}

impl Line {
    fn bit(name: &str) -> u64 {
        let bytes = name.as_bytes();
        let last = bytes.last().copied().unwrap_or(0);
        1 << ((bytes.len() as u64 ^ u64::from(last) << 2) & 63)
    }

    /// Whether the line has `name` already.
    fn has(&self, name: &str) -> bool {
        self.seen & Self::bit(name) != 0 && self.names.contains(&name)
    }

    /// Whether the line has `name` already; if not, it has it from now on.
    fn claim(&mut self, name: &'static str) -> bool {
        let bit = Self::bit(name);
        if self.seen & bit != 0 && self.names.contains(&name) {
            return false;
        }
        self.seen |= bit;
        self.names.push(name);
        true
    }

    fn clear(&mut self) {
        self.json.clear();
        self.names.clear();
        self.seen = 0;
        if self.json.capacity() > KEPT_LINE_CAPACITY {
            self.json = Vec::new();
        }
    }
}

/// Lines above this size do not keep their buffer for the next one.
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// Each thread writes its lines in one reused buffer.
    static LINE: RefCell<Line> = RefCell::new(Line::default());
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

impl<W> EcsJsonLayer<W> {
    /// Writes the line of `event` into `line`.
    fn render<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, line: &mut Line)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        line.json.extend_from_slice(b"{\"@timestamp\":\"");
        line.json
            .extend_from_slice(&crate::time_fmt::rfc3339_bytes(SystemTime::now()));
        line.json.extend_from_slice(b"\",\"log.level\":\"");
        line.json
            .extend_from_slice(level_name(meta.level()).as_bytes());
        line.json.push(b'"');
        line.claim("@timestamp");
        line.claim("log.level");
        let redaction = &self.redaction;
        let specs = self.callsites.of(meta, redaction);
        event.record(&mut Fields(
            |field: &tracing::field::Field, raw: render::Raw<'_>| {
                let fallback;
                let spec = match specs.get(field.index()) {
                    Some(spec) => spec,
                    None => {
                        fallback = FieldSpec::new(redaction, field.name());
                        &fallback
                    }
                };
                if line.claim(spec.name) {
                    spec.write_member(&mut line.json, redaction, raw);
                }
            },
        ));
        // Innermost span first: its fields win over those of the spans around it.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, member) in fields.members() {
                        if line.claim(name) {
                            line.json.extend_from_slice(member);
                        }
                    }
                }
            }
        }
        // A request served without a span (untraced, or a trace not sampled) still has IDs:
        // the context the observe layer keeps current while the request is served.
        if !line.has("trace.id") || !line.has("http.request.id") {
            crate::trace::TraceContext::peek_current(|ctx| {
                if line.claim("trace.id") {
                    write_key(&mut line.json, "trace.id");
                    write_str(&mut line.json, hex::id16(&ctx.span.trace_id).as_str());
                }
                if let Some(id) = &ctx.request_id {
                    if line.claim("http.request.id") {
                        write_key(&mut line.json, "http.request.id");
                        write_str(&mut line.json, id.as_str());
                    }
                }
            });
        }
        let fixed: [(&'static str, &str); 3] = [
            ("log.logger", meta.target()),
            ("service.name", &self.service_name),
            ("ecs.version", ECS_VERSION),
        ];
        for (name, text) in fixed {
            if line.claim(name) {
                write_key(&mut line.json, name);
                write_str(&mut line.json, text);
            }
        }
        line.json.extend_from_slice(b"}\n");
    }
}

impl<S, W> Layer<S> for EcsJsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let specs = self.callsites.of(attrs.metadata(), &self.redaction);
        let mut fields = SpanFields::with_capacity(attrs.fields().len());
        attrs.record(&mut fields.visitor(&specs, &self.redaction, true));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let specs = self.callsites.of(span.metadata(), &self.redaction);
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut fields.visitor(&specs, &self.redaction, false));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut Line| {
            self.render(event, &ctx, line);
            // A failing log sink must not take the application down: drop the line.
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(&line.json);
            line.clear();
        };
        // A writer that logs would find the buffer taken: it gets its own.
        let reused = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                write(&mut line);
                true
            }
            Err(_) => false,
        });
        if reused != Ok(true) {
            write(&mut Line::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
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
    fn each_name_once_the_event_over_its_spans_and_the_inner_span_over_the_outer() {
        let (lines, raw) = with_layer(|| {
            let outer = tracing::info_span!("outer", tenant = "a", stage = "outer");
            let _o = outer.enter();
            let inner = tracing::info_span!("inner", stage = "inner", attempt = 1);
            let _i = inner.enter();
            tracing::info!(attempt = 2, log.target = "legacy::module", "retrying");
        });
        let l = &lines[0];
        assert_eq!(l["tenant"], "a");
        assert_eq!(l["stage"], "inner");
        assert_eq!(l["attempt"], 2);
        // An event bridged from `log` names its real logger.
        assert_eq!(l["log.logger"], "legacy::module");
        for key in [
            "\"stage\"",
            "\"attempt\"",
            "\"log.logger\"",
            "\"@timestamp\"",
        ] {
            assert_eq!(raw.matches(key).count(), 1, "{key} once in {raw}");
        }
        assert!(raw.starts_with("{\"@timestamp\":"));

        // Two fields of one span under one ECS name: one member, the later field's.
        let (lines, raw) = with_layer(|| {
            let span = tracing::info_span!("job", trace_id = "first", trace.id = "second");
            let _e = span.enter();
            tracing::info!("started");
        });
        assert_eq!(lines[0]["trace.id"], "second");
        assert_eq!(raw.matches("\"trace.id\"").count(), 1, "{raw}");
        assert!(raw.ends_with("}\n"));
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
