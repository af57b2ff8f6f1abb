//! The commit log on an object store, where there is no rename: the same three steps as the
//! local log ([`crate::commit`]), with a conditional PUT as the commit point and a server-side
//! copy where the local log renames.
//!
//! 1. Each month's Parquet file is PUT whole under a name unique to this writer,
//!    `_staging/<writer>/billing_month=M+<topic>+<partition>+<first>-<last>.parquet`. Nobody
//!    reads `_staging/` (readers list only `cdrs/billing_month=…/`).
//! 2. The commit record `_ingest/<topic>/<partition>/<first>.json` is PUT with
//!    `PutMode::Create` (S3: `If-None-Match: *`; a local folder: hard link): this is the commit
//!    point, exclusive like the local log's `link(2)`. If it exists, another writer committed
//!    from `first` first: this writer is [`StoreError::Fenced`], deletes its staged objects and
//!    nothing of its commit is ever visible. A record that exists and is this writer's own (a
//!    retried PUT whose first attempt landed) is this commit, not a fence.
//! 3. Each staged object is copied to `cdrs/billing_month=M/<topic>+<partition>+<first>-<last>
//!    .parquet` (unique: the record for `first` is) and the staged object deleted.
//!
//! Recovery lists `_ingest/<topic>/<partition>/`, rolls the highest record forward (step 3 is
//! idempotent: a copy whose target exists is skipped, a missing source means another process
//! finished it) and returns its `last`. So `cdrs/` holds committed files only, as on a local
//! disk, and any Parquet reader (DuckDB, Spark over S3) may list it; the commit records stay
//! small and can be pruned as locally. A writer killed after step 1 leaves objects under its
//! `_staging/<writer>/` that no record names: [`CommitLog::remove_orphans`] deletes those
//! older than a day (a live writer goes from step 1 to step 2 in seconds).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use object_store::PutMode;

use evn_rating::BillingMonth;

use crate::commit::{data_file_name, CommittedFile, KEEP_RECORDS_FOR, KEEP_RECORDS_MIN};
use crate::location::ObjectData;
use crate::{
    encode_batch, CallBatch, CommitLog, CommitRecord, HeldRecord, PartitionState, StoreError,
    WriteOptions, CDRS_DIR, COMMITS_DIR, STAGING_DIR,
};

/// Staged objects older than this and named by no commit record are a dead writer's debris.
pub const ORPHAN_AGE: Duration = Duration::from_secs(24 * 3600);

fn partition_dir(topic: &str, partition: i32) -> String {
    format!("{COMMITS_DIR}/{topic}/{partition}")
}

/// Commit records of a partition by `first`: key and age.
fn records(
    o: &ObjectData,
    topic: &str,
    partition: i32,
) -> Result<BTreeMap<i64, crate::Listed>, StoreError> {
    let dir = partition_dir(topic, partition);
    let mut out = BTreeMap::new();
    for listed in o.list(&dir)? {
        let Some(first) = listed
            .key
            .strip_prefix(&dir)
            .and_then(|n| n.strip_prefix('/'))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        out.insert(first, listed);
    }
    Ok(out)
}

fn read_record(o: &ObjectData, key: &str) -> Result<Option<CommitRecord>, StoreError> {
    let Some(bytes) = o.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::CorruptCommit {
            path: o.display(key).into(),
            detail: e.to_string(),
        })
}

fn roll_forward(o: &ObjectData, record: &CommitRecord) -> Result<(), StoreError> {
    for f in &record.files {
        if !o.exists(&f.file)? && !o.copy(&f.staging, &f.file)? {
            // Another process finished this file first (and deleted the staged copy), or
            // retention deleted the month since.
            tracing::debug!(file = %o.display(&f.file), "staged object already gone");
            continue;
        }
        o.delete(&f.staging)?;
    }
    Ok(())
}

