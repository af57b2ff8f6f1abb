//! The EVN directory as retention and erasure see it: month folders, their manifests (read
//! leniently for the send date, edited as JSON so fields of newer versions survive) and whose
//! files are whose; on a local disk or under an object store prefix (`--evn s3://…`), with
//! the same layout (`YYYY-MM/manifest.json`, `YYYY-MM/<id>.pdf`, …).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Europe::Berlin;
use serde::Deserialize;

use evn_rating::BillingMonth;
use evn_store::{Location, ObjectData, PutMode};

use crate::fsops::{replace_file, sync};
use crate::PrivacyError;

pub const MANIFEST_FILE: &str = "manifest.json";

/// On an object store, a month being deleted: written first, removed last, so a run that dies
/// after deleting the manifests (which date the month) still finishes the month next time.
pub const DELETING_MARK: &str = "_deleting.json";

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

/// One entry of an EVN month folder: a local path or an object key, and how to show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvnEntry {
    pub shown: PathBuf,
    at: PathBuf,
}

impl EvnEntry {
    fn local(path: PathBuf) -> Self {
        EvnEntry {
            shown: path.clone(),
            at: path,
        }
    }

    fn object(o: &ObjectData, key: String) -> Self {
        EvnEntry {
            shown: PathBuf::from(o.display(&key)),
            at: PathBuf::from(key),
        }
    }

    fn name(&self) -> &str {
        self.at.file_name().and_then(|n| n.to_str()).unwrap_or("")
    }

    fn key(&self) -> std::borrow::Cow<'_, str> {
        self.at.to_string_lossy()
    }
}

/// `EVN/YYYY-MM`
pub fn month_dir(evn: &Path, month: BillingMonth) -> PathBuf {
    evn.join(month.to_string())
}

/// The month's folder or prefix, for messages.
pub fn month_shown(evn: &Location, month: BillingMonth) -> PathBuf {
    match evn {
        Location::Local(p) => month_dir(p, month),
        Location::Object(o) => PathBuf::from(o.display(&month.to_string())),
    }
}

/// Month folders under the EVN directory (hidden and other names are not months).
pub fn evn_months(evn: &Location) -> Result<Vec<BillingMonth>, PrivacyError> {
    let names = match evn {
        Location::Local(p) => local_dirs(p)?,
        Location::Object(o) => o.list_dirs("")?,
    };
    let mut out: Vec<BillingMonth> = names.iter().filter_map(|n| n.parse().ok()).collect();
    out.sort();
    Ok(out)
}

fn local_dirs(evn: &Path) -> Result<Vec<String>, PrivacyError> {
    let entries = match std::fs::read_dir(evn) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrivacyError::io(evn, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PrivacyError::io(evn, e))?;
        if entry
            .file_type()
            .map_err(|e| PrivacyError::io(evn, e))?
            .is_dir()
        {
            out.extend(entry.file_name().to_str().map(str::to_owned));
        }
    }
    Ok(out)
}

