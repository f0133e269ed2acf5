//! Field values rendered once, as the JSON members of an ECS line: a span's fields when it
//! opens (and when one is recorded), an event's straight into its line.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

use hashbrown::HashMap;
use tracing::callsite::Identifier;
use tracing::Metadata;

use tracing::field::{Field, Visit};

use super::redact::{Redaction, REDACTED};

/// The ECS name of a field the crate's spans and events carry (its own name for any other).
pub(crate) fn ecs_name(name: &'static str) -> &'static str {
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

/// A field value as `tracing` hands it over.
#[derive(Clone, Copy)]
pub(super) enum Raw<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Debug(&'a dyn fmt::Debug),
    Error(&'a (dyn std::error::Error + 'static)),
}

impl Raw<'_> {
    /// The value as text (only the rare fields that need to inspect it ask).
    fn text(&self) -> Cow<'_, str> {
        match self {
            Raw::Str(s) => Cow::Borrowed(s),
            Raw::I64(v) => Cow::Owned(v.to_string()),
            Raw::U64(v) => Cow::Owned(v.to_string()),
            Raw::F64(v) => Cow::Owned(v.to_string()),
            Raw::Bool(v) => Cow::Borrowed(if *v { "true" } else { "false" }),
            Raw::Debug(v) => Cow::Owned(format!("{v:?}")),
            Raw::Error(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// Appends `s` as a JSON string.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string (RFC 8259 §7).
fn escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Most values (IDs, routes, paths) need no escaping: find the first byte that does, eight
    // bytes at a time, and copy everything before it at once.
    let clean = clean_prefix(bytes);
    out.extend_from_slice(&bytes[..clean]);
    let mut start = clean;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// How many leading bytes of `bytes` need no escaping (a multiple of eight, at most: the
/// byte loop checks the rest).
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is zero (the classic bit trick; exact for the `any` test).
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        // A byte is a control character (below 0x20) exactly when its top three bits are 0.
        let control = has_zero(word & u64::from_ne_bytes([0xe0; 8]));
        let quote = has_zero(word ^ u64::from_ne_bytes([b'"'; 8]));
        let backslash = has_zero(word ^ u64::from_ne_bytes([b'\\'; 8]));
        if control || quote || backslash {
            break;
        }
        clean += 8;
    }
    clean
}

/// Formats into a JSON string's inside, escaping as it goes (no intermediate `String`).
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s);
        Ok(())
    }
}

/// What a field's value goes through on its way to a line, decided by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// As it is, in its JSON type.
    Plain,
    /// A string, whatever its type: ECS labels are keywords.
    Label,
    /// [`REDACTED`].
    Redacted,
    /// A URL or query: the values of sensitive parameters are redacted.
    Url,
    /// `event.outcome`: `success` or `failure` from `OK` or `ERROR`.
    Outcome,
}

/// One field of a callsite, worked out once (when the callsite registers): its ECS name, its
/// key rendered as JSON, and what its value goes through.
#[derive(Debug)]
pub(super) struct FieldSpec {
    pub(super) name: &'static str,
    /// `,"name":`.
    key: Box<[u8]>,
    class: Class,
    /// Whether no other field of the callsite has the same ECS name (so a span's first
    /// values need no search for an earlier one).
    unique: bool,
}

impl FieldSpec {
    pub(super) fn new(redaction: &Redaction, field: &'static str) -> Self {
        let name = ecs_name(field);
        let class = if redaction.is_sensitive_field(name) {
            Class::Redacted
        } else if name == "event.outcome" {
            Class::Outcome
        } else if Redaction::is_url_field(name) {
            Class::Url
        } else if name.starts_with("labels.") {
            Class::Label
        } else {
            Class::Plain
        };
        let mut key = Vec::with_capacity(name.len() + 4);
        write_key(&mut key, name);
        Self {
            name,
            key: key.into_boxed_slice(),
            class,
            unique: false,
        }
    }

    /// Appends `,"name":value`.
    pub(super) fn write_member(&self, out: &mut Vec<u8>, redaction: &Redaction, raw: Raw<'_>) {
        out.extend_from_slice(&self.key);
        write_value(out, redaction, self.class, raw);
    }
}

/// The [`FieldSpec`]s of every callsite a layer has seen, by callsite.
#[derive(Debug, Default)]
pub(super) struct Callsites(RwLock<HashMap<Identifier, Arc<[FieldSpec]>>>);

