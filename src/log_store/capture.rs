//! The capturing layer: events and closed spans, redacted and capped, encoded once and handed
//! to a bounded queue that the background flusher drains.

use hashbrown::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use metrics::Counter;
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::record::{self, put_field, put_header, FieldRef, Header, Kind};
use crate::clock::Clock;
use crate::logs::redact::{Redaction, REDACTED};
use crate::logs::render::ecs_name;

thread_local! {
    /// Each thread encodes an event's fields, and formats its debug values, in reused
    /// buffers.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, String)> =
        const { std::cell::RefCell::new((Vec::new(), String::new())) };
}

/// Runs `f` with this thread's reused text buffer (a fresh one if it is in use, or gone at
/// thread exit).
fn with_text(f: impl FnOnce(&mut String)) {
    let mut f = Some(f);
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut scratch) = cell.try_borrow_mut() {
            let text = &mut scratch.1;
            if let Some(f) = f.take() {
                f(text);
            }
            if text.capacity() > 16 * 1024 {
                *text = String::new();
            }
        }
    });
    if let Some(f) = f {
        f(&mut String::new());
    }
}

/// Longest text value stored (longer ones are cut at a character boundary and marked `…`).
pub(crate) const MAX_VALUE_LEN: usize = 4096;

/// An encoded record on its way to the store.
pub(crate) struct Captured {
    pub(crate) key: u128,
    pub(crate) bytes: Vec<u8>,
}

/// What every copy of the layer shares.
pub(crate) struct Capture {
    pub(crate) sender: SyncSender<Captured>,
    pub(crate) clock: Clock,
    pub(crate) redaction: Redaction,
    pub(crate) unsampled_spans: bool,
    pub(crate) seq: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) dropped_counter: Counter,
    pub(crate) callsites: Callsites,
    /// Wakes the writer (set once its thread starts).
    pub(crate) writer: std::sync::OnceLock<crate::observer::background::Waker>,
    /// A record whose sequence number has none of these bits set wakes the writer: about
    /// four times per buffer's worth, so the buffer is drained as it fills, not only at each
    /// flush interval.
    pub(crate) wake_mask: u64,
}

/// The [`Capture::wake_mask`] for a buffer of `buffer` records.
pub(crate) fn wake_mask(buffer: usize) -> u64 {
    ((buffer / 4).max(1) as u64).next_power_of_two() - 1
}

