//! The commit log that makes ingest exactly-once (the Kafka Connect S3-sink pattern, with an
//! explicit log because one offset range can span several billing months).
//!
//! A commit covers the offsets `first..=last` of one topic partition, where `first` is the
//! previous commit's `last + 1`. It is made durable in three steps:
//! 1. each month's Parquet file is written under `_staging/<writer>/` and fsynced;
//! 2. the commit record `_ingest/<topic>/<partition>/<first>.json` is created **exclusively**
//!    (hard link of a fsynced temp file): this is the commit point. If the name exists, another
//!    writer already committed from `first`: this writer is stale and is [`StoreError::Fenced`];
//! 3. the staged files are renamed into `cdrs/billing_month=…/` and the directories fsynced.
//!
//! Recovery ([`CommitLog::recover`]) rolls the latest record forward (finishes step 3) and
//! returns its `last`: the consumer skips every offset up to it.
//!
//! A record may also carry **held records**: consumed offsets whose outcome waits for a later
//! record (a Kamailio call start waiting for its end). They are part of the commit, so a
//! restart or the next owner of the partition resumes with exactly the records the last commit
//! held, never re-reading them from Kafka (the offsets are behind `last`). With a keyring they
//! are sealed (AES-256-GCM, bound to topic, partition and offset): they are traffic data. Kafka's committed group offset
//! is only a hint that saves re-reading; this log is the truth.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use evn_keys::Keyring;
use evn_rating::BillingMonth;

use crate::location::{Location, ObjectData};
use crate::{
    month_dir, sync_dir, write_batch, CallBatch, StoreError, WriteOptions, COMMITS_DIR, STAGING_DIR,
};

/// Commit records younger than this are kept, so a stale writer always collides with one.
/// Far longer than any consumer-group session timeout.
pub(crate) const KEEP_RECORDS_FOR: Duration = Duration::from_secs(24 * 3600);
/// The newest records are kept whatever their age.
pub(crate) const KEEP_RECORDS_MIN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    pub month: String,
    /// Relative to the data directory.
    pub staging: String,
    /// Relative to the data directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub files: Vec<CommittedFile>,
    pub writer: String,
    /// Records consumed but waiting for a later one (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<StoredHeld>,
}

/// A held record as the commit record stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeld {
    pub offset: i64,
    /// Base64 of the Kafka key, if the record had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Base64 of the payload, or of its sealed envelope when `sealed`.
    pub payload: String,
    #[serde(default)]
    pub sealed: bool,
}

/// A consumed record whose outcome waits for a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What recovery found for a partition: every offset up to `last` is durably handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// -1 when nothing was ever committed.
    pub last: i64,
    /// What the last commit held, oldest first.
    pub held: Vec<HeldRecord>,
}

#[derive(Debug, Clone)]
pub struct CommitLog {
    data: PathBuf,
    writer: String,
    /// Seals held records; Parquet files take their keys from [`WriteOptions`].
    keys: Option<Arc<Keyring>>,
    /// Set for an object store location: the protocol of [`crate::commit_object`].
    pub(crate) object: Option<ObjectData>,
}

impl CommitLog {
    /// The commit log at a `--data` location: a local folder or an object store.
    pub fn open_at(location: &Location, writer: &str) -> Result<Self, StoreError> {
        match location {
            Location::Local(data) => Self::open(data, writer),
            Location::Object(o) => Ok(CommitLog {
                data: PathBuf::new(),
                writer: writer.to_owned(),
                keys: None,
                object: Some(o.clone()),
            }),
        }
    }