impl Callsites {
    /// The specs of the fields of `meta`'s callsite, worked out now if this is its first use.
    pub(super) fn of(
        &self,
        meta: &'static Metadata<'static>,
        redaction: &Redaction,
    ) -> Arc<[FieldSpec]> {
        let id = meta.callsite();
        if let Some(specs) = self.0.read().ok().and_then(|map| map.get(&id).cloned()) {
            return specs;
        }
        let mut specs: Vec<FieldSpec> = meta
            .fields()
            .iter()
            .map(|field| FieldSpec::new(redaction, field.name()))
            .collect();
        for i in 0..specs.len() {
            let name = specs[i].name;
            specs[i].unique = specs.iter().filter(|s| s.name == name).count() == 1;
        }
        let specs: Arc<[FieldSpec]> = specs.into();
        if let Ok(mut map) = self.0.write() {
            map.insert(id, specs.clone());
        }
        specs
    }
}

/// Appends the JSON value of a field of class `class`.
fn write_value(out: &mut Vec<u8>, redaction: &Redaction, class: Class, raw: Raw<'_>) {
    match class {
        Class::Redacted => return write_str(out, REDACTED),
        Class::Outcome => {
            let outcome = match raw.text().as_ref() {
                "ERROR" => "failure",
                "OK" => "success",
                _ => "unknown",
            };
            return write_str(out, outcome);
        }
        Class::Url => return write_str(out, &redaction.redact_query(&raw.text())),
        Class::Label | Class::Plain => {}
    }
    let quoted = class == Class::Label;
    let open = |out: &mut Vec<u8>| {
        if quoted {
            out.push(b'"');
        }
    };
    match raw {
        Raw::Str(s) => write_str(out, s),
        Raw::I64(v) => {
            open(out);
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            open(out);
        }
        Raw::U64(v) => {
            open(out);
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            open(out);
        }
        Raw::F64(v) if v.is_finite() => {
            open(out);
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
            open(out);
        }
        // JSON has no NaN nor infinity.
        Raw::F64(v) if quoted => write_str(out, &v.to_string()),
        Raw::F64(_) => out.extend_from_slice(b"null"),
        Raw::Bool(v) => {
            open(out);
            out.extend_from_slice(if v { b"true" } else { b"false" });
            open(out);
        }
        Raw::Debug(v) => {
            out.push(b'"');
            let _ = write!(Escaping(out), "{v:?}");
            out.push(b'"');
        }
        Raw::Error(v) => {
            out.push(b'"');
            let _ = write!(Escaping(out), "{v}");
            out.push(b'"');
        }
    }
}

/// Appends `,"name":`.
pub(super) fn write_key(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    write_str(out, name);
    out.push(b':');
}

/// The fields a span was created or recorded with: redacted, under their ECS names, and
/// rendered once as JSON members (`,"name":value`), so each line logged in the span copies
/// bytes.
#[derive(Debug, Default)]
pub(super) struct SpanFields {
    json: Vec<u8>,
    /// Each field's name and where its member is in `json` (a later record of the same field
    /// points elsewhere; its old bytes stay unused until the span closes).
    entries: Vec<(&'static str, usize, usize)>,
    /// Whether this is a server span (`otel.kind = "server"`), the ECS transaction.
    server: bool,
}

impl SpanFields {
    pub(super) fn with_capacity(fields: usize) -> Self {
        Self {
            // The crate's server span renders about 40 bytes per field.
            json: Vec::with_capacity(fields * 40),
            entries: Vec::with_capacity(fields),
            server: false,
        }
    }

    /// `(name, ,"name":value)` of each field.
    pub(super) fn members(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        self.entries
            .iter()
            .map(|&(name, start, end)| (name, &self.json[start..end]))
    }

    /// Renders the value of `spec`'s field; `first` when the span is being created (each
    /// field comes once).
    fn put(&mut self, redaction: &Redaction, spec: &FieldSpec, raw: Raw<'_>, first: bool) {
        if spec.name == "labels.otel_kind" {
            self.server = matches!(raw, Raw::Str("server"));
        }
        let start = self.json.len();
        spec.write_member(&mut self.json, redaction, raw);
        let end = self.json.len();
        if first && spec.unique {
            self.entries.push((spec.name, start, end));
        } else {
            self.set(spec.name, start, end);
        }
        // A server span is the ECS transaction: its ID is also `transaction.id`, which ECS
        // logging pairs with `trace.id` to tie log lines to traces.
        if spec.name == "span.id" && self.server {
            const KEY: &[u8] = b",\"transaction.id\":";
            let value_start = start + spec.key.len();
            let start = self.json.len();
            self.json.extend_from_slice(KEY);
            self.json.extend_from_within(value_start..end);
            let end = self.json.len();
            self.set("transaction.id", start, end);
        }
    }

    fn set(&mut self, name: &'static str, start: usize, end: usize) {
        match self.entries.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => *entry = (name, start, end),
            None => self.entries.push((name, start, end)),
        }
    }

