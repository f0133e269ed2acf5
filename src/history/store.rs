//! Where rolled-up buckets live: an embedded redb file, or memory.
//!
//! Keys are bytes ordered as (resolution, bucket start, series), so a time range of one
//! resolution is one contiguous key range. Values are [`Agg`]s.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::agg::Agg;
use super::Resolution;

const BUCKETS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("buckets");

pub(crate) fn key(resolution: Resolution, bucket: u64, series: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + series.len());
    k.push(resolution as u8);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(series.as_bytes());
    k
}

fn bound(resolution: Resolution, bucket: u64) -> Vec<u8> {
    key(resolution, bucket, "")
}

/// `(bucket start, series)` of a key.
pub(crate) fn parse_key(k: &[u8]) -> Option<(u64, &str)> {
    let bucket = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    Some((bucket, std::str::from_utf8(k.get(9..)?).ok()?))
}

type Opener = Box<dyn Fn() -> Result<Database, redb::Error> + Send + Sync>;

pub(crate) struct Store {
    db: Option<Database>,
    /// Opens the database again: after an I/O error redb refuses every transaction
    /// (`PreviousIo`) until it is reopened (and repaired, if needed).
    opener: Option<Opener>,
    /// The last operation failed; reopen before the next one.
    broken: bool,
    /// Memory mode: everything. File mode: buckets whose write failed, merged into reads and
    /// retried with the next flush.
    memory: BTreeMap<Vec<u8>, Agg>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durable", &self.db.is_some())
            .field("broken", &self.broken)
            .field("memory_buckets", &self.memory.len())
            .finish()
    }
}

/// Opens (creating if needed) a database and its table.
fn prepare(db: Database) -> Result<Database, redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(BUCKETS)?;
    txn.commit()?;
    Ok(db)
}

impl Store {
    pub(crate) fn in_memory() -> Self {
        Self {
            db: None,
            opener: None,
            broken: false,
            memory: BTreeMap::new(),
        }
    }

    pub(crate) fn open(path: &Path) -> Result<Self, redb::Error> {
        let path = path.to_path_buf();
        Self::with_opener(Box::new(move || {
            prepare(crate::redb_file::create_when_released(&path)?)
        }))
    }

    fn with_opener(opener: Opener) -> Result<Self, redb::Error> {
        Ok(Self {
            db: Some(opener()?),
            opener: Some(opener),
            broken: false,
            memory: BTreeMap::new(),
        })
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.opener.is_some()
    }

    /// The database, reopened first if the last operation failed.
    fn database(&mut self) -> Result<Option<&Database>, redb::Error> {
        let Some(opener) = &self.opener else {
            return Ok(None);
        };
        if self.broken || self.db.is_none() {
            // The old handle must go first: a file is opened by one handle at a time.
            self.db = None;
            self.db = Some(opener()?);
            self.broken = false;
        }
        Ok(self.db.as_ref())
    }

    /// Buckets held in memory (memory mode, or writes awaiting a retry).
    pub(crate) fn memory_buckets(&self) -> usize {
        self.memory.len()
    }

    /// Merges `batch` into the stored buckets and deletes buckets that started before
    /// `cutoffs[resolution]`. In file mode one transaction, committed durably; on failure the
    /// batch is kept in memory and the error returned.
    pub(crate) fn apply(
        &mut self,
        batch: BTreeMap<Vec<u8>, Agg>,
        cutoffs: &[(Resolution, u64)],
    ) -> Result<(), redb::Error> {
        if self.opener.is_none() {
            merge_into(&mut self.memory, batch);
            purge_memory(&mut self.memory, cutoffs);
            return Ok(());
        }
        let mut batch = batch;
        // Retry what failed before, in the same transaction.
        merge_into(&mut batch, std::mem::take(&mut self.memory));
        let written = self
            .database()
            .and_then(|db| db.map_or(Ok(()), |db| write(db, &batch, cutoffs)));
        if written.is_err() {
            self.broken = true;
            self.memory = batch;
            purge_memory(&mut self.memory, cutoffs);
        }
        written
    }

    /// Every stored bucket of `resolution` starting in `from..to`. A failed read reopens
    /// the database and tries once more; if that fails too, only the buckets held in memory
    /// are visited and the error is returned beside them (`Err` = the answer is partial).
    pub(crate) fn scan(
        &mut self,
        resolution: Resolution,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &str, Agg),
    ) -> Result<(), redb::Error> {
        let (lo, hi) = (bound(resolution, from), bound(resolution, to));
        let mut found = Vec::new();
        let mut read = |db: &Database| -> Result<(), redb::Error> {
            found.clear();
            let txn = db.begin_read()?;
            let table = txn.open_table(BUCKETS)?;
            for entry in table.range(lo.as_slice()..hi.as_slice())? {
                let (k, v) = entry?;
                if let (Some((bucket, series)), Some(agg)) =
                    (parse_key(k.value()), Agg::decode(v.value()))
                {
                    found.push((bucket, series.to_owned(), agg));
                }
            }
            Ok(())
        };
        let mut result = self.database().and_then(|db| db.map_or(Ok(()), &mut read));
        if result.is_err() {
            self.broken = true;
            result = self.database().and_then(|db| db.map_or(Ok(()), &mut read));
            if result.is_err() {
                self.broken = true;
                found.clear();
            }
        }
        for (bucket, series, agg) in found {
            f(bucket, &series, agg);
        }
        for (k, agg) in self.memory.range(lo..hi) {
            if let Some((bucket, series)) = parse_key(k) {
                f(bucket, series, agg.clone());
            }
        }
        result
    }
}