/// Everything in a month folder: local entries directly inside it (files or folders), or every
/// object under the month's prefix.
fn entries(evn: &Location, month: BillingMonth) -> Result<Vec<EvnEntry>, PrivacyError> {
    let mut out = Vec::new();
    match evn {
        Location::Local(p) => {
            let dir = month_dir(p, month);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(PrivacyError::io(&dir, e)),
            };
            for entry in entries {
                out.push(EvnEntry::local(
                    entry.map_err(|e| PrivacyError::io(&dir, e))?.path(),
                ));
            }
        }
        Location::Object(o) => {
            for l in o.list(&month.to_string())? {
                out.push(EvnEntry::object(o, l.key));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the entry sits directly in the month folder (an object key `YYYY-MM/<name>`).
fn direct(evn: &Location, e: &EvnEntry) -> bool {
    match evn {
        Location::Local(_) => true,
        Location::Object(_) => e.at.components().count() == 2,
    }
}

/// The merged manifest and any shard manifests of a month folder.
fn manifests_in(evn: &Location, month: BillingMonth) -> Result<Vec<EvnEntry>, PrivacyError> {
    Ok(entries(evn, month)?
        .into_iter()
        .filter(|e| direct(evn, e) && is_manifest(e.name()))
        .collect())
}

fn is_manifest(name: &str) -> bool {
    name == MANIFEST_FILE || (name.starts_with("manifest.shard-") && name.ends_with(".json"))
}

fn read(evn: &Location, e: &EvnEntry) -> Result<Vec<u8>, PrivacyError> {
    match evn {
        Location::Local(_) => std::fs::read(&e.at).map_err(|err| PrivacyError::io(&e.at, err)),
        Location::Object(o) => {
            o.get(&e.key())?
                .map(|b| b.to_vec())
                .ok_or_else(|| PrivacyError::Manifest {
                    path: e.shown.clone(),
                    detail: "listed but gone".into(),
                })
        }
    }
}

/// Replaces a file whole: readers (the portal) see the old or the new one.
fn replace(evn: &Location, e: &EvnEntry, bytes: Vec<u8>) -> Result<(), PrivacyError> {
    match evn {
        Location::Local(_) => replace_file(&e.at, &bytes),
        Location::Object(o) => Ok(o.put(&e.key(), Bytes::from(bytes), PutMode::Overwrite)?),
    }
}

fn parse_view(e: &EvnEntry, bytes: &[u8]) -> Result<ManifestView, PrivacyError> {
    serde_json::from_slice(bytes).map_err(|err| PrivacyError::Manifest {
        path: e.shown.clone(),
        detail: err.to_string(),
    })
}

/// What the manifests of a month say: when it was sent, and to whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billed {
    /// The month's send date, for everyone the billing runs issued nothing for later; None
    /// without any manifest (never billed).
    pub sent: Option<NaiveDate>,
    pub customers: BTreeSet<String>,
    /// Customers sent a later version than `sent` (a re-run after their late CDRs or a
    /// correction): the six months run from their own latest bill.
    pub sent_later: BTreeMap<String, NaiveDate>,
}

impl Billed {
    /// When `customer`'s bill for the month was last sent.
    pub fn sent_to(&self, customer: &str) -> Option<NaiveDate> {
        self.sent_later.get(customer).copied().or(self.sent)
    }
}

/// The send dates of a month. Per customer: the `created` date of their latest EVN version.
/// The month's: the earliest of those, i.e. the billing run that sent the month's bills (a
/// re-run later re-sends only what changed, and only those customers' six months start
/// again, so one customer's late correction keeps nobody else's data longer: TDDDG § 10).
/// A manifest without any version counts with the date of `generated_at` in Europe/Berlin.
pub fn billed(evn: &Location, month: BillingMonth) -> Result<Billed, PrivacyError> {
    let mut out = Billed::default();
    let mut latest_of: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for entry in manifests_in(evn, month)? {
        let view = parse_view(&entry, &read(evn, &entry)?)?;
        let bad = |detail: String| PrivacyError::Manifest {
            path: entry.shown.clone(),
            detail,
        };
        let mut first_run: Option<NaiveDate> = None;
        for (id, c) in &view.customers {
            out.customers.insert(id.clone());
            let mut latest: Option<NaiveDate> = None;
            for v in &c.versions {
                let date = NaiveDate::parse_from_str(&v.created, "%Y-%m-%d").map_err(|_| {
                    bad(format!(
                        "customer {id}: created {:?} is not a date",
                        v.created
                    ))
                })?;
                latest = latest.max(Some(date));
            }
            if let Some(latest) = latest {
                let e = latest_of.entry(id.clone()).or_insert(latest);
                *e = (*e).max(latest);
                first_run = Some(first_run.map_or(latest, |f| f.min(latest)));
            }
        }
        let date = match first_run {
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
        out.sent = Some(out.sent.map_or(date, |s| s.min(date)));
    }
    if let Some(sent) = out.sent {
        out.sent_later = latest_of.into_iter().filter(|(_, d)| *d > sent).collect();
    }
    Ok(out)
}

/// The customer an EVN file belongs to: `K1001.pdf`, `K1001.v2.pdf`, `K1001.csv`, … → `K1001`.
/// Customer ids never contain a dot, so the name up to the first dot is the id.
pub fn owner_of(file_name: &str) -> Option<&str> {
    let (id, _) = file_name.split_once('.')?;
    crate::holds::valid_customer_id(id).then_some(id)
}

/// The owner of an entry: by its name in the month folder (for an object further down, the
/// name of its first "folder" under the month).
fn owner_of_entry<'a>(evn: &Location, e: &'a EvnEntry) -> Option<&'a str> {
    match evn {
        Location::Local(_) => owner_of(e.name()),
        Location::Object(_) => owner_of(e.at.iter().nth(1)?.to_str()?),
    }
}

/// Keeps only the customers `keep` accepts in every manifest of a month folder; returns the
/// manifests changed and the customers each lost. Each manifest is replaced whole, so the
/// portal reads either the old or the new list.
pub fn filter_manifests(
    evn: &Location,
    month: BillingMonth,
    keep: &dyn Fn(&str) -> bool,
    dry_run: bool,
) -> Result<Vec<(PathBuf, Vec<String>)>, PrivacyError> {
    let mut changed = Vec::new();
    for entry in manifests_in(evn, month)? {
        let bytes = read(evn, &entry)?;
        let mut json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| PrivacyError::Manifest {
                path: entry.shown.clone(),
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
            replace(evn, &entry, text)?;
        }
        changed.push((entry.shown, removed));
    }
    Ok(changed)
}

/// Files and folders of a month folder that belong to nobody `keep` accepts (manifests
/// excluded: they are edited, not deleted; and an object store's deletion mark).
pub fn files_not_kept(
    evn: &Location,
    month: BillingMonth,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<EvnEntry>, PrivacyError> {
    Ok(entries(evn, month)?
        .into_iter()
        .filter(|e| !(direct(evn, e) && (is_manifest(e.name()) || e.name() == DELETING_MARK)))
        .filter(|e| !owner_of_entry(evn, e).is_some_and(keep))
        .collect())
}

/// The customers who own an EVN file in a month folder.
pub fn owners(evn: &Location, month: BillingMonth) -> Result<BTreeSet<String>, PrivacyError> {
    Ok(files_not_kept(evn, month, &|_| false)?
        .iter()
        .filter_map(|e| owner_of_entry(evn, e).map(str::to_owned))
        .collect())
}

/// One customer's EVN files (every version, PDF and CSV) in a month folder.
pub fn files_of(
    evn: &Location,
    month: BillingMonth,
    customer_id: &str,
) -> Result<Vec<EvnEntry>, PrivacyError> {
    Ok(files_not_kept(evn, month, &|id| id != customer_id)?
        .into_iter()
        .filter(|e| owner_of_entry(evn, e) == Some(customer_id))
        .collect())
}

/// How many files a month folder holds (a local folder's direct files; every object).
pub fn count_files(evn: &Location, month: BillingMonth) -> Result<usize, PrivacyError> {
    Ok(match evn {
        Location::Local(p) => std::fs::read_dir(month_dir(p, month))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .count()
            })
            .unwrap_or(0),
        Location::Object(_) => entries(evn, month)?.len(),
    })
}

