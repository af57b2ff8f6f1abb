//! The EVN directory as retention and erasure see it: month folders, their manifests (read
//! leniently for the send date, edited as JSON so fields of newer versions survive) and whose
//! files are whose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate};
use chrono_tz::Europe::Berlin;
use serde::Deserialize;

use evn_rating::BillingMonth;

use crate::fsops::{replace_file, sync};
use crate::PrivacyError;

pub const MANIFEST_FILE: &str = "manifest.json";

/// Only what retention needs; unknown fields are ignored here on purpose (this crate never
/// writes a manifest from these types, so nothing can be dropped).
#[derive(Deserialize)]
struct ManifestView {
    generated_at: String,
    #[serde(default)]
    customers: std::collections::BTreeMap<String, CustomerView>,
}

#[derive(Deserialize)]
struct CustomerView {
    #[serde(default)]
    versions: Vec<VersionView>,
}

#[derive(Deserialize)]
struct VersionView {
    created: String,
}

/// `EVN/YYYY-MM`
pub fn month_dir(evn: &Path, month: BillingMonth) -> PathBuf {
    evn.join(month.to_string())
}

/// Month folders under the EVN directory (hidden and other names are not months).
pub fn evn_months(evn: &Path) -> Result<Vec<BillingMonth>, PrivacyError> {
    let entries = match std::fs::read_dir(evn) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrivacyError::io(evn, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PrivacyError::io(evn, e))?;
        if !entry
            .file_type()
            .map_err(|e| PrivacyError::io(evn, e))?
            .is_dir()
        {
            continue;
        }
        if let Some(m) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.push(m);
        }
    }
    out.sort();
    Ok(out)
}

/// The merged manifest and any shard manifests of a month folder.
pub fn manifests_in(dir: &Path) -> Result<Vec<PathBuf>, PrivacyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrivacyError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| PrivacyError::io(dir, e))?.path();
        if is_manifest(path.file_name().and_then(|n| n.to_str()).unwrap_or("")) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn is_manifest(name: &str) -> bool {
    name == MANIFEST_FILE || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
}

