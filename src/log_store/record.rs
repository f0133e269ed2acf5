//! One stored event or span, and its compact binary encoding.
//!
//! A record is stored under a 128-bit key, `unix nanoseconds << 64 | sequence`, so that the
//! primary table is the time index. Its value is:
//!
//! ```text
//! kind u8 | level u8 | flags u8
//! [trace id 16 bytes] [span id u64 LE] [parent span id u64 LE] [duration ns varint]
//! [request id str] [route str] target str | name str
//! (field name str | tag u8 | value)*        until the end (a name repeated: the last wins)
//! ```
//!
//! where `str` is a varint length and UTF-8 bytes, and the bracketed parts are present when
//! their flag bit is set.

/// An event or a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Event = 0,
    Span = 1,
}

/// A field's value, as `tracing` recorded it (debug and error values as text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Str(s) => serde_json::Value::from(s.as_str()),
            FieldValue::I64(v) => serde_json::Value::from(*v),
            FieldValue::U64(v) => serde_json::Value::from(*v),
            FieldValue::F64(v) => serde_json::Number::from_f64(*v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            FieldValue::Bool(v) => serde_json::Value::from(*v),
        }
    }

    /// The value as a string (ECS labels are keywords).
    pub(crate) fn to_text(&self) -> String {
        match self {
            FieldValue::Str(s) => s.clone(),
            FieldValue::I64(v) => v.to_string(),
            FieldValue::U64(v) => v.to_string(),
            FieldValue::F64(v) => v.to_string(),
            FieldValue::Bool(v) => v.to_string(),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            FieldValue::U64(v) => Some(*v),
            FieldValue::I64(v) => u64::try_from(*v).ok(),
            FieldValue::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

const HAS_TRACE: u8 = 1;
const HAS_SPAN: u8 = 2;
const HAS_PARENT: u8 = 4;
const HAS_DURATION: u8 = 8;
const HAS_REQUEST_ID: u8 = 16;
const HAS_ROUTE: u8 = 32;

/// Level names, by the level byte.
pub(crate) const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

pub(crate) fn level_byte(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::TRACE => 0,
        tracing::Level::DEBUG => 1,
        tracing::Level::INFO => 2,
        tracing::Level::WARN => 3,
        tracing::Level::ERROR => 4,
    }
}

/// The key of a record at `nanos` (unix) with sequence number `seq`.
pub(crate) fn key(nanos: u64, seq: u64) -> u128 {
    (u128::from(nanos) << 64) | u128::from(seq)
}

/// The unix nanoseconds of a key.
pub(crate) fn key_nanos(key: u128) -> u64 {
    (key >> 64) as u64
}

/// What a record says before its fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header<'a> {
    pub(crate) trace: Option<[u8; 16]>,
    pub(crate) span_id: Option<u64>,
    pub(crate) parent: Option<u64>,
    pub(crate) duration_ns: Option<u64>,
    /// UTF-8, as bytes so that the capturing layer writes its inline copies without checking
    /// them again; readers check them ([`index_keys`], [`Record::decode`]).
    pub(crate) request_id: Option<&'a [u8]>,
    pub(crate) route: Option<&'a [u8]>,
    pub(crate) target: &'a str,
    pub(crate) name: &'a str,
}

/// Writes a record: the header first, then [`put_field`] for each field.
pub(crate) fn put_header(out: &mut Vec<u8>, kind: Kind, level: u8, h: &Header<'_>) {
    let mut flags = 0;
    for (present, bit) in [
        (h.trace.is_some(), HAS_TRACE),
        (h.span_id.is_some(), HAS_SPAN),
        (h.parent.is_some(), HAS_PARENT),
        (h.duration_ns.is_some(), HAS_DURATION),
        (h.request_id.is_some(), HAS_REQUEST_ID),
        (h.route.is_some(), HAS_ROUTE),
    ] {
        if present {
            flags |= bit;
        }
    }
    out.extend_from_slice(&[kind as u8, level, flags]);
    if let Some(trace) = &h.trace {
        out.extend_from_slice(trace);
    }
    for v in [h.span_id, h.parent].into_iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(d) = h.duration_ns {
        put_varint(out, d);
    }
    for s in [h.request_id, h.route].into_iter().flatten() {
        put_bytes(out, s);
    }
    put_str(out, h.target);
    put_str(out, h.name);
}

