//! Holds a month's calls per customer in bounded memory while the month's Parquet files are
//! read once, in whatever order ingest wrote them (one file per partition and commit, each
//! mixing many customers).
//!
//! Up to a row budget the calls stay in memory (every ordinary month, and every test). Past
//! it, everything is written out to hash-partitioned spill files (all calls of a customer in
//! the same one) and billed one bucket at a time, so memory holds at most one bucket (or, for
//! a bucket bigger than the budget, one budget's worth of its customers) whatever the month's
//! size, and the Parquet files are read once. The alternative, re-reading every Parquet file
//! once per chunk of customers, costs a full read per chunk: quadratic in the month's size.
//!
//! Spill files hold traffic data, so they live in the output folder (which holds the same
//! data as PDFs) in a hidden temporary folder that is removed when the run ends, failed or not.
//! They are sealed in chunks with a random key that lives only in the process's memory
//! (AES-256-GCM): spill files a killed run leaves behind are unreadable noise, whether or not
//! the operator configured data keys.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chrono::DateTime;
use compact_str::CompactString;
use rust_decimal::Decimal;

use evn_keys::{DataKey, Keyring};
use evn_rating::{BillingMonth, RatedCall};

use crate::BillError;

/// Spill buckets: enough that a bucket of a big month fits the budget, few enough that their
/// write buffers (64 KiB each) stay small.
const BUCKETS: u64 = 64;
/// A seed of its own: `--shard` partitions by the unseeded hash, and within one shard the same
/// hash would leave most buckets empty.
const BUCKET_SEED: u64 = 0x4556_4e5f_5350_494c;

pub(crate) fn bucket_of(customer_id: &str) -> usize {
    (xxhash_rust::xxh3::xxh3_64_with_seed(customer_id.as_bytes(), BUCKET_SEED) % BUCKETS) as usize
}

/// The selected customers' calls, read from the month's files.
pub(crate) struct Holder {
    budget: usize,
    month: BillingMonth,
    spill_parent: PathBuf,
    /// Keyed by the calls' own id type: ids up to 24 bytes are copied inline, not allocated.
    memory: HashMap<CompactString, Vec<RatedCall>>,
    held: usize,
    spill: Option<Spill>,
}

struct Spill {
    dir: tempfile::TempDir,
    /// The run's own key, never written anywhere.
    key: Keyring,
    writers: Vec<SealedWriter>,
}

/// Plain records collected up to [`CHUNK`] bytes, then sealed and appended as one
/// length-prefixed chunk. The chunk's number is authenticated: chunks cannot be reordered or
/// moved between buckets unnoticed.
struct SealedWriter {
    file: File,
    bucket: usize,
    chunks: u64,
    plain: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

fn chunk_context(bucket: usize, chunk: u64) -> String {
    format!("spill/{bucket}/{chunk}")
}

impl SealedWriter {
    fn push(&mut self, key: &Keyring, rec: &[u8]) -> std::io::Result<()> {
        self.plain
            .extend_from_slice(&(rec.len() as u32).to_le_bytes());
        self.plain.extend_from_slice(rec);
        if self.plain.len() >= CHUNK {
            self.flush(key)?;
        }
        Ok(())
    }

    fn flush(&mut self, key: &Keyring) -> std::io::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        let sealed = key.seal(&self.plain, &chunk_context(self.bucket, self.chunks));
        self.chunks += 1;
        self.plain.clear();
        self.file
            .write_all(&(sealed.len() as u32).to_le_bytes())
            .and_then(|()| self.file.write_all(&sealed))
    }
}

impl Spill {
    fn path(dir: &Path, bucket: usize) -> PathBuf {
        dir.join(format!("bucket-{bucket:02}.bin"))
    }
}

impl Holder {
    pub fn new(budget: usize, month: BillingMonth, spill_parent: &Path) -> Holder {
        Holder {
            budget: budget.max(1),
            month,
            spill_parent: spill_parent.to_owned(),
            memory: HashMap::new(),
            held: 0,
            spill: None,
        }
    }

    pub fn push(&mut self, call: RatedCall) -> Result<(), BillError> {
        if let Some(spill) = self.spill.as_mut() {
            return spill_one(spill, &call);
        }
        self.held += 1;
        self.memory
            .entry(call.customer_id.clone())
            .or_default()
            .push(call);
        if self.held > self.budget {
            self.start_spilling()?;
        }
        Ok(())
    }

