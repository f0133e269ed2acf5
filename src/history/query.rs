//! `GET /v1/stats/history`: parameters, limits, and the JSON and CSV answers.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::{lock, split_operation, split_series, Agg, HistoryHandle, Resolution};
use crate::stats::LatencyMs;

/// A parsed history query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Start (Unix seconds, inclusive; rounded down to the step).
    pub from: u64,
    /// End (Unix seconds, exclusive).
    pub to: u64,
    /// Bucket width.
    pub step: Resolution,
    /// Only this route template.
    pub route: Option<String>,
    /// Only this method.
    pub method: Option<String>,
    /// Only this status class (`2xx`, …, `none`).
    pub status_class: Option<String>,
    /// Only these dimension values.
    pub dimensions: Vec<(String, String)>,
    /// Timed operations (feature `operations`) of this name instead of requests.
    pub operation: Option<String>,
    /// Timed operations of this kind (`db`, `messaging_process`, `messaging_client`,
    /// `function`) instead of requests.
    pub operation_kind: Option<String>,
    /// Timed operations of this system (`db.system.name`, `messaging.system`, the
    /// function's module) instead of requests.
    pub operation_system: Option<String>,
    /// Timed operations on this collection or destination instead of requests.
    pub operation_target: Option<String>,
    /// CSV instead of JSON.
    pub csv: bool,
}

/// Why a query was refused (a 400, with this text).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter could not be parsed.
    BadParameter(String),
    /// A parameter that is neither a filter nor a configured dimension.
    UnknownParameter(String),
    /// The range holds more points than allowed.
    TooManyPoints {
        /// Points the range and step would give.
        requested: u64,
        /// The limit.
        limit: usize,
    },
    /// The store could not be read.
    Storage(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::BadParameter(m) => f.write_str(m),
            QueryError::UnknownParameter(p) => write!(
                f,
                "unknown parameter {p:?}: use from, to, step, route, method, status_class, operation, operation_kind, operation_system, operation_target, format or a configured dimension"
            ),
            QueryError::TooManyPoints { requested, limit } => write!(
                f,
                "the range holds {requested} points at this step; the limit is {limit}: use a coarser step (1m, 5m, 1h, 1d) or a shorter range"
            ),
            QueryError::Storage(e) => write!(f, "history could not be read: {e}"),
        }
    }
}

impl std::error::Error for QueryError {}

debug_as_display!(QueryError);

/// Decodes `application/x-www-form-urlencoded` text (`+` and `%XX`); `None` if malformed.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Unix seconds from an RFC 3339 timestamp (`2026-11-23T10:00:00Z`, offsets and fractions
/// allowed) or an integer.
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    match text.parse::<u64>() {
        Ok(secs) => Some(secs),
        Err(_) => crate::time_fmt::parse_rfc3339_nanos(text).map(|nanos| nanos / 1_000_000_000),
    }
}

impl HistoryQuery {
    /// Parses a query string. Defaults: `to` = now, `from` = `to` − 1 h, `step` = `1m`.
    pub(crate) fn parse(
        query: Option<&str>,
        wants_csv: bool,
        now: u64,
        dimension_keys: &[std::sync::Arc<str>],
        max_points: usize,
    ) -> Result<HistoryQuery, QueryError> {
        let (mut from, mut to, mut step) = (None, None, Resolution::Minute);
        let mut q = HistoryQuery {
            from: 0,
            to: 0,
            step,
            route: None,
            method: None,
            status_class: None,
            dimensions: Vec::new(),
            operation: None,
            operation_kind: None,
            operation_system: None,
            operation_target: None,
            csv: wants_csv,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || QueryError::BadParameter(format!("{k}: cannot decode {v:?}"));
            let (k, v) = (decode(k).ok_or_else(bad)?, decode(v).ok_or_else(bad)?);
            let time = |v: &str| {
                parse_time(v).ok_or_else(|| {
                    QueryError::BadParameter(format!(
                        "{k}={v:?}: expected RFC 3339 (2026-11-23T10:00:00Z) or Unix seconds"
                    ))
                })
            };
            match k.as_str() {
                "from" => from = Some(time(&v)?),
                "to" => to = Some(time(&v)?),
                "step" => {
                    step = Resolution::parse(&v).ok_or_else(|| {
                        QueryError::BadParameter(format!("step={v:?}: expected 1m, 5m, 1h or 1d"))
                    })?
                }
                "route" => q.route = Some(v),
                "method" => q.method = Some(v.to_ascii_uppercase()),
                "status_class" => q.status_class = Some(v.to_ascii_lowercase()),
                "operation" => q.operation = Some(v),
                "operation_kind" => q.operation_kind = Some(v),
                "operation_system" => q.operation_system = Some(v),
                "operation_target" => q.operation_target = Some(v),
                "format" => match v.as_str() {
                    "csv" => q.csv = true,
                    "json" => q.csv = false,
                    _ => {
                        return Err(QueryError::BadParameter(format!(
                            "format={v:?}: expected json or csv"
                        )))
                    }
                },
                key if dimension_keys.iter().any(|d| **d == *key) => {
                    q.dimensions.push((k.clone(), v))
                }
                _ => return Err(QueryError::UnknownParameter(k)),
            }
        }
        let filters_requests = q.route.is_some()
            || q.method.is_some()
            || q.status_class.is_some()
            || !q.dimensions.is_empty();
        if q.for_operations() && filters_requests {
            return Err(QueryError::BadParameter(
                "route, method, status_class and dimensions filter requests; operation, operation_kind, operation_system and operation_target, operations: use one or the other".into(),
            ));
        }
        let to = to.unwrap_or(now + 1);
        let from = from.unwrap_or(to.saturating_sub(3600));
        if from >= to {
            return Err(QueryError::BadParameter(format!(
                "from ({from}) must be before to ({to})"
            )));
        }
        let from = from - from % step.seconds();
        let requested = (to - from).div_ceil(step.seconds());
        if requested > max_points as u64 {
            return Err(QueryError::TooManyPoints {
                requested,
                limit: max_points,
            });
        }
        q.from = from;
        q.to = to;
        q.step = step;
        Ok(q)
    }

