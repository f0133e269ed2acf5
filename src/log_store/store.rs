//! Where records live: a redb database, in a file or in memory (redb's in-memory backend), so
//! both modes share one code path.
//!
//! Tables:
//!
//! - `records`: key → encoded record; the key is `unix nanos << 64 | sequence`, so this table
//!   is the time index (retention deletes from its start);
//! - `by_request`: `(request ID, key)` → `()` (request IDs are UUIDv7s by default, so new
//!   entries land at the end of this index, on few pages);
//! - `by_trace`: `(trace ID, key)` → `()`, one entry per request and trace in each write
//!   batch (at the batch's newest record of that request), and one per record that belongs
//!   to no request;
//! - `meta`: `bytes` → the stored bytes (keys, values and index entries).
//!
//! A lookup by request ID is a range of its index and one read per match. A lookup by trace
//! ID is a range of the trace index, then, for each entry naming a request, that request's
//! range of the request index: its cost follows the matches, not the store's size.
//!
//! Why the trace index holds requests rather than records: trace IDs are random, so each
//! entry lands on its own page of the index, and every page a write touches is copied. One
//! entry per request and batch instead of one per record is what makes the store's writer
//! cheaper than the requests it records (measured in `benches/log_store.rs`). The entry sits
//! at the batch's newest record of the request because retention deletes oldest first: while
//! any record of that batch's part of the request is kept, its entry is too.

// hashbrown's default hasher (seeded per process) rather than SipHash: the writer hashes
// every request of each batch, and a batch holds at most a few thousand keys.
use hashbrown::{HashMap, HashSet};
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