/// Appends one field.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &str, value: FieldRef<'_>) {
    put_str(out, name);
    match value {
        FieldRef::Str(s) => {
            out.push(0);
            put_str(out, s);
        }
        FieldRef::I64(v) => {
            out.push(1);
            put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
        }
        FieldRef::U64(v) => {
            out.push(2);
            put_varint(out, v);
        }
        FieldRef::F64(v) => {
            out.push(3);
            out.extend_from_slice(&v.to_le_bytes());
        }
        FieldRef::Bool(v) => out.extend_from_slice(&[4, u8::from(v)]),
    }
}

/// A borrowed field value, for encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldRef<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl<'a> From<&'a FieldValue> for FieldRef<'a> {
    fn from(v: &'a FieldValue) -> Self {
        match v {
            FieldValue::Str(s) => FieldRef::Str(s),
            FieldValue::I64(v) => FieldRef::I64(*v),
            FieldValue::U64(v) => FieldRef::U64(*v),
            FieldValue::F64(v) => FieldRef::F64(*v),
            FieldValue::Bool(v) => FieldRef::Bool(*v),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

/// The header of an encoded record, and the reader positioned at its fields.
fn read_header(bytes: &[u8]) -> Option<(Kind, u8, Header<'_>, Reader<'_>)> {
    let mut r = Reader { bytes };
    let kind = match r.byte()? {
        0 => Kind::Event,
        1 => Kind::Span,
        _ => return None,
    };
    let level = r.byte()?.min(4);
    let flags = r.byte()?;
    let mut h = Header::default();
    if flags & HAS_TRACE != 0 {
        h.trace = Some(r.take(16)?.try_into().ok()?);
    }
    if flags & HAS_SPAN != 0 {
        h.span_id = Some(r.u64()?);
    }
    if flags & HAS_PARENT != 0 {
        h.parent = Some(r.u64()?);
    }
    if flags & HAS_DURATION != 0 {
        h.duration_ns = Some(r.varint()?);
    }
    if flags & HAS_REQUEST_ID != 0 {
        h.request_id = Some(r.bytes()?);
    }
    if flags & HAS_ROUTE != 0 {
        h.route = Some(r.bytes()?);
    }
    h.target = r.str()?;
    h.name = r.str()?;
    Some((kind, level, h, r))
}

/// The request ID and trace ID of an encoded record (what the indexes need).
pub(crate) fn index_keys(bytes: &[u8]) -> (Option<&str>, Option<[u8; 16]>) {
    match read_header(bytes) {
        Some((_, _, h, _)) => (
            h.request_id.and_then(|b| std::str::from_utf8(b).ok()),
            h.trace,
        ),
        None => (None, None),
    }
}

/// Text read as bytes, owned: `None` when it is not UTF-8 (never written so).
fn owned_text(bytes: Option<&[u8]>) -> Option<Option<String>> {
    bytes
        .map(|b| std::str::from_utf8(b).map(str::to_owned))
        .transpose()
        .ok()
}

/// A decoded record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) key: u128,
    pub(crate) kind: Kind,
    pub(crate) level: u8,
    pub(crate) trace: Option<[u8; 16]>,
    pub(crate) span_id: Option<u64>,
    pub(crate) parent: Option<u64>,
    pub(crate) duration_ns: Option<u64>,
    pub(crate) request_id: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) target: String,
    pub(crate) name: String,
    pub(crate) fields: Vec<(String, FieldValue)>,
}

