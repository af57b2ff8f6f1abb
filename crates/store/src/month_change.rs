//! Changing a month's stored files on an object store (retention, legal holds, erasure), where
//! there is no rename to swap a month folder as on a local disk.
//!
//! A change is a set of files of one month that are replaced (rows removed) or deleted:
//!
//! 1. each replacement is PUT whole under `cdrs/billing_month=M/_rewrite/<name>`;
//! 2. the change record `cdrs/billing_month=M/_change.json` (file name → `replace`/`delete`) is
//!    PUT with [`PutMode::Create`]: the commit point. From here on every evn reader
//!    ([`crate::Location::list_month_files`]) sees the month as changed: a deleted file is no
//!    longer listed, a replaced one is read from `_rewrite/`;
//! 3. each replacement is copied server-side over its original and each deleted file deleted;
//! 4. the change record is deleted, then the `_rewrite/` objects.
//!
//! So evn's readers see the month as it was or as it is after the change, never a mix. A crash
//! before 2 leaves `_rewrite/` objects without a record: the next run deletes them (nothing
//! changed). A crash after 2 leaves the record: the next run finishes 3 and 4 (every step is
//! idempotent). Files that appear in the month after the change was planned (a very late CDR
//! committed by ingest) are not named by the record and stay untouched: nothing is lost.
//!
//! Readers outside evn (DuckDB, Spark) skip `_`-prefixed names as usual and do not read the
//! change record: during step 3 they can see some files of the month already changed and
//! others not yet. The step takes one copy or delete per file.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use evn_rating::BillingMonth;

use crate::location::month_key;
use crate::{ObjectData, PutMode, StoreError};

pub const CHANGE_FILE: &str = "_change.json";
pub const REWRITE_DIR: &str = "_rewrite";

/// What becomes of one file of the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChange {
    /// Replaced by `_rewrite/<name>`.
    Replace,
    Delete,
}

/// The change record: `_change.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthChange {
    /// `YYYY-MM`, for people reading the record; the record's place names the month.
    pub month: String,
    /// File name (without the month prefix) → what becomes of it.
    pub files: BTreeMap<String, FileChange>,
}

pub(crate) fn change_key(month: BillingMonth) -> String {
    format!("{}/{CHANGE_FILE}", month_key(month))
}

pub(crate) fn rewrite_key(month: BillingMonth, name: &str) -> String {
    format!("{}/{REWRITE_DIR}/{name}", month_key(month))
}

/// The month's change record, if a change is under way.
pub(crate) fn read_change(
    o: &ObjectData,
    month: BillingMonth,
) -> Result<Option<MonthChange>, StoreError> {
    let key = change_key(month);
    let Some(bytes) = o.get(&key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::CorruptCommit {
            path: o.display(&key).into(),
            detail: format!("change record: {e}"),
        })
}

/// A change being prepared: replacements are uploaded as they are added; nothing is visible
/// until [`MonthChangeWriter::commit`].
pub struct MonthChangeWriter<'a> {
    o: &'a ObjectData,
    month: BillingMonth,
    change: MonthChange,
}

impl<'a> MonthChangeWriter<'a> {
    /// Call [`finish_month_change`] first: a change left by an interrupted run makes `commit`
    /// fail.
    pub fn new(o: &'a ObjectData, month: BillingMonth) -> Self {
        MonthChangeWriter {
            o,
            month,
            change: MonthChange {
                month: month.to_string(),
                files: BTreeMap::new(),
            },
        }
    }

    /// `name` (a file of the month, without its prefix) is to be replaced by `bytes`.
    pub fn replace(&mut self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.o
            .put(&rewrite_key(self.month, name), bytes, PutMode::Overwrite)?;
        self.change
            .files
            .insert(name.to_owned(), FileChange::Replace);
        Ok(())
    }

    pub fn delete(&mut self, name: &str) {
        self.change
            .files
            .insert(name.to_owned(), FileChange::Delete);
    }

    pub fn is_empty(&self) -> bool {
        self.change.files.is_empty()
    }

