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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use evn_keys::Keyring;
use evn_store::{StoredCall, WriteOptions};

use crate::PrivacyError;

pub const DELETING_PREFIX: &str = ".deleting-";
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

/// Rewrites one Parquet file keeping only the rows `keep` accepts. Nothing dropped: the file
/// is left alone. Nothing kept: the file is removed. Otherwise the kept rows are written to a
/// temp file (encrypted with the current key when a keyring is given) and swapped in.
pub fn rewrite_parquet(
    path: &Path,
    keep: &dyn Fn(&StoredCall) -> bool,
    keys: Option<&Arc<Keyring>>,
    dry_run: bool,
) -> Result<Rewrite, PrivacyError> {
    let mut rows = Vec::new();
    let mut dropped = 0;
    evn_store::read_file_with(path, keys, &mut |call| {
        if keep(&call) {
            rows.push(call);
        } else {
            dropped += 1;
        }
    })?;
    let result = Rewrite {
        kept: rows.len(),
        dropped,
    };
    if dry_run || dropped == 0 {
        return Ok(result);
    }
    if rows.is_empty() {
        std::fs::remove_file(path).map_err(|e| PrivacyError::io(path, e))?;
        sync(parent(path))?;
        return Ok(result);
    }
    let tmp = tmp_path(path);
    let options = WriteOptions {
        keys: keys.cloned(),
        ..WriteOptions::default()
    };
    evn_store::write_file(&tmp, &rows, options)?;
    std::fs::rename(&tmp, path).map_err(|e| PrivacyError::io(path, e))?;
    sync(parent(path))?;
    Ok(result)
}
