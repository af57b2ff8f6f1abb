//! Crash-safe file operations: every deletion or rewrite either happened completely or can be
//! finished by the next run, and no reader ever sees a half-deleted month as complete data.
//!
//! - A whole folder is deleted by renaming it to `.deleting-<name>` (one atomic rename: readers
//!   list only `billing_month=…` and `YYYY-MM` names, so the month vanishes at once), then
//!   removing the renamed folder. A crash in between leaves `.deleting-…`, which the next run
//!   removes first.
//! - A file is rewritten by writing `.<name>.privacy-tmp` beside it, fsyncing it, and renaming
//!   it over the original: readers see the old or the new file, never a mix. A crash leaves
//!   the temp file, which the next run removes.
//! - A month's traffic data is rewritten (rows of some customers removed) as a whole: the new
//!   folder is built as `.rewriting-<name>` (rewritten files written, untouched ones hard
//!   linked), marked complete, and swapped in (elsewhere than Linux by two renames, old →
//!   `.deleting-<name>`, new → `<name>`, with an instant of no month at all), never some files
//!   rewritten and others not. On Linux the swap is one `renameat2(RENAME_EXCHANGE)`,
//!   so readers see the old month or the new one, nothing in between. The next run rolls a
//!   complete `.rewriting-` folder forward and removes an incomplete one.
//! - A file that ingest commits into the month while it is rewritten (a very late CDR) lands
//!   in the old folder; after the swap it is moved into the new one, so it is not lost with
//!   the old folder. (A run killed between the swap and that move loses it: a window of one
//!   directory listing.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use evn_keys::Keyring;
use evn_store::{StoredCall, WriteOptions};

use crate::PrivacyError;

pub const DELETING_PREFIX: &str = ".deleting-";
pub const REWRITING_PREFIX: &str = ".rewriting-";
/// Written last into a `.rewriting-` folder: everything in it is durable. Ends in
/// [`TMP_SUFFIX`], so a copy left in the month after the swap is removed like any temp file.
const COMPLETE_MARK: &str = ".rewrite-complete.privacy-tmp";
pub const TMP_SUFFIX: &str = ".privacy-tmp";

pub(crate) fn sync(dir: &Path) -> Result<(), PrivacyError> {
    evn_store::sync_dir(dir).map_err(PrivacyError::from)
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}{TMP_SUFFIX}"))
}

fn parent(path: &Path) -> &Path {
    path.parent().expect("paths handled here have a parent")
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), PrivacyError> {
    use std::io::Write;
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| PrivacyError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| PrivacyError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PrivacyError::io(path, e))?;
    sync(parent(path))
}

/// Deletes a folder: atomic rename to a hidden name first, then removal.
pub fn delete_dir(dir: &Path) -> Result<(), PrivacyError> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let hidden = parent(dir).join(format!("{DELETING_PREFIX}{name}"));
    std::fs::rename(dir, &hidden).map_err(|e| PrivacyError::io(dir, e))?;
    sync(parent(dir))?;
    remove_all(&hidden)
}

fn remove_all(path: &Path) -> Result<(), PrivacyError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PrivacyError::io(path, e)),
    }
    sync(parent(path))
}

/// Leftovers of an interrupted run directly inside `dir`: `.deleting-*` folders and
/// `*.privacy-tmp` files. Removed unless `dry_run`; returned either way.
pub fn finish_leftovers(dir: &Path, dry_run: bool) -> Result<Vec<PathBuf>, PrivacyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrivacyError::io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| PrivacyError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(target) = name.strip_prefix(REWRITING_PREFIX) {
            found.push(path.clone());
            if !dry_run {
                finish_rewrite(&path, &dir.join(target))?;
            }
        }
    }
    // Rolling forward moved old months to `.deleting-` names: list again.
    let entries = std::fs::read_dir(dir).map_err(|e| PrivacyError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| PrivacyError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(DELETING_PREFIX)
            || (name.starts_with('.') && name.ends_with(TMP_SUFFIX))
        {
            found.push(path);
        }
    }
    found.sort();
    if !dry_run {
        for p in &found {
            if p.is_dir() {
                remove_all(p)?;
            } else {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(PrivacyError::io(p, e)),
                }
                sync(dir)?;
            }
        }
    }
    Ok(found)
}

/// What a rewrite of one Parquet file did (or would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub kept: usize,
    pub dropped: usize,
}