    /// Writes the change record (the commit point) and carries the change out.
    pub fn commit(self) -> Result<(), StoreError> {
        if self.change.files.is_empty() {
            return Ok(());
        }
        let key = change_key(self.month);
        let json = serde_json::to_vec_pretty(&self.change).expect("a change record serialises");
        match self.o.put_raw(&key, Bytes::from(json), PutMode::Create) {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(StoreError::Location {
                    url: self.o.display(&key),
                    detail: "another change of this month is under way or was interrupted: run again to finish it first".into(),
                })
            }
            Err(e) => {
                return Err(StoreError::Object {
                    path: self.o.display(&key),
                    source: e,
                })
            }
        }
        roll_forward(self.o, self.month, &self.change)
    }
}

fn roll_forward(
    o: &ObjectData,
    month: BillingMonth,
    change: &MonthChange,
) -> Result<(), StoreError> {
    let dir = month_key(month);
    for (name, what) in &change.files {
        let target = format!("{dir}/{name}");
        match what {
            FileChange::Replace => {
                let staged = rewrite_key(month, name);
                if !o.copy(&staged, &target)? {
                    // The record is deleted before its `_rewrite/` objects, so they exist.
                    return Err(StoreError::CorruptCommit {
                        path: o.display(&change_key(month)).into(),
                        detail: format!("the replacement {} is missing", o.display(&staged)),
                    });
                }
            }
            FileChange::Delete => o.delete(&target)?,
        }
    }
    o.delete(&change_key(month))?;
    for l in o.list(&format!("{dir}/{REWRITE_DIR}"))? {
        o.delete(&l.key)?;
    }
    Ok(())
}

/// What [`finish_month_change`] found of an interrupted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A committed change, rolled forward (unless a dry run).
    Committed(String),
    /// Replacements uploaded without a record: deleted (unless a dry run), nothing changed.
    Uncommitted(Vec<String>),
}

