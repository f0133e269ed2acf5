//! The documents the routes serve, and the parsing of their query strings.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::capture::{ecs_name_of, hex_trace};
use super::record::{key, FieldValue, Kind, Record, LEVELS};
use super::store::Filter;
use crate::logs::ECS_VERSION;

/// Most log lines one `GET /v1/logs` page returns.
pub const MAX_LIMIT: usize = 1000;
/// Most lines one export returns.
pub const MAX_EXPORT_LIMIT: usize = 100_000;
/// Longest `q`, `request_id` or `route` accepted.
pub const MAX_TEXT_LEN: usize = 256;

fn time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn rfc3339(nanos: u64) -> String {
    crate::time_fmt::rfc3339(time(nanos))
}

fn span_hex(id: u64) -> String {
    format!("{id:016x}")
}

fn trace_hex(t: &[u8; 16]) -> String {
    crate::hex::id16(t).as_str().to_owned()
}

fn fields_of(r: &Record) -> BTreeMap<String, serde_json::Value> {
    r.fields
        .iter()
        .filter(|(n, _)| n != "message")
        .map(|(n, v)| (n.clone(), v.to_json()))
        .collect()
}

/// One log event, as `/v1/logs` and `/v1/requests/{id}` serve it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LogView {
    /// When it was logged (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: &'static str,
    /// The `tracing` target (or the `log` crate's logger).
    pub target: String,
    /// The message.
    pub message: String,
    /// The innermost stored span it was logged in (16 hex digits).
    pub span_id: Option<String>,
    /// Its other fields, redacted and capped.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// The trace it belongs to (32 hex digits).
    pub trace_id: Option<String>,
    /// The route of its request.
    pub route: Option<String>,
}

impl LogView {
    pub(crate) fn of(r: &Record) -> LogView {
        LogView {
            time: rfc3339(r.nanos()),
            level: LEVELS[usize::from(r.level.min(4))],
            target: r.target.clone(),
            message: r.message().to_owned(),
            span_id: r.span_id.map(span_hex),
            fields: fields_of(r),
            request_id: r.request_id.clone(),
            trace_id: r.trace.as_ref().map(trace_hex),
            route: r.route.clone(),
        }
    }
}

/// One span of a request, as `/v1/requests/{id}` serves it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SpanView {
    /// Its ID (16 hex digits; the request's span has its W3C span ID).
    pub span_id: String,
    /// Its parent's (or, for the request's span, the remote parent's).
    pub parent_span_id: Option<String>,
    /// Its name.
    pub name: String,
    /// When it started (RFC 3339).
    pub start: String,
    /// Milliseconds from the start of the request's first span.
    pub start_offset_ms: f64,
    /// How long it was open.
    pub duration_ms: Option<f64>,
    /// Its fields, redacted and capped.
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// What happened to one request: its spans (in start order) and its log lines (in time
/// order), with its route, method, status and duration; served at `GET /v1/requests/{id}`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RequestView {
    /// The request ID.
    pub request_id: Option<String>,
    /// The trace ID.
    pub trace_id: Option<String>,
    /// The route template.
    pub route: Option<String>,
    /// The HTTP method.
    pub method: Option<String>,
    /// The response status.
    pub status: Option<u16>,
    /// The request's duration (its server span's).
    pub duration_ms: Option<f64>,
    /// When its first record started (RFC 3339).
    pub start: String,
    /// Its spans, in start order.
    pub spans: Vec<SpanView>,
    /// Its log lines, in time order.
    pub logs: Vec<LogView>,
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