impl CommitLog {
    pub(crate) fn recover_object(
        &self,
        o: &ObjectData,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionState, StoreError> {
        let records = records(o, topic, partition)?;
        let Some((_, latest)) = records.iter().next_back() else {
            return Ok(PartitionState {
                last: -1,
                held: Vec::new(),
            });
        };
        let Some(record) = read_record(o, &latest.key)? else {
            // Pruned between the listing and the read: only older records are pruned, so a
            // newer one exists now; list again.
            return self.recover_object(o, topic, partition);
        };
        roll_forward(o, &record)?;
        let held = self.open_held(std::path::Path::new(&o.display(&latest.key)), &record)?;
        Ok(PartitionState {
            last: record.last,
            held,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_object(
        &self,
        o: &ObjectData,
        topic: &str,
        partition: i32,
        prev_last: i64,
        last: i64,
        months: &BTreeMap<BillingMonth, CallBatch>,
        held: &[HeldRecord],
        options: WriteOptions,
    ) -> Result<CommitRecord, StoreError> {
        let first = prev_last + 1;
        let mut files = Vec::new();
        for (month, rows) in months {
            if rows.num_rows() == 0 {
                continue;
            }
            let name = data_file_name(topic, partition, first, last);
            let staging = format!(
                "{STAGING_DIR}/{}/billing_month={month}+{name}",
                self.writer()
            );
            let file = format!("{CDRS_DIR}/billing_month={month}/{name}");
            let staged = encode_batch(o.display(&staging).as_ref(), rows, options.clone())
                .and_then(|bytes| {
                    let size = bytes.len() as u64;
                    o.put(&staging, Bytes::from(bytes), PutMode::Overwrite)
                        .map(|()| size)
                });
            let bytes = match staged {
                Ok(b) => b,
                Err(e) => {
                    discard(o, &files);
                    return Err(e);
                }
            };
            files.push(CommittedFile {
                month: month.to_string(),
                staging,
                file,
                rows: rows.num_rows() as u64,
                bytes,
            });
        }
        let record = self.record(topic, partition, first, last, files, held);
        let key = format!("{}/{first:020}.json", partition_dir(topic, partition));
        let body = serde_json::to_vec_pretty(&record).expect("commit record serializes");
        match o.put_raw(&key, Bytes::from(body), PutMode::Create) {
            Ok(()) => {}
            Err(put_error) => {
                // AlreadyExists is a fence, unless the record is our own: a request the client
                // retried after its first attempt had landed. Any other error is ambiguous in the
                // same way, so the record decides there too.
                match read_record(o, &key)? {
                    Some(existing) if existing == record => {}
                    Some(_) => {
                        discard(o, &record.files);
                        return Err(StoreError::Fenced {
                            topic: topic.to_owned(),
                            partition,
                            start: first,
                        });
                    }
                    // Not committed: the staged objects stay for a retry or orphan removal (a
                    // record written later by a slow retry must still find them).
                    None => {
                        return Err(StoreError::Object {
                            path: o.display(&key),
                            source: put_error,
                        })
                    }
                }
            }
        }
        // Past the commit point: a failure from here on is finished by recovery.
        roll_forward(o, &record)?;
        prune(o, topic, partition);
        Ok(record)
    }

    /// Deletes staged objects older than `age` that no partition's latest commit record names:
    /// what writers killed between the data PUT and the commit record left. Best run at start;
    /// returns how many were deleted. A no-op on a local folder (`evn retention` cleans
    /// `_staging/` there).
    pub fn remove_orphans(&self, age: Duration) -> Result<usize, StoreError> {
        let Some(o) = &self.object else {
            return Ok(0);
        };
        let orphans = self.orphans(age)?;
        for l in &orphans {
            o.delete(&l.key)?;
        }
        if !orphans.is_empty() {
            tracing::info!(
                removed = orphans.len(),
                "removed staged objects of writers that died before their commit"
            );
        }
        Ok(orphans.len())
    }

    /// The staged objects [`CommitLog::remove_orphans`] deletes (keys relative to the prefix).
    pub fn orphans(&self, age: Duration) -> Result<Vec<crate::Listed>, StoreError> {
        let Some(o) = &self.object else {
            return Ok(Vec::new());
        };
        let cutoff = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
        let staged: Vec<crate::Listed> = o
            .list(STAGING_DIR)?
            .into_iter()
            .filter(|l| l.modified < cutoff)
            .collect();
        if staged.is_empty() {
            return Ok(staged);
        }
        // Only a partition's latest record can still be rolled forward.
        let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
        for l in o.list(COMMITS_DIR)? {
            let Some((dir, name)) = l.key.rsplit_once('/') else {
                continue;
            };
            let Some(first) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let entry = latest
                .entry(dir.to_owned())
                .or_insert((first, l.key.clone()));
            if first > entry.0 {
                *entry = (first, l.key.clone());
            }
        }
        let mut needed = BTreeSet::new();
        for (_, key) in latest.values() {
            if let Some(record) = read_record(o, key)? {
                needed.extend(record.files.into_iter().map(|f| f.staging));
            }
        }
        Ok(staged
            .into_iter()
            .filter(|l| !needed.contains(&l.key))
            .collect())
    }
}

fn discard(o: &ObjectData, files: &[CommittedFile]) {
    for f in files {
        let _ = o.delete(&f.staging);
    }
}

/// Drops old commit records, as the local log does (the newest are always kept).
fn prune(o: &ObjectData, topic: &str, partition: i32) {
    let Ok(records) = records(o, topic, partition) else {
        return;
    };
    let cutoff = Utc::now() - chrono::Duration::from_std(KEEP_RECORDS_FOR).unwrap_or_default();
    let n = records.len();
    for (i, listed) in records.values().enumerate() {
        if i + KEEP_RECORDS_MIN >= n {
            break;
        }
        if listed.modified < cutoff {
            let _ = o.delete(&listed.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::parquet_io::tests::{by_month, sample};
    use crate::StoredCall;
    use crate::{Keyring, Location};

    /// The same check against an in-memory store and a local folder through `file://`.
    fn check(test: impl Fn(&Location, &ObjectData)) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let file_url = url::Url::from_directory_path(dir.path().join("data"))
            .unwrap()
            .to_string();
        let memory_url = format!(
            "memory://commit-test-{}/some/prefix",
            N.fetch_add(1, Ordering::Relaxed)
        );
        for url in [memory_url, file_url] {
            let location = Location::parse(&url).unwrap();
            let Location::Object(o) = &location else {
                panic!("{url} is not an object store");
            };
            test(&location, o);
        }
    }

    fn month_of(rows: &[StoredCall]) -> BillingMonth {
        rows[0].call.billing_month
    }

    fn staged(o: &ObjectData) -> Vec<String> {
        o.list(STAGING_DIR)
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect()
    }

    #[test]
    fn object_commits_carry_held_records_sealed() {
        let held = vec![crate::HeldRecord {
            offset: 3,
            key: Some(b"c1@pbx".to_vec()),
            payload: br#"{"method":"INVITE","callid":"c1@pbx","src_user":"+4930901820"}"#.to_vec(),
        }];
        check(|location, o| {
            let keys = crate::parquet_io::tests::keyring(9);
            let log = CommitLog::open_at(location, "w1")
                .unwrap()
                .with_keys(Some(keys));
            let none = BTreeMap::new();
            log.commit_holding("k", 0, -1, 3, &none, &held, WriteOptions::default())
                .unwrap();
            assert_eq!(log.recover("k", 0).unwrap().held, held);
            let record = o
                .get(&format!("{COMMITS_DIR}/k/0/{:020}.json", 0))
                .unwrap()
                .expect("the commit record");
            let text = String::from_utf8(record.to_vec()).unwrap();
            assert!(text.contains("\"sealed\": true"), "{text}");
            // Another process without the key cannot resume the held start silently.
            let err = CommitLog::open_at(location, "w2")
                .unwrap()
                .recover("k", 0)
                .unwrap_err();
            assert!(err.to_string().contains("EVN_DATA_KEY_FILE"), "{err}");
        });
    }

    #[test]
    fn object_commit_makes_files_visible_and_recover_returns_last() {
        check(|location, o| {
            let log = CommitLog::open_at(location, "w1").unwrap();
            assert_eq!(log.recover("cdrs", 3).unwrap().last, -1);
            let rows: Vec<StoredCall> = (0..10).map(sample).collect();
            let month = month_of(&rows);
            log.commit("cdrs", 3, -1, 9, &by_month(&rows), WriteOptions::default())
                .unwrap();
            assert_eq!(log.recover("cdrs", 3).unwrap().last, 9);
            assert_eq!(location.read_month_with(month, None).unwrap(), rows);
            assert_eq!(
                location.list_month_files(month).unwrap(),
                vec![std::path::PathBuf::from(format!(
                    "cdrs/billing_month={month}/cdrs+3+{:020}-{:020}.parquet",
                    0, 9
                ))]
            );
            assert_eq!(location.list_months().unwrap(), vec![month]);
            assert!(staged(o).is_empty(), "{:?}", staged(o));
            // A commit with no rows still advances the log (dead letters and skips only).
            log.commit("cdrs", 3, 9, 20, &BTreeMap::new(), WriteOptions::default())
                .unwrap();
            assert_eq!(log.recover("cdrs", 3).unwrap().last, 20);
        });
    }

    #[test]
    fn object_stale_writer_is_fenced_and_leaves_nothing_visible() {
        check(|location, o| {
            let a = CommitLog::open_at(location, "a").unwrap();
            let b = CommitLog::open_at(location, "b").unwrap();
            let rows: Vec<StoredCall> = (0..5).map(sample).collect();
            let month = month_of(&rows);
            a.commit("t", 0, -1, 4, &by_month(&rows), WriteOptions::default())
                .unwrap();
            let stale: Vec<StoredCall> = (0..7).map(sample).collect();
            let err = b
                .commit("t", 0, -1, 6, &by_month(&stale), WriteOptions::default())
                .unwrap_err();
            assert!(matches!(err, StoreError::Fenced { start: 0, .. }), "{err}");
            assert_eq!(location.read_month_with(month, None).unwrap(), rows);
            assert_eq!(location.list_month_files(month).unwrap().len(), 1);
            assert!(staged(o).is_empty(), "{:?}", staged(o));
            assert_eq!(b.recover("t", 0).unwrap().last, 4);
        });
    }

    #[test]
    fn object_writer_killed_after_the_data_put_leaves_nothing_visible() {
        check(|location, o| {
            let rows: Vec<StoredCall> = (0..6).map(sample).collect();
            let month = month_of(&rows);
            // The dead writer got as far as step 1: its data object, no commit record.
            let orphan = format!(
                "{STAGING_DIR}/dead/billing_month={month}+t+0+{:020}-{:020}.parquet",
                0, 5
            );
            let bytes = crate::encode_file("x".as_ref(), &rows, WriteOptions::default()).unwrap();
            o.put(&orphan, Bytes::from(bytes), PutMode::Overwrite)
                .unwrap();
            assert!(location.read_month_with(month, None).unwrap().is_empty());
            let next = CommitLog::open_at(location, "next").unwrap();
            assert_eq!(next.recover("t", 0).unwrap().last, -1);
            let theirs: Vec<StoredCall> = (0..3).map(sample).collect();
            next.commit("t", 0, -1, 2, &by_month(&theirs), WriteOptions::default())
                .unwrap();
            assert_eq!(location.read_month_with(month, None).unwrap(), theirs);
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(next.remove_orphans(Duration::ZERO).unwrap(), 1);
            assert!(staged(o).is_empty(), "{:?}", staged(o));
            assert_eq!(location.read_month_with(month, None).unwrap(), theirs);
        });
    }

    #[test]
    fn object_recovery_rolls_forward_a_commit_interrupted_before_the_copy() {
        check(|location, o| {
            let log = CommitLog::open_at(location, "w").unwrap();
            let rows: Vec<StoredCall> = (0..3).map(sample).collect();
            let month = month_of(&rows);
            let record = log
                .commit("t", 1, -1, 2, &by_month(&rows), WriteOptions::default())
                .unwrap();
            // A crash between the commit point and the copy: staged object, no visible file.
            let f = &record.files[0];
            assert!(o.copy(&f.file, &f.staging).unwrap());
            o.delete(&f.file).unwrap();
            assert!(location.read_month_with(month, None).unwrap().is_empty());
            // Named by the latest record: not an orphan, whatever its age.
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(log.remove_orphans(Duration::ZERO).unwrap(), 0);
            let other = CommitLog::open_at(location, "w2").unwrap();
            assert_eq!(other.recover("t", 1).unwrap().last, 2);
            assert_eq!(location.read_month_with(month, None).unwrap(), rows);
            assert!(staged(o).is_empty(), "{:?}", staged(o));
        });
    }

    #[test]
    fn object_commit_whose_record_already_landed_is_not_fenced() {
        check(|location, o| {
            let log = CommitLog::open_at(location, "w").unwrap();
            let rows: Vec<StoredCall> = (0..4).map(sample).collect();
            let month = month_of(&rows);
            let record = log
                .commit("t", 2, -1, 3, &by_month(&rows), WriteOptions::default())
                .unwrap();
            // As if the client retried the record PUT after its first attempt had landed.
            o.delete(&record.files[0].file).unwrap();
            let again = log
                .commit("t", 2, -1, 3, &by_month(&rows), WriteOptions::default())
                .unwrap();
            assert_eq!(again, record);
            assert_eq!(location.read_month_with(month, None).unwrap(), rows);
        });
    }

    #[test]
    fn object_commits_are_encrypted_at_rest() {
        check(|location, o| {
            let keys = Arc::new(Keyring::new(
                evn_keys::DataKey::from_bytes([7; 32]),
                Vec::new(),
            ));
            let log = CommitLog::open_at(location, "w").unwrap();
            let rows: Vec<StoredCall> = (0..20).map(sample).collect();
            let month = month_of(&rows);
            let options = WriteOptions {
                keys: Some(Arc::clone(&keys)),
                ..WriteOptions::default()
            };
            log.commit("t", 0, -1, 19, &by_month(&rows), options)
                .unwrap();
            let file = &location.list_month_files(month).unwrap()[0];
            let raw = o.get(&file.to_string_lossy()).unwrap().unwrap();
            assert!(raw.ends_with(b"PARE"));
            assert!(!raw.windows(5).any(|w| w == b"K1001"));
            assert!(matches!(
                location.read_month_with(month, None),
                Err(StoreError::Encrypted { .. })
            ));
            assert_eq!(location.read_month_with(month, Some(&keys)).unwrap(), rows);
        });
    }
}