impl Record {
    pub(crate) fn decode(key: u128, bytes: &[u8]) -> Option<Record> {
        let (kind, level, h, mut r) = read_header(bytes)?;
        let mut fields = Vec::new();
        while !r.bytes.is_empty() {
            let name = r.str()?;
            let value = match r.byte()? {
                0 => FieldValue::Str(r.str()?.to_owned()),
                1 => {
                    let z = r.varint()?;
                    FieldValue::I64(((z >> 1) as i64) ^ -((z & 1) as i64))
                }
                2 => FieldValue::U64(r.varint()?),
                3 => FieldValue::F64(f64::from_le_bytes(r.take(8)?.try_into().ok()?)),
                4 => FieldValue::Bool(r.byte()? != 0),
                _ => return None,
            };
            // A span field recorded again was appended: the later value wins, in the place
            // of the first.
            match fields
                .iter_mut()
                .find(|(n, _): &&mut (String, FieldValue)| n == name)
            {
                Some(slot) => slot.1 = value,
                None => fields.push((name.to_owned(), value)),
            }
        }
        Some(Record {
            key,
            kind,
            level,
            trace: h.trace,
            span_id: h.span_id,
            parent: h.parent,
            duration_ns: h.duration_ns,
            request_id: owned_text(h.request_id)?,
            route: owned_text(h.route)?,
            target: h.target.to_owned(),
            name: h.name.to_owned(),
            fields,
        })
    }

    pub(crate) fn nanos(&self) -> u64 {
        key_nanos(self.key)
    }

    pub(crate) fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The event's message (its `message` field).
    pub(crate) fn message(&self) -> &str {
        self.field("message")
            .and_then(FieldValue::as_str)
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let mut out = Vec::new();
        let header = Header {
            trace: Some([7; 16]),
            span_id: Some(42),
            parent: None,
            duration_ns: Some(1_500_000),
            request_id: Some(b"req-1"),
            route: Some(b"/users/{id}"),
            target: "app::db",
            name: "query",
        };
        put_header(&mut out, Kind::Span, 2, &header);
        put_field(&mut out, "rows", FieldRef::I64(-3));
        put_field(&mut out, "n", FieldRef::U64(300));
        put_field(&mut out, "ratio", FieldRef::F64(0.5));
        put_field(&mut out, "ok", FieldRef::Bool(true));
        put_field(&mut out, "message", FieldRef::Str("héllo"));
        assert_eq!(index_keys(&out), (Some("req-1"), Some([7; 16])));
        let r = Record::decode(key(5, 1), &out).unwrap();
        assert_eq!(r.kind, Kind::Span);
        assert_eq!(r.level, 2);
        assert_eq!(r.span_id, Some(42));
        assert_eq!(r.parent, None);
        assert_eq!(r.duration_ns, Some(1_500_000));
        assert_eq!(r.route.as_deref(), Some("/users/{id}"));
        assert_eq!(r.target, "app::db");
        assert_eq!(r.name, "query");
        assert_eq!(r.field("rows"), Some(&FieldValue::I64(-3)));
        assert_eq!(r.field("n"), Some(&FieldValue::U64(300)));
        assert_eq!(r.field("ratio"), Some(&FieldValue::F64(0.5)));
        assert_eq!(r.field("ok"), Some(&FieldValue::Bool(true)));
        assert_eq!(r.message(), "héllo");
        assert_eq!(r.nanos(), 5);
        // A span field recorded again: the later value, in the first one's place.
        let mut again = out.clone();
        put_field(&mut again, "rows", FieldRef::I64(7));
        let r = Record::decode(key(5, 1), &again).unwrap();
        assert_eq!(r.field("rows"), Some(&FieldValue::I64(7)));
        assert_eq!(r.fields.len(), 5);
        assert_eq!(r.fields[0].0, "rows");
        // A truncated record is refused, not misread.
        assert!(Record::decode(0, &out[..out.len() - 2]).is_none());
    }
}