/// Finishes a change of `month` that an interrupted run left: a committed one is carried
/// out, an uncommitted one discarded. Returns what was found (display names).
pub fn finish_month_change(
    o: &ObjectData,
    month: BillingMonth,
    dry_run: bool,
) -> Result<Option<Leftover>, StoreError> {
    if let Some(change) = read_change(o, month)? {
        if !dry_run {
            roll_forward(o, month, &change)?;
        }
        return Ok(Some(Leftover::Committed(o.display(&change_key(month)))));
    }
    let staged = o.list(&format!("{}/{REWRITE_DIR}", month_key(month)))?;
    if staged.is_empty() {
        return Ok(None);
    }
    if !dry_run {
        for l in &staged {
            o.delete(&l.key)?;
        }
    }
    Ok(Some(Leftover::Uncommitted(
        staged.iter().map(|l| o.display(&l.key)).collect(),
    )))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::parquet_io::tests::sample;
    use crate::{encode_file, Location, WriteOptions};

    fn store() -> (Arc<object_store::memory::InMemory>, Location, ObjectData) {
        let mem = Arc::new(object_store::memory::InMemory::new());
        let o = ObjectData::new(mem.clone(), "p", "memory://t/p");
        (mem, Location::Object(o.clone()), o)
    }

    fn month() -> BillingMonth {
        "2026-01".parse().unwrap()
    }

    fn put_file(o: &ObjectData, name: &str, ids: &[i64]) {
        let rows: Vec<_> = ids.iter().map(|&i| sample(i)).collect();
        let bytes = encode_file(name.as_ref(), &rows, WriteOptions::default()).unwrap();
        o.put(
            &format!("{}/{name}", month_key(month())),
            bytes.into(),
            PutMode::Overwrite,
        )
        .unwrap();
    }

    fn offsets(loc: &Location) -> Vec<i64> {
        let mut out: Vec<i64> = loc
            .read_month_with(month(), None)
            .unwrap()
            .into_iter()
            .map(|c| c.source_offset)
            .collect();
        out.sort();
        out
    }

    fn names(loc: &Location) -> Vec<String> {
        loc.list_month_files(month())
            .unwrap()
            .iter()
            .map(|p| p.to_string_lossy().rsplit('/').next().unwrap().to_owned())
            .collect()
    }

    fn replacement(ids: &[i64]) -> Bytes {
        let rows: Vec<_> = ids.iter().map(|&i| sample(i)).collect();
        encode_file(&PathBuf::from("r"), &rows, WriteOptions::default())
            .unwrap()
            .into()
    }

    #[test]
    fn a_change_is_invisible_until_its_record_and_whole_after() {
        let (_, loc, o) = store();
        put_file(&o, "a.parquet", &[1, 2, 3]);
        put_file(&o, "b.parquet", &[4]);
        put_file(&o, "c.parquet", &[5]);
        let mut w = MonthChangeWriter::new(&o, month());
        w.replace("a.parquet", replacement(&[1, 3])).unwrap();
        w.delete("b.parquet");
        // Uploaded but not committed: readers see the month as it was.
        assert_eq!(offsets(&loc), [1, 2, 3, 4, 5]);
        w.commit().unwrap();
        assert_eq!(offsets(&loc), [1, 3, 5]);
        assert_eq!(names(&loc), ["a.parquet", "c.parquet"]);
        // Nothing of the change is left behind.
        let keys: Vec<String> = o.list("cdrs").unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(
            keys,
            [
                "cdrs/billing_month=2026-01/a.parquet",
                "cdrs/billing_month=2026-01/c.parquet"
            ]
        );
    }

    #[test]
    fn a_committed_change_is_seen_whole_at_every_step_and_finished_by_the_next_run() {
        let (_, loc, o) = store();
        put_file(&o, "a.parquet", &[1, 2, 3]);
        put_file(&o, "b.parquet", &[4]);
        // Steps 1 and 2 by hand: the run dies right after its commit point.
        o.put(
            &rewrite_key(month(), "a.parquet"),
            replacement(&[2]),
            PutMode::Overwrite,
        )
        .unwrap();
        let change = MonthChange {
            month: month().to_string(),
            files: [
                ("a.parquet".to_owned(), FileChange::Replace),
                ("b.parquet".to_owned(), FileChange::Delete),
            ]
            .into(),
        };
        let json = serde_json::to_vec(&change).unwrap();
        o.put(&change_key(month()), json.into(), PutMode::Create)
            .unwrap();
        assert_eq!(offsets(&loc), [2]);
        // Half of step 3: `a` replaced, `b` not yet deleted. Still the new month.
        o.copy(
            &rewrite_key(month(), "a.parquet"),
            &format!("{}/a.parquet", month_key(month())),
        )
        .unwrap();
        assert_eq!(offsets(&loc), [2]);
        // A new change is refused while this one is unfinished.
        let mut w = MonthChangeWriter::new(&o, month());
        w.delete("a.parquet");
        let e = w.commit().unwrap_err().to_string();
        assert!(e.contains("run again to finish it first"), "{e}");
        // A dry run reports it and changes nothing.
        assert!(matches!(
            finish_month_change(&o, month(), true).unwrap(),
            Some(Leftover::Committed(_))
        ));
        assert!(o.exists(&change_key(month())).unwrap());
        assert!(matches!(
            finish_month_change(&o, month(), false).unwrap(),
            Some(Leftover::Committed(_))
        ));
        assert_eq!(offsets(&loc), [2]);
        assert_eq!(names(&loc), ["a.parquet"]);
        assert_eq!(finish_month_change(&o, month(), false).unwrap(), None);
        assert_eq!(o.list("cdrs").unwrap().len(), 1);
    }

    #[test]
    fn uploads_without_a_record_are_discarded_and_change_nothing() {
        let (_, loc, o) = store();
        put_file(&o, "a.parquet", &[1, 2]);
        let mut w = MonthChangeWriter::new(&o, month());
        w.replace("a.parquet", replacement(&[1])).unwrap();
        drop(w); // killed before the commit point
        assert_eq!(offsets(&loc), [1, 2]);
        match finish_month_change(&o, month(), false).unwrap() {
            Some(Leftover::Uncommitted(keys)) => assert_eq!(keys.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(offsets(&loc), [1, 2]);
        assert_eq!(o.list("cdrs").unwrap().len(), 1);
    }

    #[test]
    fn a_file_committed_after_the_change_was_planned_is_kept() {
        let (_, loc, o) = store();
        put_file(&o, "a.parquet", &[1]);
        let mut w = MonthChangeWriter::new(&o, month());
        w.delete("a.parquet");
        put_file(&o, "late.parquet", &[9]);
        w.commit().unwrap();
        assert_eq!(offsets(&loc), [9]);
    }

    #[test]
    fn a_damaged_change_record_is_an_error_not_a_guess() {
        let (_, loc, o) = store();
        put_file(&o, "a.parquet", &[1]);
        o.put(
            &change_key(month()),
            Bytes::from_static(b"{"),
            PutMode::Create,
        )
        .unwrap();
        let e = loc.list_month_files(month()).unwrap_err().to_string();
        assert!(e.contains("change record"), "{e}");
    }
}