    /// A visitor that renders the fields of a callsite whose specs are `specs` into these;
    /// `first` when the span is being created.
    pub(super) fn visitor<'a>(
        &'a mut self,
        specs: &'a [FieldSpec],
        redaction: &'a Redaction,
        first: bool,
    ) -> impl Visit + 'a {
        Fields(
            move |field: &Field, raw: Raw<'_>| match specs.get(field.index()) {
                Some(spec) => self.put(redaction, spec, raw, first),
                None => self.put(
                    redaction,
                    &FieldSpec::new(redaction, field.name()),
                    raw,
                    false,
                ),
            },
        )
    }
}

/// A `Visit` that hands every value to a closure.
pub(super) struct Fields<F>(pub(super) F);

impl<F: FnMut(&Field, Raw<'_>)> Visit for Fields<F> {
    fn record_str(&mut self, field: &Field, value: &str) {
        (self.0)(field, Raw::Str(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        (self.0)(field, Raw::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        (self.0)(field, Raw::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        (self.0)(field, Raw::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        (self.0)(field, Raw::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        (self.0)(field, Raw::Error(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        (self.0)(field, Raw::Debug(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &'static str, raw: Raw<'_>) -> String {
        let redaction = Redaction::default();
        let mut out = Vec::new();
        FieldSpec::new(&redaction, name).write_member(&mut out, &redaction, raw);
        let member = String::from_utf8(out).unwrap();
        let key = format!(",{}:", serde_json::to_string(ecs_name(name)).unwrap());
        member.strip_prefix(&key).expect("the key first").to_owned()
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let tricky = "a\"b\\c\nd\te\u{1}f\u{7f}é";
        let json = value("x", Raw::Str(tricky));
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), tricky);
        let debug = value("x", Raw::Debug(&tricky));
        assert_eq!(
            serde_json::from_str::<String>(&debug).unwrap(),
            format!("{tricky:?}")
        );
    }

    #[test]
    fn every_special_byte_is_escaped_wherever_it_falls() {
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for at in 0..24 {
                let mut text: String = "abcdefghijklmnopqrstuvwxyz".into();
                text.insert(at, special);
                let mut out = Vec::new();
                write_str(&mut out, &text);
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, text);
            }
        }
        // Bytes at or above 0x80 (UTF-8) and DEL stay as they are.
        let mut out = Vec::new();
        write_str(&mut out, "ünïcødé\u{7f}ünïcødé");
        assert_eq!(out, "\"ünïcødé\u{7f}ünïcødé\"".as_bytes());
    }

    #[test]
    fn values_take_their_ecs_types() {
        assert_eq!(value("http.response.status_code", Raw::U64(200)), "200");
        assert_eq!(
            value("labels.http_request_resend_count", Raw::U64(2)),
            "\"2\""
        );
        assert_eq!(value("labels.flag", Raw::Bool(true)), "\"true\"");
        assert_eq!(value("ratio", Raw::F64(0.5)), "0.5");
        assert_eq!(value("ratio", Raw::F64(f64::NAN)), "null");
        assert_eq!(value("delta", Raw::I64(-3)), "-3");
        assert_eq!(value("event.outcome", Raw::Str("ERROR")), "\"failure\"");
        assert_eq!(value("event.outcome", Raw::Str("OK")), "\"success\"");
        assert_eq!(value("event.outcome", Raw::Bool(true)), "\"unknown\"");
        assert_eq!(
            value("token", Raw::Str("s3cr3t")),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(
            value("url.query", Raw::Debug(&format_args!("a=1&sig=s3cr3t"))),
            format!("\"a=1&sig={REDACTED}\"")
        );
    }

    #[test]
    fn a_recorded_field_replaces_its_value_and_a_server_span_is_the_transaction() {
        let redaction = Redaction::default();
        let spec = |name| FieldSpec::new(&redaction, name);
        let mut fields = SpanFields::with_capacity(4);
        fields.put(&redaction, &spec("otel.kind"), Raw::Str("server"), false);
        fields.put(
            &redaction,
            &spec("span_id"),
            Raw::Str("00f067aa0ba902b7"),
            false,
        );
        let status = spec("http.response.status_code");
        fields.put(&redaction, &status, Raw::U64(500), false);
        fields.put(&redaction, &status, Raw::U64(200), false);
        let got: Vec<(&str, String)> = fields
            .members()
            .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "labels.otel_kind",
                    ",\"labels.otel_kind\":\"server\"".to_owned()
                ),
                ("span.id", ",\"span.id\":\"00f067aa0ba902b7\"".to_owned()),
                (
                    "transaction.id",
                    ",\"transaction.id\":\"00f067aa0ba902b7\"".to_owned()
                ),
                (
                    "http.response.status_code",
                    ",\"http.response.status_code\":200".to_owned()
                ),
            ]
        );
    }
}