impl RequestView {
    /// The view of `records` (in key order); `None` when there are none.
    pub(crate) fn of(records: &[Record]) -> Option<RequestView> {
        let first = records.first()?;
        let origin = first.nanos();
        let spans: Vec<&Record> = records.iter().filter(|r| r.kind == Kind::Span).collect();
        let server = spans
            .iter()
            .find(|r| r.field("otel.kind").and_then(FieldValue::as_str) == Some("server"))
            .or(spans.first())
            .copied();
        let pick = |f: &dyn Fn(&Record) -> Option<String>| records.iter().find_map(f);
        let method = server.and_then(|s| {
            s.field("http.request.method_original")
                .or(s.field("http.request.method"))
                .and_then(FieldValue::as_str)
                .map(str::to_owned)
        });
        let status = records
            .iter()
            .find_map(|r| {
                r.field("http.response.status_code")
                    .and_then(FieldValue::as_u64)
            })
            .and_then(|s| u16::try_from(s).ok());
        Some(RequestView {
            request_id: pick(&|r| r.request_id.clone()),
            trace_id: pick(&|r| r.trace.as_ref().map(trace_hex)),
            route: server
                .and_then(|s| s.route.clone())
                .or_else(|| pick(&|r| r.route.clone())),
            method,
            status,
            duration_ms: server.and_then(|s| s.duration_ns).map(ms),
            start: rfc3339(origin),
            spans: spans
                .iter()
                .map(|s| SpanView {
                    span_id: span_hex(s.span_id.unwrap_or_default()),
                    parent_span_id: s.parent.map(span_hex),
                    name: s.name.clone(),
                    start: rfc3339(s.nanos()),
                    start_offset_ms: ms(s.nanos().saturating_sub(origin)),
                    duration_ms: s.duration_ns.map(ms),
                    fields: fields_of(s),
                })
                .collect(),
            logs: records
                .iter()
                .filter(|r| r.kind == Kind::Event)
                .map(LogView::of)
                .collect(),
        })
    }
}

/// A page of `GET /v1/logs`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LogPage {
    /// The events, newest first.
    pub logs: Vec<LogView>,
    /// Pass as `cursor` for the next (older) page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// The ECS document of an event (one line of the export): the field names of
/// [`EcsJsonLayer`](crate::logs::EcsJsonLayer).
pub(crate) fn ecs_document(
    r: &Record,
    service_name: &str,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut doc = serde_json::Map::new();
    doc.insert("@timestamp".into(), Value::from(rfc3339(r.nanos())));
    doc.insert(
        "log.level".into(),
        Value::from(LEVELS[usize::from(r.level.min(4))].to_ascii_lowercase()),
    );
    for (name, value) in &r.fields {
        let ecs = ecs_name_of(name);
        if doc.contains_key(ecs) {
            continue;
        }
        let value = if ecs == "event.outcome" {
            Value::from(match value.as_str() {
                Some("ERROR") => "failure",
                Some("OK") => "success",
                _ => "unknown",
            })
        } else if ecs.starts_with("labels.") {
            Value::from(value.to_text())
        } else {
            value.to_json()
        };
        doc.insert(ecs.to_owned(), value);
    }
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            doc.entry(name.to_owned()).or_insert(Value::from(v));
        }
    };
    put("trace.id", r.trace.as_ref().map(trace_hex));
    put("span.id", r.span_id.map(span_hex));
    put("http.request.id", r.request_id.clone());
    put("labels.http_route", r.route.clone());
    put("log.logger", Some(r.target.clone()));
    put("service.name", Some(service_name.to_owned()));
    put("ecs.version", Some(ECS_VERSION.to_owned()));
    doc
}

/// A malformed or oversized query: a 400 naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadQuery(pub(crate) String);

/// A parsed `GET /v1/logs` (or export) query.
#[derive(Debug, Clone)]
pub(crate) struct LogQuery {
    pub(crate) filter: Filter,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<u128>,
    /// The selection as text, for the audit line (never the token).
    pub(crate) selection: String,
}

/// Decodes `%XX` and `+` of a query value.
fn decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(crate::hex::byte(b.get(i + 1..i + 3)?)?);
                i += 2;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Decodes `%XX` of a path segment.
pub(crate) fn decode_segment(text: &str) -> Option<String> {
    if text.contains('+') {
        return decode(&text.replace('+', "%2B"));
    }
    decode(text)
}

/// Unix nanoseconds from RFC 3339 (`2026-11-23T10:00:00.250Z`, offsets allowed) or integer
/// unix seconds.
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    match text.parse::<u64>() {
        Ok(secs) => secs.checked_mul(1_000_000_000),
        Err(_) => crate::time_fmt::parse_rfc3339_nanos(text),
    }
}

