//! The notable requests of the last minutes — the slowest and the latest failures — kept by
//! the dashboard as a record sink and served at `GET /v1/requests`, so the console's table can
//! open a request's view (its spans and log lines, from the log store) from a row.
//!
//! Bounded: at most [`MAX_SLOW`] + [`MAX_FAILED`] entries, each dropped [`WINDOW`] after its
//! request ended. The request path pays one or two atomic loads for a request that is not
//! notable (a success no slower than the slowest kept, while none of those has expired); a
//! notable one takes a lock with `try_lock`, so a request never waits on another (under
//! contention the entry is skipped: this is a sample of notable requests, not a log).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::observer::{HttpServerRecord, RecordSink};

/// How long a request stays in the table after it ended.
pub(crate) const WINDOW: Duration = Duration::from_secs(5 * 60);
/// The slowest requests of the window kept.
pub(crate) const MAX_SLOW: usize = 20;
/// The latest failed requests of the window kept.
pub(crate) const MAX_FAILED: usize = 20;

#[derive(Debug, Clone)]
struct Entry {
    /// Tells one request apart when it is both slow and failed.
    seq: u64,
    request_id: Option<Box<str>>,
    trace_id: Option<[u8; 16]>,
    method: &'static str,
    route: Box<str>,
    status: Option<u16>,
    error_type: Option<Box<str>>,
    duration: Duration,
    end: SystemTime,
}

#[derive(Debug, Default)]
struct Kept {
    seq: u64,
    /// Unordered; at most `MAX_SLOW`.
    slow: Vec<Entry>,
    /// Oldest first; at most `MAX_FAILED`.
    failed: VecDeque<Entry>,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct NotableRequests {
    /// A success no slower than this (nanoseconds) is not notable...
    threshold_nanos: AtomicU64,
    /// ...until this time (milliseconds since the epoch), when the oldest kept slow request
    /// expires (0: the list is not full, everything is a candidate).
    threshold_until_ms: AtomicU64,
    kept: Mutex<Kept>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RecordSink for NotableRequests {
    fn record_http_server(&self, record: &HttpServerRecord<'_>) {
        // An aborted request ended when its client chose: neither slow nor failed.
        let failed = record
            .error_type
            .is_some_and(|e| e != crate::names::ERROR_ABORTED);
        if record.error_type.is_some() && !failed {
            return;
        }
        let nanos = u64::try_from(record.duration.as_nanos()).unwrap_or(u64::MAX);
        let end_ms = millis(record.end);
        if !failed
            && nanos <= self.threshold_nanos.load(Relaxed)
            && end_ms < self.threshold_until_ms.load(Relaxed)
        {
            return;
        }
        let Ok(mut kept) = self.kept.try_lock() else {
            return;
        };
        kept.seq += 1;
        let entry = Entry {
            seq: kept.seq,
            request_id: record.request_id.map(Into::into),
            trace_id: record.trace_id,
            method: record.method,
            route: record.route.into(),
            status: record.status,
            error_type: record.error_type.map(Into::into),
            duration: record.duration,
            end: record.end,
        };
        kept.expire(end_ms);
        if failed {
            kept.failed.push_back(entry.clone());
            while kept.failed.len() > MAX_FAILED {
                kept.failed.pop_front();
            }
        }
        if kept.slow.len() < MAX_SLOW {
            kept.slow.push(entry);
        } else if let Some((i, fastest)) =
            kept.slow.iter().enumerate().min_by_key(|(_, e)| e.duration)
        {
            if fastest.duration < entry.duration {
                kept.slow[i] = entry;
            }
        }
        self.update_threshold(&kept);
    }
}

impl Kept {
    /// Drops what ended more than [`WINDOW`] before `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(WINDOW.as_millis() as u64);
        self.slow.retain(|e| millis(e.end) >= oldest);
        while self.failed.front().is_some_and(|e| millis(e.end) < oldest) {
            self.failed.pop_front();
        }
    }
}

impl NotableRequests {
    fn update_threshold(&self, kept: &Kept) {
        let (threshold, until) = if kept.slow.len() < MAX_SLOW {
            (0, 0)
        } else {
            let fastest = kept
                .slow
                .iter()
                .map(|e| e.duration)
                .min()
                .unwrap_or_default();
            let first_expiry = kept.slow.iter().map(|e| millis(e.end)).min().unwrap_or(0)
                + WINDOW.as_millis() as u64;
            (
                u64::try_from(fastest.as_nanos()).unwrap_or(u64::MAX),
                first_expiry,
            )
        };
        self.threshold_nanos.store(threshold, Relaxed);
        self.threshold_until_ms.store(until, Relaxed);
    }