impl Capture {
    fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.wake();
        }
    }

    fn now_nanos(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn send(&self, key: u128, bytes: Vec<u8>) {
        // The low half of a key is the record's sequence number.
        let seq = key as u64;
        match self.sender.try_send(Captured { key, bytes }) {
            Ok(()) => {
                if seq & self.wake_mask == 0 {
                    self.wake_writer();
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Relaxed);
                self.dropped_counter.increment(1);
                self.wake_writer();
            }
            // The store is gone (its observer was dropped): nothing to count into.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// A `tracing-subscriber` layer storing events and spans in the observer's log store; get it
/// from [`LogStoreHandle::layer`](super::LogStoreHandle::layer). Cheap to clone.
#[derive(Clone)]
pub struct LogStoreLayer {
    pub(crate) capture: Arc<Capture>,
}

impl fmt::Debug for LogStoreLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStoreLayer")
            .field("dropped", &self.capture.dropped.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Bytes of text kept inline (a UUID request ID, most routes) rather than allocated.
const INLINE: usize = 46;

/// A request ID or a route: inline when short (no allocation per span, a copy per record),
/// shared otherwise.
#[derive(Clone)]
enum Text {
    Inline(u8, [u8; INLINE]),
    Shared(Arc<str>),
}

impl Text {
    fn new(s: &str) -> Text {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut buf = [0; INLINE];
                buf[..s.len()].copy_from_slice(s.as_bytes());
                Text::Inline(len, buf)
            }
            _ => Text::Shared(Arc::from(s)),
        }
    }

    /// The text's UTF-8 bytes (what the record holds; no check needed to write them).
    fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Inline(len, buf) => &buf[..usize::from(*len)],
            Text::Shared(s) => s.as_bytes(),
        }
    }

    #[cfg(test)]
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// What the layer keeps in a span's extensions while it is open.
struct SpanState {
    id: u64,
    seq: u64,
    start_nanos: u64,
    /// Whether the span is stored when it closes (not for an unsampled request, unless asked).
    keep: bool,
    request_id: Option<Text>,
    trace: Option<[u8; 16]>,
    route: Option<Text>,
    /// The remote parent (`parent_span_id` of a request continuing a trace).
    remote_parent: Option<u64>,
    /// The fields, encoded as stored (redacted, capped) when recorded: a field recorded
    /// again is appended, and the later value wins when the record is read.
    fields: Vec<u8>,
}

/// The request a record belongs to, found in its spans (innermost first) or, for a request
/// served without a span, in the trace context the observe layer keeps current.
#[derive(Default)]
struct Tags {
    span_id: Option<u64>,
    request_id: Option<Text>,
    trace: Option<[u8; 16]>,
    route: Option<Text>,
}

impl Tags {
    fn complete(&self) -> bool {
        self.span_id.is_some()
            && self.request_id.is_some()
            && self.trace.is_some()
            && self.route.is_some()
    }

    fn take_from(&mut self, state: &SpanState, own_span: bool) {
        if own_span && self.span_id.is_none() && state.keep {
            self.span_id = Some(state.id);
        }
        if self.request_id.is_none() {
            self.request_id.clone_from(&state.request_id);
        }
        if self.trace.is_none() {
            self.trace = state.trace;
        }
        if self.route.is_none() {
            self.route.clone_from(&state.route);
        }
    }

    fn fill_from_context(&mut self) {
        if self.trace.is_some() && self.request_id.is_some() {
            return;
        }
        crate::trace::TraceContext::peek_current(|ctx| {
            if self.trace.is_none() {
                self.trace = Some(ctx.span.trace_id);
            }
            if self.request_id.is_none() {
                self.request_id = ctx.request_id.as_ref().map(|id| Text::new(id.as_str()));
            }
        });
    }
}

/// Cuts `s` to [`MAX_VALUE_LEN`] bytes at a character boundary, marked with `…`.
fn capped(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_VALUE_LEN {
        return s.into();
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// Parses exactly 16 hex digits (either case) into a number; `None` for anything else.
fn hex16(b: &[u8]) -> Option<u64> {
    if b.len() != 16 {
        return None;
    }
    b.iter().try_fold(0u64, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some((v << 4) | u64::from(d))
    })
}

/// Parses a 16-digit hex span ID.
fn hex_u64(s: &str) -> Option<u64> {
    hex16(s.as_bytes())
}

/// Parses a 32-digit hex trace ID (two 64-bit halves: cheaper than one 128-bit fold).
pub(crate) fn hex_trace(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let (hi, lo) = (hex16(&b[..16])?, hex16(&b[16..])?);
    Some(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes())
}

/// What a field is, by its name: worked out once per callsite (see [`Callsites`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSlot {
    /// The slot a span's text value of this name goes to instead of its fields (an event's
    /// `log.target` names its logger).
    special: Special,
    /// How the value is stored when it is stored as a field.
    class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    RequestId,
    TraceId,
    SpanId,
    ParentSpanId,
    Route,
    LogTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Redacted,
    Url,
    Plain,
}

impl FieldSlot {
    fn of(redaction: &Redaction, name: &'static str) -> FieldSlot {
        let special = match name {
            "request_id" => Special::RequestId,
            "trace_id" => Special::TraceId,
            "span_id" => Special::SpanId,
            "parent_span_id" => Special::ParentSpanId,
            "http.route" => Special::Route,
            "log.target" => Special::LogTarget,
            _ => Special::None,
        };
        let ecs = ecs_name(name);
        let class = if redaction.is_sensitive_field(ecs) {
            Class::Redacted
        } else if Redaction::is_url_field(ecs) {
            Class::Url
        } else {
            Class::Plain
        };
        FieldSlot { special, class }
    }
}

/// The [`FieldSlot`]s of every callsite seen, by callsite, so that a span or event classifies
/// its fields with one map lookup rather than by comparing each name.
#[derive(Default)]
pub(crate) struct Callsites(std::sync::RwLock<HashMap<Identifier, Arc<[FieldSlot]>>>);

impl Callsites {
    fn of(&self, meta: &'static Metadata<'static>, redaction: &Redaction) -> Arc<[FieldSlot]> {
        let id = meta.callsite();
        if let Some(slots) = self.0.read().ok().and_then(|map| map.get(&id).cloned()) {
            return slots;
        }
        let slots: Arc<[FieldSlot]> = meta
            .fields()
            .iter()
            .map(|field| FieldSlot::of(redaction, field.name()))
            .collect();
        if let Ok(mut map) = self.0.write() {
            map.insert(id, slots.clone());
        }
        slots
    }
}

/// The slot of `field` among `slots` (its callsite's), worked out now for a field of another
/// callsite (a span's fields are all its callsite's; this is a safe fallback).
fn slot(slots: &[FieldSlot], redaction: &Redaction, field: &Field) -> FieldSlot {
    slots
        .get(field.index())
        .copied()
        .unwrap_or_else(|| FieldSlot::of(redaction, field.name()))
}

/// Appends a field as it is stored: redacted, a URL with its sensitive parameters redacted,
/// capped; the same rules as the ECS JSON layer.
fn put_stored(
    out: &mut Vec<u8>,
    redaction: &Redaction,
    class: Class,
    name: &'static str,
    value: FieldRef<'_>,
) {
    match (class, value) {
        (Class::Redacted, _) => put_field(out, name, FieldRef::Str(REDACTED)),
        (Class::Url, FieldRef::Str(s)) => put_field(
            out,
            name,
            FieldRef::Str(&capped(&redaction.redact_query(s))),
        ),
        (_, FieldRef::Str(s)) => put_field(out, name, FieldRef::Str(&capped(s))),
        (_, other) => put_field(out, name, other),
    }
}

/// The ECS name of a field, for its redaction class (names are `'static` in `tracing`, but
/// the stored ones are read back as owned strings).
pub(crate) fn ecs_name_of(name: &str) -> &str {
    // `ecs_name` maps the crate's own `'static` names; any other name is itself.
    static KNOWN: std::sync::OnceLock<Vec<(&'static str, &'static str)>> =
        std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        [
            "request_id",
            "trace_id",
            "span_id",
            "network.protocol.version",
            "http.request.method_original",
            "otel.status_code",
            "otel.name",
            "otel.kind",
            "http.route",
            "http.request.resend_count",
            "parent_span_id",
            "link.trace_id",
            "link.span_id",
            "rpc.system.name",
            "rpc.method",
            "rpc.method_original",
            "rpc.status_code",
            "log.target",
            "log.module_path",
            "log.file",
            "log.line",
        ]
        .into_iter()
        .map(|n| (n, ecs_name(n)))
        .collect()
    });
    known
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, e)| e)
}