    fn start_spilling(&mut self) -> Result<(), BillError> {
        std::fs::create_dir_all(&self.spill_parent)
            .map_err(|e| BillError::io(&self.spill_parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix(".evn-bill-spill-")
            .tempdir_in(&self.spill_parent)
            .map_err(|e| BillError::io(&self.spill_parent, e))?;
        let writers = (0..BUCKETS as usize)
            .map(|bucket| {
                let path = Spill::path(dir.path(), bucket);
                File::create(&path)
                    .map(|file| SealedWriter {
                        file,
                        bucket,
                        chunks: 0,
                        plain: Vec::with_capacity(CHUNK + 1024),
                    })
                    .map_err(|e| BillError::io(&path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut spill = Spill {
            dir,
            key: Keyring::new(DataKey::generate(), Vec::new()),
            writers,
        };
        let mut held: Vec<(CompactString, Vec<RatedCall>)> = self.memory.drain().collect();
        // Deterministic spill files, whatever HashMap's order.
        held.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, calls) in held {
            for call in &calls {
                spill_one(&mut spill, call)?;
            }
        }
        self.held = 0;
        tracing::info!(
            dir = %spill.dir.path().display(),
            budget = self.budget,
            "the month exceeds the row budget: spilling to disk"
        );
        self.spill = Some(spill);
        Ok(())
    }

    /// Whether the calls went to disk.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// Hands the customers over in batches that fit the budget: `each(batch)` gets every
    /// customer of `customers` exactly once (with no calls if it has none), sorted within a
    /// batch. `counts`: stored calls per customer, to size the batches.
    pub fn batches(
        mut self,
        customers: &BTreeSet<String>,
        counts: &HashMap<String, usize>,
        mut each: impl FnMut(Vec<(String, Vec<RatedCall>)>) -> Result<(), BillError>,
    ) -> Result<(), BillError> {
        let Some(mut spill) = self.spill.take() else {
            let batch = customers
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        self.memory.remove(id.as_str()).unwrap_or_default(),
                    )
                })
                .collect();
            return each(batch);
        };
        for w in &mut spill.writers {
            w.flush(&spill.key)
                .map_err(|e| BillError::io(spill.dir.path(), e))?;
        }
        spill.writers.clear();
        let mut by_bucket: Vec<Vec<&String>> = vec![Vec::new(); BUCKETS as usize];
        for id in customers {
            by_bucket[bucket_of(id)].push(id);
        }
        for (bucket, ids) in by_bucket.into_iter().enumerate() {
            // Customers of this bucket, in chunks whose calls fit the budget together.
            let mut chunks: Vec<Vec<&String>> = Vec::new();
            let mut rows = 0;
            for id in ids {
                let n = counts.get(id).copied().unwrap_or(0);
                if chunks.is_empty() || (rows + n > self.budget && rows > 0) {
                    chunks.push(Vec::new());
                    rows = 0;
                }
                rows += n;
                chunks.last_mut().expect("pushed above").push(id);
            }
            let path = Spill::path(spill.dir.path(), bucket);
            for chunk in chunks {
                let wanted: BTreeSet<&str> = chunk.iter().map(|s| s.as_str()).collect();
                let mut calls: HashMap<CompactString, Vec<RatedCall>> = HashMap::new();
                read_bucket(&path, bucket, &spill.key, self.month, &mut |call| {
                    if wanted.contains(call.customer_id.as_str()) {
                        calls
                            .entry(call.customer_id.clone())
                            .or_default()
                            .push(call);
                    }
                })?;
                each(
                    chunk
                        .into_iter()
                        .map(|id| (id.clone(), calls.remove(id.as_str()).unwrap_or_default()))
                        .collect(),
                )?;
            }
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One call as a spill record: length-prefixed fields, little-endian. Private to one run.
fn spill_one(spill: &mut Spill, call: &RatedCall) -> Result<(), BillError> {
    let mut rec = Vec::with_capacity(160);
    for s in [
        &call.cdr_id,
        &call.switch_id,
        &call.customer_id,
        &call.calling_number,
        &call.called_number,
        &call.zone,
        &call.plan,
    ] {
        put_str(&mut rec, s);
    }
    rec.extend_from_slice(&call.start_time.timestamp_micros().to_le_bytes());
    rec.extend_from_slice(&call.duration_s.to_le_bytes());
    rec.extend_from_slice(&call.charge_eur.serialize());
    rec.push(u8::from(call.shortened) | u8::from(call.counselling) << 1);
    let bucket = bucket_of(&call.customer_id);
    spill.writers[bucket]
        .push(&spill.key, &rec)
        .map_err(|e| BillError::io(&Spill::path(spill.dir.path(), bucket), e))
}

fn read_bucket(
    path: &Path,
    bucket: usize,
    key: &Keyring,
    month: BillingMonth,
    sink: &mut dyn FnMut(RatedCall),
) -> Result<(), BillError> {
    let file = File::open(path).map_err(|e| BillError::io(path, e))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let damaged = || {
        BillError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "damaged spill record"),
        )
    };
    let mut len = [0u8; 4];
    let mut sealed = Vec::new();
    for chunk in 0u64.. {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(BillError::io(path, e)),
        }
        sealed.resize(u32::from_le_bytes(len) as usize, 0);
        r.read_exact(&mut sealed)
            .map_err(|e| BillError::io(path, e))?;
        let plain = key
            .open(&sealed, &chunk_context(bucket, chunk))
            .map_err(|_| damaged())?;
        let mut rest = plain.as_slice();
        while !rest.is_empty() {
            let (n, tail) = rest.split_at_checked(4).ok_or_else(damaged)?;
            let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
            let (rec, tail) = tail.split_at_checked(n).ok_or_else(damaged)?;
            sink(decode(rec, month).ok_or_else(damaged)?);
            rest = tail;
        }
    }
    Ok(())
}

fn decode(rec: &[u8], month: BillingMonth) -> Option<RatedCall> {
    let mut at = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = rec.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let mut strings: Vec<CompactString> = Vec::with_capacity(7);
    for _ in 0..7 {
        let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        strings.push(CompactString::from_utf8(take(n)?).ok()?);
    }
    let micros = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let duration_s = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let charge_eur = Decimal::deserialize(take(16)?.try_into().ok()?);
    let flags = take(1)?[0];
    let mut s = strings.into_iter();
    let mut next = || s.next();
    Some(RatedCall {
        cdr_id: next()?,
        switch_id: next()?,
        customer_id: next()?,
        calling_number: next()?,
        called_number: next()?,
        zone: next()?,
        plan: next()?,
        start_time: DateTime::from_timestamp_micros(micros)?,
        duration_s,
        charge_eur,
        billing_month: month,
        shortened: flags & 1 != 0,
        counselling: flags & 2 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn call(i: usize) -> RatedCall {
        let start_time = DateTime::from_timestamp(1_795_000_000 + i as i64, 7_000).unwrap();
        RatedCall {
            cdr_id: format!("c{i}").into(),
            switch_id: "fra1".into(),
            customer_id: format!("K{}", i % 7).into(),
            calling_number: "+4930901820".into(),
            called_number: "+4915112345xxx".into(),
            start_time,
            duration_s: i as i64,
            zone: "mobile".into(),
            charge_eur: Decimal::from_str("0.1234").unwrap() * Decimal::from(i),
            billing_month: BillingMonth::of(start_time),
            plan: "office_basic".into(),
            shortened: i.is_multiple_of(2),
            counselling: i.is_multiple_of(3),
        }
    }

    /// Past the budget, every call comes back exactly once, with every field, grouped by
    /// customer, in batches that respect the budget.
    #[test]
    fn spilled_calls_come_back_whole_and_grouped() {
        let tmp = tempfile::tempdir().unwrap();
        let month = BillingMonth::of(call(0).start_time);
        let mut h = Holder::new(10, month, tmp.path());
        let calls: Vec<RatedCall> = (0..100).map(call).collect();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for c in &calls {
            *counts.entry(c.customer_id.to_string()).or_default() += 1;
            h.push(c.clone()).unwrap();
        }
        assert!(h.spilled());
        let mut customers: BTreeSet<String> = counts.keys().cloned().collect();
        customers.insert("K-none".into());
        let mut seen: Vec<RatedCall> = Vec::new();
        let mut ids = Vec::new();
        h.batches(&customers, &counts, |batch| {
            // While the spill files exist, none of them shows a number or a customer id.
            for bucket in std::fs::read_dir(tmp.path()).unwrap() {
                for f in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
                    let bytes = std::fs::read(f.unwrap().path()).unwrap();
                    for needle in [&b"+4930901820"[..], b"+4915112345", b"office_basic"] {
                        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
                    }
                }
            }
            let rows: usize = batch.iter().map(|(_, c)| c.len()).sum();
            // One customer alone may exceed it (~15 calls each here), never two together.
            assert!(rows <= 10 || batch.len() == 1, "{rows}");
            for (id, calls) in batch {
                assert!(calls.iter().all(|c| c.customer_id == id));
                ids.push(id);
                seen.extend(calls);
            }
            Ok(())
        })
        .unwrap();
        ids.sort();
        assert_eq!(ids, customers.into_iter().collect::<Vec<_>>());
        seen.sort_by_key(|c| c.duration_s);
        assert_eq!(seen, calls);
        // The spill folder is gone with the holder.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
