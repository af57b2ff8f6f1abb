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
//! returns its `last`: the consumer skips every offset up to it. Kafka's committed group offset
//! is only a hint that saves re-reading; this log is the truth.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use evn_rating::BillingMonth;

use crate::{
    month_dir, sync_dir, write_file, StoreError, StoredCall, WriteOptions, COMMITS_DIR, STAGING_DIR,
};

/// Commit records younger than this are kept, so a stale writer always collides with one.
/// Far longer than any consumer-group session timeout.
const KEEP_RECORDS_FOR: Duration = Duration::from_secs(24 * 3600);
/// The newest records are kept whatever their age.
const KEEP_RECORDS_MIN: usize = 4;

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
}

/// What recovery found for a partition: every offset up to `last` is durably handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// -1 when nothing was ever committed.
    pub last: i64,
}

#[derive(Debug, Clone)]
pub struct CommitLog {
    data: PathBuf,
    writer: String,
}

impl CommitLog {
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
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
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
        let records = self.records(topic, partition)?;
        let Some((_, path)) = records.iter().next_back() else {
            return Ok(PartitionState { last: -1 });
        };
        let record = Self::read_record(path)?;
        self.roll_forward(&record)?;
        Ok(PartitionState { last: record.last })
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

    /// Commits offsets `prev_last + 1 ..= last` of a partition with the rows they produced,
    /// grouped by billing month. Returns [`StoreError::Fenced`] if another writer got there first;
    /// nothing of this commit is then visible.
    pub fn commit(
        &self,
        topic: &str,
        partition: i32,
        prev_last: i64,
        last: i64,
        months: &BTreeMap<BillingMonth, Vec<StoredCall>>,
        options: WriteOptions,
    ) -> Result<CommitRecord, StoreError> {
        let first = prev_last + 1;
        let staging_dir = self.data.join(STAGING_DIR).join(&self.writer);
        let name = format!("{topic}+{partition}+{first:020}-{last:020}.parquet");
        let mut jobs = Vec::new();
        for (month, rows) in months {
            if rows.is_empty() {
                continue;
            }
            let staged = staging_dir.join(format!("billing_month={month}+{name}"));
            let final_dir = month_dir(&self.data, *month);
            fs::create_dir_all(&final_dir).map_err(|e| StoreError::io(&final_dir, e))?;
            jobs.push((month, rows, staged, final_dir));
        }
        let written: Vec<Result<u64, StoreError>> = jobs
            .iter()
            .map(|(_, rows, staged, _)| write_file(staged, rows, options.clone()))
            .collect();
        if let Some(i) = written.iter().position(Result::is_err) {
            for (_, _, staged, _) in &jobs {
                let _ = fs::remove_file(staged);
            }
            return Err(written
                .into_iter()
                .nth(i)
                .expect("found")
                .expect_err("an error"));
        }
        let files: Vec<CommittedFile> = jobs
            .into_iter()
            .zip(written)
            .map(|((month, rows, staged, final_dir), bytes)| CommittedFile {
                month: month.to_string(),
                staging: rel(&self.data, &staged),
                file: rel(&self.data, &final_dir.join(&name)),
                rows: rows.len() as u64,
                bytes: bytes.expect("checked above"),
            })
            .collect();
        let record = CommitRecord {
            topic: topic.to_owned(),
            partition,
            first,
            last,
            files,
            writer: self.writer.clone(),
        };
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

fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet_io::tests::sample;
    use crate::{list_month_files, read_month};

    fn by_month(rows: Vec<StoredCall>) -> BTreeMap<BillingMonth, Vec<StoredCall>> {
        let mut m: BTreeMap<BillingMonth, Vec<StoredCall>> = BTreeMap::new();
        for r in rows {
            m.entry(r.call.billing_month).or_default().push(r);
        }
        m
    }

    #[test]
    fn commit_makes_files_visible_and_recover_returns_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::open(dir.path(), "w1").unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, -1);
        let rows: Vec<StoredCall> = (0..10).map(sample).collect();
        let month = rows[0].call.billing_month;
        log.commit(
            "cdrs",
            3,
            -1,
            9,
            &by_month(rows.clone()),
            WriteOptions::default(),
        )
        .unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, 9);
        assert_eq!(read_month(dir.path(), month).unwrap(), rows);
        // A commit with no rows still advances the log (dead letters and skips only).
        log.commit("cdrs", 3, 9, 20, &BTreeMap::new(), WriteOptions::default())
            .unwrap();
        assert_eq!(log.recover("cdrs", 3).unwrap().last, 20);
    }

    #[test]
    fn a_stale_writer_is_fenced_and_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let a = CommitLog::open(dir.path(), "a").unwrap();
        let b = CommitLog::open(dir.path(), "b").unwrap();
        let rows: Vec<StoredCall> = (0..5).map(sample).collect();
        let month = rows[0].call.billing_month;
        a.commit(
            "t",
            0,
            -1,
            4,
            &by_month(rows.clone()),
            WriteOptions::default(),
        )
        .unwrap();
        let err = b
            .commit(
                "t",
                0,
                -1,
                6,
                &by_month((0..7).map(sample).collect()),
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
            .commit(
                "t",
                1,
                -1,
                2,
                &by_month(rows.clone()),
                WriteOptions::default(),
            )
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
