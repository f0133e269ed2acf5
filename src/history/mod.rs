#![doc = include_str!("../../docs/history.md")]

mod agg;
mod query;
mod store;

pub use query::{HistoryPoint, HistoryQuery, HistoryResponse, QueryError};

use crate::sync::lock;
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use metrics::Counter;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::clock::Clock;
use crate::observer::background::{self, Background};
use crate::observer::handles;
use crate::observer::OperationRecord;
use crate::observer::{HttpServerRecord, Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::{json, plain, with_type, EndpointBody};
use crate::{names, Observer, ObserverBuilder};
use agg::{Agg, Ended};
use store::Store;

/// Path of the history query.
pub const HISTORY_PATH: &str = "/v1/stats/history";

/// A rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// 1 minute.
    Minute = 1,
    /// 5 minutes.
    FiveMinutes = 2,
    /// 1 hour.
    Hour = 3,
    /// 1 day (UTC).
    Day = 4,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::Minute,
        Resolution::FiveMinutes,
        Resolution::Hour,
        Resolution::Day,
    ];

    /// Bucket width in seconds.
    pub const fn seconds(self) -> u64 {
        match self {
            Resolution::Minute => 60,
            Resolution::FiveMinutes => 300,
            Resolution::Hour => 3600,
            Resolution::Day => 86_400,
        }
    }

    /// `1m`, `5m`, `1h`, `1d`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::FiveMinutes => "5m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    /// Parses `1m`, `5m`, `1h` or `1d`.
    pub fn parse(text: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == text)
    }

    fn index(self) -> usize {
        self as usize - 1
    }
}

/// History settings; given to [`ObserverBuilder::history`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HistoryOptions {
    path: Option<PathBuf>,
    require_durable: bool,
    flush_interval: Duration,
    retention: [Duration; 4],
    max_points: usize,
}

impl HistoryOptions {
    /// History kept in memory only (tests, or services that want no disk).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            require_durable: false,
            flush_interval: Duration::from_secs(5),
            retention: [
                Duration::from_secs(24 * 3600),
                Duration::from_secs(7 * 24 * 3600),
                Duration::from_secs(30 * 24 * 3600),
                Duration::from_secs(365 * 24 * 3600),
            ],
            max_points: 10_000,
        }
    }

    /// History in the redb file at `path`, created if missing, with its missing parent
    /// directories. If it cannot be opened (a directory, no permission, a read-only disk,
    /// another process holding it), history is kept in memory instead: the failure is logged,
    /// listed in `/v1/stats` `warnings`, given as a reason by `/health`, and
    /// `/v1/stats/history` answers `"durable": false` — unless
    /// [`require_durable`](Self::require_durable) makes it a build error.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            ..Self::in_memory()
        }
    }

    /// Makes a history file that cannot be opened an error of
    /// [`ObserverBuilder::build`](crate::ObserverBuilder::build)
    /// ([`BuildError::Capability`](crate::BuildError::Capability), capability `history`,
    /// field `path`) instead of the fallback to memory. No effect on
    /// [`in_memory`](Self::in_memory) history.
    ///
    /// ```
    /// use tower_observe::history::HistoryOptions;
    /// use tower_observe::Observer;
    ///
    /// // A directory is not a file: the observer is not built.
    /// let dir = std::env::temp_dir();
    /// let err = Observer::builder()
    ///     .history(HistoryOptions::file(&dir).require_durable())
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("history, setting `path`: cannot open"), "{err}");
    /// ```
    pub fn require_durable(mut self) -> Self {
        self.require_durable = true;
        self
    }

    /// How often aggregated minutes are written (default 5 s): at most this much history is
    /// lost in a crash. At least 10 ms.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long buckets of `resolution` are kept (defaults: 1m 24 h, 5m 7 d, 1h 30 d, 1d 1 y).
    pub fn retention(mut self, resolution: Resolution, keep: Duration) -> Self {
        self.retention[resolution.index()] = keep;
        self
    }

    /// Most points one query may return (default 10,000); larger ranges get a 400.
    pub fn max_points(mut self, n: usize) -> Self {
        self.max_points = n.max(1);
        self
    }
}

/// Buckets stored at one resolution; see [`HistoryHandle::storage_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageStats {
    /// The resolution.
    pub resolution: Resolution,
    /// Buckets (series × periods).
    pub buckets: u64,
    /// Their key and encoded value bytes (the file adds B-tree pages and free space).
    pub bytes: u64,
}

/// The history of one observer; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct HistoryHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HistoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryHandle")
            .field("durable", &self.is_durable())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// Whether history survives a restart, and if not, why.