fn read_view(path: &Path) -> Result<ManifestView, PrivacyError> {
    let bytes = std::fs::read(path).map_err(|e| PrivacyError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| PrivacyError::Manifest {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// What the manifests of a month say: when it was sent, and to whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billed {
    /// The send date; None without any manifest (never billed).
    pub sent: Option<NaiveDate>,
    pub customers: BTreeSet<String>,
}

/// The send date of a month: the latest `created` date of any EVN version in its manifests,
/// i.e. the last billing run that issued something for the month (a re-run after late CDRs is
/// a new bill for the month, and the six months run from it). A manifest without any version
/// counts with the date of `generated_at` in Europe/Berlin.
pub fn billed(evn: &Path, month: BillingMonth) -> Result<Billed, PrivacyError> {
    let mut out = Billed::default();
    for path in manifests_in(&month_dir(evn, month))? {
        let view = read_view(&path)?;
        let bad = |detail: String| PrivacyError::Manifest {
            path: path.clone(),
            detail,
        };
        let mut latest: Option<NaiveDate> = None;
        for (id, c) in &view.customers {
            out.customers.insert(id.clone());
            for v in &c.versions {
                let date = NaiveDate::parse_from_str(&v.created, "%Y-%m-%d").map_err(|_| {
                    bad(format!(
                        "customer {id}: created {:?} is not a date",
                        v.created
                    ))
                })?;
                latest = latest.max(Some(date));
            }
        }
        let date = match latest {
            Some(d) => d,
            None => DateTime::parse_from_rfc3339(&view.generated_at)
                .map_err(|_| {
                    bad(format!(
                        "generated_at {:?} is not RFC 3339",
                        view.generated_at
                    ))
                })?
                .with_timezone(&Berlin)
                .date_naive(),
        };
        out.sent = out.sent.max(Some(date));
    }
    Ok(out)
}

/// The customer an EVN file belongs to: `K1001.pdf`, `K1001.v2.pdf`, `K1001.csv`, … → `K1001`.
/// Customer ids never contain a dot, so the name up to the first dot is the id.
pub fn owner_of(file_name: &str) -> Option<&str> {
    let (id, _) = file_name.split_once('.')?;
    crate::holds::valid_customer_id(id).then_some(id)
}

/// Keeps only the customers `keep` accepts in every manifest of a month folder; returns the
/// manifests changed and the customers each lost. Each manifest is replaced atomically, so the
/// portal reads either the old or the new list.
pub fn filter_manifests(
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
    dry_run: bool,
) -> Result<Vec<(PathBuf, Vec<String>)>, PrivacyError> {
    let mut changed = Vec::new();
    for path in manifests_in(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| PrivacyError::io(&path, e))?;
        let mut json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| PrivacyError::Manifest {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        let Some(customers) = json.get_mut("customers").and_then(|c| c.as_object_mut()) else {
            continue;
        };
        let removed: Vec<String> = customers.keys().filter(|id| !keep(id)).cloned().collect();
        if removed.is_empty() {
            continue;
        }
        for id in &removed {
            customers.remove(id);
        }
        if !dry_run {
            let text = serde_json::to_vec_pretty(&json).expect("a JSON value serialises");
            replace_file(&path, &text)?;
        }
        changed.push((path, removed));
    }
    Ok(changed)
}

/// Files and folders of a month folder that belong to nobody `keep` accepts (manifests
/// excluded: they are edited, not deleted).
pub fn files_not_kept(
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, PrivacyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrivacyError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| PrivacyError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_manifest(name) {
            continue;
        }
        if !owner_of(name).is_some_and(keep) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// One customer's EVN files (every version, PDF and CSV) in a month folder.
pub fn files_of(dir: &Path, customer_id: &str) -> Result<Vec<PathBuf>, PrivacyError> {
    Ok(files_not_kept(dir, &|id| id != customer_id)?
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).and_then(owner_of) == Some(customer_id))
        .collect())
}

/// Removes files (or leftover folders) of a month folder, then makes the removal durable.
pub fn remove_entries(dir: &Path, paths: &[PathBuf]) -> Result<(), PrivacyError> {
    for p in paths {
        let meta = std::fs::symlink_metadata(p).map_err(|e| PrivacyError::io(p, e))?;
        let result = if meta.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PrivacyError::io(p, e)),
        }
    }
    if !paths.is_empty() {
        sync(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_evn_files() {
        assert_eq!(owner_of("K1001.pdf"), Some("K1001"));
        assert_eq!(owner_of("K1001.v12.pdf"), Some("K1001"));
        assert_eq!(owner_of("K-1_2.v1.csv"), Some("K-1_2"));
        assert_eq!(owner_of(".K1001.pdf.tmp"), None);
        assert_eq!(owner_of("README"), None);
    }

    #[test]
    fn send_date_is_the_latest_version_or_the_run_date() {
        let dir = tempfile::tempdir().unwrap();
        let month: BillingMonth = "2026-03".parse().unwrap();
        let m = month_dir(dir.path(), month);
        std::fs::create_dir_all(&m).unwrap();
        assert_eq!(billed(dir.path(), month).unwrap(), Billed::default());
        std::fs::write(
            m.join(MANIFEST_FILE),
            r#"{"month":"2026-03","generated_at":"2026-05-31T22:30:00Z","future_field":1,
               "customers":{"K1":{"versions":[{"created":"2026-04-02"},{"created":"2026-05-20"}]},
                            "K2":{"versions":[{"created":"2026-04-02"}]}}}"#,
        )
        .unwrap();
        let b = billed(dir.path(), month).unwrap();
        assert_eq!(b.sent, Some("2026-05-20".parse().unwrap()));
        assert_eq!(b.customers.len(), 2);
        // No versions: generated_at in Berlin (22:30 UTC on 31 May is 1 June 00:30 CEST).
        std::fs::write(
            m.join(MANIFEST_FILE),
            r#"{"generated_at":"2026-05-31T22:30:00Z","customers":{}}"#,
        )
        .unwrap();
        assert_eq!(
            billed(dir.path(), month).unwrap().sent,
            Some("2026-06-01".parse().unwrap())
        );
        std::fs::write(m.join(MANIFEST_FILE), "{").unwrap();
        assert!(matches!(
            billed(dir.path(), month),
            Err(PrivacyError::Manifest { .. })
        ));
    }
}