/// Removes files (or leftover folders) of a month folder, durably.
pub fn remove_entries(
    evn: &Location,
    month: BillingMonth,
    doomed: &[EvnEntry],
) -> Result<(), PrivacyError> {
    for e in doomed {
        match evn {
            Location::Local(_) => remove_local(&e.at)?,
            Location::Object(o) => o.delete(&e.key())?,
        }
    }
    if let (Location::Local(p), false) = (evn, doomed.is_empty()) {
        sync(&month_dir(p, month))?;
    }
    Ok(())
}

fn remove_local(p: &Path) -> Result<(), PrivacyError> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PrivacyError::io(p, e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PrivacyError::io(p, e)),
    }
}

/// Deletes a whole month folder so that no reader sees part of it as the month: locally by
/// one rename to a hidden name ([`crate::fsops::delete_dir`]); on an object store the manifests
/// go first (from then on the portal offers nothing of the month), between the deletion mark
/// written first and removed last.
pub fn delete_month(evn: &Location, month: BillingMonth) -> Result<(), PrivacyError> {
    match evn {
        Location::Local(p) => crate::fsops::delete_dir(&month_dir(p, month)),
        Location::Object(o) => {
            let mark = format!("{month}/{DELETING_MARK}");
            let why = format!("{{\"month\":\"{month}\",\"by\":\"evn retention\"}}");
            o.put(&mark, Bytes::from(why), PutMode::Overwrite)?;
            finish_object_delete(evn, o, month)
        }
    }
}

