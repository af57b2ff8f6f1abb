//! A billing run whose EVN folder is on an object store (`evn bill --out s3://…`): staged.
//!
//! The run itself ([`crate::run_at`]) writes to a local folder as always (staging, one
//! `syncfs`, renames, hard links); this module mirrors the month folder's state into a
//! temporary folder first and uploads what the run wrote afterwards:
//!
//! 1. the month's manifests are downloaded, and every existing EVN file (numbered versions and
//!    current copies) is stood in for by an empty file of its name: the run sees what exists
//!    (an unchanged customer is left alone) and numbers new versions past them (a version
//!    number is never reused, even one a crashed run uploaded without recording it);
//! 2. the run bills into the temporary folder;
//! 3. the new numbered files (`<id>.v<N>.pdf`/`.csv`) are uploaded with `PutMode::Create`
//!    (exclusive: a concurrent run that chose the same number fails instead of replacing it),
//!    then the current copies (`<id>.pdf`/`.csv`, replaced), then, last, each manifest that
//!    changed. The manifest is what makes versions visible (the portal serves only versions a
//!    manifest lists), so a run killed before it leaves nothing visible, as on a local disk.
//!
//! Cost: the run's new files pass through local disk once; existing EVNs are not downloaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use evn_config::Config;
use evn_rating::BillingMonth;
use evn_store::{Location, ObjectData, PutMode, StoreError};

use crate::{BillError, BillOptions, BillReport};

fn is_manifest(name: &str) -> bool {
    name == crate::MANIFEST_FILE || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
}

fn is_numbered(name: &str) -> bool {
    name.strip_suffix(".pdf")
        .or_else(|| name.strip_suffix(".csv"))
        .and_then(|stem| stem.rsplit_once(".v"))
        .is_some_and(|(_, n)| n.parse::<u32>().is_ok())
}

/// [`crate::run_at`] with the EVN folder `out` on an object store (see the module docs).
pub fn run_to_store(
    config: &Config,
    data: &Location,
    month: BillingMonth,
    out: &ObjectData,
    opts: &BillOptions,
) -> Result<BillReport, BillError> {
    let tmp = tempfile::Builder::new()
        .prefix("evn-bill-")
        .tempdir()
        .map_err(|e| BillError::io(&std::env::temp_dir(), e))?;
    let month_name = month.to_string();
    let local = tmp.path().join(&month_name);
    std::fs::create_dir_all(&local).map_err(|e| BillError::io(&local, e))?;

    // 1. The month folder as the run needs to see it.
    let mut manifests_before: HashMap<String, Bytes> = HashMap::new();
    for listed in out.list(&month_name)? {
        let Some(name) = listed
            .key
            .strip_prefix(&month_name)
            .and_then(|n| n.strip_prefix('/'))
            .filter(|n| !n.contains('/'))
        else {
            continue;
        };
        let path = local.join(name);
        if is_manifest(name) {
            if let Some(bytes) = out.get(&listed.key)? {
                std::fs::write(&path, &bytes).map_err(|e| BillError::io(&path, e))?;
                manifests_before.insert(name.to_owned(), bytes);
            }
        } else if name.ends_with(".pdf") || name.ends_with(".csv") {
            std::fs::write(&path, b"").map_err(|e| BillError::io(&path, e))?;
        }
    }

    // 2. The run, locally. Its month lock (`lock.rs`) is taken in this process's own temporary
    // folder and so guards nothing between runs: on an object store there is no OS lock. What
    // holds instead: numbered versions are PUT with `PutMode::Create` (below), so no run
    // replaces another's; the manifest PUT is last-writer-wins, so two runs of the same month
    // and shard at once are not supported (single writer by contract: the CronJob's
    // `concurrencyPolicy: Forbid`, one pod per shard index).
    let mut report = crate::run_at(config, data, month, tmp.path(), opts)?;

    // 3. Upload: numbered versions, current copies, manifests last.
    let mut numbered = Vec::new();
    let mut current = Vec::new();
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&local).map_err(|e| BillError::io(&local, e))? {
        let entry = entry.map_err(|e| BillError::io(&local, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if is_manifest(&name) {
            manifests.push((name, path));
        } else if entry.metadata().is_ok_and(|m| m.len() > 0) {
            // Empty files are the stand-ins of step 1; a rendered EVN is never empty.
            if is_numbered(&name) {
                numbered.push((name, path));
            } else {
                current.push((name, path));
            }
        }
    }
    let read = |path: &Path| std::fs::read(path).map_err(|e| BillError::io(path, e));
    for (name, path) in &numbered {
        let key = format!("{month_name}/{name}");
        out.put(&key, Bytes::from(read(path)?), PutMode::Create)
            .map_err(|e| match e {
                StoreError::Object {
                    path,
                    source: evn_store::ObjectError::AlreadyExists { .. },
                } => BillError::Io {
                    path: path.into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "another billing run of this month wrote this version first; run again",
                    ),
                },
                e => BillError::Store(e),
            })?;
    }
    for (name, path) in &current {
        out.put(
            &format!("{month_name}/{name}"),
            Bytes::from(read(path)?),
            PutMode::Overwrite,
        )?;
    }
    for (name, path) in &manifests {
        let bytes = read(path)?;
        if manifests_before
            .get(name)
            .is_some_and(|b| b[..] == bytes[..])
        {
            continue;
        }
        out.put(
            &format!("{month_name}/{name}"),
            Bytes::from(bytes),
            PutMode::Overwrite,
        )?;
    }
    tracing::info!(
        url = out.url(),
        versions = numbered.len(),
        "uploaded the billing run's files, manifest last"
    );
    report.dir = PathBuf::from(out.display(&month_name));
    report.manifest = PathBuf::from(out.display(&format!(
        "{month_name}/{}",
        report
            .manifest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )));
    Ok(report)
}

/// [`crate::merge_shard_manifests`] for an EVN folder on an object store: the month's
/// manifests are downloaded, merged, and `manifest.json` is uploaded (replacing an older one).
/// Run it once every shard has finished: a shard still running would upload its part after.
pub fn merge_shards_in_store(out: &ObjectData, month: BillingMonth) -> Result<String, BillError> {
    let tmp = tempfile::Builder::new()
        .prefix("evn-merge-")
        .tempdir()
        .map_err(|e| BillError::io(&std::env::temp_dir(), e))?;
    let month_name = month.to_string();
    let local = tmp.path().join(&month_name);
    std::fs::create_dir_all(&local).map_err(|e| BillError::io(&local, e))?;
    for listed in out.list(&month_name)? {
        let Some(name) = listed
            .key
            .strip_prefix(&month_name)
            .and_then(|n| n.strip_prefix('/'))
            .filter(|n| !n.contains('/') && is_manifest(n))
        else {
            continue;
        };
        if let Some(bytes) = out.get(&listed.key)? {
            let path = local.join(name);
            std::fs::write(&path, &bytes).map_err(|e| BillError::io(&path, e))?;
        }
    }
    let merged = crate::merge_shard_manifests(tmp.path(), month)?;
    let bytes = std::fs::read(&merged).map_err(|e| BillError::io(&merged, e))?;
    let key = format!("{month_name}/{}", crate::MANIFEST_FILE);
    out.put(&key, Bytes::from(bytes), PutMode::Overwrite)?;
    Ok(out.display(&key))
}