/// Hands every value to a closure as a [`FieldRef`], formatting debug and error values in
/// `.1` (a reused buffer).
struct Values<'t, F>(F, &'t mut String);

impl<F: FnMut(&Field, FieldRef<'_>)> Visit for Values<'_, F> {
    fn record_str(&mut self, field: &Field, value: &str) {
        (self.0)(field, FieldRef::Str(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        (self.0)(field, FieldRef::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        (self.0)(field, FieldRef::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        (self.0)(field, FieldRef::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        (self.0)(field, FieldRef::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.1.clear();
        let _ = write!(self.1, "{value}");
        (self.0)(field, FieldRef::Str(self.1));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.1.clear();
        let _ = write!(self.1, "{value:?}");
        (self.0)(field, FieldRef::Str(self.1));
    }
}

impl SpanState {
    /// Takes a span field: the request's IDs and route into their slots, the rest as fields.
    fn put(
        &mut self,
        redaction: &Redaction,
        slot: FieldSlot,
        name: &'static str,
        value: FieldRef<'_>,
    ) {
        match (slot.special, value) {
            (Special::RequestId, FieldRef::Str(s)) => self.request_id = Some(Text::new(&capped(s))),
            (Special::TraceId, FieldRef::Str(s)) => self.trace = hex_trace(s).or(self.trace),
            (Special::SpanId, FieldRef::Str(s)) => {
                if let Some(id) = hex_u64(s) {
                    self.id = id;
                }
            }
            (Special::ParentSpanId, FieldRef::Str(s)) => self.remote_parent = hex_u64(s),
            (Special::Route, FieldRef::Str(s)) => self.route = Some(Text::new(&capped(s))),
            _ => put_stored(&mut self.fields, redaction, slot.class, name, value),
        }
    }
}

impl<S> Layer<S> for LogStoreLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let capture = &self.capture;
        let keep = capture.unsampled_spans
            || crate::trace::TraceContext::peek_current(|c| c.span.sampled).unwrap_or(true);
        let slots = capture.callsites.of(attrs.metadata(), &capture.redaction);
        let mut state = SpanState {
            id: crate::request_id::random_u64() | 1,
            seq: capture.seq.fetch_add(1, Relaxed),
            start_nanos: capture.now_nanos(),
            keep,
            request_id: None,
            trace: None,
            route: None,
            remote_parent: None,
            fields: Vec::with_capacity(16 * attrs.fields().len()),
        };
        with_text(|text| {
            attrs.record(&mut Values(
                |field: &Field, value: FieldRef<'_>| {
                    let slot = slot(&slots, &capture.redaction, field);
                    state.put(&capture.redaction, slot, field.name(), value);
                },
                text,
            ));
        });
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let capture = &self.capture;
        let slots = capture.callsites.of(span.metadata(), &capture.redaction);
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>() {
            with_text(|text| {
                values.record(&mut Values(
                    |field: &Field, value: FieldRef<'_>| {
                        let slot = slot(&slots, &capture.redaction, field);
                        state.put(&capture.redaction, slot, field.name(), value);
                    },
                    text,
                ));
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let capture = &self.capture;
        let meta = event.metadata();
        let mut tags = Tags::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(state) = span.extensions().get::<SpanState>() {
                    tags.take_from(state, true);
                }
                if tags.complete() {
                    break;
                }
            }
        }
        tags.fill_from_context();
        let nanos = capture.now_nanos();
        let seq = capture.seq.fetch_add(1, Relaxed);
        let level = record::level_byte(meta.level());
        let slots = capture.callsites.of(meta, &capture.redaction);
        // The fields, then the header (whose target an event bridged from `log` names in
        // `log.target`), so the record is one exact allocation.
        let encode = |fields: &mut Vec<u8>, text: &mut String| {
            let mut bridged: Option<String> = None;
            event.record(&mut Values(
                |field: &Field, value: FieldRef<'_>| {
                    let slot = slot(&slots, &capture.redaction, field);
                    if let (Special::LogTarget, FieldRef::Str(s)) = (slot.special, value) {
                        bridged = Some(capped(s).into_owned());
                        return;
                    }
                    put_stored(fields, &capture.redaction, slot.class, field.name(), value);
                },
                text,
            ));
            let target = bridged.as_deref().unwrap_or(meta.target());
            let mut bytes = Vec::with_capacity(80 + target.len() + fields.len());
            put_header(
                &mut bytes,
                Kind::Event,
                level,
                &Header {
                    trace: tags.trace,
                    span_id: tags.span_id,
                    parent: None,
                    duration_ns: None,
                    request_id: tags.request_id.as_ref().map(Text::as_bytes),
                    route: tags.route.as_ref().map(Text::as_bytes),
                    target,
                    name: "",
                },
            );
            bytes.extend_from_slice(fields);
            bytes
        };
        let bytes = SCRATCH
            .try_with(|cell| {
                let mut scratch = cell.try_borrow_mut().ok()?;
                let (fields, text) = &mut *scratch;
                fields.clear();
                let bytes = encode(fields, text);
                if fields.capacity() > 16 * 1024 {
                    *fields = Vec::new();
                }
                if text.capacity() > 16 * 1024 {
                    *text = String::new();
                }
                Some(bytes)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| encode(&mut Vec::new(), &mut String::new()));
        capture.send(record::key(nanos, seq), bytes);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        if !state.keep {
            return;
        }
        let mut tags = Tags {
            span_id: Some(state.id),
            ..Tags::default()
        };
        tags.take_from(&state, false);
        let mut parent = None;
        for ancestor in span.scope().skip(1) {
            if let Some(s) = ancestor.extensions().get::<SpanState>() {
                if parent.is_none() {
                    parent = Some(s.id);
                }
                tags.take_from(s, false);
            }
            if parent.is_some() && tags.complete() {
                break;
            }
        }
        tags.fill_from_context();
        let end = self.capture.now_nanos();
        let target = span.metadata().target();
        let name = span.metadata().name();
        let mut bytes = Vec::with_capacity(
            80 + target.len()
                + name.len()
                + tags.request_id.as_ref().map_or(0, |t| t.as_bytes().len())
                + tags.route.as_ref().map_or(0, |t| t.as_bytes().len())
                + state.fields.len(),
        );
        put_header(
            &mut bytes,
            Kind::Span,
            record::level_byte(span.metadata().level()),
            &Header {
                trace: tags.trace,
                span_id: Some(state.id),
                parent: parent.or(state.remote_parent),
                duration_ns: Some(end.saturating_sub(state.start_nanos)),
                request_id: tags.request_id.as_ref().map(Text::as_bytes),
                route: tags.route.as_ref().map(Text::as_bytes),
                target,
                name,
            },
        );
        bytes.extend_from_slice(&state.fields);
        self.capture
            .send(record::key(state.start_nanos, state.seq), bytes);
    }
}

#[cfg(test)]
mod tests {
    use crate::log_store::LogStoreOptions;
    use crate::Observer;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn request_ids_and_routes_read_back_whole_inline_or_shared() {
        for s in [
            String::new(),
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
            "é".repeat(super::INLINE / 2),
            "r".repeat(super::INLINE),
            "r".repeat(super::INLINE + 1),
            "/ünïcode/".repeat(40),
        ] {
            let text = super::Text::new(&s);
            assert_eq!(text.as_str(), s);
            assert_eq!(
                matches!(text, super::Text::Inline(..)),
                s.len() <= super::INLINE
            );
        }
    }

    #[test]
    fn values_are_capped_bridged_records_name_their_logger_and_lines_outside_requests_have_no_ids()
    {
        let observer = Observer::builder()
            .log_store(LogStoreOptions::in_memory().redact_field("card_number"))
            .build()
            .unwrap();
        let store = observer.log_store().unwrap();
        let subscriber = tracing_subscriber::registry().with(store.layer());
        let long = "x".repeat(super::MAX_VALUE_LEN + 100);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", request_id = "job-1");
            let _e = span.enter();
            tracing::info!(
                body = long.as_str(),
                card_number = "4111111111111111",
                log.target = "legacy::module",
                "from log"
            );
            drop(_e);
            drop(span);
            tracing::warn!("outside any request");
        });
        store.flush();
        let view = store.request("job-1").unwrap().unwrap();
        let line = &view.logs[0];
        assert_eq!(line.target, "legacy::module");
        let body = line.fields["body"].as_str().unwrap();
        assert_eq!(body.len(), super::MAX_VALUE_LEN + '…'.len_utf8());
        assert!(body.ends_with('…'));
        assert_eq!(line.fields["card_number"], crate::logs::REDACTED);
        assert!(!line.fields.contains_key("log.target"));

        let db = store.shared.db.load();
        let (page, _) = db
            .page(
                &super::super::store::Filter {
                    to: u128::MAX,
                    text: Some("outside".into()),
                    ..Default::default()
                },
                u128::MAX,
                10,
                100,
            )
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].request_id, None);
        assert_eq!(page[0].trace, None);
        assert_eq!(page[0].span_id, None);
        assert_eq!(page[0].level, 3);
    }
}