#[derive(Debug, Clone)]
enum Durability {
    /// Written to its file.
    File,
    /// Kept in memory, as configured ([`HistoryOptions::in_memory`]).
    InMemory,
    /// Kept in memory because the file could not be opened.
    FellBack { path: PathBuf, reason: String },
}

/// Opens the history's store: its file (missing parent directories created first), or memory.
/// A file that cannot be opened falls back to memory, or is an error with `require_durable`.
/// The log store follows the same pattern (`open_durable`).
fn open_durable(options: &HistoryOptions) -> Result<(Store, Durability), crate::BuildError> {
    let Some(path) = &options.path else {
        return Ok((Store::in_memory(), Durability::InMemory));
    };
    let opened = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create the directory {}: {e}", parent.display())),
        None => Ok(()),
    }
    .and_then(|()| Store::open(path).map_err(|e| format!("cannot open {}: {e}", path.display())));
    match opened {
        Ok(store) => Ok((store, Durability::File)),
        Err(reason) if options.require_durable => Err(crate::BuildError::Capability {
            capability: "history",
            field: "path",
            reason,
        }),
        Err(reason) => {
            tracing::error!(
                target: "tower_observe::history",
                { "file.path" = %path.display(), "error.message" = %reason },
                "cannot open the history file; keeping history in memory"
            );
            Ok((
                Store::in_memory(),
                Durability::FellBack {
                    path: path.clone(),
                    reason,
                },
            ))
        }
    }
}

struct Shared {
    options: HistoryOptions,
    durability: Durability,
    clock: Clock,
    /// (minute start, series) → aggregate, not yet flushed; sharded by series so that
    /// requests of different series rarely wait on one another.
    pending: Box<[Mutex<PendingMinutes>]>,
    store: Mutex<Store>,
    write_errors: AtomicU64,
    write_error_counter: OnceLock<Counter>,
    dimension_keys: Box<[Arc<str>]>,
    /// The flusher thread (set once it is started; it ends when this is dropped).
    flusher: OnceLock<Background>,
}

type PendingMinutes = hashbrown::HashMap<(u64, Box<str>), Agg>;

/// The borrowed form of a pending key; hashes like `(u64, Box<str>)` (fields in order).
#[derive(Hash)]
struct PendingKey<'a>(u64, &'a str);

impl hashbrown::Equivalent<(u64, Box<str>)> for PendingKey<'_> {
    fn equivalent(&self, key: &(u64, Box<str>)) -> bool {
        self.0 == key.0 && self.1 == &*key.1
    }
}

thread_local! {
    /// The series key is built here, so a request of a known series allocates nothing.
    static SERIES_KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

const PENDING_SHARDS: usize = 16;

/// The series key: fields joined by U+001F (sanitised label values never contain controls).
const SEP: char = '\u{1f}';

fn status_class(status: Option<u16>) -> &'static str {
    match status.map(|s| s / 100) {
        Some(1) => "1xx",
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "none",
    }
}

impl HistoryHandle {
    fn with_store(
        options: HistoryOptions,
        clock: Clock,
        dimension_keys: Box<[Arc<str>]>,
        store: Store,
        durability: Durability,
    ) -> HistoryHandle {
        let shared = Arc::new(Shared {
            options,
            durability,
            clock,
            pending: (0..PENDING_SHARDS)
                .map(|_| Mutex::new(PendingMinutes::default()))
                .collect(),
            store: Mutex::new(store),
            write_errors: AtomicU64::new(0),
            write_error_counter: OnceLock::new(),
            dimension_keys,
            flusher: OnceLock::new(),
        });
        HistoryHandle { shared }
    }

    /// Whether history is written to a file (false in memory mode, or when the file could not
    /// be opened; `/v1/stats/history` answers it as `durable`).
    pub fn is_durable(&self) -> bool {
        lock(&self.shared.store).is_durable()
    }

    /// Why history is not durable: `None` when it is written to its file.
    pub fn not_durable_reason(&self) -> Option<String> {
        match &self.shared.durability {
            Durability::File => None,
            Durability::InMemory => Some("configured in memory (HistoryOptions::in_memory)".into()),
            Durability::FellBack { path, reason } => Some(format!(
                "the file {} could not be opened: {reason}",
                path.display()
            )),
        }
    }

