//! Where records live: a redb database, in a file or in memory (redb's in-memory backend), so
//! both modes share one code path.
//!
//! Tables:
//!
//! - `records`: key → encoded record; the key is `unix nanos << 64 | sequence`, so this table
//!   is the time index (retention deletes from its start);
//! - `by_request`: `(request ID, key)` → `()` (request IDs are UUIDv7s by default, so new
//!   entries land at the end of this index, on few pages);
//! - `by_trace`: `(trace ID, key)` → `()`;
//! - `meta`: `bytes` → the stored bytes (keys, values and index entries).
//!
//! A lookup by request or trace ID is a range of its index and one read per match: its cost
//! follows the matches, not the store's size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::capture::Captured;
use super::record::{self, Kind, Record};

const RECORDS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("records");
const BY_REQUEST: TableDefinition<'_, (&str, u128), ()> = TableDefinition::new("by_request");
const BY_TRACE: TableDefinition<'_, (u128, u128), ()> = TableDefinition::new("by_trace");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Bytes an entry of the trace index takes.
const TRACE_ENTRY: u64 = 32;

/// One opened database.
pub(crate) struct Db {
    db: Database,
    /// The file, or `None` in memory.
    pub(crate) path: Option<PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

fn prepare(db: Database) -> Result<Database, redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?;
    txn.open_table(BY_REQUEST)?;
    txn.open_table(BY_TRACE)?;
    txn.open_table(META)?;
    txn.commit()?;
    Ok(db)
}

fn record_bytes(request_id: Option<&str>, trace: Option<[u8; 16]>, value_len: usize) -> u64 {
    16 + value_len as u64
        + request_id.map_or(0, |r| r.len() as u64 + 16)
        + trace.map_or(0, |_| TRACE_ENTRY)
}

/// Filters of a page of log events (all optional).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) request_id: Option<String>,
    pub(crate) trace: Option<[u8; 16]>,
    /// Keys from (inclusive) and to (exclusive).
    pub(crate) from: u128,
    pub(crate) to: u128,
    /// The least level (0 = TRACE … 4 = ERROR).
    pub(crate) level: u8,
    pub(crate) route: Option<String>,
    /// Lowercase text looked for in the message and the string fields.
    pub(crate) text: Option<String>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        r.kind == Kind::Event
            && r.level >= self.level
            && self
                .route
                .as_deref()
                .is_none_or(|route| r.route.as_deref() == Some(route))
            && self
                .request_id
                .as_deref()
                .is_none_or(|id| r.request_id.as_deref() == Some(id))
            && self.trace.is_none_or(|t| r.trace == Some(t))
            && self.text.as_deref().is_none_or(|q| {
                r.fields
                    .iter()
                    .any(|(_, v)| v.as_str().is_some_and(|s| s.to_lowercase().contains(q)))
            })
    }
}