    /// Whether the query asks for operations rather than requests.
    fn for_operations(&self) -> bool {
        self.operation.is_some()
            || self.operation_kind.is_some()
            || self.operation_system.is_some()
            || self.operation_target.is_some()
    }

    fn matches(&self, series: &str) -> bool {
        if self.for_operations() {
            return split_operation(series).is_some_and(|op| {
                allows(self.operation.as_deref(), op.name)
                    && allows(self.operation_kind.as_deref(), op.kind)
                    && allows(self.operation_system.as_deref(), op.system)
                    && allows(self.operation_target.as_deref(), op.target)
            });
        }
        let Some(parts) = split_series(series) else {
            return false;
        };
        allows(self.route.as_deref(), parts.route)
            && allows(self.method.as_deref(), parts.method)
            && allows(self.status_class.as_deref(), parts.status_class)
            && self
                .dimensions
                .iter()
                .all(|(k, v)| parts.dims.iter().any(|(dk, dv)| dk == k && dv == v))
    }
}

/// A filter passes `value` when absent or equal.
fn allows(filter: Option<&str>, value: &str) -> bool {
    filter.is_none_or(|f| f == value)
}

/// One bucket of a history answer: all matching series merged.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// Bucket start, RFC 3339.
    pub time: String,
    /// Bucket start, Unix seconds.
    pub unix: u64,
    /// Requests in the bucket.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Latency of the completed requests: exact min, avg, max; percentiles within the
    /// sketch's error.
    pub latency_ms: Option<LatencyMs>,
    /// Requests whose client went away before the response ended (in `requests`, not in the
    /// latency).
    pub aborted: u64,
}

/// The answer to a history query (JSON form).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HistoryResponse {
    /// Whether this history is written to a file and survives a restart (false in memory
    /// mode, or when its file could not be opened: see `/v1/stats` `warnings`).
    pub durable: bool,
    /// False when the history file could not be read and only data held in memory is
    /// included (a failing disk; see `warning`).
    pub complete: bool,
    /// Why the answer is incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Range start (RFC 3339), rounded down to the step.
    pub from: String,
    /// Range end (RFC 3339, exclusive).
    pub to: String,
    /// `1m`, `5m`, `1h` or `1d`.
    pub step: &'static str,
    /// Bound on the percentiles' relative error.
    pub latency_relative_error: f64,
    /// Buckets that hold requests, oldest first (empty buckets are left out).
    pub points: Vec<HistoryPoint>,
}

fn rfc3339(secs: u64) -> String {
    crate::time_fmt::rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

impl HistoryResponse {
    /// CSV with a header line:
    /// `time,unix,requests,errors,error_rate,min_ms,avg_ms,p50_ms,p95_ms,p99_ms,max_ms,aborted`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "time,unix,requests,errors,error_rate,min_ms,avg_ms,p50_ms,p95_ms,p99_ms,max_ms,aborted\n",
        );
        for p in &self.points {
            let _ = write!(
                out,
                "{},{},{},{},{}",
                p.time, p.unix, p.requests, p.errors, p.error_rate
            );
            match &p.latency_ms {
                Some(l) => {
                    for v in [l.min, l.avg, l.p50, l.p95, l.p99, l.max] {
                        let _ = write!(out, ",{v}");
                    }
                }
                None => out.push_str(",,,,,,"),
            }
            let _ = writeln!(out, ",{}", p.aborted);
        }
        out
    }
}