    /// Failed writes so far (each retried with the next flush).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Relaxed)
    }

    /// Writes what is aggregated so far and purges expired buckets now (the background thread
    /// does this every flush interval; call it before shutting down, or in tests).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// What the store holds, per resolution (for capacity planning; reads every bucket).
    pub fn storage_stats(&self) -> Result<Vec<StorageStats>, QueryError> {
        let measured = store::measure(&mut lock(&self.shared.store))
            .map_err(|e| QueryError::Storage(e.to_string()))?;
        Ok(Resolution::ALL
            .iter()
            .zip(measured)
            .map(|(r, (buckets, bytes))| StorageStats {
                resolution: *r,
                buckets,
                bytes,
            })
            .collect())
    }

    pub(crate) fn dimension_keys(&self) -> &[Arc<str>] {
        &self.shared.dimension_keys
    }
}

/// Starts the flusher thread: it writes what is pending every flush interval, for as long as
/// the observer and the history live.
fn start_flusher(observer: &Observer, shared: &Arc<Shared>) {
    let flusher = background::spawn(
        background::task!(
            "history",
            "cannot start the history flusher; history is written only by explicit flushes"
        ),
        observer,
        shared,
        shared.options.flush_interval,
        |_, shared| shared.flush(),
    );
    let _ = shared.flusher.set(flusher);
}

impl Shared {
    fn shard_of(&self, series: &str) -> &Mutex<PendingMinutes> {
        use std::hash::BuildHasher;
        let hash = hashbrown::DefaultHashBuilder::default().hash_one(series);
        &self.pending[(hash as usize) % self.pending.len()]
    }

    /// Every pending aggregate, shard by shard.
    pub(crate) fn for_each_pending(&self, mut f: impl FnMut(u64, &str, &Agg)) {
        for shard in self.pending.iter() {
            for ((minute, series), agg) in lock(shard).iter() {
                f(*minute, series, agg);
            }
        }
    }

    fn now_seconds(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn cutoffs(&self) -> Vec<(Resolution, u64)> {
        let now = self.now_seconds();
        Resolution::ALL
            .iter()
            .map(|r| {
                (
                    *r,
                    now.saturating_sub(self.options.retention[r.index()].as_secs()),
                )
            })
            .collect()
    }

    /// Moves the pending minutes into every resolution's buckets, in one store write.
    fn flush(&self) {
        // The store stays locked from taking the pending minutes until they are written, so a
        // query (which reads the store and then the pending minutes under the same lock) never
        // sees them in neither place.
        let mut store = lock(&self.store);
        let pending: Vec<PendingMinutes> = self
            .pending
            .iter()
            .map(|shard| std::mem::take(&mut *lock(shard)))
            .collect();
        let mut batch: BTreeMap<Vec<u8>, Agg> = BTreeMap::new();
        for ((minute, series), agg) in pending.into_iter().flatten() {
            for r in Resolution::ALL {
                let bucket = minute - minute % r.seconds();
                batch
                    .entry(store::key(r, bucket, &series))
                    .or_default()
                    .merge(&agg);
            }
        }
        let cutoffs = self.cutoffs();
        if let Err(e) = store.apply(batch, &cutoffs) {
            self.write_errors.fetch_add(1, Relaxed);
            if let Some(c) = self.write_error_counter.get() {
                c.increment(1);
            }
            tracing::error!(
                target: "tower_observe::history",
                { "error.message" = %e, "labels.buffered_buckets" = store.memory_buckets() },
                "history write failed; kept in memory and retried with the next flush"
            );
        }
    }
}

impl Drop for Shared {
    /// The last clone going away (a graceful shutdown) writes what is pending.
    fn drop(&mut self) {
        self.flush();
    }
}

impl Shared {
    /// Adds one finished request or operation to its pending minute.
    fn record_pending(&self, minute: u64, series: &str, nanos: u64, ended: Ended) {
        let mut pending = lock(self.shard_of(series));
        match pending.get_mut(&PendingKey(minute, series)) {
            Some(agg) => agg.record(nanos, ended),
            None => pending
                .entry((minute, Box::from(series)))
                .or_default()
                .record(nanos, ended),
        }
    }

    /// Builds a series key with `build` in the thread's buffer (no allocation for a known
    /// series) and records into it.
    fn record_with_key(&self, minute: u64, nanos: u64, ended: Ended, build: impl Fn(&mut String)) {
        let reused = SERIES_KEY.try_with(|buf| match buf.try_borrow_mut() {
            Ok(mut series) => {
                build(&mut series);
                self.record_pending(minute, &series, nanos, ended);
                true
            }
            Err(_) => false,
        });
        if reused != Ok(true) {
            let mut series = String::new();
            build(&mut series);
            self.record_pending(minute, &series, nanos, ended);
        }
    }
}

/// Operation series keys start with this (U+001E, never in a sanitised label value or an HTTP
/// method), then kind, system, name and target, joined by [`SEP`].
pub(crate) const OPERATION_MARK: char = '\u{1e}';

/// The parts of an operation series key, or `None` for a request series.
pub(crate) struct OperationParts<'a> {
    pub(crate) kind: &'a str,
    pub(crate) system: &'a str,
    pub(crate) name: &'a str,
    pub(crate) target: &'a str,
}

