//! The stored traffic data as retention and erasure change it: on a local disk through
//! [`crate::fsops`] (renames), on an object store through the store's month changes
//! ([`evn_store::month_change`]: a change record as the commit point, since there is no
//! rename). Either way a reader sees a month as it was or as it is after the change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use evn_keys::Keyring;
use evn_rating::BillingMonth;
use evn_store::month_change::{finish_month_change, Leftover, MonthChangeWriter};
use evn_store::{CommitLog, Location, StoredCall, WriteOptions};

use crate::fsops::{self, Rewrite};
use crate::PrivacyError;

/// Finishes what an interrupted run left (a month half deleted or half rewritten); returns
/// what it found.
pub fn finish_leftovers(data: &Location, dry_run: bool) -> Result<Vec<PathBuf>, PrivacyError> {
    let mut found = Vec::new();
    match data {
        Location::Local(p) => {
            found.extend(fsops::finish_leftovers(
                &p.join(evn_store::CDRS_DIR),
                dry_run,
            )?);
            for month in data.list_months()? {
                found.extend(fsops::finish_leftovers(
                    &evn_store::month_dir(p, month),
                    dry_run,
                )?);
            }
        }
        Location::Object(o) => {
            for month in data.list_months()? {
                match finish_month_change(o, month, dry_run)? {
                    None => {}
                    Some(Leftover::Committed(record)) => found.push(record.into()),
                    Some(Leftover::Uncommitted(keys)) => {
                        found.extend(keys.into_iter().map(PathBuf::from))
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Deletes a month's traffic data as a whole, if there is any: `before` is called first (the
/// caller reports what is about to happen), then the data goes unless `dry_run`.
pub fn delete_month(
    data: &Location,
    month: BillingMonth,
    dry_run: bool,
    before: &mut dyn FnMut(),
) -> Result<(), PrivacyError> {
    match data {
        Location::Local(p) => {
            let dir = evn_store::month_dir(p, month);
            if !dir.exists() {
                return Ok(());
            }
            before();
            if !dry_run {
                fsops::delete_dir(&dir)?;
            }
        }
        // Retention finished any interrupted change first ([`finish_leftovers`]).
        Location::Object(o) => {
            let files = data.list_month_files(month)?;
            if files.is_empty() {
                return Ok(());
            }
            before();
            if !dry_run {
                let mut change = MonthChangeWriter::new(o, month);
                for f in &files {
                    change.delete(&file_name(f));
                }
                change.commit()?;
            }
        }
    }
    Ok(())
}

fn file_name(f: &std::path::Path) -> String {
    f.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Rewrites a month keeping only the rows `keep` accepts, as one step for every reader; one
/// file's rows in memory at a time. Returns each file that loses rows with what it keeps
/// (shown as a path or URL). Nothing to drop, or `dry_run`: nothing is written.
pub fn rewrite_month(
    data: &Location,
    month: BillingMonth,
    keep: &dyn Fn(&StoredCall) -> bool,
    keys: Option<&Arc<Keyring>>,
    dry_run: bool,
) -> Result<Vec<(PathBuf, Rewrite)>, PrivacyError> {
    let o = match data {
        Location::Local(p) => {
            return fsops::rewrite_month(
                &evn_store::month_dir(p, month),
                &data.list_month_files(month)?,
                keep,
                keys,
                dry_run,
            )
        }
        Location::Object(o) => o,
    };
    // A change an interrupted run left is finished first (erasure runs without retention's
    // leftover step); in a dry run the listing shows the month as that change leaves it.
    if !dry_run {
        finish_month_change(o, month, false)?;
    }
    let files = data.list_month_files(month)?;
    let mut change = MonthChangeWriter::new(o, month);
    let mut changes = Vec::new();
    for file in &files {
        let mut rows = Vec::new();
        let mut dropped = 0;
        let mut info = evn_store::FileInfo::default();
        data.read_file_with_info(file, keys, &mut |i| info = i, &mut |call| {
            if keep(&call) {
                rows.push(call);
            } else {
                dropped += 1;
            }
        })?;
        if dropped == 0 {
            continue;
        }
        let shown = PathBuf::from(o.display(&file.to_string_lossy()));
        if !dry_run {
            let name = file_name(file);
            if rows.is_empty() {
                change.delete(&name);
            } else {
                // As the local rewrite: the kept rows' flags keep their list version.
                let options = WriteOptions {
                    keys: keys.cloned(),
                    counselling_version: info.counselling_version,
                    ..WriteOptions::default()
                };
                let bytes = evn_store::encode_file(&shown, &rows, options)?;
                change.replace(&name, bytes.into())?;
            }
        }
        changes.push((
            shown,
            Rewrite {
                kept: rows.len(),
                dropped,
            },
        ));
    }
    change.commit()?;
    Ok(changes)
}

/// On an object store, staged objects of ingest writers that died before their commit, older
/// than `max_age` and named by no partition's latest commit record: shown with their age in
/// days, deleted unless `dry_run`. Local folders: see `run_retention`.
pub fn sweep_object_staging(
    data: &Location,
    max_age: Duration,
    dry_run: bool,
) -> Result<Vec<(PathBuf, u64)>, PrivacyError> {
    let Location::Object(o) = data else {
        return Ok(Vec::new());
    };
    let log = CommitLog::open_at(data, "evn-retention")?;
    let now = chrono::Utc::now();
    let mut swept = Vec::new();
    for l in log.orphans(max_age)? {
        if !dry_run {
            o.delete(&l.key)?;
        }
        let days = (now - l.modified).num_days().max(0) as u64;
        swept.push((PathBuf::from(o.display(&l.key)), days));
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evn_store::{PutMode, StoredCall, WriteOptions};

    /// A shortened ordinary call, as a shortening customer's rows are stored.
    fn call(customer: &str, offset: i64) -> StoredCall {
        let mut c = crate::fsops::tests::call(customer, offset);
        c.call.called_number = "+49301234xxx".into();
        c.call.shortened = true;
        c
    }

    /// The rows a rewrite keeps were flagged with the original file's counselling list: the
    /// rewritten file must still name it, or the billing run would hide a kept customer's
    /// shortened ordinary numbers that look like a listed one (`CounsellingList::hides`).
    #[test]
    fn a_rewrite_keeps_the_files_counselling_list_version() {
        let tmp = tempfile::tempdir().unwrap();
        let month: BillingMonth = "2026-01".parse().unwrap();
        let rows = [call("K1", 1), call("K2", 2)];
        let options = WriteOptions {
            counselling_version: Some("2026-Q1+sha256:ab".into()),
            ..WriteOptions::default()
        };
        let bytes = evn_store::encode_file("a".as_ref(), &rows, options).unwrap();
        let local = Location::Local(tmp.path().to_owned());
        let folder = evn_store::month_dir(tmp.path(), month);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("a.parquet"), &bytes).unwrap();
        let object = Location::parse("memory://rewrite-keeps-version/data").unwrap();
        let Location::Object(o) = &object else {
            unreachable!()
        };
        o.put(
            "cdrs/billing_month=2026-01/a.parquet",
            bytes.into(),
            PutMode::Create,
        )
        .unwrap();
        for data in [local, object] {
            let keep = |c: &StoredCall| c.call.customer_id == "K2";
            let changes = rewrite_month(&data, month, &keep, None, false).unwrap();
            assert_eq!(changes.len(), 1, "{data}");
            let files = data.list_month_files(month).unwrap();
            assert_eq!(files.len(), 1, "{data}");
            let (mut info, mut kept) = (None, Vec::new());
            data.read_file_with_info(
                &files[0],
                None,
                &mut |i| info = i.counselling_version,
                &mut |c| kept.push(c.call.customer_id.to_string()),
            )
            .unwrap();
            assert_eq!(kept, ["K2"], "{data}");
            assert_eq!(info.as_deref(), Some("2026-Q1+sha256:ab"), "{data}");
        }
    }
}