/// Bytes a record and its request index entry take (its trace index entry, if it has one, is
/// counted when it is written and when it is removed).
fn record_bytes(request_id: Option<&str>, value_len: usize) -> u64 {
    16 + value_len as u64 + request_id.map_or(0, |r| r.len() as u64 + 16)
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
            db: prepare(crate::redb_file::create_when_released(path)?)?,
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
            // (trace, request ID) → the batch's newest key of that request.
            let mut requests: HashMap<(u128, &str), u128> = HashMap::new();
            let mut traces = Vec::new();
            for c in batch {
                let (request_id, trace) = record::index_keys(&c.bytes);
                if records.insert(c.key, c.bytes.as_slice())?.is_some() {
                    continue;
                }
                if let Some(id) = request_id {
                    by_request.insert((id, c.key), ())?;
                }
                match (trace.map(u128::from_be_bytes), request_id) {
                    (Some(t), Some(id)) => {
                        let newest = requests.entry((t, id)).or_insert(c.key);
                        *newest = (*newest).max(c.key);
                    }
                    (Some(t), None) => traces.push((t, c.key)),
                    (None, _) => {}
                }
                bytes += record_bytes(request_id, c.bytes.len());
            }
            traces.extend(requests.into_iter().map(|((t, _), key)| (t, key)));
            // In index order, so neighbouring entries share their page's copy.
            traces.sort_unstable();
            for entry in traces {
                if by_trace.insert(entry, ())?.is_none() {
                    bytes += TRACE_ENTRY;
                }
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
            for entry in records.range(..)? {
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
                bytes = bytes.saturating_sub(record_bytes(request_id, value.len()));
                last = Some(key);
                count += 1;
            }
            if let Some(last) = last {
                records.retain_in(..=last, |_, _| false)?;
            }
            // Only some records carry a trace index entry: the others' removal finds nothing.
            traces.sort_unstable();
            for entry in traces {
                if by_trace.remove(entry)?.is_some() {
                    bytes = bytes.saturating_sub(TRACE_ENTRY);
                }
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
            request_keys(&index, id, &mut keys)?;
        }
        if let Some(trace) = trace {
            keys.extend(trace_keys(&txn, &records, trace)?);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = records.get(key)? {
                // A request reached through the trace index is kept to that trace's records.
                if let Some(r) = Record::decode(key, v.value()).filter(|r| {
                    trace.is_none_or(|t| r.trace == Some(t))
                        || request_id.is_some_and(|id| r.request_id.as_deref() == Some(id))
                }) {
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
        if let Some(id) = filter.request_id.as_deref() {
            let index = txn.open_table(BY_REQUEST)?;
            for entry in index.range((id, lo)..(id, hi))?.rev() {
                let key = entry?.0.value().1;
                let Some(v) = records.get(key)? else { continue };
                if let Some(stop) = take(key, v.value(), &mut out) {
                    next = Some(stop);
                    break;
                }
            }
        } else if let Some(trace) = filter.trace {
            // A trace's keys are found through its requests, so they are gathered and sorted
            // first (as many as the trace has records), then read newest first.
            let mut keys = trace_keys(&txn, &records, trace)?;
            keys.retain(|k| (lo..hi).contains(k));
            keys.sort_unstable();
            keys.dedup();
            for key in keys.into_iter().rev() {
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

/// Appends the keys of `id`'s records.
fn request_keys(
    index: &redb::ReadOnlyTable<(&str, u128), ()>,
    id: &str,
    keys: &mut Vec<u128>,
) -> Result<(), redb::Error> {
    for entry in index.range((id, 0u128)..=(id, u128::MAX))? {
        keys.push(entry?.0.value().1);
    }
    Ok(())
}

/// The keys of the records of `trace` and of the requests its index entries name (which
/// may hold a record of another trace: the caller filters), unsorted.
fn trace_keys(
    txn: &redb::ReadTransaction,
    records: &redb::ReadOnlyTable<u128, &[u8]>,
    trace: [u8; 16],
) -> Result<Vec<u128>, redb::Error> {
    let t = u128::from_be_bytes(trace);
    let by_trace = txn.open_table(BY_TRACE)?;
    let by_request = txn.open_table(BY_REQUEST)?;
    let mut keys = Vec::new();
    // A request spans several write batches, each with an entry: expanded once.
    let mut expanded: HashSet<String> = HashSet::new();
    for entry in by_trace.range((t, 0u128)..=(t, u128::MAX))? {
        let key = entry?.0.value().1;
        let Some(v) = records.get(key)? else { continue };
        match record::index_keys(v.value()).0 {
            Some(id) if expanded.contains(id) => {}
            Some(id) => {
                request_keys(&by_request, id, &mut keys)?;
                expanded.insert(id.to_owned());
            }
            None => keys.push(key),
        }
    }
    Ok(keys)
}

/// The database in use, swapped for one in memory when the file fails.
pub(crate) type Shared = arc_swap::ArcSwap<Db>;

pub(crate) fn shared(db: Db) -> Shared {
    arc_swap::ArcSwap::new(Arc::new(db))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::record::{key, put_header, Header};

    fn event(nanos: u64, request_id: Option<&str>, trace: Option<u8>) -> Captured {
        let mut bytes = Vec::new();
        let header = Header {
            trace: trace.map(|t| [t; 16]),
            request_id: request_id.map(str::as_bytes),
            target: "app",
            ..Header::default()
        };
        put_header(&mut bytes, Kind::Event, 2, &header);
        Captured {
            key: key(nanos, 0),
            bytes,
        }
    }

    fn nanos_of(records: &[Record]) -> Vec<u64> {
        records.iter().map(Record::nanos).collect()
    }

    #[test]
    fn a_trace_finds_its_requests_across_batches_and_keeps_what_retention_keeps() {
        let db = Db::in_memory();
        // Trace 1: request a over two batches, request b, and a line outside any request;
        // trace 2: request c.
        db.write(&[
            event(1, Some("a"), Some(1)),
            event(2, Some("c"), Some(2)),
            event(3, Some("a"), Some(1)),
            event(4, None, Some(1)),
        ])
        .unwrap();
        db.write(&[event(5, Some("a"), Some(1)), event(6, Some("b"), Some(1))])
            .unwrap();
        let by_trace = |t: u8| nanos_of(&db.by_id(None, Some([t; 16])).unwrap());
        assert_eq!(by_trace(1), [1, 3, 4, 5, 6]);
        assert_eq!(by_trace(2), [2]);
        assert_eq!(by_trace(3), Vec::<u64>::new());
        let page = |t: u8, before: u128, limit: usize| {
            let filter = Filter {
                trace: Some([t; 16]),
                to: u128::MAX,
                ..Filter::default()
            };
            let (records, next) = db.page(&filter, before, limit, usize::MAX).unwrap();
            (nanos_of(&records), next)
        };
        // Newest first, paged.
        let (first, next) = page(1, u128::MAX, 3);
        assert_eq!(first, [6, 5, 4]);
        assert_eq!(page(1, next.unwrap(), 3).0, [3, 1]);
        // The first batch's part of request a goes; the rest is still found by its trace.
        assert_eq!(db.purge(key(2, u64::MAX), u64::MAX).unwrap(), 2);
        assert_eq!(by_trace(1), [3, 4, 5, 6]);
        assert_eq!(by_trace(2), Vec::<u64>::new());
        assert_eq!(db.purge(key(4, u64::MAX), u64::MAX).unwrap(), 2);
        assert_eq!(by_trace(1), [5, 6]);
        // Every index entry accounted for: nothing left, nothing counted.
        assert_eq!(db.purge(u128::MAX, u64::MAX).unwrap(), 2);
        assert_eq!(db.size().unwrap(), (0, 0));
    }
}