impl LogQuery {
    /// Parses a query string; `max_limit` is the largest `limit` (and `default_limit` the
    /// one used without it).
    pub(crate) fn parse(
        query: Option<&str>,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<LogQuery, BadQuery> {
        let mut filter = Filter {
            to: u128::MAX,
            ..Filter::default()
        };
        let mut limit = default_limit;
        let mut cursor = None;
        let mut selection = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            if name == "token" {
                continue;
            }
            let value = decode(raw)
                .ok_or_else(|| BadQuery(format!("{name}: not valid percent-encoded UTF-8")))?;
            let text = |what: &str| -> Result<String, BadQuery> {
                if value.len() > MAX_TEXT_LEN {
                    return Err(BadQuery(format!(
                        "{what} is longer than {MAX_TEXT_LEN} bytes"
                    )));
                }
                Ok(value.clone())
            };
            let time_key = || -> Result<u128, BadQuery> {
                let nanos = parse_time(&value).ok_or_else(|| {
                    BadQuery(format!(
                        "{name}: expected an RFC 3339 time (2026-11-23T10:00:00Z) or unix seconds"
                    ))
                })?;
                Ok(key(nanos, 0))
            };
            match name {
                "request_id" => filter.request_id = Some(text("request_id")?),
                "trace_id" => {
                    filter.trace = Some(hex_trace(&value).ok_or_else(|| {
                        BadQuery("trace_id: expected 32 hexadecimal digits".into())
                    })?);
                }
                "from" => filter.from = time_key()?,
                "to" => filter.to = time_key()?,
                "level" => {
                    filter.level = LEVELS
                        .iter()
                        .position(|l| l.eq_ignore_ascii_case(&value))
                        .ok_or_else(|| {
                            BadQuery("level: expected trace, debug, info, warn or error".into())
                        })? as u8;
                }
                "route" => filter.route = Some(text("route")?),
                "q" => filter.text = Some(text("q")?.to_lowercase()),
                "limit" => {
                    limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=max_limit).contains(n))
                        .ok_or_else(|| BadQuery(format!("limit: expected 1 to {max_limit}")))?;
                }
                "cursor" => {
                    cursor = Some(
                        (value.len() == 32)
                            .then(|| u128::from_str_radix(&value, 16).ok())
                            .flatten()
                            .ok_or_else(|| {
                                BadQuery("cursor: expected a cursor from a previous page".into())
                            })?,
                    );
                }
                // Unknown parameters are ignored, like the other endpoints do.
                _ => continue,
            }
            if name != "cursor" {
                selection.push(format!("{name}={value}"));
            }
        }
        if filter.from >= filter.to {
            return Err(BadQuery("from must be before to".into()));
        }
        Ok(LogQuery {
            filter,
            limit,
            cursor,
            selection: selection.join("&"),
        })
    }
}

/// The cursor text of a key.
pub(crate) fn cursor_text(key: u128) -> String {
    format!("{key:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_nanoseconds() {
        assert_eq!(parse_time("10"), Some(10_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01.250Z"), Some(1_250_000_000));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn bad_queries_name_the_limit() {
        let parse = |q: &str| LogQuery::parse(Some(q), 100, MAX_LIMIT);
        assert!(parse("limit=1001").unwrap_err().0.contains("1000"));
        assert!(parse("from=yesterday").unwrap_err().0.contains("RFC 3339"));
        let long = format!("q={}", "a".repeat(257));
        assert!(parse(&long).unwrap_err().0.contains("256"));
        assert!(parse("trace_id=xyz").unwrap_err().0.contains("32"));
        assert!(parse("level=loud").is_err());
        assert!(parse("from=20&to=10").is_err());
        let ok = parse("request_id=a%20b&level=WARN&token=secret&limit=5").unwrap();
        assert_eq!(ok.filter.request_id.as_deref(), Some("a b"));
        assert_eq!(ok.filter.level, 3);
        assert_eq!(ok.limit, 5);
        assert!(!ok.selection.contains("secret"));
    }
}