    /// `writer` must be unique per process (it names the staging folder).
    pub fn open(data: &Path, writer: &str) -> Result<Self, StoreError> {
        for dir in [
            data.join(crate::CDRS_DIR),
            data.join(STAGING_DIR).join(writer),
            data.join(COMMITS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        Ok(CommitLog {
            data: data.to_owned(),
            writer: writer.to_owned(),
            keys: None,
            object: None,
        })
    }

    /// Held records are sealed with the current key and opened with any key of the ring.
    pub fn with_keys(mut self, keys: Option<Arc<Keyring>>) -> Self {
        self.keys = keys;
        self
    }

    fn held_context(topic: &str, partition: i32, offset: i64) -> String {
        format!("{COMMITS_DIR}/{topic}/{partition}/held/{offset}")
    }

    pub(crate) fn store_held(
        &self,
        topic: &str,
        partition: i32,
        held: &[HeldRecord],
    ) -> Vec<StoredHeld> {
        held.iter()
            .map(|h| {
                let payload = match &self.keys {
                    Some(k) => k.seal(&h.payload, &Self::held_context(topic, partition, h.offset)),
                    None => h.payload.clone(),
                };
                StoredHeld {
                    offset: h.offset,
                    key: h.key.as_ref().map(|k| BASE64.encode(k)),
                    payload: BASE64.encode(payload),
                    sealed: self.keys.is_some(),
                }
            })
            .collect()
    }

    pub(crate) fn open_held(
        &self,
        path: &Path,
        record: &CommitRecord,
    ) -> Result<Vec<HeldRecord>, StoreError> {
        let corrupt = |detail: String| StoreError::CorruptCommit {
            path: path.to_owned(),
            detail,
        };
        record
            .held
            .iter()
            .map(|h| {
                let decode = |b64: &str| {
                    BASE64
                        .decode(b64)
                        .map_err(|e| corrupt(format!("held record {}: {e}", h.offset)))
                };
                let mut payload = decode(&h.payload)?;
                if h.sealed {
                    let keys = self.keys.as_ref().ok_or_else(|| {
                        corrupt(format!(
                            "held record {} is encrypted: set EVN_DATA_KEY_FILE",
                            h.offset
                        ))
                    })?;
                    let context = Self::held_context(&record.topic, record.partition, h.offset);
                    payload = keys
                        .open(&payload, &context)
                        .map_err(|e| corrupt(format!("held record {}: {e}", h.offset)))?;
                }
                Ok(HeldRecord {
                    offset: h.offset,
                    key: h.key.as_deref().map(decode).transpose()?,
                    payload,
                })
            })
            .collect()
    }

    /// The local data folder (empty for an object store).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub(crate) fn writer(&self) -> &str {
        &self.writer
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data
            .join(COMMITS_DIR)
            .join(topic)
            .join(partition.to_string())
    }

    fn records(&self, topic: &str, partition: i32) -> Result<BTreeMap<i64, PathBuf>, StoreError> {
        let dir = self.partition_dir(topic, partition);
        let mut out = BTreeMap::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io(&dir, e))?.path();
            let Some(first) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            out.insert(first, path);
        }
        Ok(out)
    }

    fn read_record(path: &Path) -> Result<CommitRecord, StoreError> {
        let bytes = fs::read(path).map_err(|e| StoreError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptCommit {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Finishes the latest commit of a partition (if a crash interrupted its renames) and
    /// returns the last offset that is durably handled.
    pub fn recover(&self, topic: &str, partition: i32) -> Result<PartitionState, StoreError> {
        if let Some(o) = &self.object {
            return self.recover_object(o, topic, partition);
        }
        let records = self.records(topic, partition)?;
        let Some((_, path)) = records.iter().next_back() else {
            return Ok(PartitionState {
                last: -1,
                held: Vec::new(),
            });
        };
        let record = Self::read_record(path)?;
        self.roll_forward(&record)?;
        Ok(PartitionState {
            last: record.last,
            held: self.open_held(path, &record)?,
        })
    }

    fn roll_forward(&self, record: &CommitRecord) -> Result<(), StoreError> {
        for f in &record.files {
            let (staging, file) = (self.data.join(&f.staging), self.data.join(&f.file));
            if file.exists() {
                continue;
            }
            match fs::rename(&staging, &file) {
                Ok(()) => {
                    tracing::debug!(file = %file.display(), "moved a committed file into place");
                    sync_dir(file.parent().expect("file has a parent"))?;
                }
                // Another process finished the rename first, or retention deleted the month since.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&staging, e)),
            }
        }
        Ok(())
    }

    /// The record of a commit, held records stored (sealed) as the log keeps them.
    pub(crate) fn record(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        last: i64,
        files: Vec<CommittedFile>,
        held: &[HeldRecord],
    ) -> CommitRecord {
        CommitRecord {
            topic: topic.to_owned(),
            partition,
            first,
            last,
            files,
            writer: self.writer.clone(),
            held: self.store_held(topic, partition, held),
        }
    }

    /// Commits offsets `prev_last + 1 ..= last` of a partition with the rows they produced,
    /// grouped by billing month. Returns [`StoreError::Fenced`] if another writer got there first;
    /// nothing of this commit is then visible.
    pub fn commit(
        &self,
        topic: &str,
        partition: i32,
        prev_last: i64,
        last: i64,
        months: &BTreeMap<BillingMonth, CallBatch>,
        options: WriteOptions,
    ) -> Result<CommitRecord, StoreError> {
        self.commit_holding(topic, partition, prev_last, last, months, &[], options)
    }

    /// [`CommitLog::commit`] that also makes `held` (offsets up to `last` whose outcome waits
    /// for a later record) part of the commit; the next [`CommitLog::recover`] returns them.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_holding(
        &self,
        topic: &str,
        partition: i32,
        prev_last: i64,
        last: i64,
        months: &BTreeMap<BillingMonth, CallBatch>,
        held: &[HeldRecord],
        options: WriteOptions,
    ) -> Result<CommitRecord, StoreError> {
        if let Some(o) = &self.object {
            return self.commit_object(o, topic, partition, prev_last, last, months, held, options);
        }
        let first = prev_last + 1;
        let mut files = Vec::new();
        let staging_dir = self.data.join(STAGING_DIR).join(&self.writer);
        for (month, rows) in months {
            if rows.num_rows() == 0 {
                continue;
            }
            let name = data_file_name(topic, partition, first, last);
            let staged = staging_dir.join(format!("billing_month={month}+{name}"));
            let final_dir = month_dir(&self.data, *month);
            fs::create_dir_all(&final_dir).map_err(|e| StoreError::io(&final_dir, e))?;
            let bytes = match write_batch(&staged, rows, options.clone()) {
                Ok(b) => b,
                Err(e) => {
                    self.discard(&files, Some(&staged));
                    return Err(e);
                }
            };
            files.push(CommittedFile {
                month: month.to_string(),
                staging: rel(&self.data, &staged),
                file: rel(&self.data, &final_dir.join(&name)),
                rows: rows.num_rows() as u64,
                bytes,
            });
        }
        // The staged files' names must be durable before the record that names them is: a
        // file's fsync does not make its directory entry durable everywhere (POSIX asks for the
        // directory's), and after a power loss recovery takes a missing staged file for one
        // already moved or deleted, so its rows would be lost with their offsets committed.
        if !files.is_empty() {
            if let Err(e) = sync_dir(&staging_dir) {
                self.discard(&files, None);
                return Err(e);
            }
        }
        let record = self.record(topic, partition, first, last, files, held);
        if let Err(e) = self.write_record(&record) {
            self.discard(&record.files, None);
            return Err(e);
        }
        // Past the commit point: a failure from here on is finished by recovery.
        self.roll_forward(&record)?;
        self.prune(topic, partition);
        Ok(record)
    }

    fn discard(&self, files: &[CommittedFile], extra: Option<&Path>) {
        for f in files {
            let _ = fs::remove_file(self.data.join(&f.staging));
        }
        if let Some(p) = extra {
            let _ = fs::remove_file(p);
        }
    }

    fn write_record(&self, record: &CommitRecord) -> Result<(), StoreError> {
        let dir = self.partition_dir(&record.topic, record.partition);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let target = dir.join(format!("{:020}.json", record.first));
        let tmp = self
            .data
            .join(STAGING_DIR)
            .join(&self.writer)
            .join(format!("commit-{}-{}.json", record.partition, record.first));
        let body = serde_json::to_vec_pretty(record).expect("commit record serializes");
        {
            let mut f = fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
            f.write_all(&body)
                .and_then(|_| f.sync_all())
                .map_err(|e| StoreError::io(&tmp, e))?;
        }
        // link(2) fails if the name exists: exactly one writer wins each `first`.
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::Fenced {
                topic: record.topic.clone(),
                partition: record.partition,
                start: record.first,
            }),
            Err(e) => Err(StoreError::io(&target, e)),
        }
    }

    /// Drops old commit records; they hold only offsets and file names, but grow without end.
    fn prune(&self, topic: &str, partition: i32) {
        let Ok(records) = self.records(topic, partition) else {
            return;
        };
        let cutoff = SystemTime::now() - KEEP_RECORDS_FOR;
        let n = records.len();
        for (i, path) in records.values().enumerate() {
            if i + KEEP_RECORDS_MIN >= n {
                break;
            }
            let old = fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if old {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// A committed data file's name in its month folder: unique per partition and offset range.
pub(crate) fn data_file_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}+{partition}+{first:020}-{last:020}.parquet")
}

fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet_io::tests::{by_month, sample};
    use crate::{list_month_files, read_month, StoredCall};

    #[test]
    fn commit_makes_files_visible_and_recover_returns_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::open(dir.path(), "w1").unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, -1);
        let rows: Vec<StoredCall> = (0..10).map(sample).collect();
        let month = rows[0].call.billing_month;
        log.commit("cdrs", 3, -1, 9, &by_month(&rows), WriteOptions::default())
            .unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, 9);
        assert_eq!(read_month(dir.path(), month).unwrap(), rows);
        // A commit with no rows still advances the log (dead letters and skips only).
        log.commit("cdrs", 3, 9, 20, &BTreeMap::new(), WriteOptions::default())
            .unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, 20);
    }

    #[test]
    fn held_records_are_part_of_the_commit_and_sealed_with_a_key() {
        let held = vec![
            HeldRecord {
                offset: 4,
                key: Some(b"call-7@pbx".to_vec()),
                payload: br#"{"method":"INVITE","callid":"call-7@pbx","src_user":"+4930901820"}"#
                    .to_vec(),
            },
            HeldRecord {
                offset: 6,
                key: None,
                payload: b"\xff binary too".to_vec(),
            },
        ];
        for keys in [None, Some(crate::parquet_io::tests::keyring(7))] {
            let dir = tempfile::tempdir().unwrap();
            let log = CommitLog::open(dir.path(), "w1")
                .unwrap()
                .with_keys(keys.clone());
            let none = BTreeMap::new();
            let options = WriteOptions::default();
            log.commit_holding("k", 0, -1, 6, &none, &held, options.clone())
                .unwrap();
            assert_eq!(log.recover("k", 0).unwrap().held, held);
            let record =
                fs::read_to_string(dir.path().join("_ingest/k/0/00000000000000000000.json"))
                    .unwrap();
            // Sealed with a key: the caller's number is not in the commit log.
            assert_eq!(
                record.contains(&BASE64.encode(&held[0].payload)),
                keys.is_none(),
                "{record}"
            );
            // Without the key, an encrypted hold is an error that says what is missing.
            if keys.is_some() {
                let err = CommitLog::open(dir.path(), "w2")
                    .unwrap()
                    .recover("k", 0)
                    .unwrap_err();
                assert!(err.to_string().contains("EVN_DATA_KEY_FILE"), "{err}");
            }
            // The next commit holds less: the first start found its end.
            log.commit_holding("k", 0, 6, 9, &none, &held[1..], options.clone())
                .unwrap();
            assert_eq!(log.recover("k", 0).unwrap().held, held[1..]);
            // A commit without holds clears them; old records without the field read as none.
            log.commit("k", 0, 9, 10, &none, options).unwrap();
            let state = log.recover("k", 0).unwrap();
            assert_eq!((state.last, state.held.len()), (10, 0));
            let latest =
                fs::read_to_string(dir.path().join("_ingest/k/0/00000000000000000010.json"))
                    .unwrap();
            assert!(!latest.contains("held"), "{latest}");
        }
    }

    #[test]
    fn a_stale_writer_is_fenced_and_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let a = CommitLog::open(dir.path(), "a").unwrap();
        let b = CommitLog::open(dir.path(), "b").unwrap();
        let rows: Vec<StoredCall> = (0..5).map(sample).collect();
        let month = rows[0].call.billing_month;
        a.commit("t", 0, -1, 4, &by_month(&rows), WriteOptions::default())
            .unwrap();
        let err = b
            .commit(
                "t",
                0,
                -1,
                6,
                &by_month(&(0..7).map(sample).collect::<Vec<_>>()),
                WriteOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { start: 0, .. }), "{err}");
        assert_eq!(read_month(dir.path(), month).unwrap(), rows);
        assert_eq!(list_month_files(dir.path(), month).unwrap().len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join(STAGING_DIR).join("b"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn recovery_rolls_forward_a_commit_interrupted_before_rename() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::open(dir.path(), "w").unwrap();
        let rows: Vec<StoredCall> = (0..3).map(sample).collect();
        let month = rows[0].call.billing_month;
        let record = log
            .commit("t", 1, -1, 2, &by_month(&rows), WriteOptions::default())
            .unwrap();
        // Simulate a crash between the commit point and the rename.
        let f = &record.files[0];
        fs::rename(dir.path().join(&f.file), dir.path().join(&f.staging)).unwrap();
        assert!(read_month(dir.path(), month).unwrap().is_empty());
        let other = CommitLog::open(dir.path(), "w2").unwrap();
        assert_eq!(other.recover("t", 1).unwrap().last, 2);
        assert_eq!(read_month(dir.path(), month).unwrap(), rows);
    }
}