impl HistoryHandle {
    /// Answers a parsed query from the stored buckets and the minutes not yet flushed.
    pub fn query(&self, q: &HistoryQuery) -> Result<HistoryResponse, QueryError> {
        let mut buckets: BTreeMap<u64, Agg> = BTreeMap::new();
        // Held until the pending minutes are read too: a flush moves them under this lock.
        let mut store = lock(&self.shared.store);
        let scanned = store.scan(q.step, q.from, q.to, |bucket, series, agg| {
            if q.matches(series) {
                buckets.entry(bucket).or_default().merge(&agg);
            }
        });
        let warning = scanned.err().map(|e| {
            tracing::warn!(target: "tower_observe::history", { "error.message" = %e }, "history file unreadable; answering from memory");
            format!("the history file could not be read ({e}); only the data held in memory is included")
        });
        self.shared.for_each_pending(|minute, series, agg| {
            let bucket = minute - minute % q.step.seconds();
            if (q.from..q.to).contains(&bucket) && q.matches(series) {
                buckets.entry(bucket).or_default().merge(agg);
            }
        });
        drop(store);
        let points = buckets
            .into_iter()
            .filter(|(_, agg)| agg.requests() > 0)
            .map(|(unix, agg)| {
                let requests = agg.requests();
                HistoryPoint {
                    time: rfc3339(unix),
                    unix,
                    requests,
                    errors: agg.errors,
                    error_rate: agg.errors as f64 / requests as f64,
                    latency_ms: agg
                        .latency
                        .summary(&[0.5, 0.95, 0.99])
                        .map(|s| LatencyMs::from_summary(&s)),
                    aborted: agg.aborted,
                }
            })
            .collect();
        Ok(HistoryResponse {
            durable: self.is_durable(),
            complete: warning.is_none(),
            warning,
            from: rfc3339(q.from),
            to: rfc3339(q.to),
            step: q.step.as_str(),
            latency_relative_error: crate::stats::LATENCY_RELATIVE_ERROR,
            points,
        })
    }

    /// Parses and answers a query string (what the endpoint does).
    pub fn query_str(
        &self,
        query: Option<&str>,
        wants_csv: bool,
    ) -> Result<HistoryQueryAnswer, QueryError> {
        let q = HistoryQuery::parse(
            query,
            wants_csv,
            self.shared.now_seconds(),
            self.dimension_keys(),
            self.shared.options.max_points,
        )?;
        Ok(HistoryQueryAnswer {
            csv: q.csv,
            response: self.query(&q)?,
        })
    }
}

/// A query's answer and the format it asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryQueryAnswer {
    /// Render as CSV.
    pub csv: bool,
    /// The data.
    pub response: HistoryResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-23T10:00:00Z"), Some(1_795_428_000));
        assert_eq!(
            parse_time("2026-11-23T11:30:00.250+01:30"),
            Some(1_795_428_000)
        );
        assert_eq!(parse_time("2000-02-29T12:00:00Z"), Some(951_825_600));
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-23",
            "2026-11-23T10:00:00",
            "2026-11-23T10:00:00+1",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let dims: Vec<std::sync::Arc<str>> = vec!["model".into()];
        let alphabet = b"0123456789-:T.Z+z %&=ab/{}\xff";
        for _ in 0..20_000 {
            let len = fastrand::usize(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[fastrand::usize(..alphabet.len())])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_time(&text);
            let _ = decode(&text);
            let _ = HistoryQuery::parse(Some(&text), false, 1_800_000_000, &dims, 10_000);
        }
    }

    #[test]
    fn limits_and_errors() {
        let dims: Vec<std::sync::Arc<str>> = vec!["model".into()];
        let parse = |q: &str| HistoryQuery::parse(Some(q), false, 1_800_000_000, &dims, 10_000);
        assert!(matches!(
            parse("from=0&to=1800000000&step=1m"),
            Err(QueryError::TooManyPoints { limit: 10_000, .. })
        ));
        assert!(parse("from=1000000000&to=1800000000&step=1d").is_ok());
        assert!(matches!(parse("step=2m"), Err(QueryError::BadParameter(_))));
        assert!(matches!(
            parse("colour=red"),
            Err(QueryError::UnknownParameter(_))
        ));
        assert!(matches!(
            parse("from=10&to=5"),
            Err(QueryError::BadParameter(_))
        ));
        let q = parse("route=%2Fusers%2F%7Bid%7D&model=gpt&format=csv&method=get").unwrap();
        assert_eq!(q.route.as_deref(), Some("/users/{id}"));
        assert_eq!(q.method.as_deref(), Some("GET"));
        assert_eq!(q.dimensions, vec![("model".to_owned(), "gpt".to_owned())]);
        assert!(q.csv);
        assert_eq!((q.from, q.to), (1_799_996_400, 1_800_000_001));
    }
}
