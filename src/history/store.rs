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

#[derive(Debug)]
pub(crate) struct Store {
    db: Option<Database>,
    /// Memory mode: everything. File mode: buckets whose write failed, merged into reads and
    /// retried with the next flush.
    memory: BTreeMap<Vec<u8>, Agg>,
}

impl Store {
    pub(crate) fn in_memory() -> Self {
        Self {
            db: None,
            memory: BTreeMap::new(),
        }
    }

    pub(crate) fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        // Create the table once, so that readers find it.
        let txn = db.begin_write()?;
        txn.open_table(BUCKETS)?;
        txn.commit()?;
        Ok(Self {
            db: Some(db),
            memory: BTreeMap::new(),
        })
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.db.is_some()
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
        let Some(db) = &self.db else {
            merge_into(&mut self.memory, batch);
            purge_memory(&mut self.memory, cutoffs);
            return Ok(());
        };
        let mut batch = batch;
        // Retry what failed before, in the same transaction.
        merge_into(&mut batch, std::mem::take(&mut self.memory));
        match write(db, &batch, cutoffs) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.memory = batch;
                purge_memory(&mut self.memory, cutoffs);
                Err(e)
            }
        }
    }

    /// Every stored bucket of `resolution` starting in `from..to`.
    pub(crate) fn scan(
        &self,
        resolution: Resolution,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &str, Agg),
    ) -> Result<(), redb::Error> {
        let (lo, hi) = (bound(resolution, from), bound(resolution, to));
        if let Some(db) = &self.db {
            let txn = db.begin_read()?;
            let table = txn.open_table(BUCKETS)?;
            for entry in table.range::<&[u8]>(lo.as_slice()..hi.as_slice())? {
                let (k, v) = entry?;
                if let (Some((bucket, series)), Some(agg)) =
                    (parse_key(k.value()), Agg::decode(v.value()))
                {
                    f(bucket, series, agg);
                }
            }
        }
        for (k, agg) in self.memory.range(lo..hi) {
            if let Some((bucket, series)) = parse_key(k) {
                f(bucket, series, agg.clone());
            }
        }
        Ok(())
    }
}

/// Buckets and bytes (key + encoded value) per resolution.
pub(crate) fn measure(store: &Store) -> Result<[(u64, u64); 4], redb::Error> {
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
            table.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
        }
    }
    txn.commit()?;
    Ok(())
}
