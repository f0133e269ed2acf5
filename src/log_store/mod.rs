#![doc = include_str!("../../docs/log-store.md")]

mod capture;
mod query;
mod record;
mod store;

pub use capture::LogStoreLayer;
pub use query::{
    LogPage, LogView, RequestView, SpanView, MAX_EXPORT_LIMIT, MAX_LIMIT, MAX_TEXT_LEN,
};

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use metrics::Counter;

use crate::access::{refusal, AccessToken};
use crate::clock::Clock;
use crate::logs::redact::Redaction;
use crate::observer::background::{self, Background};
use crate::observer::handles;
use crate::observer::{Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::{with_type, EndpointBody};
use crate::sync::lock;
use crate::{names, Observer, ObserverBuilder};
use capture::{Capture, Captured};
use query::{cursor_text, ecs_document, BadQuery, LogQuery};
use record::{key, Record};
use store::Db;

/// Path of the log search (`GET`, logs token).
pub const LOGS_PATH: &str = "/v1/logs";
/// Path of the NDJSON export of a selection (`GET`, logs token).
pub const LOGS_EXPORT_PATH: &str = "/v1/logs/export";
/// Path of one request's view: `/v1/requests/{id}`, by request ID or trace ID (`GET`, logs
/// token).
pub const REQUEST_PATH: &str = "/v1/requests/{id}";

/// Log store settings; given to [`ObserverBuilder::log_store`].
#[derive(Clone)]
#[must_use]
pub struct LogStoreOptions {
    path: Option<PathBuf>,
    token: Option<String>,
    flush_interval: Duration,
    retention: Duration,
    max_bytes: u64,
    buffer: usize,
    unsampled_spans: bool,
    service_name: String,
    redaction: Redaction,
}

// Never prints the token.
impl std::fmt::Debug for LogStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStoreOptions")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("flush_interval", &self.flush_interval)
            .field("retention", &self.retention)
            .field("max_bytes", &self.max_bytes)
            .field("buffer", &self.buffer)
            .field("unsampled_spans", &self.unsampled_spans)
            .finish_non_exhaustive()
    }
}

impl LogStoreOptions {
    /// Records kept in memory only (tests, or services that want no disk); at most 64 MiB
    /// unless [`max_bytes`](Self::max_bytes) says otherwise.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            token: None,
            flush_interval: Duration::from_secs(1),
            retention: Duration::from_secs(14 * 24 * 3600),
            max_bytes: 64 << 20,
            buffer: 16_384,
            unsampled_spans: false,
            service_name: "unknown".to_owned(),
            redaction: Redaction::default(),
        }
    }

    /// Records in the redb file at `path` (created, with its directories, if missing); at
    /// most 1 GiB of records unless [`max_bytes`](Self::max_bytes) says otherwise.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            max_bytes: 1 << 30,
            ..Self::in_memory()
        }
    }

    /// The token that opens `GET /v1/requests/{id}`, `GET /v1/logs` and
    /// `GET /v1/logs/export` (a bearer token, or `?token=` for a browser link). Without one
    /// the routes do not exist; the store still captures, and [`LogStoreHandle::request`]
    /// reads it.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How often captured records are written (default 1 s): at most this much is lost in a
    /// crash. At least 10 ms. Under load the writer runs sooner, whenever a quarter of the
    /// [`buffer`](Self::buffer) has filled since it last woke.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long records are kept (default 14 days).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// Most bytes of records kept (keys, encoded records, index entries); the oldest go
    /// first. The redb file is larger: its B-tree pages and the space copy-on-write commits
    /// free took about 3.4 times these bytes in the bench (`docs/performance.md`), so allow
    /// for that when sizing the disk.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Records waiting to be written (default 16,384): when the buffer is full, new ones are
    /// dropped and counted in `tower_observe_log_store_dropped_total`; the request never
    /// waits. Memory is bounded by this, not by traffic. The writer is woken each time a
    /// quarter of it fills, so records are dropped only when arriving faster than the writer
    /// stores them (about 200,000 a second per core of writer CPU in `benches/load.rs`, in
    /// memory; see `docs/log-store.md`).
    pub fn buffer(mut self, records: usize) -> Self {
        self.buffer = records.max(1);
        self
    }

    /// Also stores the spans of requests whose trace is not sampled (default: their events
    /// are stored, with their IDs, but not their spans).
    pub fn unsampled_spans(mut self, keep: bool) -> Self {
        self.unsampled_spans = keep;
        self
    }

    /// `service.name` of the exported ECS lines.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Also redacts fields with this name (or last dotted segment), case-insensitively, as
    /// [`EcsJsonLayer::redact_field`](crate::logs::EcsJsonLayer::redact_field) does.
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