pub(crate) fn split_operation(series: &str) -> Option<OperationParts<'_>> {
    let mut parts = series.strip_prefix(OPERATION_MARK)?.split(SEP);
    Some(OperationParts {
        kind: parts.next()?,
        system: parts.next()?,
        name: parts.next()?,
        target: parts.next().unwrap_or(""),
    })
}

impl RecordSink for HistoryHandle {
    /// One minute series per operation (kind, system, name, target), queried with
    /// `?operation=` (see `HistoryQuery`).
    fn record_operation(&self, r: &OperationRecord<'_>) {
        let end = r.end.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let ended = if r.cancelled {
            Ended::Aborted
        } else {
            Ended::Completed {
                error: r.error_type.is_some(),
            }
        };
        let nanos = u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .record_with_key(end - end % 60, nanos, ended, |series| {
                series.clear();
                series.push(OPERATION_MARK);
                series.push_str(r.kind);
                for part in [r.system, r.name, r.target] {
                    series.push(SEP);
                    series.push_str(part);
                }
            });
    }

    fn record_http_server(&self, r: &HttpServerRecord<'_>) {
        let end = r.end.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let minute = end - end % 60;
        let ended = match r.error_type {
            Some(crate::names::ERROR_ABORTED) => Ended::Aborted,
            error => Ended::Completed {
                error: error.is_some(),
            },
        };
        let nanos = u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX);
        let build = |series: &mut String| {
            series.clear();
            series.push_str(r.method);
            series.push(SEP);
            series.push_str(r.route);
            series.push(SEP);
            series.push_str(status_class(r.status));
            for (k, v) in r.dimensions {
                series.push(SEP);
                series.push_str(k);
                series.push('=');
                series.push_str(v);
            }
        };
        self.shared.record_with_key(minute, nanos, ended, build);
    }
}

/// History configured on the builder; its store is opened when the observer is built.
#[derive(Default)]
pub(crate) struct HistoryPending(
    Option<HistoryOptions>,
    Option<(Store, Durability)>,
    /// From `TOWER_OBSERVE_HISTORY_PATH` ([`crate::env`]): history in this file, unless the
    /// code configured history.
    pub(crate) Option<PathBuf>,
);

impl std::fmt::Debug for HistoryPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HistoryPending").field(&self.0).finish()
    }
}