/// A `.rewriting-` folder found by the next run: complete → swapped in (the old month, if
/// still in place, goes to `.deleting-`, removed by the caller); incomplete → removed, the old
/// month stays as it was.
fn finish_rewrite(staging: &Path, target: &Path) -> Result<(), PrivacyError> {
    if !staging.join(COMPLETE_MARK).exists() {
        return remove_all(staging);
    }
    swap_in(staging, target, None)
}

/// The new month in place of the old one. On Linux one `renameat2(RENAME_EXCHANGE)` swaps the
/// two folders atomically: the old data then sits under the `.rewriting-` name without the
/// mark, which is exactly what the next run removes if this one dies now. Elsewhere (or on a
/// file system without the exchange) two renames, with an instant in which the month is
/// absent, never mixed.
fn swap_in(staging: &Path, target: &Path, planned: Option<&[PathBuf]>) -> Result<(), PrivacyError> {
    let dir = parent(target);
    #[cfg(target_os = "linux")]
    if target.exists() {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, staging, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => {
                sync(dir)?;
                let mark = target.join(COMPLETE_MARK);
                std::fs::remove_file(&mark).map_err(|e| PrivacyError::io(&mark, e))?;
                sync(target)?;
                if let Some(planned) = planned {
                    rescue_late_files(staging, target, planned)?;
                }
                return remove_all(staging);
            }
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(PrivacyError::io(target, e.into())),
        }
    }
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let old = dir.join(format!("{DELETING_PREFIX}{name}"));
    if target.exists() {
        remove_all(&old)?;
        std::fs::rename(target, &old).map_err(|e| PrivacyError::io(target, e))?;
        sync(dir)?;
    }
    std::fs::rename(staging, target).map_err(|e| PrivacyError::io(target, e))?;
    sync(dir)?;
    let mark = target.join(COMPLETE_MARK);
    std::fs::remove_file(&mark).map_err(|e| PrivacyError::io(&mark, e))?;
    sync(target)?;
    match planned {
        Some(planned) if old.exists() => rescue_late_files(&old, target, planned),
        _ => Ok(()),
    }
}

/// Moves files that appeared in the old month folder after the rewrite was planned (committed
/// by ingest meanwhile; `planned` lists the files the rewrite read) into the new one.
fn rescue_late_files(old: &Path, target: &Path, planned: &[PathBuf]) -> Result<(), PrivacyError> {
    let planned: std::collections::BTreeSet<&std::ffi::OsStr> =
        planned.iter().filter_map(|p| p.file_name()).collect();
    let entries = std::fs::read_dir(old).map_err(|e| PrivacyError::io(old, e))?;
    let mut moved = 0;
    for entry in entries {
        let entry = entry.map_err(|e| PrivacyError::io(old, e))?;
        let name = entry.file_name();
        let late = entry.file_type().is_ok_and(|t| t.is_file())
            && !name.to_string_lossy().starts_with('.')
            && !planned.contains(name.as_os_str())
            && !target.join(&name).exists();
        if late {
            std::fs::rename(entry.path(), target.join(&name))
                .map_err(|e| PrivacyError::io(&entry.path(), e))?;
            moved += 1;
        }
    }
    if moved > 0 {
        sync(target)?;
        tracing::warn!(
            month = %target.display(),
            files = moved,
            "files committed while the month was rewritten were kept"
        );
    }
    Ok(())
}