/// What the store holds; see [`LogStoreHandle::storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStorage {
    /// Events and spans stored.
    pub records: u64,
    /// Their keys, encoded records and index entries.
    pub bytes: u64,
}

/// A failure to read the store.
#[derive(Debug)]
pub struct LogStoreError(String);

impl std::fmt::Display for LogStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log store unavailable: {}", self.0)
    }
}

impl std::error::Error for LogStoreError {}

impl From<redb::Error> for LogStoreError {
    fn from(e: redb::Error) -> Self {
        LogStoreError(e.to_string())
    }
}

/// The log store of one observer; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct LogStoreHandle {
    shared: Arc<Shared>,
    capture: Arc<Capture>,
}

impl std::fmt::Debug for LogStoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStoreHandle")
            .field("durable", &self.is_durable())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

struct Shared {
    options: LogStoreOptions,
    clock: Clock,
    receiver: Mutex<Receiver<Captured>>,
    db: store::Shared,
    /// Serializes flushes (the background tick and explicit ones).
    flushing: Mutex<()>,
    write_errors: AtomicU64,
    write_error_counter: OnceLock<Counter>,
    degraded_logged: AtomicBool,
    token: Option<AccessToken>,
    flusher: OnceLock<Background>,
}

impl LogStoreHandle {
    fn open(options: LogStoreOptions, clock: Clock) -> LogStoreHandle {
        let db = match &options.path {
            None => Db::in_memory(),
            Some(path) => Db::open(path).unwrap_or_else(|e| {
                tracing::error!(
                    target: "tower_observe::log_store",
                    { "file.path" = %path.display(), "error.message" = %e },
                    "cannot open the log store file; keeping logs in memory"
                );
                Db::in_memory()
            }),
        };
        let (sender, receiver) = mpsc::sync_channel(options.buffer);
        let capture = Arc::new(Capture {
            sender,
            clock: clock.clone(),
            redaction: options.redaction.clone(),
            unsampled_spans: options.unsampled_spans,
            // Keys of records of one nanosecond differ by their sequence, across restarts too.
            seq: AtomicU64::new(crate::request_id::random_u64() >> 2),
            dropped: AtomicU64::new(0),
            dropped_counter: Counter::noop(),
            callsites: capture::Callsites::default(),
            writer: OnceLock::new(),
            wake_mask: capture::wake_mask(options.buffer),
        });
        let token = options
            .token
            .clone()
            .map(|t| AccessToken::new(t, names::LOG_STORE_REJECTED));
        let shared = Arc::new(Shared {
            options,
            clock,
            receiver: Mutex::new(receiver),
            db: store::shared(db),
            flushing: Mutex::new(()),
            write_errors: AtomicU64::new(0),
            write_error_counter: OnceLock::new(),
            degraded_logged: AtomicBool::new(false),
            token,
            flusher: OnceLock::new(),
        });
        LogStoreHandle { shared, capture }
    }

    /// The layer that captures into this store; add it to the subscriber:
    /// `tracing_subscriber::registry().with(store.layer())`.
    pub fn layer(&self) -> LogStoreLayer {
        LogStoreLayer {
            capture: self.capture.clone(),
        }
    }