/// Buckets and bytes (key + encoded value) per resolution.
pub(crate) fn measure(store: &mut Store) -> Result<[(u64, u64); 4], redb::Error> {
    let mut out = [(0u64, 0u64); 4];
    for r in Resolution::ALL {
        let slot = &mut out[r as usize - 1];
        store.scan(r, 0, u64::MAX, |_, series, agg| {
            let mut bytes = Vec::new();
            agg.encode(&mut bytes);
            slot.0 += 1;
            slot.1 += (9 + series.len() + bytes.len()) as u64;
        })?;
    }
    Ok(out)
}

fn merge_into(into: &mut BTreeMap<Vec<u8>, Agg>, from: BTreeMap<Vec<u8>, Agg>) {
    for (k, agg) in from {
        into.entry(k).or_default().merge(&agg);
    }
}

fn purge_memory(memory: &mut BTreeMap<Vec<u8>, Agg>, cutoffs: &[(Resolution, u64)]) {
    for &(resolution, cutoff) in cutoffs {
        let doomed: Vec<Vec<u8>> = memory
            .range(bound(resolution, 0)..bound(resolution, cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            memory.remove(&k);
        }
    }
}

fn write(
    db: &Database,
    batch: &BTreeMap<Vec<u8>, Agg>,
    cutoffs: &[(Resolution, u64)],
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(BUCKETS)?;
        let mut bytes = Vec::new();
        for (k, agg) in batch {
            let mut merged = match table.get(k.as_slice())? {
                Some(existing) => Agg::decode(existing.value()).unwrap_or_default(),
                None => Agg::default(),
            };
            merged.merge(agg);
            bytes.clear();
            merged.encode(&mut bytes);
            table.insert(k.as_slice(), bytes.as_slice())?;
        }
        for &(resolution, cutoff) in cutoffs {
            let (lo, hi) = (bound(resolution, 0), bound(resolution, cutoff));
            table.retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;

    use redb::backends::InMemoryBackend;
    use redb::StorageBackend;

    use super::*;

    /// An in-memory disk that can be made to fail, like a full one; it keeps its contents
    /// across reopenings, like a file.
    #[derive(Debug, Clone)]
    struct FlakyDisk {
        inner: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    impl FlakyDisk {
        fn check(&self) -> io::Result<()> {
            if self.full.load(Relaxed) {
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device",
                ))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for FlakyDisk {
        fn len(&self) -> Result<u64, redb::BackendError> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), redb::BackendError> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), redb::BackendError> {
            self.check().map_err(redb::BackendError::Io)?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), redb::BackendError> {
            self.check().map_err(redb::BackendError::Io)?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), redb::BackendError> {
            self.check().map_err(redb::BackendError::Io)?;
            self.inner.write(offset, data)
        }
    }

    fn batch(minute: u64, n: usize) -> BTreeMap<Vec<u8>, Agg> {
        let mut agg = Agg::default();
        for i in 0..n {
            agg.record(
                1_000 + i as u64,
                crate::history::agg::Ended::Completed { error: false },
            );
        }
        BTreeMap::from([(key(Resolution::Minute, minute, "GET\u{1f}/x\u{1f}2xx"), agg)])
    }

    /// Requests visible to a query, and whether the answer is complete.
    fn total(store: &mut Store) -> (u64, bool) {
        let mut n = 0;
        let complete = store
            .scan(Resolution::Minute, 0, u64::MAX, |_, _, agg| {
                n += agg.requests()
            })
            .is_ok();
        (n, complete)
    }

    #[test]
    fn a_full_disk_keeps_the_batch_in_memory_and_recovers() {
        let full = Arc::new(AtomicBool::new(false));
        let disk = FlakyDisk {
            inner: Arc::new(InMemoryBackend::new()),
            full: full.clone(),
        };
        let mut store = Store::with_opener(Box::new(move || {
            prepare(Database::builder().create_with_backend(disk.clone())?)
        }))
        .unwrap();
        store.apply(batch(60, 3), &[]).unwrap();
        full.store(true, Relaxed);
        assert!(store.apply(batch(120, 4), &[]).is_err());
        assert_eq!(store.memory_buckets(), 1, "the failed batch is kept");
        // While the disk is unusable, queries see what memory holds, flagged as partial.
        assert_eq!(total(&mut store), (4, false));
        assert!(store.apply(batch(180, 5), &[]).is_err());
        assert_eq!(total(&mut store), (9, false));
        full.store(false, Relaxed);
        store.apply(batch(240, 1), &[]).unwrap();
        assert_eq!(store.memory_buckets(), 0, "written once the disk has room");
        assert_eq!(total(&mut store), (13, true), "nothing was lost");
    }
}