/// Rewrites a month folder's Parquet files keeping only the rows `keep` accepts, as one step
/// (see the module docs); one file's rows in memory at a time. Returns each file that loses
/// rows with what it keeps. Nothing to drop, or `dry_run`: nothing is written.
pub fn rewrite_month(
    month_dir: &Path,
    files: &[PathBuf],
    keep: &dyn Fn(&StoredCall) -> bool,
    keys: Option<&Arc<Keyring>>,
    dry_run: bool,
) -> Result<Vec<(PathBuf, Rewrite)>, PrivacyError> {
    let name = month_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("dir");
    let staging = parent(month_dir).join(format!("{REWRITING_PREFIX}{name}"));
    let mut staged = false;
    let mut changes = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let mut rows = Vec::new();
        let mut dropped = 0;
        let mut info = evn_store::FileInfo::default();
        evn_store::read_file_with_info(path, keys, &mut |i| info = i, &mut |call| {
            if keep(&call) {
                rows.push(call);
            } else {
                dropped += 1;
            }
        })?;
        if dropped == 0 && !staged {
            continue;
        }
        if dry_run {
            changes.push((
                path.clone(),
                Rewrite {
                    kept: rows.len(),
                    dropped,
                },
            ));
            continue;
        }
        if !staged {
            // The first file that changes: stage everything so far unchanged as links.
            remove_all(&staging)?;
            std::fs::create_dir(&staging).map_err(|e| PrivacyError::io(&staging, e))?;
            for earlier in &files[..i] {
                link_or_copy(earlier, &staging)?;
            }
            staged = true;
        }
        if dropped == 0 {
            link_or_copy(path, &staging)?;
            continue;
        }
        if !rows.is_empty() {
            let file_name = path.file_name().expect("Parquet files have names");
            // The kept rows' counselling flags were set with the original's list: the billing
            // run trusts them only while it names that list.
            let options = WriteOptions {
                keys: keys.cloned(),
                counselling_version: info.counselling_version,
                ..WriteOptions::default()
            };
            evn_store::write_file(&staging.join(file_name), &rows, options)?;
        }
        changes.push((
            path.clone(),
            Rewrite {
                kept: rows.len(),
                dropped,
            },
        ));
    }
    if !staged {
        return Ok(changes);
    }
    sync(&staging)?;
    replace_file(&staging.join(COMPLETE_MARK), b"")?;
    swap_in(&staging, month_dir, Some(files))?;
    remove_all(&parent(month_dir).join(format!("{DELETING_PREFIX}{name}")))?;
    Ok(changes)
}

/// A second name for an unchanged file in the staging folder: no copy of the bytes, and the
/// original's durability carries over. A file system without hard links gets a durable copy.
fn link_or_copy(file: &Path, staging: &Path) -> Result<(), PrivacyError> {
    let to = staging.join(file.file_name().expect("Parquet files have names"));
    if std::fs::hard_link(file, &to).is_ok() {
        return Ok(());
    }
    std::fs::copy(file, &to)
        .and_then(|_| std::fs::File::open(&to)?.sync_all())
        .map_err(|e| PrivacyError::io(&to, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn call(customer: &str, offset: i64) -> StoredCall {
        StoredCall {
            call: evn_rating::RatedCall {
                cdr_id: format!("fra1-{offset}").into(),
                switch_id: "fra1".into(),
                customer_id: customer.into(),
                calling_number: "+493012345".into(),
                called_number: "+4915112345678".into(),
                start_time: "2026-01-10T10:00:00Z".parse().unwrap(),
                duration_s: 60,
                zone: "mobile".into(),
                charge_eur: rust_decimal::Decimal::new(1490, 4),
                billing_month: "2026-01".parse().unwrap(),
                plan: "office_basic".into(),
                shortened: false,
                counselling: false,
            },
            source_topic: "cdrs".into(),
            source_partition: 0,
            source_offset: offset,
            provenance: None,
        }
    }

    /// A file ingest commits into the month while retention rewrites it is kept; a file the
    /// rewrite emptied stays deleted.
    #[test]
    fn a_file_committed_during_a_rewrite_is_not_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let month = tmp.path().join("billing_month=2026-01");
        std::fs::create_dir_all(&month).unwrap();
        let write = |path: &Path, rows: &[StoredCall]| {
            evn_store::write_file(path, rows, WriteOptions::default()).unwrap();
        };
        write(&month.join("a.parquet"), &[call("K1", 1), call("K2", 2)]);
        write(&month.join("b.parquet"), &[call("K1", 3)]);
        let files = vec![month.join("a.parquet"), month.join("b.parquet")];
        let late = month.join("late.parquet");
        let keep = |c: &StoredCall| {
            // Ingest commits a file while the rewrite reads the month.
            if !late.exists() {
                write(&late, &[call("K1", 9)]);
            }
            c.call.customer_id == "K2"
        };
        let changes = rewrite_month(&month, &files, &keep, None, false).unwrap();
        assert_eq!(changes.len(), 2);
        let mut names: Vec<String> = std::fs::read_dir(&month)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.parquet", "late.parquet"]);
        let mut offsets = Vec::new();
        for f in ["a.parquet", "late.parquet"] {
            evn_store::read_file(&month.join(f), &mut |c| offsets.push(c.source_offset)).unwrap();
        }
        assert_eq!(offsets, [2, 9]);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the month folder");
    }
}