fn finish_object_delete(
    evn: &Location,
    o: &ObjectData,
    month: BillingMonth,
) -> Result<(), PrivacyError> {
    for m in manifests_in(evn, month)? {
        o.delete(&m.key())?;
    }
    let mark = format!("{month}/{DELETING_MARK}");
    for e in entries(evn, month)? {
        if e.key() != mark {
            o.delete(&e.key())?;
        }
    }
    Ok(o.delete(&mark)?)
}

/// What an interrupted run left in the EVN folder: locally `.deleting-*` folders and temp
/// files (see [`crate::fsops::finish_leftovers`]), on an object store months with a deletion
/// mark. Finished unless `dry_run`; returned either way.
pub fn finish_leftovers(evn: &Location, dry_run: bool) -> Result<Vec<PathBuf>, PrivacyError> {
    match evn {
        Location::Local(p) => {
            let mut found = crate::fsops::finish_leftovers(p, dry_run)?;
            for month in evn_months(evn)? {
                found.extend(crate::fsops::finish_leftovers(
                    &month_dir(p, month),
                    dry_run,
                )?);
            }
            Ok(found)
        }
        Location::Object(o) => {
            let mut found = Vec::new();
            for month in evn_months(evn)? {
                let mark = format!("{month}/{DELETING_MARK}");
                if o.exists(&mark)? {
                    found.push(PathBuf::from(o.display(&mark)));
                    if !dry_run {
                        finish_object_delete(evn, o, month)?;
                    }
                }
            }
            Ok(found)
        }
    }
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
    fn send_dates_are_per_customer_and_the_month_s_is_the_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let month: BillingMonth = "2026-03".parse().unwrap();
        let m = month_dir(dir.path(), month);
        std::fs::create_dir_all(&m).unwrap();
        let evn = Location::from(dir.path());
        assert_eq!(billed(&evn, month).unwrap(), Billed::default());
        std::fs::write(
            m.join(MANIFEST_FILE),
            r#"{"month":"2026-03","generated_at":"2026-05-31T22:30:00Z","future_field":1,
               "customers":{"K1":{"versions":[{"created":"2026-04-02"},{"created":"2026-05-20"}]},
                            "K2":{"versions":[{"created":"2026-04-02"}]}}}"#,
        )
        .unwrap();
        let b = billed(&evn, month).unwrap();
        // K2's bill went out on 2 April and was never re-sent: the month's date. K1's second
        // version on 20 May starts K1's six months again, nobody else's.
        assert_eq!(b.sent, Some("2026-04-02".parse().unwrap()));
        assert_eq!(b.customers.len(), 2);
        assert_eq!(b.sent_to("K1"), Some("2026-05-20".parse().unwrap()));
        assert_eq!(b.sent_to("K2"), Some("2026-04-02".parse().unwrap()));
        assert_eq!(b.sent_to("K9"), Some("2026-04-02".parse().unwrap()));
        // No versions: generated_at in Berlin (22:30 UTC on 31 May is 1 June 00:30 CEST).
        std::fs::write(
            m.join(MANIFEST_FILE),
            r#"{"generated_at":"2026-05-31T22:30:00Z","customers":{}}"#,
        )
        .unwrap();
        assert_eq!(
            billed(&evn, month).unwrap().sent,
            Some("2026-06-01".parse().unwrap())
        );
        std::fs::write(m.join(MANIFEST_FILE), "{").unwrap();
        assert!(matches!(
            billed(&evn, month),
            Err(PrivacyError::Manifest { .. })
        ));
    }
}