    /// The kept requests as of `now`, newest first.
    pub(crate) fn list(&self, now: SystemTime) -> RecentRequests {
        let mut kept = crate::sync::lock(&self.kept);
        kept.expire(millis(now));
        self.update_threshold(&kept);
        let mut all: Vec<(Entry, bool, bool)> = Vec::new();
        for e in &kept.failed {
            all.push((e.clone(), false, true));
        }
        for e in &kept.slow {
            match all.iter_mut().find(|(x, _, _)| x.seq == e.seq) {
                Some(found) => found.1 = true,
                None => all.push((e.clone(), true, false)),
            }
        }
        drop(kept);
        all.sort_by(|a, b| b.0.end.cmp(&a.0.end).then(b.0.seq.cmp(&a.0.seq)));
        RecentRequests {
            window_seconds: WINDOW.as_secs(),
            requests: all
                .into_iter()
                .map(|(e, slow, failed)| RecentRequest {
                    request_id: e.request_id.map(Into::into),
                    trace_id: e.trace_id.map(|t| crate::hex::to_string(&t)),
                    method: e.method,
                    route: e.route.into(),
                    status: e.status,
                    error_type: e.error_type.map(Into::into),
                    duration_ms: e.duration.as_secs_f64() * 1e3,
                    time: crate::time_fmt::rfc3339(e.end),
                    slow,
                    failed,
                })
                .collect(),
        }
    }
}

/// The document served at `GET /v1/requests`.
#[derive(Debug, Serialize)]
pub(crate) struct RecentRequests {
    window_seconds: u64,
    requests: Vec<RecentRequest>,
}

#[derive(Debug, Serialize)]
struct RecentRequest {
    request_id: Option<String>,
    trace_id: Option<String>,
    method: &'static str,
    route: String,
    status: Option<u16>,
    error_type: Option<String>,
    duration_ms: f64,
    time: String,
    /// Among the slowest of the window.
    slow: bool,
    /// Failed.
    failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sink: &NotableRequests, id: &str, millis: u64, error: Option<&str>, end: SystemTime) {
        sink.record_http_server(&HttpServerRecord {
            method: "GET",
            route: "/r",
            scheme: "http",
            status: Some(if error.is_some() { 500 } else { 200 }),
            error_type: error,
            dimensions: &[],
            duration: Duration::from_millis(millis),
            end,
            request_body_bytes: 0,
            response_body_bytes: 0,
            request_id: Some(id),
            trace_id: Some([7; 16]),
        });
    }

    #[test]
    fn the_ring_is_bounded_keeps_the_slowest_and_latest_failures_and_expires() {
        let sink = NotableRequests::default();
        let t0 = SystemTime::now();
        for i in 0..10_000u64 {
            let at = t0 + Duration::from_millis(i);
            let error = (i % 7 == 0).then_some("500");
            record(&sink, &format!("r{i}"), i % 1000, error, at);
            if i % 13 == 0 {
                record(&sink, &format!("a{i}"), 60_000, Some("aborted"), at);
            }
        }
        let now = t0 + Duration::from_secs(10);
        let list = sink.list(now);
        let kept = &list.requests;
        assert!(kept.len() <= MAX_SLOW + MAX_FAILED, "{}", kept.len());
        // The slowest 20 are the 999 ms ones; the aborted ones are not there.
        let slow: Vec<_> = kept.iter().filter(|r| r.slow).collect();
        assert_eq!(slow.len(), MAX_SLOW);
        assert!(slow.iter().all(|r| r.duration_ms >= 998.0), "{slow:?}");
        assert!(kept
            .iter()
            .all(|r| r.error_type.as_deref() != Some("aborted")));
        // The latest 20 failures, newest first overall.
        let failed: Vec<_> = kept.iter().filter(|r| r.failed).collect();
        assert_eq!(failed.len(), MAX_FAILED);
        assert_eq!(failed[0].request_id.as_deref(), Some("r9996"));
        assert!(kept.windows(2).all(|w| w[0].time >= w[1].time));
        assert_eq!(
            kept[0].trace_id.as_deref(),
            Some("07070707070707070707070707070707")
        );
        // Past the window, all gone; a fast request then qualifies again.
        let later = now + WINDOW + Duration::from_secs(1);
        assert!(sink.list(later).requests.is_empty());
        record(&sink, "late", 1, None, later);
        assert_eq!(sink.list(later).requests.len(), 1);
    }
}