    /// Whether records are written to a file (false in memory mode, or when the file could
    /// not be opened or failed).
    pub fn is_durable(&self) -> bool {
        self.shared.db.load().path.is_some()
    }

    /// Whether the routes' token is `token` (tests of where a token came from).
    #[cfg(test)]
    pub(crate) fn token_is(&self, token: &str) -> bool {
        self.shared.token.as_ref().is_some_and(|t| t.is(token))
    }

    /// Records dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.capture.dropped.load(Relaxed)
    }

    /// Failed writes so far (a file that could not be opened counts as one).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Relaxed)
    }

    /// Writes what is captured so far and applies retention now (the background thread
    /// does this every flush interval; call it before shutting down, or in tests).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// What the store holds.
    pub fn storage(&self) -> Result<LogStorage, LogStoreError> {
        let (records, bytes) = self.shared.db.load().size()?;
        Ok(LogStorage { records, bytes })
    }

    /// What happened to a request, by its request ID or its trace ID (32 hex digits);
    /// `None` when nothing is stored for it. Records not yet flushed are not seen.
    pub fn request(&self, id: &str) -> Result<Option<RequestView>, LogStoreError> {
        Ok(RequestView::of(&self.shared.records_of(id)?))
    }
}

impl Shared {
    fn records_of(&self, id: &str) -> Result<Vec<Record>, redb::Error> {
        let db = self.db.load();
        if let Some(trace) = capture::hex_trace(id) {
            let found = db.by_id(None, Some(trace))?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        db.by_id(Some(id), None)
    }

    fn now_nanos(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn count_write_error(&self, e: &redb::Error, what: &str) {
        self.write_errors.fetch_add(1, Relaxed);
        if let Some(c) = self.write_error_counter.get() {
            c.increment(1);
        }
        tracing::error!(
            target: "tower_observe::log_store",
            { "error.message" = %e, "labels.operation" = what },
            "log store write failed"
        );
    }

    /// After a failed write: reopen the file (redb refuses every transaction after an I/O
    /// error until it is reopened); if that fails, go on in memory.
    fn recover(&self) {
        let current = self.db.load_full();
        let Some(path) = current.path.clone() else {
            return;
        };
        // The old handle must go first: a file is opened by one handle at a time.
        self.db.store(Arc::new(Db::in_memory()));
        drop(current);
        match Db::open(&path) {
            Ok(db) => self.db.store(Arc::new(db)),
            Err(e) => {
                if !self.degraded_logged.swap(true, Relaxed) {
                    tracing::error!(
                        target: "tower_observe::log_store",
                        { "file.path" = %path.display(), "error.message" = %e },
                        "cannot reopen the log store file; keeping logs in memory"
                    );
                }
            }
        }
    }

    fn write(&self, batch: &[Captured]) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.db.load().write(batch) {
            self.count_write_error(&e, "write");
            self.recover();
            if let Err(e) = self.db.load().write(batch) {
                self.count_write_error(&e, "write");
                if self.db.load().path.is_some() {
                    self.db.store(Arc::new(Db::in_memory()));
                    let _ = self.db.load().write(batch);
                }
            }
        }
    }

    fn flush(&self) {
        let _one = lock(&self.flushing);
        let chunk = self.options.buffer.min(4096);
        // At most four buffers' worth per flush, so one flush cannot run forever under load.
        for _ in 0..(4 * self.options.buffer).div_ceil(chunk) {
            let batch: Vec<Captured> = {
                let receiver = lock(&self.receiver);
                receiver.try_iter().take(chunk).collect()
            };
            let done = batch.len() < chunk;
            self.write(&batch);
            if done {
                break;
            }
        }
        let cutoff = self
            .now_nanos()
            .saturating_sub(u64::try_from(self.options.retention.as_nanos()).unwrap_or(u64::MAX));
        if let Err(e) = self.db.load().purge(key(cutoff, 0), self.options.max_bytes) {
            self.count_write_error(&e, "purge");
            self.recover();
        }
    }

    fn page(
        &self,
        q: &LogQuery,
        max_scan: usize,
    ) -> Result<(Vec<Record>, Option<u128>), redb::Error> {
        self.db
            .load()
            .page(&q.filter, q.cursor.unwrap_or(u128::MAX), q.limit, max_scan)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
    }
}

fn error_json(status: StatusCode, message: &str) -> http::Response<EndpointBody> {
    let body = serde_json::json!({ "error": message });
    let mut res = with_type(Bytes::from(body.to_string()), "application/json");
    *res.status_mut() = status;
    res
}

fn json_ok<T: serde::Serialize>(value: &T) -> http::Response<EndpointBody> {
    crate::response::json(value)
}

/// Candidates one page looks at before it stops (and hands back a cursor).
const MAX_SCAN: usize = 100_000;

impl LogStoreHandle {
    fn refused(
        &self,
        observer: &Observer,
        parts: &http::request::Parts,
    ) -> Option<http::Response<EndpointBody>> {
        let token = self.shared.token.as_ref()?;
        refusal(token.check(observer, parts, true))
    }