impl Pending for HistoryPending {
    fn prepare(&mut self) -> Result<(), crate::BuildError> {
        if self.0.is_none() {
            self.0 = self.2.take().map(HistoryOptions::file);
        }
        if let Some(options) = &self.0 {
            self.1 = Some(open_durable(options)?);
        }
        Ok(())
    }

    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        let options = self.0?;
        let (store, durability) = match self.1 {
            Some(opened) => opened,
            None => (Store::in_memory(), Durability::InMemory),
        };
        let history = HistoryHandle::with_store(
            options,
            observer.clock().clone(),
            observer.dimensions().into(),
            store,
            durability,
        );
        observer.with_source(|source| {
            let counter = handles::counter(
                source,
                &metrics::Key::from_name(names::HISTORY_WRITE_ERRORS),
            );
            let _ = history.shared.write_error_counter.set(counter);
        });
        start_flusher(observer, &history.shared);
        let part = history.clone();
        observer.part(move || part);
        Some(Arc::new(history))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Part for HistoryHandle {
    fn health(&self, _elapsed: f64, input: &mut crate::observer::HealthInput) {
        // Not a colour change: the service serves as well; its history will not survive a
        // restart. (A fallback from a file is also a warning, which `/health` lists.)
        if let Durability::InMemory = self.shared.durability {
            input.degraded.push((
                crate::observer::Status::Green,
                "history is kept in memory only (HistoryOptions::in_memory): it does not survive a restart".to_owned(),
            ));
        }
    }

    fn warnings(&self, _observer: &Observer, out: &mut Vec<crate::stats::Warning>) {
        if let Durability::FellBack { path, reason } = &self.shared.durability {
            out.push(crate::stats::Warning::new(
                "history_not_durable",
                format!(
                    "history is kept in memory, not in {}: {reason}; fix the path or its permissions, or add HistoryOptions::require_durable() to fail at start-up instead",
                    path.display()
                ),
            ));
        }
    }

    fn routes(&self, _observer: &Observer) -> Vec<Route> {
        let history = self.clone();
        vec![Route::new(HISTORY_PATH, RouteMethod::Get, move |parts| {
            let response = history.response(parts.uri.query(), parts.headers.get(header::ACCEPT));
            async move { response }
        })]
    }
}

impl HistoryHandle {
    /// `GET /v1/stats/history`: JSON, or CSV with `format=csv` or `Accept: text/csv`.
    fn response(
        &self,
        query: Option<&str>,
        accept: Option<&HeaderValue>,
    ) -> http::Response<EndpointBody> {
        let wants_csv = accept
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv"));
        match self.query_str(query, wants_csv) {
            Ok(answer) if answer.csv => with_type(
                Bytes::from(answer.response.to_csv()),
                "text/csv; charset=utf-8",
            ),
            Ok(answer) => json(&answer.response),
            Err(QueryError::Storage(e)) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("history unavailable: {e}"),
            ),
            Err(e) => plain(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }
}

impl ObserverBuilder {
    /// Keeps request history with rollups and retention, served at `GET /v1/stats/history`
    /// (feature `history`; see [`crate::history`]). Over `TOWER_OBSERVE_HISTORY_PATH` (read by
    /// [`configure_from_env`](ObserverBuilder::configure_from_env)), which, when the code
    /// configures no history, turns it on in that file.
    pub fn history(mut self, options: HistoryOptions) -> Self {
        self.pending::<HistoryPending>().0 = Some(options);
        self
    }
}

impl Observer {
    /// The request history, when configured with [`ObserverBuilder::history`].
    pub fn history(&self) -> Option<HistoryHandle> {
        self.attached::<HistoryHandle>()
            .map(|h| HistoryHandle::clone(&h))
    }
}

/// The parts of a series key.
pub(crate) struct SeriesParts<'a> {
    pub(crate) method: &'a str,
    pub(crate) route: &'a str,
    pub(crate) status_class: &'a str,
    pub(crate) dims: Vec<(&'a str, &'a str)>,
}

pub(crate) fn split_series(series: &str) -> Option<SeriesParts<'_>> {
    if series.starts_with(OPERATION_MARK) {
        return None;
    }
    let mut parts = series.split(SEP);
    let method = parts.next()?;
    let route = parts.next()?;
    let status_class = parts.next()?;
    let dims = parts.filter_map(|d| d.split_once('=')).collect();
    Some(SeriesParts {
        method,
        route,
        status_class,
        dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::background::{panics_on_metrics, wait_for};
    use std::hash::BuildHasher;

    #[test]
    fn the_flusher_survives_a_panicking_flush() {
        let observer = Observer::builder()
            .history(HistoryOptions::in_memory().flush_interval(Duration::from_millis(20)))
            .build()
            .unwrap();
        let history = observer.history().unwrap();
        let flusher = history.shared.flusher.get().unwrap();
        assert!(flusher.is_running());
        flusher.panic_next_tick();
        wait_for("the panic", || flusher.panics() == 1);

        // A minute of traffic, pending: the flusher (nothing else) writes it.
        let now = history.shared.now_seconds();
        let mut agg = Agg::default();
        agg.record(1_000_000, Ended::Completed { error: false });
        lock(&history.shared.pending[0])
            .insert((now - now % 60, "GET\u{1f}/x\u{1f}2xx".into()), agg);
        wait_for("the flush", || {
            let mut pending = 0;
            history.shared.for_each_pending(|_, _, _| pending += 1);
            pending == 0
        });
        let stored: u64 = history
            .storage_stats()
            .unwrap()
            .iter()
            .map(|s| s.buckets)
            .sum();
        assert_eq!(stored, 4, "one bucket per resolution");
        assert!(flusher.is_running());
        assert_eq!(panics_on_metrics(&observer, "history"), Some(1.0));
    }

    #[test]
    fn borrowed_pending_keys_hash_like_owned_ones() {
        let owned: (u64, Box<str>) = (120, Box::from("GET\u{1f}/x\u{1f}2xx"));
        let borrowed = PendingKey(120, "GET\u{1f}/x\u{1f}2xx");
        let s = hashbrown::DefaultHashBuilder::default();
        assert_eq!(s.hash_one(&owned), s.hash_one(&borrowed));
        assert!(hashbrown::Equivalent::equivalent(&borrowed, &owned));
    }
}