/// A page of events, newest first, and where the next one starts (exclusive), if any.
pub(crate) type Page = (Vec<Record>, Option<u128>);

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, redb::Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(redb::Error::Io)?;
        }
        Ok(Db {
            db: prepare(Database::create(path)?)?,
            path: Some(path.to_path_buf()),
        })
    }

    pub(crate) fn in_memory() -> Db {
        // redb's in-memory backend has no I/O to fail: creating a database in it fails only
        // when memory cannot be allocated, which aborts the process before this could.
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(redb::Error::from)
            .and_then(prepare)
            .expect("an in-memory redb database opens");
        Db { db, path: None }
    }

    /// Stores `batch` in one transaction, committed durably (in file mode).
    pub(crate) fn write(&self, batch: &[Captured]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut by_request = txn.open_table(BY_REQUEST)?;
            let mut by_trace = txn.open_table(BY_TRACE)?;
            let mut meta = txn.open_table(META)?;
            let mut bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            for c in batch {
                let (request_id, trace) = record::index_keys(&c.bytes);
                if records.insert(c.key, c.bytes.as_slice())?.is_some() {
                    continue;
                }
                if let Some(id) = request_id {
                    by_request.insert((id, c.key), ())?;
                }
                if let Some(trace) = trace {
                    by_trace.insert((u128::from_be_bytes(trace), c.key), ())?;
                }
                bytes += record_bytes(request_id, trace, c.bytes.len());
            }
            meta.insert("bytes", bytes)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes records older than `cutoff` (a key), then the oldest ones until the store
    /// holds at most `max_bytes`. Returns how many went.
    ///
    /// Eviction by size goes down to 31/32 of `max_bytes`, so a full store evicts in batches
    /// every few flushes rather than a few records every flush; the records go in one range
    /// delete, their trace index entries sorted by trace ID.
    pub(crate) fn purge(&self, cutoff: u128, max_bytes: u64) -> Result<u64, redb::Error> {
        // Most ticks have nothing to do: look before opening a write transaction.
        {
            let txn = self.db.begin_read()?;
            let records = txn.open_table(RECORDS)?;
            let meta = txn.open_table(META)?;
            let bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            let oldest = records.first()?.map(|(k, _)| k.value());
            if bytes <= max_bytes && oldest.is_none_or(|k| k >= cutoff) {
                return Ok(0);
            }
        }
        let txn = self.db.begin_write()?;
        let removed;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut by_request = txn.open_table(BY_REQUEST)?;
            let mut by_trace = txn.open_table(BY_TRACE)?;
            let mut meta = txn.open_table(META)?;
            let mut bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            let target = if bytes > max_bytes {
                max_bytes - max_bytes / 32
            } else {
                max_bytes
            };
            let mut traces = Vec::new();
            let mut last = None;
            let mut count = 0u64;
            for entry in records.range::<u128>(..)? {
                let (k, v) = entry?;
                let key = k.value();
                if key >= cutoff && bytes <= target {
                    break;
                }
                let value = v.value();
                let (request_id, trace) = record::index_keys(value);
                // Request IDs (UUIDv7s) follow the keys' order: removed as met.
                if let Some(id) = request_id {
                    by_request.remove((id, key))?;
                }
                if let Some(trace) = trace {
                    traces.push((u128::from_be_bytes(trace), key));
                }
                bytes = bytes.saturating_sub(record_bytes(request_id, trace, value.len()));
                last = Some(key);
                count += 1;
            }
            if let Some(last) = last {
                records.retain_in(..=last, |_, _| false)?;
            }
            traces.sort_unstable();
            for entry in traces {
                by_trace.remove(entry)?;
            }
            removed = count;
            meta.insert("bytes", bytes)?;
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Records and bytes stored.
    pub(crate) fn size(&self) -> Result<(u64, u64), redb::Error> {
        let txn = self.db.begin_read()?;
        let records = txn.open_table(RECORDS)?;
        let meta = txn.open_table(META)?;
        let bytes = meta.get("bytes")?.map_or(0, |v| v.value());
        Ok((records.len()?, bytes))
    }

    /// Every record of a request (by ID) or a trace, in key order.
    pub(crate) fn by_id(
        &self,
        request_id: Option<&str>,
        trace: Option<[u8; 16]>,
    ) -> Result<Vec<Record>, redb::Error> {
        let txn = self.db.begin_read()?;
        let records = txn.open_table(RECORDS)?;
        let mut keys = Vec::new();
        if let Some(id) = request_id {
            let index = txn.open_table(BY_REQUEST)?;
            for entry in index.range((id, 0u128)..=(id, u128::MAX))? {
                keys.push(entry?.0.value().1);
            }
        }
        if let Some(trace) = trace {
            let t = u128::from_be_bytes(trace);
            let index = txn.open_table(BY_TRACE)?;
            for entry in index.range((t, 0u128)..=(t, u128::MAX))? {
                keys.push(entry?.0.value().1);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = records.get(key)? {
                if let Some(r) = Record::decode(key, v.value()) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events matching `filter` with keys below `before`, newest first, looking
    /// at no more than `max_scan` candidates (the next page starts where this one stopped).
    pub(crate) fn page(
        &self,
        filter: &Filter,
        before: u128,
        limit: usize,
        max_scan: usize,
    ) -> Result<Page, redb::Error> {
        let txn = self.db.begin_read()?;
        let records = txn.open_table(RECORDS)?;
        let hi = before.min(filter.to);
        let lo = filter.from;
        let mut out = Vec::new();
        if hi <= lo {
            return Ok((out, None));
        }
        let mut scanned = 0;
        let mut take = |key: u128, value: &[u8], out: &mut Vec<Record>| -> Option<u128> {
            scanned += 1;
            if let Some(r) = Record::decode(key, value).filter(|r| filter.matches(r)) {
                out.push(r);
            }
            (out.len() >= limit || scanned >= max_scan).then_some(key)
        };
        let mut next = None;
        if filter.request_id.is_some() || filter.trace.is_some() {
            let keys: Box<dyn Iterator<Item = Result<u128, redb::StorageError>>> =
                if let Some(id) = filter.request_id.as_deref() {
                    let index = txn.open_table(BY_REQUEST)?;
                    Box::new(
                        index
                            .range((id, lo)..(id, hi))?
                            .rev()
                            .map(|e| e.map(|(k, _)| k.value().1)),
                    )
                } else {
                    let t = u128::from_be_bytes(filter.trace.unwrap_or_default());
                    let index = txn.open_table(BY_TRACE)?;
                    Box::new(
                        index
                            .range((t, lo)..(t, hi))?
                            .rev()
                            .map(|e| e.map(|(k, _)| k.value().1)),
                    )
                };
            for key in keys {
                let key = key?;
                let Some(v) = records.get(key)? else { continue };
                if let Some(stop) = take(key, v.value(), &mut out) {
                    next = Some(stop);
                    break;
                }
            }
        } else {
            for entry in records.range(lo..hi)?.rev() {
                let (k, v) = entry?;
                if let Some(stop) = take(k.value(), v.value(), &mut out) {
                    next = Some(stop);
                    break;
                }
            }
        }
        // The last key looked at ends the page; the next starts below it (if anything is
        // left there, which the next page finds out).
        Ok((out, next.filter(|k| *k > lo)))
    }
}

/// The database in use, swapped for one in memory when the file fails.
pub(crate) type Shared = arc_swap::ArcSwap<Db>;

pub(crate) fn shared(db: Db) -> Shared {
    arc_swap::ArcSwap::new(Arc::new(db))
}