    fn request_response(&self, parts: &http::request::Parts) -> http::Response<EndpointBody> {
        let prefix = REQUEST_PATH.trim_end_matches("{id}");
        let raw = parts.uri.path().rsplit('/').next().unwrap_or("");
        let id = query::decode_segment(raw);
        let Some(id) = id.filter(|id| !id.is_empty() && id.len() <= MAX_TEXT_LEN) else {
            return error_json(
                StatusCode::BAD_REQUEST,
                &format!("the id after {prefix} must be 1 to {MAX_TEXT_LEN} bytes"),
            );
        };
        match self.request(&id) {
            Ok(Some(view)) => json_ok(&view),
            Ok(None) => error_json(
                StatusCode::NOT_FOUND,
                "nothing is stored for this request ID or trace ID",
            ),
            Err(e) => error_json(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }

    fn logs_response(&self, parts: &http::request::Parts) -> http::Response<EndpointBody> {
        let q = match LogQuery::parse(parts.uri.query(), 100, MAX_LIMIT) {
            Ok(q) => q,
            Err(BadQuery(e)) => return error_json(StatusCode::BAD_REQUEST, &e),
        };
        match self.shared.page(&q, MAX_SCAN) {
            Ok((records, next)) => json_ok(&LogPage {
                logs: records.iter().map(LogView::of).collect(),
                next_cursor: next.map(cursor_text),
            }),
            Err(e) => error_json(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }

    fn export_response(&self, parts: &http::request::Parts) -> http::Response<EndpointBody> {
        let q = match LogQuery::parse(parts.uri.query(), 10_000, MAX_EXPORT_LIMIT) {
            Ok(q) => q,
            Err(BadQuery(e)) => return error_json(StatusCode::BAD_REQUEST, &e),
        };
        let records = match self.shared.page(&q, usize::MAX) {
            Ok((records, _)) => records,
            Err(e) => return error_json(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
        let mut body = Vec::with_capacity(records.len() * 300);
        for r in &records {
            let doc = ecs_document(r, &self.shared.options.service_name);
            if serde_json::to_writer(&mut body, &doc).is_ok() {
                body.push(b'\n');
            }
        }
        tracing::info!(
            target: "tower_observe::log_store",
            { "labels.selection" = %q.selection, "labels.lines" = records.len() },
            "log export"
        );
        with_type(Bytes::from(body), "application/x-ndjson")
    }
}

#[derive(Default)]
pub(crate) struct LogStorePending {
    options: Option<LogStoreOptions>,
    /// From `TOWER_OBSERVE_LOG_STORE_PATH` ([`crate::env`]): the store in this file, unless
    /// the code configured one.
    pub(crate) env_path: Option<PathBuf>,
    /// From `TOWER_OBSERVE_LOGS_TOKEN_FILE`: the token, unless the code gave one.
    pub(crate) env_token: Option<String>,
}

// Never prints the token.
impl std::fmt::Debug for LogStorePending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStorePending")
            .field("options", &self.options)
            .field("env_path", &self.env_path)
            .finish_non_exhaustive()
    }
}

impl Pending for LogStorePending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        let mut options = self.options.or(self.env_path.map(LogStoreOptions::file))?;
        if options.token.is_none() {
            options.token = self.env_token;
        }
        let mut handle = LogStoreHandle::open(options, observer.clock().clone());
        observer.with_source(|source| {
            let counter = handles::counter(
                source,
                &metrics::Key::from_name(names::LOG_STORE_WRITE_ERRORS),
            );
            // A file that could not be opened counts as the first failed write.
            if handle.shared.options.path.is_some() && !handle.is_durable() {
                counter.increment(1);
                handle.shared.write_errors.fetch_add(1, Relaxed);
            }
            let _ = handle.shared.write_error_counter.set(counter);
            if let Some(capture) = Arc::get_mut(&mut handle.capture) {
                capture.dropped_counter =
                    handles::counter(source, &metrics::Key::from_name(names::LOG_STORE_DROPPED));
            }
        });
        let flusher = background::spawn(
            background::task!(
                "log_store",
                "cannot start the log store flusher; logs are written only by explicit flushes"
            ),
            observer,
            &handle.shared,
            handle.shared.options.flush_interval,
            |_, shared| shared.flush(),
        );
        let _ = handle.capture.writer.set(flusher.waker());
        let _ = handle.shared.flusher.set(flusher);
        observer.part(move || handle);
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Part for LogStoreHandle {
    fn stats(&self, snapshot: &mut crate::stats::StatsSnapshot, _elapsed: f64) {
        let size = self.storage().ok();
        snapshot.log_store = Some(crate::stats::LogStoreStats {
            durable: self.is_durable(),
            records: size.map(|s| s.records),
            bytes: size.map(|s| s.bytes),
            dropped: self.dropped(),
            write_errors: self.write_errors(),
        });
    }

    fn routes(&self, observer: &Observer) -> Vec<Route> {
        if self.shared.token.is_none() {
            return Vec::new();
        }
        let route = |path: &str,
                     answer: fn(
            &LogStoreHandle,
            &http::request::Parts,
        ) -> http::Response<EndpointBody>| {
            let handle = self.clone();
            let observer = observer.clone();
            Route::new(path, RouteMethod::Get, move |parts| {
                let response = handle
                    .refused(&observer, &parts)
                    .unwrap_or_else(|| answer(&handle, &parts));
                async move { response }
            })
        };
        vec![
            route(REQUEST_PATH, LogStoreHandle::request_response),
            route(LOGS_PATH, LogStoreHandle::logs_response),
            route(LOGS_EXPORT_PATH, LogStoreHandle::export_response),
        ]
    }
}

impl ObserverBuilder {
    /// Stores log events and spans, searchable by request ID, trace ID and time, served
    /// behind a token at `GET /v1/requests/{id}`, `GET /v1/logs` and `GET /v1/logs/export`
    /// (feature `log-store`; see [`crate::log_store`]). Over `TOWER_OBSERVE_LOG_STORE_PATH`,
    /// which, when the code configures no store, turns one on in that file, and
    /// `TOWER_OBSERVE_LOGS_TOKEN_FILE`, which gives the token when the options have none
    /// (both read by [`configure_from_env`](ObserverBuilder::configure_from_env)).
    pub fn log_store(mut self, options: LogStoreOptions) -> Self {
        self.pending::<LogStorePending>().options = Some(options);
        self
    }
}

impl Observer {
    /// The log store, when configured with [`ObserverBuilder::log_store`].
    pub fn log_store(&self) -> Option<LogStoreHandle> {
        self.attached::<LogStoreHandle>()
            .map(|h| LogStoreHandle::clone(&h))
    }
}
